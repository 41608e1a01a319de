package main

import (
	"fmt"
	"html"
	"io"
	"path/filepath"
	"strings"

	"github.com/backflowhq/backflow/project"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/repofs"
)

// textDiffLines is the most lines of one diff `plan --base` prints as text.
const textDiffLines = 200

// markdownBudget keeps a PR comment under GitHub's limit of 65,536
// characters, with room for what a CI step adds around it.
const markdownBudget = 60000

// planMarker is the hidden line that identifies a config's plan comment,
// so that a CI step can find and update its earlier comment.
func planMarker(dir string) string {
	name := filepath.Base(dir)
	if abs, err := filepath.Abs(dir); err == nil {
		name = filepath.Base(abs)
	}
	if loc, err := repofs.Locate(dir); err == nil && loc.Git {
		name = loc.Dir
	}
	return fmt.Sprintf("<!-- backflow-plan: %s -->", strings.ReplaceAll(name, "--", "-"))
}

func shortRev(commit string) string {
	if len(commit) > 7 {
		return commit[:7]
	}
	return commit
}

func countsPhrase(c *project.PlanCounts) string {
	if c == nil {
		return "—"
	}
	sp := reconcile.SyncPlan{Add: c.Add, Change: c.Change, Remove: c.Remove, Retry: c.Retry}
	return sp.CountsPhrase()
}

