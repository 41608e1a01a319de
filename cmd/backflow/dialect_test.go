package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/backflowhq/backflow/internal/testdb"
)

// writeFiles writes files (path → content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// dialectConfig is a project whose model runs on a live source, with a
// schema-qualified table and an unqualified one, and two test blocks: one
// with inline rows, one with a fixture folder whose .sql declares types.
func dialectConfig(sourceType, dsn, query, schemaName, plans string) map[string]string {
	return map[string]string{
		"main.hcl": `source "warehouse" {
  type = "` + sourceType + `"
  dsn  = "` + dsn + `"
}
model "users" {
  source      = source.warehouse
  query       = <<-SQL
    ` + query + `
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
  key         = "external_id"
  mapping     = { name = "full_name", plan = "plan" }
  exclude "missing_full_name" {
    when = "row.full_name == null"
  }
}
`,
		"tests.hcl": `test "full_names" {
  sync = sync.users
  table "` + schemaName + `.users" {
    rows = [
      { id = 1, first_name = "Ann", last_name = "Lee", email = "ann@example.com", plan_id = 1 },
      { id = 2, first_name = "Bob", last_name = null,  email = "BOB@Example.COM", plan_id = 1 },
      { id = 3, first_name = "Cy",  last_name = "Doe", email = "cy@other.org",    plan_id = 2 },
    ]
  }
  table "` + plans + `" {
    rows = [{ id = 1, name = "pro" }, { id = 2, name = "free" }]
  }
  expect_excluded = { "2" = "missing_full_name" }
  expect_sent     = ["1"]
  expect_rows     = { "1" = { name = "Ann Lee", plan = "pro" } }
}

test "declared_types" {
  sync     = sync.users
  fixtures = "tests/declared"
  expect_sent = ["7"]
  expect_rows = { "7" = { name = "Di Ng", plan = "pro" } }
}
`,
		"tests/declared/schema.sql": `-- column types as the warehouse declares them
CREATE TABLE ` + schemaName + `.users (id integer PRIMARY KEY, first_name varchar(20), last_name varchar(20), email varchar(100), plan_id integer);
CREATE TABLE ` + plans + ` (id integer, name varchar(10));
INSERT INTO ` + plans + ` VALUES (1, 'pro');
`,
		"tests/declared/" + schemaName + ".users.csv": "id,first_name,last_name,email,plan_id\n7,Di,Ng,di@EXAMPLE.com,1\n8,Ed,Ox,ed@elsewhere.net,1\n",
	}
}

