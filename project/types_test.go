package project

import (
	"context"
	"errors"
	"os"
	"path/filepath"
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
