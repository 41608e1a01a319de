package project

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/engine"
	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/hashicorp/hcl/v2"
)

// countingSource counts the queries it runs.
type countingSource struct {
	engine.Source
	queries int
}

func (c *countingSource) Query(ctx context.Context, q string) (engine.Rows, error) {
	c.queries++
	return c.Source.Query(ctx, q)
}

// TestSyncsSharingAModelReadItOnce plans three syncs, two of one model and
// one of another, and counts the queries the source ran.
func TestSyncsSharingAModelReadItOnce(t *testing.T) {
	src := &countingSource{Source: counter{n: 5}}
	sources := engine.NewRegistry()
	sources.Register(engine.Driver{Type: counterDriver().Type, Open: func(context.Context, engine.Config) (engine.Source, hcl.Diagnostics) { return src, nil }})
	mem := &memory{records: map[string]map[string]any{}}
	capacity := 0
	dests := destination.NewRegistry()
	dests.Register(memoryDriver(mem, &capacity))
	dir := t.TempDir()
	cfg := fmt.Sprintf(extensionConfig, "5", `"a/"`) + `
model "other" {
  source      = source.numbers
  query       = "other"
  primary_key = "id"
}
sync "second" {
  model       = model.people
  destination = destination.mem
  object      = "people2"
  key         = "id"
  mapping     = { email = "email" }
}
sync "third" {
  model       = model.other
  destination = destination.mem
  object      = "people3"
  key         = "id"
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := OpenWorkspace(context.Background(), dir, Options{Destinations: dests, Sources: sources})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	src.queries = 0
	plan, err := w.Plan(context.Background(), PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Syncs) != 3 || plan.Syncs[0].Add != 5 || plan.Syncs[1].Add != 5 || plan.Syncs[2].Add != 5 {
		t.Fatalf("plan %+v", plan.Syncs)
	}
	if src.queries != 2 {
		t.Fatalf("the source ran %d queries for 2 models, want 2", src.queries)
	}
}

// TestModelRunTimeErrorIsReportedAtTheModel runs a PostgreSQL model that
// fails only when executed: the plan names the database's own message at
// the model's query, and another sync still gets planned.
func TestModelRunTimeErrorIsReportedAtTheModel(t *testing.T) {
	conn := testdb.Postgres(t)
	table := testdb.PostgresTable(t, conn, "id int PRIMARY KEY, email text")
	testdb.PostgresExec(t, conn, "INSERT INTO "+table+" VALUES (1, 'a@x.io'), (2, 'b@x.io')")
	dir := t.TempDir()
	cfg := `source "pg" {
  type = "postgres"
  dsn  = "` + testdb.PostgresDSN + `"
}
model "bad" {
  source      = source.pg
  query       = "SELECT id, CAST(email AS int) AS n FROM ` + table + `"
  primary_key = "id"
}
model "good" {
  source      = source.pg
  query       = "SELECT id, email FROM ` + table + `"
  primary_key = "id"
}
destination "out" {
  type = "file"
  path = "out.jsonl"
}
sync "bad" {
  model       = model.bad
  destination = destination.out
  object      = "x"
  key         = "id"
}
sync "good" {
  model       = model.good
  destination = destination.out
  object      = "y"
  key         = "id"
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := OpenWorkspace(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	plan, err := w.Plan(context.Background(), PlanOptions{})
	var failed SyncErrors
	if !errors.As(err, &failed) || len(failed) != 1 {
		t.Fatalf("want one failed sync, got %v", err)
	}
	f := failed[0]
	if f.Sync != "bad" || f.Summary != "Model Query Failed" || f.Subject == nil || f.Subject.Start.Line != 7 ||
		!strings.Contains(f.Err.Error(), "invalid input syntax for type integer") {
		t.Fatalf("failure %+v: %v", f, f.Err)
	}
	if len(plan.Syncs) != 1 || plan.Syncs[0].Name != "good" || plan.Syncs[0].Add != 2 {
		t.Fatalf("the good sync was not planned: %+v", plan.Syncs)
	}
}
