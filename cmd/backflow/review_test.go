package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/renderer/html"

	"github.com/backflowhq/backflow/internal/gittest"
	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/project"
	"github.com/backflowhq/backflow/reconcile"
)

// prConfig is a config syncing 100 users (every 4th on the free tier,
// every 10th without email) to SQLite, deleting rows that leave, with the
// email masked in plans.
func prConfig() map[string]string {
	var csv strings.Builder
	csv.WriteString("id,email,name,tier\n")
	for i := 1; i <= 100; i++ {
		email := fmt.Sprintf("u%d@private.example", i)
		if i%10 == 0 {
			email = ""
		}
		tier := "pro"
		if i%4 == 0 {
			tier = "free"
		}
		fmt.Fprintf(&csv, "%d,%s,User %d,%s\n", i, email, i, tier)
	}
	return map[string]string{
		"crm/main.hcl": `source "w" {
  type     = "embedded"
  fixtures = "data"
}

model "users" {
  source      = source.w
  query       = file("models/users.sql")
  primary_key = "id"
}

destination "crm" {
  type     = "sqlite"
  path     = "crm.db"
  init_sql = file("crm.sql")
}

sync "users" {
  model           = model.users
  destination     = destination.crm
  object          = "contacts"
  key             = "id"
  delete_behavior = "delete"
  mapping = {
    email     = "email"
    full_name = "name"
  }
  sensitive_fields = ["email"]

  exclude "missing_email" {
    when = "row.email == null || row.email == ''"
  }
}
`,
		"crm/models/users.sql": "SELECT id, email, name, tier\nFROM users\n",
		"crm/crm.sql":          "CREATE TABLE IF NOT EXISTS contacts (id INTEGER PRIMARY KEY, email TEXT, full_name TEXT)\n",
		"crm/data/users.csv":   csv.String(),
		".gitignore":           "crm/crm.db\ncrm/.backflow/\n",
	}
}

