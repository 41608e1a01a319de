package reconcile

import (
	"fmt"
	"html"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MarkdownOptions tune the markdown form of a plan.
type MarkdownOptions struct {
	// Limit is how many records of each action a sync shows (0 = 10; -1
	// shows none, only counts).
	Limit int
	// MaxValue is the most characters of a value shown; longer values are
	// cut with "…" (0 = 60).
	MaxValue int
	// Heading is the markdown heading level of the plan's title (0 = 3).
	Heading int
	// Failed are the syncs that could not be planned (the caller shows
	// why): the title says the plan is incomplete.
	Failed []FailedSync
}

// RenderMarkdown writes the plan for a pull-request comment: a summary
// table, then each sync's records in a collapsible section. Values are
// shown as they are: render p.Masked() to hide sensitive ones.
func (p *Plan) RenderMarkdown(w io.Writer, opts RenderOptions) {
	p.RenderMarkdownWith(w, MarkdownOptions{Limit: opts.Limit})
}

// RenderMarkdownWith is RenderMarkdown with every option. The output is
// GitHub-flavoured markdown: a table, <details> sections and ```diff
// blocks whose first column GitHub colours (+ add, - remove, ! change or
// retry).
func (p *Plan) RenderMarkdownWith(w io.Writer, opts MarkdownOptions) {
	if opts.Limit == 0 {
		opts.Limit = 10
	}
	if opts.MaxValue <= 0 {
		opts.MaxValue = 60
	}
	if opts.Heading <= 0 {
		opts.Heading = 3
	}
	h := strings.Repeat("#", opts.Heading)
	failed := failedSummary(opts.Failed, func(sync string) string { return "Sync `" + sync + "`" })
	switch {
	case !p.HasChanges() && failed == "":
		fmt.Fprintf(w, "%s Plan: no changes\n\nEvery destination is in step with its model.\n", h)
		p.markdownNotes(w)
		return
	case !p.HasChanges() && len(p.Syncs) == 0:
		fmt.Fprintf(w, "%s Plan failed\n\n%s.\n", h, failed)
		return
	case !p.HasChanges():
		fmt.Fprintf(w, "%s Plan incomplete: no changes in the syncs planned\n\n%s.\n", h, failed)
		p.markdownNotes(w)
		return
	}
	add, change, remove, retry := p.Totals()
	fmt.Fprintf(w, "%s Plan: %s to add, %s to change, %s to remove, %s to retry\n\n", h, mdNum(add), mdNum(change), mdNum(remove), mdNum(retry))
	if failed != "" {
		fmt.Fprintf(w, "**Incomplete:** %s; only the changes below are known.\n\n", failed)
	}
	for _, sp := range p.MassRemovals() {
		fmt.Fprintf(w, "> [!CAUTION]\n> **Mass removal** in sync `%s`: %s. `apply` refuses it unless given `--allow-mass-removal`.\n\n", sp.Name, MarkdownText(sp.MassRemoval.Reason()))
	}
	fmt.Fprintf(w, "| sync | model → destination | add | change | remove | retry | excluded |\n|---|---|--:|--:|--:|--:|--:|\n")
	for _, sp := range p.Syncs {
		fmt.Fprintf(w, "| `%s` | `%s` → `%s` (%s) | %s | %s | %s | %s | %s |\n",
			sp.Name, sp.Model, sp.Destination, mdCell(sp.Object), mdNum(sp.Add), mdNum(sp.Change), mdNum(sp.Remove), mdNum(sp.Retry), mdNum(sp.excludedTotal()))
	}
	p.markdownNotes(w)
	for _, sp := range p.Syncs {
		if sp.HasChanges() {
			sp.renderMarkdown(w, opts)
		}
	}
}

func (p *Plan) markdownNotes(w io.Writer) {
	for _, sp := range p.Syncs {
		for _, n := range sp.Notes {
			fmt.Fprintf(w, "\n> **Note** (`%s`): %s\n", sp.Name, MarkdownText(n))
		}
	}
}

func (sp *SyncPlan) excludedTotal() int {
	n := 0
	for _, x := range sp.Excluded {
		n += x
	}
	return n
}

// CountsPhrase says a sync's counts in words, leaving out zeros:
// "70 to change, 20 to remove" (or "nothing to do").
func (sp *SyncPlan) CountsPhrase() string {
	var parts []string
	for _, c := range []struct {
		n    int
		what string
	}{{sp.Add, "add"}, {sp.Change, "change"}, {sp.Remove, "remove"}, {sp.Retry, "retry"}} {
		if c.n > 0 {
			parts = append(parts, mdNum(c.n)+" to "+c.what)
		}
	}
	if n := len(sp.DropFailures) + len(sp.KeepSynced); n > 0 {
		parts = append(parts, mdNum(n)+" failed record(s) dropped")
	}
	if len(parts) == 0 {
		return "nothing to do"
	}
	return strings.Join(parts, ", ")
}

func (sp *SyncPlan) renderMarkdown(w io.Writer, opts MarkdownOptions) {
	fmt.Fprintf(w, "\n<details><summary><code>%s</code>: %s</summary>\n\n", html.EscapeString(sp.Name), sp.CountsPhrase())
	removal := "`delete_behavior = " + sp.DeleteBehavior + "`"
	if sp.SkipRemovals {
		removal += " (removals skipped this run)"
	}
	fmt.Fprintf(w, "`mode = %s`, %s; %s rows in the model, %s unchanged", sp.Mode, removal, mdNum(sp.Rows), mdNum(sp.Unchanged))
	if len(sp.Excluded) > 0 {
		reasons := make([]string, 0, len(sp.Excluded))
		for r := range sp.Excluded {
			reasons = append(reasons, r)
		}
		sort.Strings(reasons)
		parts := make([]string, len(reasons))
		for i, r := range reasons {
			parts[i] = fmt.Sprintf("%s %s", mdCodeSpan(PlainText(r)), mdNum(sp.Excluded[r]))
		}
		fmt.Fprintf(w, "; excluded: %s", strings.Join(parts, ", "))
	}
	fmt.Fprint(w, ".\n")
	if n := len(sp.DropFailures); n > 0 {
		fmt.Fprintf(w, "\n%s failed record(s) now excluded by a rule leave the failure index and are not retried.\n", mdNum(n))
	}
	if n := len(sp.KeepSynced); n > 0 {
		fmt.Fprintf(w, "\n%s failed record(s) already synced, which mode %s never sends again, leave the failure index.\n", mdNum(n), sp.Mode)
	}
	var b strings.Builder
	shown, hidden := 0, 0
	more := func(a Action) {
		if hidden > 0 {
			word := "more "
			if shown == 0 {
				word = ""
			}
			fmt.Fprintf(&b, "%s … and %s %sto %s\n", diffMark(a), mdNum(hidden), word, a)
		}
		shown, hidden = 0, 0
	}
	// Changes shown on one line align their fields after the widest key.
	limit := max(opts.Limit, 0)
	firsts := make([][]Change, len(actionOrder))
	keyWidth := 0
	for i, a := range actionOrder {
		first, err := sp.First(a, limit)
		if err != nil {
			fmt.Fprintf(&b, "! the plan's changes could not be read: %v\n", err)
		}
		firsts[i] = first
		if a == ActionChange {
			for j := range first {
				keyWidth = max(keyWidth, utf8.RuneCountInString(strconv.Quote(first[j].Key)))
			}
		}
	}
	for i, a := range actionOrder {
		for j := range firsts[i] {
			shown++
			sp.markdownChange(&b, &firsts[i][j], opts.MaxValue, keyWidth)
		}
		hidden = sp.countOf(a) - len(firsts[i])
		more(a)
	}
	if b.Len() > 0 {
		fence := CodeFence(b.String())
		fmt.Fprintf(w, "\n%sdiff\n%s%s\n", fence, b.String(), fence)
	}
	fmt.Fprint(w, "\n</details>\n")
}

// diffMark is the first column of a record's lines in a ```diff block.
func diffMark(a Action) string {
	switch a {
	case ActionAdd:
		return "+"
	case ActionRemove:
		return "-"
	}
	return "!"
}

func (sp *SyncPlan) markdownChange(b *strings.Builder, c *Change, maxValue, keyWidth int) {
	mark := diffMark(c.Action)
	key := strconv.Quote(c.Key)
	switch c.Action {
	case ActionAdd:
		parts := make([]string, 0, len(sp.Fields))
		for _, f := range sp.Fields {
			parts = append(parts, PlainText(f)+" = "+cut(formatValue(c.After[f]), maxValue))
		}
		fmt.Fprintf(b, "%s %s { %s }\n", mark, key, strings.Join(parts, ", "))
	case ActionChange:
		pad := strings.Repeat(" ", max(0, keyWidth-utf8.RuneCountInString(key)))
		sp.markdownFieldDiffs(b, mark+" "+key+pad, c, maxValue)
	case ActionRemove:
		fmt.Fprintf(b, "%s %s (%s)\n", mark, key, opLabel(c))
	case ActionRetry:
		attempts := "1 attempt"
		if c.Attempts != 1 {
			attempts = fmt.Sprintf("%d attempts", c.Attempts)
		}
		fmt.Fprintf(b, "%s %s (retry: %s; %s so far; last error: %s)\n", mark, key, opLabel(c), attempts, cut(oneLine(c.LastError), 2*maxValue))
		if c.After != nil && c.Before != nil {
			sp.markdownFieldDiffs(b, "!    ", c, maxValue)
		}
	}
}

// markdownLine is the most characters of a record's line in a diff block
// before its field changes go one per line.
const markdownLine = 100

// markdownFieldDiffs writes head and the changed fields of c: on head's
// line when they fit, else one per line below it.
func (sp *SyncPlan) markdownFieldDiffs(b *strings.Builder, head string, c *Change, maxValue int) {
	var diffs []string
	for _, f := range sp.Fields {
		bv, av := c.Before[f], c.After[f]
		bs, as := formatValue(bv), formatValue(av)
		if bs == as {
			continue
		}
		if sb, ok := bv.(string); ok {
			if sa, ok := av.(string); ok && (len(sb) > maxValue || len(sa) > maxValue) {
				diffs = append(diffs, PlainText(f)+": "+cutAround(PlainText(textDiff(sb, sa)), 2*maxValue))
				continue
			}
		}
		diffs = append(diffs, fmt.Sprintf("%s: %s → %s", PlainText(f), cut(bs, maxValue), cut(as, maxValue)))
	}
	if one := head + "  " + strings.Join(diffs, "; "); utf8.RuneCountInString(one) <= markdownLine || len(diffs) == 0 {
		b.WriteString(strings.TrimRight(one, " ") + "\n")
		return
	}
	b.WriteString(strings.TrimRight(head, " ") + "\n")
	for _, d := range diffs {
		fmt.Fprintf(b, "!     %s\n", d)
	}
}

// cut shortens s to at most n characters, ending it with "…" (and the
// closing quote of a quoted string) when it was longer.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	quoted := strings.HasPrefix(s, `"`) && strings.HasSuffix(s, `"`)
	r := []rune(s)
	out := string(r[:n-1])
	// A cut inside an escape sequence (\u00e9) would read as garbage.
	if i := strings.LastIndexByte(out, '\\'); i >= 0 && i >= len(out)-6 {
		out = out[:i]
	}
	out += "…"
	if quoted {
		out += `"`
	}
	return out
}

