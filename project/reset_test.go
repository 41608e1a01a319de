package project

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/backflowhq/backflow/internal/testdb"
)

// Ctrl-C during reset-cdc of a warehouse CDC sync stops the write of the
// snapshot table: the command's context reaches the database calls.
func TestResetCDCWarehouseStopsWhenCancelled(t *testing.T) {
	w, conn, cdc := warehouseWorkspace(t)
	schemaExists := func() bool {
		t.Helper()
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", cdc).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	ws := w.open("reset-cdc")
	defer ws.Close()
	preview, err := ws.PreviewResetCDC(context.Background(), "s")
	if err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if n, err := ws.ResetCDC(cancelled, preview); !errors.Is(err, context.Canceled) {
		t.Fatalf("reset-cdc with a cancelled context: %d, %v; want context.Canceled", n, err)
	}
	if schemaExists() {
		t.Fatalf("the cancelled reset-cdc created the snapshot schema %s", cdc)
	}
	// The same preview goes through once not cancelled: the refusal above
	// was the cancellation's.
	if n, err := ws.ResetCDC(context.Background(), preview); err != nil || n != 2 {
		t.Fatalf("reset-cdc: %d, %v; want 2 records", n, err)
	}
	if !schemaExists() {
		t.Fatalf("reset-cdc wrote no snapshot schema %s", cdc)
	}
}

// warehouseWorkspace is a project of one warehouse CDC sync "s" of a
// PostgreSQL table of two rows (id, email) to a file, its snapshot tables
// in schema cdc (dropped afterwards), and a connection to the server.
func warehouseWorkspace(t *testing.T) (w *workspace, conn *pgx.Conn, cdc string) {
	t.Helper()
	conn = testdb.Postgres(t)
	tbl := testdb.PostgresTable(t, conn, "id integer, email text")
	testdb.PostgresExec(t, conn, "INSERT INTO "+tbl+" VALUES (1, 'a@example.com'), (2, 'b@example.com')")
	cdc = testdb.Name("bfcdc")
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+cdc+" CASCADE") })
	return warehouseProject(t, "postgres", testdb.PostgresDSN, tbl, cdc), conn, cdc
}

// mariadbWarehouseWorkspace is warehouseWorkspace on MariaDB.
func mariadbWarehouseWorkspace(t *testing.T) *workspace {
	t.Helper()
	db := testdb.MariaDB(t)
	tbl := testdb.MariaDBTable(t, db, "id INT, email VARCHAR(80)")
	testdb.MariaDBExec(t, db, "INSERT INTO "+tbl+" VALUES (1, 'a@example.com'), (2, 'b@example.com')")
	cdc := testdb.Name("bfcdc")
	t.Cleanup(func() { db.Exec("DROP DATABASE IF EXISTS " + cdc) })
	return warehouseProject(t, "mysql", testdb.MariaDBDSN, tbl, cdc)
}

// warehouseProject is a project of one warehouse CDC sync "s" of table
// tbl (id, email) on a source of type typ at dsn, to a file, its snapshot
// tables in schema cdc.
func warehouseProject(t *testing.T, typ, dsn, tbl, cdc string) *workspace {
	t.Helper()
	return newWorkspace(t, fmt.Sprintf(`source "warehouse" {
  type       = %q
  dsn        = %q
  cdc_schema = %q
}
model "users" {
  source      = source.warehouse
  query       = "SELECT id, email FROM %s"
  primary_key = "id"
}
destination "crm" {
  type = "file"
  path = "out.jsonl"
}
sync "s" {
  model       = model.users
  destination = destination.crm
  object      = "contacts"
  key         = "id"
  cdc         = "warehouse"
  mapping     = { email = "email" }
}
`, typ, dsn, cdc, tbl), map[string]string{})
}
