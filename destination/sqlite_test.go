package destination_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
	_ "modernc.org/sqlite"
)

const contactsDDL = `CREATE TABLE IF NOT EXISTS contacts (
	id INTEGER PRIMARY KEY,
	email TEXT NOT NULL CHECK (email LIKE '%@%'),
	name TEXT
);`

func readContacts(t testing.TB, path string) map[int64][2]any {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT id, email, name FROM contacts`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	return scanContacts(t, rows)
}

// sqliteHarness is the sqlite driver for the conformance suite, on a fresh
// database file crm.db. Its lock is the whole database's write lock.
func sqliteHarness(t testing.TB) *sqlHarness {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "crm.db")
	// Admin sessions are short-lived so that none holds the file open
	// while the destination switches it to WAL.
	withDB := func(dsn string, fn func(db *sql.DB) error) error {
		db, err := sql.Open("sqlite", dsn)
		if err != nil {
			return err
		}
		defer db.Close()
		return fn(db)
	}
	return &sqlHarness{
		open: func(t testing.TB, lockTimeout time.Duration, initSQL string) destination.Destination {
			t.Helper()
			reg := destination.NewRegistry()
			destination.RegisterBuiltins(reg)
			d, err := reg.Open(ctx, "sqlite", config(t, "sqlite", "crm", dir, map[string]any{"path": "crm.db", "init_sql": initSQL, "lock_timeout": lockTimeout}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			return d
		},
		exec: func(query string) error {
			return withDB(path, func(db *sql.DB) error {
				_, err := db.ExecContext(ctx, query)
				return err
			})
		},
		rows: func(t testing.TB, table string) map[int64][2]any {
			t.Helper()
			var out map[int64][2]any
			err := withDB(path, func(db *sql.DB) error {
				rows, err := db.QueryContext(ctx, `SELECT id, email, name FROM `+table)
				if err != nil {
					return err
				}
				defer rows.Close()
				out = scanContacts(t, rows)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			return out
		},
		lock: func(t testing.TB, _ string, _ ...int64) func() {
			t.Helper()
			holder, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(0)")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { holder.Close() })
			conn, err := holder.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
				t.Fatal(err)
			}
			return func() {
				if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
					t.Fatal(err)
				}
			}
		},
		contactsDDL: `CREATE TABLE %s (id INTEGER PRIMARY KEY, email TEXT NOT NULL CHECK (email LIKE '%%@%%'), name TEXT, age INTEGER)`,
		textType:    "TEXT",
		where:       "crm.db",
		foldCase:    true,
		lockTimeout: 20 * time.Millisecond,
		lockErr:     regexp.MustCompile(`locked|SQLITE_BUSY`),
		checkErr:    regexp.MustCompile(`CHECK constraint failed`),
		uniqueErr:   regexp.MustCompile(`UNIQUE constraint failed`),
		dataRejects: map[string]*destination.Batch{
			"single NOT NULL violation": batch(contact(5, destination.OpUpsert, nil, "x")),
		},
	}
}

func TestSQLiteConformance(t *testing.T) { testSQLConformance(t, sqliteHarness) }

func TestSQLiteChunksLargeBatches(t *testing.T) {
	ctx := context.Background()
	h := sqliteHarness(t)
	table := contactsTable(t, h)
	d := h.open(t, 0, "")
	const n = 25000 // 3 columns each: more than one statement's variables
	recs := make([]destination.Record, n)
	for i := range recs {
		recs[i] = contact(int64(i+1), destination.OpUpsert, fmt.Sprintf("u%d@x", i), "n")
	}
	mustAccept(t, d.Write(ctx, batchFor(table, recs...)), n)
	if got := h.rows(t, table); len(got) != n {
		t.Fatalf("got %d rows, want %d", len(got), n)
	}
	del := make([]destination.Record, n)
	for i := range del {
		del[i] = contact(int64(i+1), destination.OpDelete, nil, nil)
	}
	mustAccept(t, d.Write(ctx, batchFor(table, del...)), n)
	if got := h.rows(t, table); len(got) != 0 {
		t.Fatalf("got %d rows after delete, want 0", len(got))
	}
}

func TestSQLiteInitSQLAndOpenErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	args := map[string]any{"path": "crm.db", "init_sql": contactsDDL + "INSERT INTO contacts (id, email) VALUES (1, 'seed@x') ON CONFLICT DO NOTHING;"}
	cfg := config(t, "sqlite", "crm", dir, args)
	for range 2 { // init_sql runs at every open; idempotence is the user's SQL's job
		d, err := destination.OpenSQLite(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		d.Close()
	}
	if got := readContacts(t, filepath.Join(dir, "crm.db")); !reflect.DeepEqual(got, map[int64][2]any{1: {"seed@x", nil}}) {
		t.Fatalf("init_sql effects: %v", got)
	}
	var mode string
	db, err := sql.Open("sqlite", filepath.Join(dir, "crm.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q (%v), want wal", mode, err)
	}

	args["init_sql"] = "CREATE TABLE broken ("
	if _, err := destination.OpenSQLite(ctx, config(t, "sqlite", "crm", dir, args)); err == nil || !strings.Contains(err.Error(), `destination "crm": init_sql on crm.db`) {
		t.Fatalf("bad init_sql: got %v", err)
	}
	if _, err := destination.OpenSQLite(ctx, config(t, "sqlite", "crm", "", map[string]any{})); err == nil {
		t.Fatal("missing path should fail")
	}
}
