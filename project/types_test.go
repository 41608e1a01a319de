package project

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/internal/testdb"
)

// TestMappingTypeMismatchIsADiagnosticAtTheMapping maps an integer column to
// a PostgreSQL date column: plan refuses the sync with a diagnostic at that
// mapping's line, and the well-typed field is not blamed.
func TestMappingTypeMismatchIsADiagnosticAtTheMapping(t *testing.T) {
	conn := testdb.Postgres(t)
	table := testdb.PostgresTable(t, conn, "id int PRIMARY KEY, email text, born date")
	dir := t.TempDir()
	cfg := `source "w" {
  type     = "embedded"
  fixtures = "data"
}
model "m" {
  source      = source.w
  query       = "SELECT id, email, id * 2 AS n FROM users"
  primary_key = "id"
}
destination "pg" {
  type = "postgres"
  dsn  = "` + testdb.PostgresDSN + `"
}
sync "s" {
  model       = model.m
  destination = destination.pg
  object      = "` + table + `"
  key         = "id"
  mapping = {
    email = "email"
    born  = "n"
  }
}
`
	for name, content := range map[string]string{"main.hcl": cfg, "data/users.csv": "id,email\n1,a@x.io\n"} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w, err := OpenWorkspace(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	_, err = w.Plan(context.Background(), PlanOptions{})
	var failed SyncErrors
	if !errors.As(err, &failed) || len(failed) != 1 {
		t.Fatalf("want the sync refused, got %v", err)
	}
	diags := failed[0].Diagnostics()
	if len(diags) != 1 || diags[0].Summary != "Mapping Type Mismatch" || diags[0].Subject == nil || diags[0].Subject.Start.Line != 21 {
		t.Fatalf("want one diagnostic at line 21 (born = \"n\"), got %v", diags)
	}
	t.Log(diags[0].Detail)
}

// TestTinyintOneAsBoolInRules reads a MariaDB TINYINT(1) flag as bool
// through the model's column_types, so a rule can test it as one; without
// the declaration the rule's type error says how.
func TestTinyintOneAsBoolInRules(t *testing.T) {
	db := testdb.MariaDB(t)
	table := testdb.MariaDBTable(t, db, "id INT PRIMARY KEY, active TINYINT(1)")
	testdb.MariaDBExec(t, db, "INSERT INTO "+table+" VALUES (1, 1), (2, 0), (3, 1)")
	write := func(columnTypes string) string {
		dir := t.TempDir()
		cfg := `source "my" {
  type = "mysql"
  dsn  = "` + testdb.MariaDBDSN + `"
}
model "m" {
  source      = source.my
  query       = "SELECT id, active FROM ` + table + `"
  primary_key = "id"
  ` + columnTypes + `
}
destination "out" {
  type = "file"
  path = "out.jsonl"
}
sync "s" {
  model       = model.m
  destination = destination.out
  object      = "x"
  key         = "id"
  exclude "inactive" {
    when = "row.active == false"
  }
}
`
		if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	_, diags := Open(context.Background(), write(""), Options{})
	if len(diags) != 1 || !strings.Contains(diags[0].Detail, `Column "active" is TINYINT on the source`) || !strings.Contains(diags[0].Detail, `column_types = { active = "bool" }`) {
		t.Fatalf("without column_types: %v", diags)
	}
	w, err := OpenWorkspace(context.Background(), write(`column_types = { active = "bool" }`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	plan, err := w.Plan(context.Background(), PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sp := plan.Syncs[0]; sp.Add != 2 || sp.Excluded["inactive"] != 1 {
		t.Fatalf("plan adds %d, excludes %v; want 2 and the inactive one", sp.Add, sp.Excluded)
	}
}
