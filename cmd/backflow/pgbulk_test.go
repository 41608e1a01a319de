package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/internal/testdb"
)

// Batches of 1,000 go to PostgreSQL as the bulk statement. Four rows the
// server refuses — two for their values (too long for varchar(5), not an
// interval), two for the table's constraints (NULL into NOT NULL, a
// CHECK) — fail their batches whole, and the apply's split retries
// isolate exactly those four records: the 1,996 others land.
func TestPostgresBulkIsolatesBadRows(t *testing.T) {
	conn := testdb.Postgres(t)
	table := testdb.PostgresTable(t, conn, "id bigint PRIMARY KEY, code varchar(5), span interval, note text NOT NULL, score int CHECK (score >= 0)")
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("id,code,span,note,score\n")
	bad := []int64{13, 777, 1500, 1999}
	for i := int64(1); i <= 2000; i++ {
		code, span, note, score := "ok", "1 hour", "n", i
		switch i {
		case 13:
			code = "toolong"
		case 777:
			span = "soon"
		case 1500:
			note = ""
		case 1999:
			score = -1
		}
		fmt.Fprintf(&b, "%d,%s,%s,%s,%d\n", i, code, span, note, score)
	}
	writeFiles(t, dir, map[string]string{"data/items.csv": b.String(), "main.hcl": itemsToPostgres(table,
		"SELECT id, code, span, CASE WHEN note = '' THEN NULL ELSE note END AS note, score FROM items",
		`{ code = "code", span = "span", note = "note", score = "score" }`, "split_retries = true")})
	code, out, errOut := backflow("-C", dir, "apply", "--auto-approve")
	if !strings.Contains(out, "1996 accepted, 4 rejected") {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	for _, msg := range []string{"value too long for type character varying(5)", "invalid input syntax for type interval", `null value in column "note"`, "violates check constraint"} {
		if !strings.Contains(out+errOut, msg) {
			t.Errorf("the apply's output does not say %q:\n%s%s", msg, out, errOut)
		}
	}
	rows, err := conn.Query(context.Background(), "SELECT id FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(bad, id) {
			t.Errorf("refused row %d was written", id)
		}
		n++
	}
	if n != 1996 {
		t.Fatalf("%d rows written, want 1996", n)
	}
}

// The state is lost (a new state folder) over a table already written:
// every row is an add again, whose COPY the server refuses for the keys it
// has. The batches go again as upserts, every row lands with the model's
// current values, and the run reports no rejection.
func TestPostgresAddsOverRowsAfterTheStateIsLost(t *testing.T) {
	conn := testdb.Postgres(t)
	table := testdb.PostgresTable(t, conn, "id bigint PRIMARY KEY, name text NOT NULL")
	dir := t.TempDir()
	rows := func(name string) string {
		var b strings.Builder
		b.WriteString("id,name\n")
		for i := 1; i <= 2500; i++ {
			fmt.Fprintf(&b, "%d,%s %d\n", i, name, i)
		}
		return b.String()
	}
	writeFiles(t, dir, map[string]string{"data/items.csv": rows("first"),
		"main.hcl": itemsToPostgres(table, "SELECT id, name FROM items", `{ name = "name" }`, "")})
	if code, out, errOut := backflow("-C", dir, "apply", "--auto-approve"); !strings.Contains(out, "2500 accepted, 0 rejected") {
		t.Fatalf("first apply: exit %d\n%s%s", code, out, errOut)
	}
	writeFiles(t, dir, map[string]string{"data/items.csv": rows("second")})
	code, out, errOut := backflow("-C", dir, "--state-dir", filepath.Join(t.TempDir(), "lost"), "apply", "--auto-approve")
	if !strings.Contains(out, "2500 to add") || !strings.Contains(out, "2500 accepted, 0 rejected") {
		t.Fatalf("apply with the state lost: exit %d\n%s%s", code, out, errOut)
	}
	var n, second int
	if err := conn.QueryRow(context.Background(), "SELECT count(*), count(*) FILTER (WHERE name LIKE 'second %') FROM "+table).Scan(&n, &second); err != nil {
		t.Fatal(err)
	}
	if n != 2500 || second != 2500 {
		t.Fatalf("%d rows, %d with the model's current values; want 2500 and 2500", n, second)
	}
}

// itemsToPostgres is a project syncing the embedded fixture items
// (data/items.csv) through query to table on the test PostgreSQL server,
// in batches of 1,000, with mapping and any more destination arguments.
func itemsToPostgres(table, query, mapping, more string) string {
	return `source "w" {
  type     = "embedded"
  fixtures = "data"
}
model "items" {
  source      = source.w
  query       = ` + strconv.Quote(query) + `
  primary_key = "id"
}
destination "db" {
  type       = "postgres"
  dsn        = "` + testdb.PostgresDSN + `"
  batch_size = 1000
  ` + more + `
}
sync "items" {
  model       = model.items
  destination = destination.db
  object      = "` + table + `"
  key         = "id"
  mapping     = ` + mapping + `
}
`
}