// cutAround shortens a word diff to n characters around its first
// change, so that a change at the end of a long text is still seen.
func cutAround(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	first := len(r)
	for _, m := range []string{"[-", "{+"} {
		if i := strings.Index(s, m); i >= 0 {
			first = min(first, utf8.RuneCountInString(s[:i]))
		}
	}
	avail := n - 2 // for the opening `"…`
	start := max(0, min(first-n/4, len(r)-avail))
	if start <= 1 {
		return cut(s, n)
	}
	out := cut(string(r[start:]), avail)
	if !strings.HasSuffix(out, `"`) {
		out += `"`
	}
	return `"…` + out
}

// CodeFence returns a backtick fence longer than any run of backticks in
// s, so that a value cannot end the block it is shown in.
func CodeFence(s string) string {
	return strings.Repeat("`", max(3, longestBackticks(s)+1))
}

// longestBackticks is the length of the longest run of backticks in s.
func longestBackticks(s string) int {
	longest, run := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return longest
}

// MarkdownText escapes text for markdown prose: "<" cannot open an HTML
// tag, "|" cannot end a table cell, and a line break cannot end a line
// (see PlainText).
func MarkdownText(s string) string {
	return strings.NewReplacer("<", "&lt;", ">", "&gt;", "|", `\|`).Replace(PlainText(s))
}

// mdCodeSpan writes s as inline code, delimited by more backticks than
// any run of them in s.
func mdCodeSpan(s string) string {
	longest := longestBackticks(s)
	if longest == 0 {
		return "`" + s + "`"
	}
	ticks := strings.Repeat("`", longest+1)
	return ticks + " " + s + " " + ticks
}

func mdCell(s string) string { return MarkdownText(s) }

// mdNum writes n with thousands separators: 1,234.
func mdNum(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return "-" + mdNum(-n)
	}
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}
