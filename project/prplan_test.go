package project

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/internal/gittest"
)

// reviewRepo is a repository whose config syncs 100 users (plans free and
// pro, every 10th without email) to SQLite with delete_behavior = delete,
// its model's query read from models/users.sql.
func reviewRepo(t *testing.T) (*gittest.Repo, string) {
	t.Helper()
	var csv strings.Builder
	csv.WriteString("id,email,name,tier\n")
	for i := 1; i <= 100; i++ {
		email := fmt.Sprintf("u%d@example.com", i)
		if i%10 == 0 {
			email = ""
		}
		plan := "pro"
		if i%4 == 0 {
			plan = "free"
		}
		fmt.Fprintf(&csv, "%d,%s,User %d,%s\n", i, email, i, plan)
	}
	repo := gittest.Init(t, t.TempDir())
	repo.Commit(t, "v1", map[string]string{
		"cfg/main.hcl": `source "w" {
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

  exclude "missing_email" {
    when = "row.email == null || row.email == ''"
  }
}
`,
		"cfg/models/users.sql": "SELECT id, email, name, tier\nFROM users\n",
		"cfg/crm.sql":          "CREATE TABLE IF NOT EXISTS contacts (id INTEGER PRIMARY KEY, email TEXT, full_name TEXT)",
		"cfg/data/users.csv":   csv.String(),
		".gitignore":           "cfg/crm.db\ncfg/.backflow/\n",
	})
	dir := filepath.Join(repo.Dir, "cfg")
	applyAll(t, dir)
	return repo, dir
}