func inputsPhrase(rv *project.Review) string {
	var parts []string
	if n := len(rv.ConfigChanges); n > 0 {
		parts = append(parts, plural(n, "config block"))
	}
	if n := len(rv.FileChanges); n > 0 {
		parts = append(parts, plural(n, "file"))
	}
	if len(parts) == 0 {
		return "no config input differs"
	}
	verb := "differ"
	if len(rv.ConfigChanges)+len(rv.FileChanges) == 1 {
		verb = "differs"
	}
	return strings.Join(parts, " and ") + " " + verb
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func fileLabel(f project.FileChange) string {
	s := fmt.Sprintf("%s %s (read by %s; +%d −%d lines)", f.Kind, f.File, strings.Join(f.ReadBy, ", "), f.Added, f.Removed)
	return s
}

func sampleText(e project.Effect) string {
	if len(e.Sample) == 0 {
		return ""
	}
	more := ""
	if e.Rows > len(e.Sample) {
		more = ", …"
	}
	if e.Rows == 1 {
		return "key " + e.Sample[0]
	}
	return "keys " + strings.Join(e.Sample, ", ") + more
}

// renderReviewText writes what `plan --base` adds before the plan.
func renderReviewText(w io.Writer, rv *project.Review) {
	fmt.Fprintf(w, "Compared with %s (%s): %s.\n\n", rv.Base, shortRev(rv.BaseCommit), inputsPhrase(rv))
	for _, c := range rv.ConfigChanges {
		fmt.Fprintf(w, "  %s %s (%s)\n", c.Kind, c.Block, c.File)
		writeIndented(w, c.Diff, textDiffLines)
	}
	for _, f := range rv.FileChanges {
		fmt.Fprintf(w, "  %s\n", fileLabel(f))
		if f.TooLarge {
			fmt.Fprintf(w, "    (too large to show line by line)\n\n")
			continue
		}
		writeIndented(w, f.Diff, textDiffLines)
	}
	if rv.BaseError != "" {
		fmt.Fprintf(w, "Data consequence: not shown: %s.\n\n", rv.BaseError)
		return
	}
	fmt.Fprintf(w, "Data consequence (the plan at %s and this plan, against the same state):\n", rv.Base)
	for _, con := range rv.Consequences {
		switch con.Status {
		case "error":
			fmt.Fprintf(w, "  sync %q: could not be compared: %s\n", con.Sync, con.Error)
			continue
		case "unchanged":
			fmt.Fprintf(w, "  sync %q: no row's outcome changes\n", con.Sync)
			continue
		}
		fmt.Fprintf(w, "  sync %q: at %s %s; with this change %s\n", con.Sync, rv.Base, countsPhrase(con.Base), countsPhrase(con.Head))
		for _, e := range con.Effects {
			fmt.Fprintf(w, "    • %s", e.Text)
			if s := sampleText(e); s != "" {
				fmt.Fprintf(w, " (%s)", s)
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w)
}

func writeIndented(w io.Writer, diff string, max int) {
	lines := strings.Split(strings.TrimRight(diff, "\n"), "\n")
	for i, line := range lines {
		if i == max {
			fmt.Fprintf(w, "    … %d more lines\n", len(lines)-max)
			break
		}
		fmt.Fprintf(w, "    %s\n", line)
	}
	fmt.Fprintln(w)
}

// markdownLevel is how much detail a PR comment shows; a comment over the
// budget is rendered again with less.
type markdownLevel struct {
	rows, diffLines, effects int
}

var markdownLevels = []markdownLevel{{10, 150, 20}, {3, 40, 10}, {-1, 0, 5}}

// renderMarkdown writes the PR comment: the marker, what the change does
// (with --base), the config diffs and the plan, within markdownBudget.
func renderMarkdown(w io.Writer, marker, dir string, rv *project.Review, plan *reconcile.Plan, failed project.SyncErrors) {
	var out string
	for i, lvl := range markdownLevels {
		var b strings.Builder
		writeMarkdown(&b, marker, dir, rv, plan, failed, lvl, i > 0)
		out = b.String()
		if len(out) <= markdownBudget {
			break
		}
	}
	if len(out) > markdownBudget {
		cut := strings.LastIndex(out[:markdownBudget], "\n")
		out = out[:cut+1] + "\n*… cut to fit a comment; the job's log has the whole plan.*\n"
	}
	io.WriteString(w, out)
}

func writeMarkdown(w *strings.Builder, marker, dir string, rv *project.Review, plan *reconcile.Plan, failed project.SyncErrors, lvl markdownLevel, shortened bool) {
	fmt.Fprintf(w, "%s\n## backflow plan · `%s`\n\n", marker, strings.TrimSuffix(strings.TrimPrefix(marker, "<!-- backflow-plan: "), " -->"))
	if shortened {
		fmt.Fprintf(w, "*Shortened to fit a comment: the job's log has the whole plan.*\n\n")
	}
	if rv != nil {
		fmt.Fprintf(w, "Compared with `%s` (`%s`): **%s**.\n\n", rv.Base, shortRev(rv.BaseCommit), inputsPhrase(rv))
		writeConsequencesMarkdown(w, rv, lvl)
		writeInputsMarkdown(w, rv, lvl)
	}
	for _, f := range failed {
		fmt.Fprintf(w, "> **Error** (`%s`): %s\n\n", f.Sync, reconcile.MarkdownText(f.Err.Error()))
	}
	plan.RenderMarkdownWith(w, reconcile.MarkdownOptions{Limit: lvl.rows, Heading: 3, Failed: failedSyncs(failed)})
}

func writeConsequencesMarkdown(w *strings.Builder, rv *project.Review, lvl markdownLevel) {
	fmt.Fprintf(w, "### What this change does to the data\n\n")
	if rv.BaseError != "" {
		fmt.Fprintf(w, "Not shown: %s.\n\n", reconcile.MarkdownText(rv.BaseError))
		return
	}
	if len(rv.Consequences) == 0 {
		fmt.Fprintf(w, "No sync to compare.\n\n")
		return
	}
	fmt.Fprintf(w, "Both plans are made against the same state and sources.\n\n")
	fmt.Fprintf(w, "| sync | plan at `%s` | plan with this change | rows whose outcome changes |\n|---|---|---|--:|\n", reconcile.MarkdownText(rv.Base))
	for _, con := range rv.Consequences {
		affected := 0
		for _, e := range con.Effects {
			if e.Moves() {
				affected += e.Rows
			}
		}
		status := fmt.Sprintf("%d", affected)
		switch con.Status {
		case "added":
			status = "new sync"
		case "removed":
			status = "sync removed"
		case "error":
			status = "could not compare"
		}
		fmt.Fprintf(w, "| `%s` | %s | %s | %s |\n", con.Sync, countsPhrase(con.Base), countsPhrase(con.Head), status)
	}
	fmt.Fprintln(w)
	for _, con := range rv.Consequences {
		if con.Status == "unchanged" {
			continue
		}
		fmt.Fprintf(w, "#### Sync `%s`\n\n", con.Sync)
		if con.Status == "error" {
			fmt.Fprintf(w, "- could not be compared: %s\n\n", reconcile.MarkdownText(con.Error))
			continue
		}
		for i, e := range con.Effects {
			if i == lvl.effects {
				fmt.Fprintf(w, "- … and %d more\n", len(con.Effects)-i)
				break
			}
			fmt.Fprintf(w, "- %s", mdProse(e.Text))
			if s := sampleText(e); s != "" {
				fmt.Fprintf(w, " <sub>(%s)</sub>", html.EscapeString(s))
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
	}
}

// mdProse escapes an effect's sentence for markdown, keeping its code
// spans (names in backticks) as they are.
func mdProse(s string) string {
	parts := strings.Split(s, "`")
	for i := range parts {
		if i%2 == 0 {
			parts[i] = reconcile.MarkdownText(parts[i])
		}
	}
	return strings.Join(parts, "`")
}

func writeInputsMarkdown(w *strings.Builder, rv *project.Review, lvl markdownLevel) {
	if !rv.Changed() {
		return
	}
	fmt.Fprintf(w, "<details><summary>Config changes: %s</summary>\n\n", html.EscapeString(inputsPhrase(rv)))
	diff := func(head, body string) {
		fmt.Fprintf(w, "%s\n\n", head)
		lines := strings.Split(strings.TrimRight(body, "\n"), "\n")
		if lvl.diffLines <= 0 {
			return
		}
		if len(lines) > lvl.diffLines {
			lines = append(lines[:lvl.diffLines:lvl.diffLines], fmt.Sprintf("… %d more lines", len(lines)-lvl.diffLines))
		}
		text := strings.Join(lines, "\n") + "\n"
		fence := reconcile.CodeFence(text)
		fmt.Fprintf(w, "%sdiff\n%s%s\n\n", fence, text, fence)
	}
	for _, c := range rv.ConfigChanges {
		diff(fmt.Sprintf("`%s` in `%s`: %s", c.Block, c.File, c.Kind), c.Diff)
	}
	for _, f := range rv.FileChanges {
		head := fmt.Sprintf("`%s`: %s, read by %s (+%d −%d lines)", f.File, f.Kind, readers(f.ReadBy), f.Added, f.Removed)
		if f.TooLarge {
			fmt.Fprintf(w, "%s, too large to show line by line\n\n", head)
			continue
		}
		diff(head, f.Diff)
	}
	fmt.Fprintf(w, "</details>\n\n")
}

func readers(by []string) string {
	q := make([]string, len(by))
	for i, b := range by {
		q[i] = "`" + b + "`"
	}
	return strings.Join(q, ", ")
}

// planJSON is `plan --json`: the plan, with --base the review's fields
// (base, config_changes, file_changes, consequences) beside it.
type planJSON struct {
	*reconcile.Plan
	*project.Review
	Errors []syncErrorView `json:"errors,omitempty"`
}
