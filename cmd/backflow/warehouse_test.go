package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/internal/gittest"
	"github.com/backflowhq/backflow/internal/testdb"
)

// warehouseServer is one database for the warehouse CDC end-to-end test.
type warehouseServer struct {
	typ, dsn string
	exec     func(t *testing.T, stmts ...string)
	count    func(t *testing.T, q string) int
	// exists says whether the owned schema exists.
	exists func(t *testing.T, schema string) bool
	drop   func(schema string)
	ddl    string
}

func pgWarehouse(t *testing.T) warehouseServer {
	conn := testdb.Postgres(t)
	return warehouseServer{typ: "postgres", dsn: testdb.PostgresDSN,
		exec: func(t *testing.T, stmts ...string) { testdb.PostgresExec(t, conn, stmts...) },
		count: func(t *testing.T, q string) int {
			var n int
			if err := conn.QueryRow(context.Background(), q).Scan(&n); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			return n
		},
		exists: func(t *testing.T, schema string) bool {
			var n int
			if err := conn.QueryRow(context.Background(), "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = $1", schema).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n > 0
		},
		drop: func(s string) { conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+s+" CASCADE") },
		ddl:  "id integer, name text, email text, score numeric(6,2)",
	}
}

func mariadbWarehouse(t *testing.T) warehouseServer {
	db := testdb.MariaDB(t)
	count := func(t *testing.T, q string, args ...any) int {
		var n int
		if err := db.QueryRow(q, args...).Scan(&n); err != nil && err != sql.ErrNoRows {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	return warehouseServer{typ: "mysql", dsn: testdb.MariaDBDSN,
		exec:  func(t *testing.T, stmts ...string) { testdb.MariaDBExec(t, db, stmts...) },
		count: func(t *testing.T, q string) int { return count(t, q) },
		exists: func(t *testing.T, schema string) bool {
			return count(t, "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?", schema) > 0
		},
		drop: func(s string) { db.Exec("DROP DATABASE IF EXISTS " + s) },
		ddl:  "id INT, name VARCHAR(40), email VARCHAR(80), score DECIMAL(6,2)",
	}
}

func TestWarehouseCDCPostgres(t *testing.T) { warehouseScenario(t, pgWarehouse(t), false) }
func TestWarehouseCDCMariaDB(t *testing.T)  { warehouseScenario(t, mariadbWarehouse(t), false) }

// TestWarehouseCDCSharesStateSchema: with the state in the source's own
// database and no cdc_schema, the tables go to the state's schema.
func TestWarehouseCDCSharesStateSchema(t *testing.T) { warehouseScenario(t, pgWarehouse(t), true) }

// warehouseScenario: plan reads and writes nothing in the database; apply
// creates the snapshot table and records what was accepted; later plans
// see only what changed; reset-cdc takes the model as synced.
func warehouseScenario(t *testing.T, srv warehouseServer, sharedState bool) {
	tbl := testdb.Name("bfwh")
	cdc := testdb.Name("bfcdc")
	srv.exec(t, "CREATE TABLE "+tbl+" ("+srv.ddl+")",
		"INSERT INTO "+tbl+" VALUES (1, 'Ann', 'ann@example.com', 1.5), (2, 'Bob', NULL, 2), (3, 'Cy', 'cy@example.com', NULL), (4, 'Di', 'di@example.com', 4)")
	t.Cleanup(func() { srv.exec(t, "DROP TABLE IF EXISTS "+tbl); srv.drop(cdc) })
	dir := t.TempDir()
	cdcArg := fmt.Sprintf("cdc_schema = %q", cdc)
	if sharedState {
		cdcArg = fmt.Sprintf("}\nstate {\n  backend = %q\n  dsn     = env(\"WAREHOUSE_DSN\")\n  schema  = %q", srv.typ, cdc)
	}
	writeWarehouseProject(t, dir, srv.typ, cdcArg, tbl, `
  delete_behavior = "delete"
  max_removals    = "100%"
  mapping         = { name = "name", email = "email", score = "score" }
  exclude "no_email" {
    when = "row.email == null"
  }`)
	t.Setenv("WAREHOUSE_DSN", srv.dsn)

	plan := func() map[string]any {
		t.Helper()
		code, out, errOut := backflow("-C", dir, "plan", "--json")
		if code != 0 {
			t.Fatalf("plan: exit %d\n%s%s", code, out, errOut)
		}
		var p struct {
			Syncs []map[string]any `json:"syncs"`
		}
		if err := json.Unmarshal([]byte(out), &p); err != nil || len(p.Syncs) != 1 {
			t.Fatalf("plan --json: %v\n%s", err, out)
		}
		return p.Syncs[0]
	}
	counts := func(sp map[string]any) string {
		return fmt.Sprintf("add=%v change=%v remove=%v retry=%v unchanged=%v rows=%v", sp["add"], sp["change"], sp["remove"], sp["retry"], sp["unchanged"], sp["rows"])
	}
	apply := func() {
		t.Helper()
		if code, out, errOut := backflow("-C", dir, "apply", "--auto-approve"); code != 0 {
			t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
		}
	}

	if got, want := counts(plan()), "add=3 change=0 remove=0 retry=0 unchanged=0 rows=4"; got != want {
		t.Fatalf("first plan: %s, want %s", got, want)
	}
	if srv.exists(t, cdc) && !sharedState {
		t.Fatalf("plan created schema %s: plans must write nothing", cdc)
	}
	apply()
	rows := cdc + ".cdc_rows"
	if n := srv.count(t, "SELECT COUNT(*) FROM "+rows+" WHERE synced"); n != 3 {
		t.Fatalf("after the first apply the snapshot table holds %d synced records, want 3", n)
	}
	if got, want := counts(plan()), "add=0 change=0 remove=0 retry=0 unchanged=3 rows=4"; got != want {
		t.Fatalf("plan after apply: %s, want %s", got, want)
	}

	srv.exec(t, "UPDATE "+tbl+" SET score = 9 WHERE id = 1", "UPDATE "+tbl+" SET email = NULL WHERE id = 3", "DELETE FROM "+tbl+" WHERE id = 4",
		"UPDATE "+tbl+" SET email = 'bob@example.com' WHERE id = 2", "INSERT INTO "+tbl+" VALUES (5, 'Ed', 'ed@example.com', 5)")
	sp := plan()
	if got, want := counts(sp), "add=2 change=1 remove=2 retry=0 unchanged=0 rows=4"; got != want {
		t.Fatalf("plan after changes: %s, want %s", got, want)
	}
	// A saved plan carries the database keys and hashes apply writes.
	if code, out, errOut := backflow("-C", dir, "plan", "--out", filepath.Join(dir, "w.plan")); code != 0 {
		t.Fatalf("plan --out: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := backflow("-C", dir, "apply", filepath.Join(dir, "w.plan")); code != 0 {
		t.Fatalf("apply w.plan: exit %d\n%s%s", code, out, errOut)
	}
	out, err := os.ReadFile(filepath.Join(dir, "out.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"score":"9.00"`) && !strings.Contains(string(out), `"score":9`) {
		t.Fatalf("the change of key 1 was not written:\n%s", out)
	}
	if got, want := counts(plan()), "add=0 change=0 remove=0 retry=0 unchanged=3 rows=4"; got != want {
		t.Fatalf("plan after the second apply: %s, want %s", got, want)
	}
	if n := srv.count(t, "SELECT COUNT(*) FROM "+rows+" WHERE synced"); n != 3 {
		t.Fatalf("after the second apply the snapshot table holds %d synced records, want 3", n)
	}

	srv.exec(t, "UPDATE "+tbl+" SET name = 'Annie' WHERE id = 1")
	if code, out, errOut := backflow("-C", dir, "reset-cdc", "users", "--auto-approve"); code != 0 {
		t.Fatalf("reset-cdc: exit %d\n%s%s", code, out, errOut)
	}
	if got, want := counts(plan()), "add=0 change=0 remove=0 retry=0 unchanged=3 rows=4"; got != want {
		t.Fatalf("plan after reset-cdc: %s, want %s", got, want)
	}
}

// writeWarehouseProject writes a project syncing table tbl of a source of
// type typ (its dsn from WAREHOUSE_DSN, sourceArgs added) to a file, with
// warehouse CDC; syncArgs end the sync block.
func writeWarehouseProject(t *testing.T, dir, typ, sourceArgs, tbl, syncArgs string) {
	t.Helper()
	writeFiles(t, dir, map[string]string{"main.hcl": fmt.Sprintf(`source "warehouse" {
  type = %q
  dsn  = env("WAREHOUSE_DSN")
  %s
}
model "users" {
  source      = source.warehouse
  query       = "SELECT id, name, email, score FROM %s"
  primary_key = "id"
}
destination "crm" {
  type = "file"
  path = "out.jsonl"
}
sync "users" {
  model       = model.users
  destination = destination.crm
  object      = "contacts"
  key         = "id"
  cdc         = "warehouse"%s
}
`, typ, sourceArgs, tbl, syncArgs)})
}

// TestWarehouseCDCNeedsLiveSource: an embedded source cannot diff.
func TestWarehouseCDCNeedsLiveSource(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"data/users.csv": "id,name\n1,Ann\n",
		"main.hcl": `source "fx" {
  type     = "embedded"
  fixtures = "data"
}
model "users" {
  source      = source.fx
  query       = "SELECT id, name FROM users"
  primary_key = "id"
}
destination "crm" {
  type = "file"
  path = "out.jsonl"
}
sync "users" {
  model       = model.users
  destination = destination.crm
  object      = "contacts"
  key         = "id"
  cdc         = "warehouse"
  mapping     = { name = "name" }
}
`})
	code, out, errOut := backflow("-C", dir, "validate")
	if code != 1 || !strings.Contains(out+errOut, "Warehouse CDC Needs A Live Source") || !strings.Contains(out+errOut, "main.hcl:19") {
		t.Fatalf("validate: exit %d, want 1 naming main.hcl:19\n%s%s", code, out, errOut)
	}
}

// TestWarehouseCDCOneStatePerSnapshot: two projects syncing the same sync
// name into one cdc_schema (staging and production from one repository,
// each with its own state) would each settle the other's changes. The
// snapshot belongs to the state that applied it; the other is refused
// with what to do, until reset-cdc takes it over. Tables made before
// owners were recorded are taken by the next apply.
func TestWarehouseCDCOneStatePerSnapshot(t *testing.T) {
	for _, srv := range []warehouseServer{pgWarehouse(t), mariadbWarehouse(t)} {
		t.Run(srv.typ, func(t *testing.T) { oneStatePerSnapshot(t, srv) })
	}
}

func oneStatePerSnapshot(t *testing.T, srv warehouseServer) {
	tbl, cdc := testdb.Name("bfwho"), testdb.Name("bfcdco")
	srv.exec(t, "CREATE TABLE "+tbl+" ("+srv.ddl+")", "INSERT INTO "+tbl+" VALUES (1, 'Ann', 'ann@example.com', 1.5), (2, 'Bob', 'bob@example.com', 2)")
	t.Cleanup(func() { srv.exec(t, "DROP TABLE IF EXISTS "+tbl); srv.drop(cdc) })
	t.Setenv("WAREHOUSE_DSN", srv.dsn)
	project := func() string {
		dir := t.TempDir()
		writeWarehouseProject(t, dir, srv.typ, fmt.Sprintf("cdc_schema = %q", cdc), tbl, `
  mapping = { name = "name", email = "email" }`)
		return dir
	}
	a, b := project(), project()
	run := func(dir string, wantOK bool, args ...string) string {
		t.Helper()
		code, out, errOut := backflow(append([]string{"-C", dir}, args...)...)
		if (code == 0) != wantOK {
			t.Fatalf("%s in %s: exit %d\n%s%s", args, filepath.Base(dir), code, out, errOut)
		}
		return out + errOut
	}
	const refused = "belongs to another backflow state"
	run(a, true, "apply", "--auto-approve")
	for _, args := range [][]string{{"plan"}, {"apply", "--auto-approve"}} {
		if out := run(b, false, args...); !strings.Contains(out, refused) || !strings.Contains(out, "reset-cdc users") ||
			!strings.Contains(out, "Warehouse CDC Snapshot Owned By Another State") || !strings.Contains(out, "main.hcl:1,") && !strings.Contains(out, "main.hcl:1:") {
			t.Fatalf("%s of the second project: %s", args, out)
		}
	}
	if _, err := os.Stat(filepath.Join(b, "out.jsonl")); err == nil {
		t.Fatal("the second project wrote its destination")
	}
	// The second project, its state never written, takes the snapshot
	// over; now the first is refused.
	run(b, true, "reset-cdc", "users", "--auto-approve")
	run(b, true, "plan")
	if out := run(a, false, "plan"); !strings.Contains(out, refused) {
		t.Fatalf("plan of the first project after the second's reset-cdc: %s", out)
	}
	// A table made before owners were recorded: anyone plans, the next
	// apply takes it, with changes to send or none.
	for _, change := range []bool{true, false} {
		srv.exec(t, "ALTER TABLE "+cdc+".cdc_syncs DROP COLUMN lineage")
		run(a, true, "plan")
		if change {
			srv.exec(t, "UPDATE "+tbl+" SET name = 'Annie' WHERE id = 1")
		}
		run(a, true, "apply", "--auto-approve")
		if out := run(b, false, "plan"); !strings.Contains(out, refused) {
			t.Fatalf("plan of the second project after the first's apply (changes: %v): %s", change, out)
		}
	}
	if n := srv.count(t, "SELECT COUNT(*) FROM "+cdc+".cdc_syncs WHERE lineage IS NOT NULL"); n != 1 {
		t.Fatalf("%d owned snapshots, want 1", n)
	}
}

// TestModelQueryEndingInAComment: a model query may end in a semicolon and
// a comment, as it would in a SQL client, on either server and with
// either diff: every statement that nests the query reads it whole.
func TestModelQueryEndingInAComment(t *testing.T) {
	for _, srv := range []func(*testing.T) warehouseServer{pgWarehouse, mariadbWarehouse} {
		srv := srv(t)
		tbl := testdb.Name("bfcm")
		cdc := testdb.Name("bfcdc")
		srv.exec(t, "CREATE TABLE "+tbl+" ("+srv.ddl+")", "INSERT INTO "+tbl+" VALUES (1, 'Ann', 'ann@example.com', 1.5)")
		t.Cleanup(func() { srv.exec(t, "DROP TABLE IF EXISTS "+tbl); srv.drop(cdc) })
		endings := []string{"-- trailing comment", "; -- trailing comment", ";\n/* a block */ ;"}
		if srv.typ == "mysql" {
			endings = append(endings, "# trailing comment", "; # trailing comment")
		}
		for _, cdcMode := range []string{"local", "warehouse"} {
			for _, end := range endings {
				dir := t.TempDir()
				writeFiles(t, dir, map[string]string{"main.hcl": fmt.Sprintf(`source "warehouse" {
  type       = %q
  dsn        = %q
  cdc_schema = %q
}
model "users" {
  source      = source.warehouse
  query       = <<-SQL
    SELECT id, name FROM %s %s
  SQL
  primary_key = "id"
}
destination "crm" {
  type = "file"
  path = "out.jsonl"
}
sync "users" {
  model       = model.users
  destination = destination.crm
  object      = "contacts"
  key         = "id"
  cdc         = %q
  mapping     = { name = "name" }
}
`, srv.typ, srv.dsn, cdc, tbl, end, cdcMode)})
				code, out, errOut := backflow("-C", dir, "plan", "--json")
				if code != 0 || !strings.Contains(out, `"add": 1`) {
					t.Errorf("%s, cdc %s, query ending %q: exit %d\n%s%s", srv.typ, cdcMode, end, code, out, errOut)
				}
			}
		}
	}
}

func TestPlanBaseWarehouseCDCPostgres(t *testing.T) { planBaseWarehouse(t, pgWarehouse(t)) }
func TestPlanBaseWarehouseCDCMariaDB(t *testing.T)  { planBaseWarehouse(t, mariadbWarehouse(t)) }

// planBaseWarehouse: plan --base attributes a commit's consequences under
// warehouse CDC as under local CDC, though the state holds no snapshot of
// the sync: a mapped field added changes the values of the synced rows
// (not "rows join the model"), a rule added excludes a synced row (not
// "rows join the model, excluded"), and a row the model's query no longer
// returns leaves the model (not a change of delete_behavior); a sync
// removed had its records synced (not none).
func planBaseWarehouse(t *testing.T, srv warehouseServer) {
	tbl := testdb.Name("bfpr")
	srv.exec(t, "CREATE TABLE "+tbl+" ("+srv.ddl+")",
		"INSERT INTO "+tbl+" VALUES (1, 'Ann', 'ann@example.com', 1.5), (2, 'Bob', NULL, 2), (3, 'Cy', 'cy@example.com', NULL), (4, 'Di', 'di@example.com', 4)")
	t.Cleanup(func() { srv.exec(t, "DROP TABLE IF EXISTS "+tbl) })
	t.Setenv("WAREHOUSE_DSN", srv.dsn)
	type effect struct {
		Cause struct {
			Kind, Name, Change string
		} `json:"cause"`
		Effect string `json:"effect"`
		Rule   string `json:"rule"`
		Rows   int    `json:"rows"`
		Synced int    `json:"synced"`
	}
	// config is the project at one commit: the model's query ends with
	// where; the sync has these mapping and rules.
	config := func(cdcSchema, cdc, where, mapping, rules string) map[string]string {
		return map[string]string{".gitignore": "p/.backflow/\np/out.jsonl\n", "p/main.hcl": fmt.Sprintf(`source "warehouse" {
  type       = %q
  dsn        = env("WAREHOUSE_DSN")
  cdc_schema = %q
}
model "users" {
  source      = source.warehouse
  query       = "SELECT id, name, email, score FROM %s%s"
  primary_key = "id"
}
destination "crm" {
  type = "file"
  path = "out.jsonl"
}
sync "users" {
  model           = model.users
  destination     = destination.crm
  object          = "contacts"
  key             = "id"
  cdc             = %q
  delete_behavior = "delete"
  mapping         = { %s }%s
}
`, srv.typ, cdcSchema, tbl, where, cdc, mapping, rules)}
	}
	review := func(cdc string) []effect {
		t.Helper()
		cdcSchema := testdb.Name("bfcdc")
		t.Cleanup(func() { srv.drop(cdcSchema) })
		repo := gittest.Init(t, t.TempDir())
		repo.Commit(t, "v1", config(cdcSchema, cdc, "", `name = "name", email = "email"`, ""))
		dir := filepath.Join(repo.Dir, "p")
		if code, out, errOut := backflow("-C", dir, "apply", "--auto-approve"); code != 0 || !strings.Contains(out, "4 accepted") {
			t.Fatalf("cdc %s: apply: exit %d\n%s%s", cdc, code, out, errOut)
		}
		repo.Commit(t, "v2", config(cdcSchema, cdc, " WHERE id <> 4", `name = "name", email = "email", score = "score"`, `
  exclude "no_score" {
    when = "row.score == null"
  }`))
		code, out, errOut := backflow("-C", dir, "plan", "--base", "HEAD~1", "--json")
		if code != 0 {
			t.Fatalf("cdc %s: plan --base: exit %d\n%s%s", cdc, code, out, errOut)
		}
		var v struct {
			Consequences []struct {
				Effects []effect `json:"effects"`
			} `json:"consequences"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil || len(v.Consequences) != 1 {
			t.Fatalf("cdc %s: %v\n%s", cdc, err, out)
		}
		effects := v.Consequences[0].Effects

		// The sync removed: its records synced are counted.
		v3 := config(cdcSchema, cdc, "", "", "")
		v3["p/main.hcl"], _, _ = strings.Cut(v3["p/main.hcl"], "sync \"users\"")
		repo.Commit(t, "v3", v3)
		if code, out, errOut = backflow("-C", dir, "plan", "--base", "HEAD~1", "--json"); code != 0 {
			t.Fatalf("cdc %s: plan --base with the sync removed: exit %d\n%s%s", cdc, code, out, errOut)
		}
		v.Consequences = nil
		if err := json.Unmarshal([]byte(out), &v); err != nil || len(v.Consequences) != 1 {
			t.Fatalf("cdc %s: %v\n%s", cdc, err, out)
		}
		return append(effects, v.Consequences[0].Effects...)
	}
	show := func(es []effect) string {
		var b strings.Builder
		for _, e := range es {
			fmt.Fprintf(&b, "%s %s %s: %s %s, %d rows, %d synced\n", e.Cause.Kind, e.Cause.Name, e.Cause.Change, e.Effect, e.Rule, e.Rows, e.Synced)
		}
		return b.String()
	}
	want := "mapping score added: values_change , 2 rows, 2 synced\n" +
		"rule no_score added: newly_excluded no_score, 1 rows, 1 synced\n" +
		"model users changed: leave_model , 1 rows, 1 synced\n" +
		"sync users removed: removed_sync , 4 rows, 4 synced\n"
	for _, cdc := range []string{"local", "warehouse"} {
		if got := show(review(cdc)); got != want {
			t.Errorf("cdc %s: effects\n%swant\n%s", cdc, got, want)
		}
	}

	// A warehouse sync removed whose plan fails at the base (its query
	// loads, and fails when run: the subquery returns 4 rows): its records
	// synced cannot be counted (the state holds no snapshot of them), so
	// the review says so rather than "0 synced records".
	cdcSchema := testdb.Name("bfcdc")
	t.Cleanup(func() { srv.drop(cdcSchema) })
	v1 := config(cdcSchema, "warehouse", " WHERE id = (SELECT id FROM "+tbl+")", `name = "name"`, "")
	v2 := config(cdcSchema, "warehouse", "", "", "")
	v2["p/main.hcl"], _, _ = strings.Cut(v2["p/main.hcl"], "sync \"users\"")
	repo := gittest.Init(t, t.TempDir())
	repo.Commit(t, "v1", v1)
	repo.Commit(t, "v2", v2)
	code, out, errOut := backflow("-C", filepath.Join(repo.Dir, "p"), "plan", "--base", "HEAD~1", "--json")
	var v struct {
		Consequences []struct {
			Sync, Status, Error string
			Effects             []effect `json:"effects"`
		} `json:"consequences"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v.Consequences) != 1 {
		t.Fatalf("removed sync, base plan failing: exit %d: %v\n%s%s", code, err, out, errOut)
	}
	if c := v.Consequences[0]; c.Status != "error" || !strings.Contains(c.Error, "could not be counted") || len(c.Effects) != 0 {
		t.Errorf("removed sync, base plan failing: exit %d, consequence %+v", code, c)
	}

	// A base that sets cdc = "local" on a sync last applied with warehouse
	// CDC: the state holds no snapshot, so the base plan cannot be made
	// (not "every row is new").
	cdcSchema = testdb.Name("bfcdc")
	t.Cleanup(func() { srv.drop(cdcSchema) })
	repo = gittest.Init(t, t.TempDir())
	repo.Commit(t, "v1", config(cdcSchema, "warehouse", "", `name = "name"`, ""))
	if code, out, errOut := backflow("-C", filepath.Join(repo.Dir, "p"), "apply", "--auto-approve"); code != 0 {
		t.Fatalf("cdc switched at the base: apply: exit %d\n%s%s", code, out, errOut)
	}
	repo.Commit(t, "v2", config(cdcSchema, "local", "", `name = "name"`, ""))
	repo.Commit(t, "v3", config(cdcSchema, "warehouse", "", `name = "name", email = "email"`, ""))
	code, out, errOut = backflow("-C", filepath.Join(repo.Dir, "p"), "plan", "--base", "HEAD~1", "--json")
	v.Consequences = nil
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v.Consequences) != 1 {
		t.Fatalf("cdc switched at the base: exit %d: %v\n%s%s", code, err, out, errOut)
	}
	if c := v.Consequences[0]; c.Status != "error" || !strings.Contains(c.Error, "reset-cdc") {
		t.Errorf("cdc switched at the base: exit %d, consequence %+v", code, c)
	}
}

func TestSwitchingCDCPostgres(t *testing.T) { switchingCDC(t, pgWarehouse(t)) }
func TestSwitchingCDCMariaDB(t *testing.T)  { switchingCDC(t, mariadbWarehouse(t)) }

// switchingCDC: a sync applied with one cdc setting keeps its snapshot
// there (the state's, or the source's tables), so a plan with the other
// setting would find no snapshot and send every row again as new, and
// never remove rows that left the model. Either switch is refused, naming
// reset-cdc; reset-cdc takes the model's rows as synced the new way, after
// which nothing is sent.
func switchingCDC(t *testing.T, srv warehouseServer) {
	tbl := testdb.Name("bfsw")
	cdc := testdb.Name("bfswcdc")
	srv.exec(t, "CREATE TABLE "+tbl+" ("+srv.ddl+")",
		"INSERT INTO "+tbl+" VALUES (1, 'Ann', 'ann@example.com', 1.5), (2, 'Bob', 'bob@example.com', 2), (3, 'Cy', 'cy@example.com', NULL)")
	t.Cleanup(func() { srv.exec(t, "DROP TABLE IF EXISTS "+tbl); srv.drop(cdc) })
	dir := t.TempDir()
	t.Setenv("WAREHOUSE_DSN", srv.dsn)
	setCDC := func(t *testing.T, mode string) {
		t.Helper()
		writeWarehouseProject(t, dir, srv.typ, fmt.Sprintf("cdc_schema = %q", cdc), tbl, `
  delete_behavior = "delete"
  max_removals    = "100%"
  mapping         = { name = "name", email = "email", score = "score" }`)
		if mode != "warehouse" {
			path := filepath.Join(dir, "main.hcl")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(strings.Replace(string(b), `cdc         = "warehouse"`, `cdc         = "local"`, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	plan := func(t *testing.T, step string) (int, string) {
		t.Helper()
		code, out, errOut := backflow("-C", dir, "plan", "--json")
		if code != 0 {
			return code, out + errOut
		}
		var p struct {
			Syncs []map[string]any `json:"syncs"`
		}
		if err := json.Unmarshal([]byte(out), &p); err != nil || len(p.Syncs) != 1 {
			t.Fatalf("%s: plan --json: %v\n%s", step, err, out)
		}
		sp := p.Syncs[0]
		return 0, fmt.Sprintf("add=%v change=%v remove=%v unchanged=%v", sp["add"], sp["change"], sp["remove"], sp["unchanged"])
	}
	run := func(t *testing.T, step string, args ...string) {
		t.Helper()
		if code, out, errOut := backflow(append([]string{"-C", dir}, args...)...); code != 0 {
			t.Fatalf("%s: %s: exit %d\n%s%s", step, strings.Join(args, " "), code, out, errOut)
		}
	}
	settled := "add=0 change=0 remove=0 unchanged=3"
	for _, from := range []string{"local", "warehouse"} {
		to := map[string]string{"local": "warehouse", "warehouse": "local"}[from]
		t.Run(from+" to "+to, func(t *testing.T) {
			setCDC(t, from)
			if from == "local" {
				run(t, "first apply", "apply", "--auto-approve")
			}
			if code, got := plan(t, "before the switch"); code != 0 || got != settled {
				t.Fatalf("plan with cdc = %q: exit %d, %s; want %s", from, code, got, settled)
			}
			setCDC(t, to)
			code, got := plan(t, "after the switch")
			if code == 0 || !strings.Contains(got, "reset-cdc") || !strings.Contains(got, fmt.Sprintf("cdc = %q", from)) {
				t.Fatalf("plan with cdc switched from %q to %q: exit %d, want an error naming reset-cdc and the setting the sync was applied with:\n%s", from, to, code, got)
			}
			if code, out, errOut := backflow("-C", dir, "apply", "--auto-approve"); code == 0 {
				t.Fatalf("apply with cdc switched from %q to %q succeeded:\n%s%s", from, to, out, errOut)
			}
			// The run history says where each run kept the snapshot.
			code, out, errOut := backflow("-C", dir, "runs", "users", "--json")
			var runs []struct {
				Status, CDC string
			}
			if err := json.Unmarshal([]byte(out), &runs); code != 0 || err != nil || len(runs) == 0 || runs[len(runs)-1].CDC != from {
				t.Fatalf("runs --json: exit %d, %v, want the last run's cdc %q:\n%s%s", code, err, from, out, errOut)
			}
			run(t, "reset-cdc after the switch", "reset-cdc", "users", "--auto-approve")
			if code, got := plan(t, "after reset-cdc"); code != 0 || got != settled {
				t.Fatalf("plan with cdc = %q after reset-cdc: exit %d, %s; want %s", to, code, got, settled)
			}
			srv.exec(t, "UPDATE "+tbl+" SET name = 'Annie' WHERE id = 1", "DELETE FROM "+tbl+" WHERE id = 3")
			if code, got := plan(t, "after changes"); code != 0 || got != "add=0 change=1 remove=1 unchanged=1" {
				t.Fatalf("plan with cdc = %q after changes: exit %d, %s; want one change and one removal", to, code, got)
			}
			run(t, "apply after the switch", "apply", "--auto-approve")
			srv.exec(t, "UPDATE "+tbl+" SET name = 'Ann' WHERE id = 1", "INSERT INTO "+tbl+" VALUES (3, 'Cy', 'cy@example.com', NULL)")
			run(t, "apply to restore", "apply", "--auto-approve")
		})
	}
}

func TestMovingCDCSchemaPostgres(t *testing.T) { movingCDCSchema(t, pgWarehouse(t)) }
func TestMovingCDCSchemaMariaDB(t *testing.T)  { movingCDCSchema(t, mariadbWarehouse(t)) }

// movingCDCSchema: a warehouse CDC sync whose cdc_schema changes has no
// snapshot in the new schema; its plan is refused, naming both schemas
// and reset-cdc, which takes the model's rows as synced there.
func movingCDCSchema(t *testing.T, srv warehouseServer) {
	tbl, from, to := testdb.Name("bfmv"), testdb.Name("bfmvcdc"), testdb.Name("bfmvcdc2")
	srv.exec(t, "CREATE TABLE "+tbl+" ("+srv.ddl+")", "INSERT INTO "+tbl+" VALUES (1, 'Ann', 'ann@example.com', 1.5), (2, 'Bob', 'bob@example.com', 2)")
	t.Cleanup(func() { srv.exec(t, "DROP TABLE IF EXISTS "+tbl); srv.drop(from); srv.drop(to) })
	dir := t.TempDir()
	t.Setenv("WAREHOUSE_DSN", srv.dsn)
	write := func(schema string) {
		writeWarehouseProject(t, dir, srv.typ, fmt.Sprintf("cdc_schema = %q", schema), tbl, `
  mapping = { name = "name", email = "email" }`)
	}
	write(from)
	if code, out, errOut := backflow("-C", dir, "apply", "--auto-approve"); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	write(to)
	code, out, errOut := backflow("-C", dir, "plan")
	if code == 0 || !strings.Contains(out+errOut, "reset-cdc") || !strings.Contains(out+errOut, fmt.Sprintf("cdc_schema = %q", from)) {
		t.Fatalf("plan with cdc_schema moved from %s to %s: exit %d, want an error naming reset-cdc and the old schema:\n%s%s", from, to, code, out, errOut)
	}
	if code, out, errOut := backflow("-C", dir, "reset-cdc", "users", "--auto-approve"); code != 0 {
		t.Fatalf("reset-cdc: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = backflow("-C", dir, "plan", "--json")
	if code != 0 || !strings.Contains(out, `"unchanged": 2`) || !strings.Contains(out, `"add": 0`) {
		t.Fatalf("plan after reset-cdc in %s: exit %d, want 2 unchanged and nothing to add:\n%s%s", to, code, out, errOut)
	}
	code, out, errOut = backflow("-C", dir, "runs", "users", "--json")
	if code != 0 || !strings.Contains(out, fmt.Sprintf(`"cdc_schema": %q`, to)) || !strings.Contains(out, fmt.Sprintf(`"cdc_schema": %q`, from)) {
		t.Fatalf("runs --json: exit %d, want both schemas recorded:\n%s%s", code, out, errOut)
	}
}

// TestWarehouseCDCCharacterPadding: a character(n) value's padding is
// what backflow reads and sends ('Ann' in a character(5) as "Ann  "), but
// a cast to text drops it: a change of n alone must still be planned. A
// character(n) key is keyed with its padding too: widening n makes every
// key another one, removed and added as the local diff plans it (the key's
// text without its padding saw no change, then refused to plan).
func TestWarehouseCDCCharacterPadding(t *testing.T) {
	for _, tc := range []struct {
		name, columns, rows, syncArgs, alter string
		want                                 []string
	}{
		{"value", "id integer, name character(4), email text, score numeric(6,2)",
			"(1, 'Ann', 'ann@example.com', 1.5), (2, 'Bob', 'bob@example.com', 2)",
			`mapping = { name = "name", email = "email" }`, "ALTER name TYPE character(6)",
			[]string{"0 to add, 2 to change", `"Ann " -> "Ann   "`}},
		{"key", "id character(3), name text, email text, score numeric(6,2)",
			"('a', 'Ann', 'ann@example.com', 1.5), ('bb', 'Bob', 'bob@example.com', 2), (NULL, 'Nil', 'nil@example.com', 3)",
			`delete_behavior = "delete"
  max_removals    = "100%"
  mapping         = { name = "name" }`, "ALTER id TYPE character(5)",
			[]string{"Plan: 2 to add, 0 to change, 2 to remove", `+ "a    "`, `- "a  "`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := pgWarehouse(t)
			tbl, cdc := testdb.Name("bfpad"), testdb.Name("bfpadcdc")
			srv.exec(t, "CREATE TABLE "+tbl+" ("+tc.columns+")", "INSERT INTO "+tbl+" VALUES "+tc.rows)
			t.Cleanup(func() { srv.exec(t, "DROP TABLE IF EXISTS "+tbl); srv.drop(cdc) })
			dir := t.TempDir()
			t.Setenv("WAREHOUSE_DSN", srv.dsn)
			writeWarehouseProject(t, dir, srv.typ, fmt.Sprintf("cdc_schema = %q", cdc), tbl, "\n  "+tc.syncArgs)
			if code, out, errOut := backflow("-C", dir, "apply", "--auto-approve"); code != 0 {
				t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
			}
			if code, out, errOut := backflow("-C", dir, "plan", "--no-color"); code != 0 || !strings.Contains(out, "No changes") {
				t.Fatalf("plan after apply: exit %d\n%s%s", code, out, errOut)
			}
			srv.exec(t, "ALTER TABLE "+tbl+" "+tc.alter)
			code, out, errOut := backflow("-C", dir, "plan", "--no-color")
			for _, w := range tc.want {
				if code != 0 || !strings.Contains(out, w) {
					t.Fatalf("plan after %s: exit %d, want %q:\n%s%s", tc.alter, code, w, out, errOut)
				}
			}
		})
	}
}
