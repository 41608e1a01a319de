package reconcile

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/sergi/go-diff/diffmatchpatch"
)

// RenderOptions tune the text form of a plan.
type RenderOptions struct {
	Color bool
	// Limit is how many records of each action are shown (0 = 10).
	Limit int
	// Failed are the syncs that could not be planned, with why. They are
	// not in the plan, and its summary says so rather than calling the
	// destinations in step.
	Failed []FailedSync
}

// FailedSync is a sync that could not be planned.
type FailedSync struct {
	Sync  string
	Error string
}

// failedSummary says which syncs could not be planned, naming one sync as
// named says: "" when none.
func failedSummary(failed []FailedSync, named func(sync string) string) string {
	switch len(failed) {
	case 0:
		return ""
	case 1:
		return named(failed[0].Sync) + " could not be planned"
	}
	return fmt.Sprintf("%d syncs could not be planned", len(failed))
}

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiRed    = "\x1b[31m"
	ansiCyan   = "\x1b[36m"
)

type painter bool

func (p painter) paint(code, s string) string {
	if !p {
		return s
	}
	return code + s + ansiReset
}

func (p painter) action(a Action, s string) string {
	switch a {
	case ActionAdd:
		return p.paint(ansiGreen, s)
	case ActionChange:
		return p.paint(ansiYellow, s)
	case ActionRemove:
		return p.paint(ansiRed, s)
	default:
		return p.paint(ansiCyan, s)
	}
}

// Render writes the plan as text, one section per sync, ending with the
// line "Plan: A to add, C to change, R to remove, T to retry."
func (p *Plan) Render(w io.Writer, opts RenderOptions) {
	if opts.Limit <= 0 {
		opts.Limit = 10
	}
	pt := painter(opts.Color)
	for _, sp := range p.Syncs {
		sp.render(w, opts)
	}
	for _, f := range opts.Failed {
		fmt.Fprintf(w, "%s failed, not planned: %s\n\n", pt.paint(ansiBold, "sync "+strconv.Quote(f.Sync)+":"), f.Error)
	}
	add, change, remove, retry := p.Totals()
	failed := failedSummary(opts.Failed, func(sync string) string { return "sync " + strconv.Quote(sync) })
	switch {
	case !p.HasChanges() && failed == "":
		fmt.Fprintln(w, "No changes. Every destination is in step with its model.")
		return
	case !p.HasChanges() && len(p.Syncs) == 0:
		fmt.Fprintf(w, "%s %s.\n", pt.paint(ansiRed+ansiBold, "Plan failed:"), failed)
		return
	case !p.HasChanges():
		fmt.Fprintf(w, "%s %s; the syncs planned have no changes.\n", pt.paint(ansiRed+ansiBold, "Plan incomplete:"), failed)
		return
	}
	fmt.Fprintf(w, "%s %d to add, %d to change, %d to remove, %d to retry.\n",
		pt.paint(ansiBold, "Plan:"), add, change, remove, retry)
	if failed != "" {
		fmt.Fprintf(w, "%s %s; only the changes above are known.\n", pt.paint(ansiRed+ansiBold, "Plan incomplete:"), failed)
	}
	for _, sp := range p.MassRemovals() {
		fmt.Fprintf(w, "\n%s sync %q: %s. apply refuses it unless given --allow-mass-removal.\n",
			pt.paint(ansiRed+ansiBold, "WARNING: mass removal:"), sp.Name, sp.MassRemoval.Reason())
	}
}