// dialectScenario is the deliverable's test for one server: the test
// blocks pass on the real server, fail when the rule is broken, are NOT
// RUN with --offline, and leave no scratch schema behind.
func dialectScenario(t *testing.T, sourceType, dsn, query, schemaName, plans string, leftovers func() string, realRows func() string) {
	dir := t.TempDir()
	writeFiles(t, dir, dialectConfig(sourceType, dsn, query, schemaName, plans))

	code, out, errOut := backflow("-C", dir, "test")
	if code != 0 || !strings.Contains(out, "PASS     full_names (sync users, on ") || !strings.Contains(out, "PASS     declared_types") || !strings.Contains(out, "2 tests, 2 passed, 0 failed\n") {
		t.Fatalf("test on the real server: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out, "embedded engine") {
		t.Errorf("a live model ran on the embedded engine:\n%s", out)
	}
	if n := leftovers(); n != "0" {
		t.Errorf("%s scratch schemas left after passing tests", n)
	}

	// Breaking the rule fails the test with a readable difference.
	b, err := os.ReadFile(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(b), `when = "row.full_name == null"`, `when = "row.full_name == null && row.id > 5"`, 1)
	if broken == string(b) {
		t.Fatal("rule not found")
	}
	writeFiles(t, dir, map[string]string{"main.hcl": broken})
	code, out, _ = backflow("-C", dir, "test")
	if code != 1 || !strings.Contains(out, "FAIL     full_names (sync users, on ") ||
		!strings.Contains(out, `key "2": want excluded by rule "missing_full_name", got included`) ||
		!strings.Contains(out, `key "2": want not sent, got sent`) || !strings.Contains(out, "1 passed, 1 failed") {
		t.Errorf("broken rule: exit %d\n%s", code, out)
	}
	if n := leftovers(); n != "0" {
		t.Errorf("%s scratch schemas left after a failing test", n)
	}

	// Offline, the tests are not run, and say why; that is no failure.
	code, out, errOut = backflow("-C", dir, "test", "--offline")
	if code != 0 || !strings.Contains(out, `NOT RUN  full_names (sync users): --offline: model "users" is on live source "warehouse" (`+sourceType+`)`) ||
		!strings.Contains(out, "2 tests, 0 passed, 0 failed, 2 not run") || strings.Contains(out, "PASS") {
		t.Errorf("--offline: exit %d\n%s%s", code, out, errOut)
	}
	if got := realRows(); got != "1" {
		t.Errorf("the real table holds %s rows, want its own 1", got)
	}
}

// TestPostgresModelTestRunsInItsDialect: a PostgreSQL model using || and
// ILIKE on a schema-qualified table. On the embedded engine || is OR and
// ILIKE a syntax error; on the server the test passes.
func TestPostgresModelTestRunsInItsDialect(t *testing.T) {
	conn := testdb.Postgres(t)
	schemaName, plans := testdb.Name("bfd"), testdb.Name("bfp")
	testdb.PostgresExec(t, conn,
		"CREATE SCHEMA "+schemaName,
		"CREATE TABLE "+schemaName+".users (id int, first_name text, last_name text, email text, plan_id int)",
		"INSERT INTO "+schemaName+".users VALUES (9, 'Real', 'Row', 'real@example.com', 1)")
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP SCHEMA "+schemaName+" CASCADE") })
	query := `SELECT u.id, u.first_name || ' ' || u.last_name AS full_name, p.name AS plan FROM ` + schemaName + `.users u JOIN ` + plans + ` p ON p.id = u.plan_id WHERE u.email ILIKE '%@example.com'`
	count := func(q string) string {
		var n string
		if err := conn.QueryRow(context.Background(), q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	dialectScenario(t, "postgres", testdb.PostgresDSN, query, schemaName, plans,
		func() string {
			return count(`SELECT count(*)::text FROM pg_namespace WHERE nspname LIKE 'backflow\_test\_%'`)
		},
		func() string { return count("SELECT count(*)::text FROM " + schemaName + ".users") })
}

// TestMariaDBModelTestRunsInItsDialect: the same on MariaDB, whose
// scratch databases are real and must be dropped.
func TestMariaDBModelTestRunsInItsDialect(t *testing.T) {
	db := testdb.MariaDB(t)
	schemaName, plans := testdb.Name("bfd"), testdb.Name("bfp")
	testdb.MariaDBExec(t, db,
		"CREATE DATABASE "+schemaName,
		"CREATE TABLE "+schemaName+".users (id int, first_name text, last_name text, email text, plan_id int)",
		"INSERT INTO "+schemaName+".users VALUES (9, 'Real', 'Row', 'real@example.com', 1)")
	t.Cleanup(func() { db.Exec("DROP DATABASE " + schemaName) })
	// IF and CONCAT as MySQL has them; LIKE is case-insensitive under the
	// default collation.
	query := `SELECT u.id, IF(u.last_name IS NULL, NULL, CONCAT(u.first_name, ' ', u.last_name)) AS full_name, p.name AS plan FROM ` + schemaName + `.users u JOIN ` + plans + ` p ON p.id = u.plan_id WHERE u.email LIKE '%@example.com'`
	count := func(q string) string {
		var n string
		if err := db.QueryRow(q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	dialectScenario(t, "mysql", testdb.MariaDBDSN, query, schemaName, plans,
		// This run's scratch databases: the one named after its schema, and
		// the main one holding its uniquely named plans table.
		func() string {
			return count(`SELECT (SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'backflow\_test\_%\_` + schemaName + `') +
				(SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA LIKE 'backflow\_test\_%' AND TABLE_NAME = '` + plans + `')`)
		},
		func() string { return count("SELECT COUNT(*) FROM " + schemaName + ".users") })
}

// TestTestOfAnUnreachableSource: a live source that cannot be reached
// leaves its tests NOT RUN, never passed, and fails the command with exit
// 2; the embedded source's tests still run. With --offline nothing
// connects to it and the command succeeds.
func TestTestOfAnUnreachableSource(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close() // no server here: every connection ends at once
		}
	}()
	t.Cleanup(func() { ln.Close() })
	dir := copyDir(t, "../../examples/quickstart")
	writeFiles(t, dir, map[string]string{"live.hcl": `source "live" {
  type            = "postgres"
  dsn             = "postgres://backflow@` + ln.Addr().String() + `/test?sslmode=disable"
  connect_timeout = "5s"
}
model "live_users" {
  source      = source.live
  query       = "SELECT id, email FROM analytics.users"
  primary_key = "id"
}
sync "live_users" {
  model       = model.live_users
  destination = destination.crm
  object      = "live_contacts"
  key         = "external_id"
  mapping     = { email = "email" }
}
test "live_users_sent" {
  sync = sync.live_users
  table "analytics.users" {
    rows = [{ id = 1, email = "a@example.com" }]
  }
  expect_sent = ["1"]
}
`})

	code, out, errOut := backflow("-C", dir, "test")
	if code != 2 || !strings.Contains(out, "NOT RUN  live_users_sent (sync live_users): Source \"live\" could not be reached") ||
		!strings.Contains(out, "PASS     ") || !strings.Contains(out, ", 0 failed, 1 not run") ||
		!strings.Contains(errOut, "1 tests could not run") {
		t.Errorf("unreachable source: exit %d\n%s%s", code, out, errOut)
	}
	if accepted.Load() == 0 {
		t.Error("the test did not try to connect to its source")
	}

	accepted.Store(0)
	code, out, errOut = backflow("-C", dir, "test", "--offline")
	if code != 0 || !strings.Contains(out, "NOT RUN  live_users_sent (sync live_users): --offline") || !strings.Contains(out, "PASS     ") {
		t.Errorf("--offline: exit %d\n%s%s", code, out, errOut)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("--offline connected %d times to the live source", n)
	}
}

// TestUnsetDSNOpensNothing: a dsn = env(…) whose variable is unset leaves
// its block unopened, whatever the command: the driver would otherwise
// connect where PG* variables (here, a listener counting connections) or
// its defaults point, and report that server's errors after the clear one.
func TestUnsetDSNOpensNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	t.Setenv("PGHOST", host)
	t.Setenv("PGPORT", port)
	os.Unsetenv("BACKFLOW_PROBE_DSN")

	const unsetDSN = `dsn = env("BACKFLOW_PROBE_DSN")`
	source := func(dsn string) string {
		return "source \"w\" {\n  type = \"postgres\"\n  " + dsn + "\n}\n"
	}
	const embedded = "source \"w\" {\n  type     = \"embedded\"\n  fixtures = \"data\"\n}\n"
	dest := func(typ, arg string) string {
		return "destination \"d\" {\n  type = \"" + typ + "\"\n  " + arg + "\n}\n"
	}
	const rest = `model "m" {
  source      = source.w
  query       = "SELECT id, email FROM users"
  primary_key = "id"
}
sync "s" {
  model       = model.m
  destination = destination.d
  object      = "contacts"
  key         = "id"
  mapping     = { email = "email" }
}
test "t" {
  sync = sync.s
  table "users" {
    rows = [{ id = 1, email = "a@example.com" }]
  }
  expect_sent = ["1"]
}
`
	for name, cfg := range map[string]string{
		"source":      source(unsetDSN) + dest("file", `path = "out.jsonl"`) + rest,
		"destination": embedded + dest("postgres", unsetDSN) + rest,
		"state":       embedded + dest("file", `path = "out.jsonl"`) + "state {\n  backend = \"postgres\"\n  " + unsetDSN + "\n}\n" + rest,
	} {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"main.hcl": cfg, "data/users.csv": "id,email\n1,a@example.com\n"})
		for _, args := range [][]string{{"validate"}, {"plan"}, {"plan", "--json"}, {"apply", "--auto-approve"}, {"test"}, {"state", "list"}} {
			accepted.Store(0)
			code, out, errOut := backflow(append([]string{"-C", dir}, args...)...)
			if code != 1 || !strings.Contains(errOut, "Error: Unset environment variable") || strings.Count(errOut, "Error:") != 1 {
				t.Errorf("%s, %v: exit %d, want 1 with the unset variable as the only error\n%s%s", name, args, code, out, errOut)
			}
			if n := accepted.Load(); n != 0 {
				t.Errorf("%s, %v: %d connections to where PGHOST points", name, args, n)
			}
		}
	}
}