// prRepo commits prConfig, applies it, and commits change on top.
func prRepo(t *testing.T, change func(files map[string]string)) string {
	t.Helper()
	repo := gittest.Init(t, t.TempDir())
	files := prConfig()
	repo.Commit(t, "v1", files)
	dir := filepath.Join(repo.Dir, "crm")
	if code, out, errOut := backflow("-C", dir, "apply", "--auto-approve"); code != 0 || !strings.Contains(out, "90 accepted") {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	next := map[string]string{}
	for k, v := range files {
		next[k] = v
	}
	change(next)
	repo.Commit(t, "change", next)
	return dir
}

var updateGolden = flag.Bool("update", false, "rewrite golden files")

var hexCommit = regexp.MustCompile("`[0-9a-f]{7}`")

// TestPlanBaseSQLChange: a commit changing only the model's SQL file shows
// that file's diff, no block diff, and the synced rows it removes.
func TestPlanBaseSQLChange(t *testing.T) {
	dir := prRepo(t, func(f map[string]string) {
		f["crm/models/users.sql"] = "SELECT id, email, name, tier\nFROM users\nWHERE tier <> 'free'\n"
	})
	code, out, errOut := backflow("-C", dir, "plan", "--base", "HEAD~1")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"Compared with HEAD~1 (",
		"): 1 file differs.",
		`changed models/users.sql (read by model "users"; +1 −0 lines)`,
		"    +WHERE tier <> 'free'",
		"model `users` changed (query: models/users.sql): 20 rows leave the model, all synced: `delete_behavior = delete` deletes them (keys 4, 8, 12, 16, 24, …)",
		"Plan: 0 to add, 0 to change, 20 to remove, 0 to retry.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "changed sync") || strings.Contains(out, "No block differs") {
		t.Errorf("a block diff is shown for an SQL-only change:\n%s", out)
	}

	code, out, errOut = backflow("-C", dir, "plan", "--base", "HEAD~1", "--json")
	if code != 0 {
		t.Fatalf("json: exit %d\n%s%s", code, out, errOut)
	}
	var v struct {
		Base          string            `json:"base"`
		ConfigChanges []json.RawMessage `json:"config_changes"`
		FileChanges   []struct {
			File string `json:"file"`
			Diff string `json:"diff"`
		} `json:"file_changes"`
		Consequences []struct {
			Sync    string `json:"sync"`
			Status  string `json:"status"`
			Effects []struct {
				Effect     string         `json:"effect"`
				Rows       int            `json:"rows"`
				Operations map[string]int `json:"operations"`
			} `json:"effects"`
		} `json:"consequences"`
		Syncs []json.RawMessage `json:"syncs"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if v.Base != "HEAD~1" || v.ConfigChanges == nil || len(v.ConfigChanges) != 0 || len(v.FileChanges) != 1 || v.FileChanges[0].File != "models/users.sql" ||
		len(v.Consequences) != 1 || len(v.Consequences[0].Effects) != 1 || v.Consequences[0].Effects[0].Effect != "leave_model" ||
		v.Consequences[0].Effects[0].Operations["delete"] != 20 || len(v.Syncs) != 1 {
		t.Errorf("json: %+v", v)
	}
}

// TestPlanBaseRuleChange: rows a new rule excludes are attributed to it.
func TestPlanBaseRuleChange(t *testing.T) {
	dir := prRepo(t, func(f map[string]string) {
		f["crm/main.hcl"] = strings.Replace(f["crm/main.hcl"], `  exclude "missing_email" {`, `  exclude "free_tier" {
    when = "row.tier == 'free'"
  }

  exclude "missing_email" {`, 1)
	})
	code, out, errOut := backflow("-C", dir, "plan", "--base", "HEAD~1")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"): 1 config block differs.",
		`changed sync "users" (main.hcl)`,
		`    +  exclude "free_tier" {`,
		"rule `free_tier` (added) newly excludes 20 rows, all synced: `delete_behavior = delete` deletes them (keys 4, 8, 12, 16, 24, …)",
		"rule `free_tier` (added): rule `free_tier` now excludes 5 rows that rule `missing_email` excluded; nothing changes in the destination",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// goldenChange is the change of the golden PR comment: a new rule, a
// renamed mapping, a narrower query and a new fixture row.
func goldenChange(f map[string]string) {
	hcl := strings.Replace(f["crm/main.hcl"], `  exclude "missing_email" {`, `  exclude "vip" {
    when   = "row.id < 3"
    reason = "VIP accounts are managed by hand"
  }

  exclude "missing_email" {`, 1)
	f["crm/main.hcl"] = strings.Replace(hcl, `full_name = "name"`, `full_name = "tier"`, 1)
	f["crm/models/users.sql"] = "SELECT id, email, name, tier\nFROM users\nWHERE tier <> 'free'\n"
	f["crm/data/users.csv"] += "101,new@private.example,New | user <b>,pro\n"
}

// TestPlanBaseMarkdownGolden renders a PR comment with every part (the
// consequence of several causes, block and file diffs, the plan with
// capped record lists and a masked field) and compares it with
// testdata/pr_plan.md.golden (go test -run MarkdownGolden -update to
// accept a change). The markdown is then rendered as GitHub-flavoured
// markdown to check its structure: tables, collapsible sections, diff
// blocks, and no markup leaking as text. With BACKFLOW_MARKDOWN_HTML=FILE
// the rendered page is written to FILE, to look at in a browser.
func TestPlanBaseMarkdownGolden(t *testing.T) {
	dir := prRepo(t, goldenChange)
	code, out, errOut := backflow("-C", dir, "plan", "--base", "HEAD~1", "--markdown")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	got := hexCommit.ReplaceAllString(out, "`0000000`")
	golden := "testdata/pr_plan.md.golden"
	if *updateGolden {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("markdown differs from %s (go test -run MarkdownGolden -update to accept):\n%s", golden, got)
	}
	if !strings.HasPrefix(out, "<!-- backflow-plan: crm -->\n") {
		t.Errorf("no marker line first:\n%s", out[:min(len(out), 200)])
	}
	if strings.Contains(out, "private.example") && !strings.Contains(out, "+101,new@private.example") {
		t.Errorf("a sensitive value shows outside the fixture's own diff")
	}

	page := renderGFM(t, out)
	for name, re := range map[string]string{
		"two tables":                  `(?s)<table>.*</table>.*<table>.*</table>`,
		"right-aligned counts":        `<td style="text-align:right">[0-9,]+</td>`,
		"a details section per sync":  `<details><summary><code>users</code>: 1 to add, 68 to change, 22 to remove</summary>`,
		"config changes collapsed":    `<details><summary>Config changes: 1 config block and 2 files differ</summary>`,
		"diff blocks":                 `<pre><code class="language-diff">`,
		"code spans in effects":       `rule <code>vip</code> \(added\) newly excludes 2 rows`,
		"marker kept as html comment": `<!-- backflow-plan: crm -->`,
	} {
		if !regexp.MustCompile(re).MatchString(page) {
			t.Errorf("rendered page lacks %s (%s)", name, re)
		}
	}
	// Markup that did not render shows as literal text: table rows, fences
	// or HTML tags outside code.
	text := regexp.MustCompile(`(?s)<pre>.*?</pre>|<code>.*?</code>`).ReplaceAllString(page, "")
	for _, leak := range []string{"|---", "```", "&lt;details", "&lt;summary", "&lt;/details"} {
		if strings.Contains(text, leak) {
			t.Errorf("%q leaks as text in the rendered page", leak)
		}
	}
	if path := os.Getenv("BACKFLOW_MARKDOWN_HTML"); path != "" {
		if err := os.WriteFile(path, []byte(htmlPage(page)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func renderGFM(t *testing.T, md string) string {
	t.Helper()
	var b bytes.Buffer
	gm := goldmark.New(goldmark.WithExtensions(extension.GFM), goldmark.WithRendererOptions(html.WithUnsafe()))
	if err := gm.Convert([]byte(md), &b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// htmlPage wraps rendered markdown in a page styled like a GitHub comment.
func htmlPage(body string) string {
	return `<!DOCTYPE html><html><head><meta charset="utf-8"><style>
body { font: 14px/1.5 -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif; color: #1f2328; max-width: 900px; margin: 24px auto; padding: 16px 24px; border: 1px solid #d1d9e0; border-radius: 6px; }
h2 { font-size: 1.5em; border-bottom: 1px solid #d1d9e0; padding-bottom: .3em; }
h3 { font-size: 1.25em; }
table { border-collapse: collapse; display: block; overflow: auto; margin: 0 0 16px; }
th, td { border: 1px solid #d1d9e0; padding: 6px 13px; }
tr:nth-child(2n) { background: #f6f8fa; }
code { font: 85% ui-monospace, SFMono-Regular, Menlo, monospace; background: rgba(175,184,193,.2); padding: .2em .4em; border-radius: 6px; }
pre { background: #f6f8fa; padding: 16px; border-radius: 6px; overflow: auto; font-size: 85%; line-height: 1.45; }
pre code { background: none; padding: 0; font-size: 100%; }
details { margin: 0 0 16px; } summary { cursor: pointer; }
</style></head><body>
` + body + "\n</body></html>\n"
}

// TestMarkdownFitsAComment: a plan too big for a PR comment is rendered
// again with less detail, and says so; it stays under the budget.
func TestMarkdownFitsAComment(t *testing.T) {
	plan := &reconcile.Plan{FormatVersion: reconcile.FormatVersion}
	for s := 0; s < 200; s++ {
		sp := &reconcile.SyncPlan{Name: fmt.Sprintf("sync_%d", s), Model: "m", Destination: "d", Object: "o", KeyField: "id",
			Fields: []string{"bio"}, Mode: "upsert", DeleteBehavior: "nothing", Excluded: map[string]int{}}
		for i := 0; i < 50; i++ {
			sp.Changes = append(sp.Changes, reconcile.Change{Action: reconcile.ActionAdd, Key: fmt.Sprint(i), Op: "upsert",
				After: map[string]any{"bio": strings.Repeat("x", 100)}})
		}
		sp.Add, sp.Rows = 50, 50
		plan.Syncs = append(plan.Syncs, sp)
	}
	var diff strings.Builder
	for i := 0; i < 5000; i++ {
		fmt.Fprintf(&diff, "+%d,row\n", i)
	}
	rv := &project.Review{Base: "main", BaseCommit: strings.Repeat("a", 40), ConfigChanges: []project.BlockChange{},
		FileChanges: []project.FileChange{{File: "data/t.csv", Kind: "changed", ReadBy: []string{`source "w"`}, Diff: diff.String(), Added: 5000}}}
	var b strings.Builder
	renderMarkdown(&b, "<!-- backflow-plan: x -->", ".", rv, plan, nil)
	out := b.String()
	if len(out) > markdownBudget || !strings.Contains(out, "Shortened to fit a comment") || !strings.HasPrefix(out, "<!-- backflow-plan: x -->\n") {
		t.Fatalf("%d characters; starts %q", len(out), out[:200])
	}
	if !strings.Contains(out, "`sync_199`") {
		t.Errorf("a sync's summary line was dropped")
	}
	// A small plan is not shortened.
	b.Reset()
	plan.Syncs = plan.Syncs[:1]
	rv.FileChanges[0].Diff = "+1,row\n"
	renderMarkdown(&b, "<!-- backflow-plan: x -->", ".", rv, plan, nil)
	if strings.Contains(b.String(), "Shortened") || !strings.Contains(b.String(), "… and 40 more to add") {
		t.Errorf("small plan:\n%s", b.String())
	}
}

// TestPlanBaseMasksTheBaseConfigsSecrets: the base revision reads a DSN
// through an env() variable the head no longer uses; its model fails at
// the base, echoing part of that DSN. The review masks it, in every form.
func TestPlanBaseMasksTheBaseConfigsSecrets(t *testing.T) {
	testdb.Postgres(t)
	const canary = "baseAppCANARY9x"
	t.Setenv("BF_BASE_DSN", testdb.PostgresDSN+"&application_name="+canary)
	withOld := func(dsn, query string) map[string]string {
		f := prConfig()
		f["crm/main.hcl"] += `
source "old" {
  type = "postgres"
  dsn  = ` + dsn + `
}
model "old" {
  source      = source.old
  query       = "` + query + `"
  primary_key = "id"
}
sync "old" {
  model       = model.old
  destination = destination.crm
  object      = "contacts"
  key         = "id"
}
`
		return f
	}
	repo := gittest.Init(t, t.TempDir())
	repo.Commit(t, "base", withOld(`env("BF_BASE_DSN")`, "SELECT current_setting('application_name')::int AS id"))
	repo.Commit(t, "head", withOld(`"`+testdb.PostgresDSN+`"`, "SELECT 1 AS id"))
	dir := filepath.Join(repo.Dir, "crm")
	for _, form := range [][]string{{}, {"--json"}, {"--markdown"}} {
		_, out, errOut := backflow(append([]string{"-C", dir, "plan", "--base", "HEAD~1"}, form...)...)
		if !strings.Contains(out+errOut, "invalid input syntax") {
			t.Errorf("plan --base %v: the base's failure is not shown:\n%s%s", form, out, errOut)
		}
		if strings.Contains(out+errOut, canary) {
			t.Errorf("plan --base %v shows the base's secret:\n%s", form, excerpt(out+errOut, canary))
		}
	}
}
