package project

import (
	"fmt"
	"strconv"
	"strings"

	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/reconcile"
)

// Label names a cause for people, with code spans for names:
// "rule `free_tier` (added)", "model `users` changed (query: users.sql)".
func (c Cause) Label() string {
	detail := ""
	if c.Detail != "" {
		detail = " (" + c.Detail + ")"
	}
	switch c.Kind {
	case "rule":
		return fmt.Sprintf("rule `%s` (%s)", c.Name, c.Change)
	case "mapping":
		return fmt.Sprintf("mapping of `%s` %s%s", c.Name, c.Change, detail)
	case "model":
		return fmt.Sprintf("model `%s` changed%s", c.Name, detail)
	case "setting":
		return fmt.Sprintf("`%s` changed%s", c.Name, detail)
	case "sync":
		return fmt.Sprintf("sync `%s` %s", c.Name, c.Change)
	}
	return "outcomes differ" + detail
}

// effectText is an effect in one sentence, on one line whatever the names
// in it (see reconcile.PlainText).
func effectText(e *Effect, s *config.Sync, skipRemovals bool) string {
	return reconcile.PlainText(effectSentence(e, s, skipRemovals))
}

func effectSentence(e *Effect, s *config.Sync, skipRemovals bool) string {
	label := e.Cause.Label()
	rows := plural(e.Rows, "row")
	switch e.Effect {
	case EffectNewlyExcluded:
		head := fmt.Sprintf("%s: rule `%s` newly excludes %s", label, e.Rule, rows)
		if e.Cause.Kind == "rule" && e.Cause.Name == e.Rule {
			head = fmt.Sprintf("%s newly excludes %s", label, rows)
		}
		return head + leaving(e, s, skipRemovals)
	case EffectNoLongerExcluded:
		head := fmt.Sprintf("%s: rule `%s` no longer excludes %s", label, e.Rule, rows)
		if e.Cause.Kind == "rule" && e.Cause.Name == e.Rule {
			head = fmt.Sprintf("%s no longer excludes %s", label, rows)
		}
		return head + ": " + actionPhrase(e.Actions)
	case EffectExcludedInstead:
		return fmt.Sprintf("%s: rule `%s` now excludes %s that rule `%s` excluded; nothing changes in the destination", label, e.Rule, rows, e.From)
	case EffectLeaveModel:
		return fmt.Sprintf("%s: %s %s the model", label, rows, verb(e.Rows, "leave")) + leaving(e, s, skipRemovals)
	case EffectJoinModel:
		return fmt.Sprintf("%s: %s %s the model: %s", label, rows, verb(e.Rows, "join"), actionPhrase(e.Actions))
	case EffectJoinExcluded:
		return fmt.Sprintf("%s: %s %s the model, excluded by rule `%s`", label, rows, verb(e.Rows, "join"), e.Rule)
	case EffectValuesChange:
		records := plural(e.Rows, "record")
		fields := ""
		if e.Cause.Kind != "mapping" && len(e.Fields) > 0 {
			fields = " (" + codeList(e.Fields) + ")"
		}
		switch {
		case e.Synced == e.Rows:
			return fmt.Sprintf("%s: %s %s%s", label, records, verb(e.Rows, "change"), fields)
		case e.Synced == 0:
			return fmt.Sprintf("%s: %s not yet synced %s sent with other values%s", label, records, isAre(e.Rows), fields)
		}
		return fmt.Sprintf("%s: %s %s%s, %s of them not yet synced", label, records, verb(e.Rows, "change"), fields, num(e.Rows-e.Synced))
	case EffectSendingChange:
		if e.Actions["none"] == e.Rows {
			return fmt.Sprintf("%s: %s %s no longer sent", label, plural(e.Rows, "record"), isAre(e.Rows))
		}
		return fmt.Sprintf("%s: %s %s sent though unchanged: %s", label, plural(e.Rows, "record"), isAre(e.Rows), actionPhrase(e.Actions))
	case EffectRemovalChange:
		return fmt.Sprintf("%s: %s", label, plural(e.Rows, "removal")) + ": " + removalPhrase(e.Operations, s, skipRemovals)
	}
	return fmt.Sprintf("%s: %s with another outcome", label, rows)
}

// leaving says what happens to rows leaving the included set: the synced
// ones are removed as delete_behavior says, the others are not sent.
func leaving(e *Effect, s *config.Sync, skipRemovals bool) string {
	var b strings.Builder
	switch {
	case e.Synced == 0:
	case e.Synced == e.Rows && e.Rows > 1:
		b.WriteString(", all synced: ")
	case e.Synced == e.Rows:
		b.WriteString(", synced: ")
	default:
		fmt.Fprintf(&b, ", %s of them synced: ", num(e.Synced))
	}
	if e.Synced > 0 {
		b.WriteString(removalPhrase(e.Operations, s, skipRemovals))
	}
	if e.WasSent > 0 {
		if e.Synced == 0 {
			fmt.Fprintf(&b, "; %s", plural(e.WasSent, "row"))
		} else {
			fmt.Fprintf(&b, "; %s not yet synced", num(e.WasSent))
		}
		fmt.Fprintf(&b, " %s no longer sent", isAre(e.WasSent))
	}
	return b.String()
}

// removalPhrase says what apply does to removed records: one phrase for
// one operation, counts for several.
func removalPhrase(ops map[string]int, s *config.Sync, skipRemovals bool) string {
	del, clr, forget := ops["delete"], ops["clear"], ops["forget"]
	n := 0
	for _, x := range []int{del, clr, forget} {
		if x > 0 {
			n++
		}
	}
	switch {
	case n == 0:
		return "nothing is sent"
	case n > 1:
		var parts []string
		for _, p := range []struct {
			n    int
			what string
		}{{del, "deleted"}, {clr, "cleared"}, {forget, "forgotten (left in the destination)"}} {
			if p.n > 0 {
				parts = append(parts, num(p.n)+" "+p.what)
			}
		}
		return strings.Join(parts, ", ")
	case del > 0:
		return "`delete_behavior = delete` deletes them"
	case clr > 0:
		return "`delete_behavior = clear` clears their fields"
	case skipRemovals:
		return "--skip-removals forgets them; they stay in the destination"
	}
	return fmt.Sprintf("`delete_behavior = %s` leaves them in the destination (forgotten)", s.DeleteBehavior)
}

// actionPhrase counts a plan's actions: "3 to add, 2 to change".
func actionPhrase(actions map[string]int) string {
	var parts []string
	for _, a := range []string{"add", "change", "retry", "remove"} {
		if n := actions[a]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s to %s", num(n), a))
		}
	}
	if n := actions["none"]; n > 0 {
		parts = append(parts, fmt.Sprintf("%s already in step", num(n)))
	}
	if len(parts) == 0 {
		return "nothing to send"
	}
	return strings.Join(parts, ", ")
}

func sendPhrase(add, change, retry int) string {
	return actionPhrase(map[string]int{"add": add, "change": change, "retry": retry})
}

func codeList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "`" + n + "`"
	}
	return strings.Join(q, ", ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return num(n) + " " + what + "s"
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

// verb agrees a verb with a count: "1 row leaves", "2 rows leave".
func verb(n int, v string) string {
	if n == 1 {
		return v + "s"
	}
	return v
}

// num writes n with thousands separators: 1,234,567.
func num(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