func applyAll(t *testing.T, dir string) {
	t.Helper()
	ctx := context.Background()
	w, err := OpenWorkspace(ctx, dir, Options{Lock: "apply"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	plan, err := w.Plan(ctx, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Apply(ctx, plan, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
}

func review(t *testing.T, dir, base string) *Review {
	t.Helper()
	ctx := context.Background()
	w, err := OpenWorkspace(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	_, rv, err := w.PlanReview(ctx, PlanOptions{}, base)
	if err != nil {
		t.Fatal(err)
	}
	return rv
}

// TestReviewModelSQLChange: a commit that changes only the model's SQL
// file shows that file's diff (no HCL block differs) and the rows leaving
// the model, attributed to the model's query, deleted as delete_behavior
// says.
func TestReviewModelSQLChange(t *testing.T) {
	repo, dir := reviewRepo(t)
	repo.Commit(t, "pro only", map[string]string{"cfg/models/users.sql": "SELECT id, email, name, tier\nFROM users\nWHERE tier <> 'free'\n"})

	rv := review(t, dir, "HEAD~1")
	if len(rv.ConfigChanges) != 0 {
		t.Errorf("block changes: %+v", rv.ConfigChanges)
	}
	if len(rv.FileChanges) != 1 {
		t.Fatalf("file changes: %+v", rv.FileChanges)
	}
	fc := rv.FileChanges[0]
	if fc.File != "models/users.sql" || fc.Kind != "changed" || fc.Added != 1 || fc.Removed != 0 ||
		!strings.Contains(fc.Diff, "+WHERE tier <> 'free'") || strings.Join(fc.ReadBy, ",") != `model "users"` {
		t.Errorf("file change: %+v", fc)
	}
	if len(rv.Consequences) != 1 {
		t.Fatalf("consequences: %+v", rv.Consequences)
	}
	con := rv.Consequences[0]
	// 25 users are free; the 5 of them without an email were excluded
	// anyway and leave unnoticed: 20 synced rows leave the model.
	if con.Status != "changed" || len(con.Effects) != 1 {
		t.Fatalf("consequence: %+v", con)
	}
	e := con.Effects[0]
	if e.Effect != EffectLeaveModel || e.Rows != 20 || e.Synced != 20 || e.Operations["delete"] != 20 ||
		e.Cause.Kind != "model" || e.Cause.Name != "users" || e.Cause.Detail != "query: models/users.sql" {
		t.Errorf("effect: %+v", e)
	}
	want := "model `users` changed (query: models/users.sql): 20 rows leave the model, all synced: `delete_behavior = delete` deletes them"
	if e.Text != want {
		t.Errorf("text:\n got %s\nwant %s", e.Text, want)
	}
	if strings.Join(e.Sample, ",") != "4,8,12,16,24" {
		t.Errorf("sample keys %v", e.Sample)
	}
	if con.Base == nil || con.Head == nil || con.Base.Remove != 0 || con.Head.Remove != 20 {
		t.Errorf("counts: base %+v, head %+v", con.Base, con.Head)
	}
}

// TestReviewRuleChange: a new rule's exclusions are attributed to it, a
// mapping change to its field, both in one commit and kept apart.
func TestReviewRuleChange(t *testing.T) {
	repo, dir := reviewRepo(t)
	b, err := os.ReadFile(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(b), `  exclude "missing_email" {`, `  exclude "free_tier" {
    when = "row.tier == 'free'"
  }

  exclude "missing_email" {`, 1)
	changed = strings.Replace(changed, `full_name = "name"`, `full_name = "tier"`, 1)
	repo.Commit(t, "free tier", map[string]string{"cfg/main.hcl": changed})

	rv := review(t, dir, "HEAD~1")
	if len(rv.ConfigChanges) != 1 || rv.ConfigChanges[0].Block != `sync "users"` || len(rv.FileChanges) != 0 {
		t.Fatalf("changes: %+v %+v", rv.ConfigChanges, rv.FileChanges)
	}
	con := rv.Consequences[0]
	byEffect := map[string]Effect{}
	for _, e := range con.Effects {
		byEffect[e.Effect] = e
	}
	if len(con.Effects) != 3 {
		t.Fatalf("effects: %+v", con.Effects)
	}
	ex := byEffect[EffectNewlyExcluded]
	// The 25 free users, of which 5 lack an email: missing_email comes
	// second, so free_tier now excludes all 25; 20 were synced.
	if ex.Rule != "free_tier" || ex.Cause.Kind != "rule" || ex.Cause.Change != "added" || ex.Rows != 20 || ex.Synced != 20 || ex.Operations["delete"] != 20 {
		t.Errorf("exclusion: %+v", ex)
	}
	if want := "rule `free_tier` (added) newly excludes 20 rows, all synced: `delete_behavior = delete` deletes them"; ex.Text != want {
		t.Errorf("text:\n got %s\nwant %s", ex.Text, want)
	}
	// The 5 free users without an email were excluded by missing_email;
	// free_tier, first now, excludes them: nothing changes for them.
	inst := byEffect[EffectExcludedInstead]
	if inst.Rule != "free_tier" || inst.From != "missing_email" || inst.Rows != 5 || inst.Synced != 0 || inst.Operations[removedNothingOp] != 5 {
		t.Errorf("excluded instead: %+v", inst)
	}
	vc := byEffect[EffectValuesChange]
	// The 90 users with an email, less the 20 free ones now excluded.
	if vc.Cause.Kind != "mapping" || vc.Cause.Name != "full_name" || vc.Rows != 70 || vc.Operations["upsert"] != 70 {
		t.Errorf("mapping effect: %+v", vc)
	}
	if want := "mapping of `full_name` changed (`name` → `tier`): 70 records change"; vc.Text != want {
		t.Errorf("text:\n got %s\nwant %s", vc.Text, want)
	}
}

// TestReviewSettings: the mode and delete_behavior are attributed as
// settings: mode "all" sends unchanged records, and rows leaving the model
// are forgotten rather than deleted.
func TestReviewSettings(t *testing.T) {
	repo, dir := reviewRepo(t)
	b, err := os.ReadFile(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(b), `delete_behavior = "delete"`, "delete_behavior = \"nothing\"\n  mode            = \"all\"", 1)
	repo.Commit(t, "settings", map[string]string{
		"cfg/main.hcl":         changed,
		"cfg/models/users.sql": "SELECT id, email, name, tier\nFROM users\nWHERE id > 10\n",
	})
	rv := review(t, dir, "HEAD~1")
	texts := map[string]Effect{}
	for _, e := range rv.Consequences[0].Effects {
		texts[e.Effect] = e
	}
	leave := texts[EffectLeaveModel]
	// Ids 1–10 leave, 10 lacked an email: 9 synced rows, forgotten.
	if want := "model `users` changed (query: models/users.sql): 9 rows leave the model, all synced: `delete_behavior = nothing` leaves them in the destination (forgotten)"; leave.Text != want || leave.Operations["forget"] != 9 {
		t.Errorf("leaving rows:\n got %+v\nwant %s", leave, want)
	}
	send := texts[EffectSendingChange]
	if send.Cause.Kind != "setting" || send.Cause.Name != "mode" || send.Rows != 81 ||
		send.Text != "`mode` changed (upsert → all): 81 records are sent though unchanged: 81 to change" {
		t.Errorf("mode: %+v", send)
	}
}

// TestReviewNewConfig: a base without the config folder makes every sync
// new and every input added.
func TestReviewNewConfig(t *testing.T) {
	repo := gittest.Init(t, t.TempDir())
	repo.Commit(t, "empty", map[string]string{"README.md": "x"})
	repo2, dir := reviewRepo(t)
	_ = repo2
	// Move the config's commit on top of a commit without it.
	files := map[string]string{}
	for _, name := range []string{"main.hcl", "models/users.sql", "crm.sql", "data/users.csv"} {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		files["cfg/"+name] = string(b)
	}
	files[".gitignore"] = "cfg/crm.db\ncfg/.backflow/\n"
	repo.Commit(t, "add the config", files)
	rv := review(t, filepath.Join(repo.Dir, "cfg"), "HEAD~1")
	if rv.BaseError != "" || len(rv.Consequences) != 1 || rv.Consequences[0].Status != "added" {
		t.Fatalf("review: %+v", rv)
	}
	if e := rv.Consequences[0].Effects[0]; e.Text != "sync `users` added: 90 to add, 10 excluded" {
		t.Errorf("effect: %+v", e)
	}
	var kinds []string
	for _, f := range rv.FileChanges {
		kinds = append(kinds, f.Kind+" "+f.File)
	}
	if strings.Join(kinds, ", ") != "added crm.sql, added data/users.csv, added models/users.sql" {
		t.Errorf("file changes: %v", kinds)
	}
	if len(rv.ConfigChanges) != 4 || rv.ConfigChanges[0].Kind != "added" {
		t.Errorf("block changes: %+v", rv.ConfigChanges)
	}
}

// TestReviewBrokenBase: a base whose config does not load still gets its
// inputs compared; the consequence says why it is not shown.
func TestReviewBrokenBase(t *testing.T) {
	repo, dir := reviewRepo(t)
	b, _ := os.ReadFile(filepath.Join(dir, "main.hcl"))
	repo.Commit(t, "break", map[string]string{"cfg/main.hcl": string(b) + "\nsync {\n"})
	repo.Commit(t, "fix", map[string]string{"cfg/main.hcl": string(b)})
	rv := review(t, dir, "HEAD~1")
	if !strings.Contains(rv.BaseError, "the config at HEAD~1 does not load") || len(rv.Consequences) != 0 || len(rv.ConfigChanges) != 1 {
		t.Errorf("review: %+v", rv)
	}
}