func (sp *SyncPlan) render(w io.Writer, opts RenderOptions) {
	pt := painter(opts.Color)
	fmt.Fprintf(w, "%s model.%s → destination.%s (%s)\n", pt.paint(ansiBold, "sync \""+sp.Name+"\":"), sp.Model, sp.Destination, PlainText(sp.Object))
	removal := "delete_behavior " + sp.DeleteBehavior
	if sp.SkipRemovals {
		removal += ", removals skipped this run (--skip-removals)"
	}
	fmt.Fprintf(w, "  mode %s, %s; %d rows in model, %d unchanged\n", sp.Mode, removal, sp.Rows, sp.Unchanged)
	fmt.Fprintf(w, "  %s, %s, %s, %s\n",
		pt.action(ActionAdd, fmt.Sprintf("+ %d to add", sp.Add)),
		pt.action(ActionChange, fmt.Sprintf("~ %d to change", sp.Change)),
		pt.action(ActionRemove, fmt.Sprintf("- %d to remove", sp.Remove)),
		pt.action(ActionRetry, fmt.Sprintf("↻ %d to retry", sp.Retry)))
	if len(sp.Excluded) > 0 {
		reasons := make([]string, 0, len(sp.Excluded))
		for r := range sp.Excluded {
			reasons = append(reasons, r)
		}
		sort.Strings(reasons)
		parts := make([]string, len(reasons))
		for i, r := range reasons {
			parts[i] = fmt.Sprintf("%s %d", PlainText(r), sp.Excluded[r])
		}
		fmt.Fprintf(w, "  excluded: %s\n", strings.Join(parts, ", "))
	}
	if n := len(sp.DropFailures); n > 0 {
		fmt.Fprintf(w, "  %d failed record(s) now excluded by a rule leave the failure index and are not retried\n", n)
	}
	if n := len(sp.KeepSynced); n > 0 {
		fmt.Fprintf(w, "  %d failed record(s) already synced, which mode %s never sends again, leave the failure index\n", n, sp.Mode)
	}
	for _, n := range sp.Notes {
		fmt.Fprintf(w, "  note: %s\n", PlainText(n))
	}
	if m := sp.MassRemoval; m != nil {
		fmt.Fprintf(w, "  %s %s; apply refuses it unless given --allow-mass-removal\n", pt.paint(ansiRed+ansiBold, "WARNING: mass removal:"), m.Reason())
	}
	if sp.NumChanges() > 0 {
		fmt.Fprintln(w)
	}
	hidden := map[Action]int{}
	for _, a := range actionOrder {
		// Each change is written as it is read, none kept: a change read
		// from a saved plan holds its chunk's text, and the first ten
		// could hold ten chunks.
		shown := 0
		err := sp.EachOf(a, func(c *Change) error {
			if shown == opts.Limit {
				return errStop
			}
			sp.renderChange(w, pt, c)
			shown++
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			fmt.Fprintf(w, "  the plan's changes could not be read: %v\n", err)
		}
		hidden[a] = sp.countOf(a) - shown
	}
	for _, a := range actionOrder {
		if n := hidden[a]; n > 0 {
			fmt.Fprintf(w, "  %s … and %d more to %s\n", pt.action(a, a.Symbol()), n, a)
		}
	}
	fmt.Fprintln(w)
}

func (sp *SyncPlan) renderChange(w io.Writer, pt painter, c *Change) {
	head := fmt.Sprintf("  %s %s", c.Action.Symbol(), strconv.Quote(c.Key))
	switch c.Action {
	case ActionAdd:
		fmt.Fprintf(w, "%s %s\n", pt.action(c.Action, head), sp.fieldList(c.After))
	case ActionChange:
		fmt.Fprintln(w, pt.action(c.Action, head))
		sp.renderFieldDiffs(w, c)
	case ActionRemove:
		fmt.Fprintf(w, "%s (%s)\n", pt.action(c.Action, head), opLabel(c))
	case ActionRetry:
		attempts := "1 attempt"
		if c.Attempts != 1 {
			attempts = fmt.Sprintf("%d attempts", c.Attempts)
		}
		fmt.Fprintf(w, "%s (%s; %s so far; last error: %s)\n", pt.action(c.Action, head), opLabel(c), attempts, oneLine(c.LastError))
		if c.After != nil && c.Before != nil {
			sp.renderFieldDiffs(w, c)
		}
	}
}

func opLabel(c *Change) string {
	if c.Op == OpForget {
		return "forget only, nothing sent"
	}
	return string(c.Op)
}

func (sp *SyncPlan) fieldList(vals map[string]any) string {
	parts := make([]string, 0, len(sp.Fields))
	for _, f := range sp.Fields {
		parts = append(parts, PlainText(f)+" = "+formatValue(vals[f]))
	}
	if len(parts) == 0 {
		return "{}"
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

func (sp *SyncPlan) renderFieldDiffs(w io.Writer, c *Change) {
	for _, f := range sp.Fields {
		b, a := c.Before[f], c.After[f]
		if formatValue(b) == formatValue(a) {
			continue
		}
		bs, as := formatValue(b), formatValue(a)
		if sb, ok := b.(string); ok {
			if sa, ok := a.(string); ok && (len(sb) > 40 || len(sa) > 40) {
				fmt.Fprintf(w, "      %s: %s\n", PlainText(f), PlainText(textDiff(sb, sa)))
				continue
			}
		}
		fmt.Fprintf(w, "      %s: %s -> %s\n", PlainText(f), bs, as)
	}
}

// textDiff shows a change inside long text word by word:
// [-removed-]{+added+}.
func textDiff(a, b string) string {
	// Words, runs of space and single punctuation marks become one rune
	// each, so the diff never splits a word.
	var vocab []string
	ids := map[string]rune{}
	encode := func(s string) []rune {
		var out []rune
		for _, tok := range wordToken.FindAllString(s, -1) {
			id, ok := ids[tok]
			if !ok {
				id = tokenRune(len(vocab))
				ids[tok] = id
				vocab = append(vocab, tok)
			}
			out = append(out, id)
		}
		return out
	}
	ra, rb := encode(a), encode(b)
	dmp := diffmatchpatch.New()
	var sb strings.Builder
	for _, d := range dmp.DiffMainRunes(ra, rb, false) {
		var text strings.Builder
		for _, r := range d.Text {
			text.WriteString(vocab[runeToken(r)])
		}
		switch d.Type {
		case diffmatchpatch.DiffDelete:
			sb.WriteString("[-" + text.String() + "-]")
		case diffmatchpatch.DiffInsert:
			sb.WriteString("{+" + text.String() + "+}")
		default:
			sb.WriteString(text.String())
		}
	}
	return strconv.Quote(sb.String())
}

// tokenRune and runeToken number tokens with valid runes, skipping the
// surrogate range, which does not survive a round trip through a string.
func tokenRune(i int) rune {
	if i >= 0xD800 {
		return rune(i + 0x800)
	}
	return rune(i)
}

func runeToken(r rune) int {
	if r >= 0xE000 {
		return int(r) - 0x800
	}
	return int(r)
}

var wordToken = regexp.MustCompile(`\s+|[\p{L}\p{N}_]+|.`)

func formatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	default:
		return fmt.Sprint(x)
	}
}

func oneLine(s string) string {
	s = PlainText(strings.ReplaceAll(s, "\n", " "))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// PlainText shows s on one line of a terminal or a pull-request comment.
// Names and notes in a plan come from the config and from destinations,
// which are untrusted: control characters (line breaks and terminal
// escapes among them) and other invisible runes (bidirectional overrides)
// are written as Go escapes (\n, \x1b, \u202e), so that no name can forge
// a line of the plan or drive the terminal it is shown on.
func PlainText(s string) string {
	if strings.IndexFunc(s, invisible) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if invisible(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func invisible(r rune) bool { return r != ' ' && !unicode.IsPrint(r) }
