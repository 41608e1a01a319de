package destination_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
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

// openSQLite opens a sqlite destination on a fresh file through a fresh
// registry, with the contacts table created by init_sql.
func openSQLite(t *testing.T, timeout time.Duration) (destination.Destination, string) {
	t.Helper()
	dir := t.TempDir()
	reg := destination.NewRegistry()
	destination.RegisterBuiltins(reg)
	d, err := reg.Open(context.Background(), destination.Config{
		Name: "crm", Type: "sqlite", Dir: dir, Path: "crm.db", InitSQL: contactsDDL, Timeout: timeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, filepath.Join(dir, "crm.db")
}

func readContacts(t *testing.T, path string) map[int64][2]any {
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
	out := map[int64][2]any{}
	for rows.Next() {
		var id int64
		var email, name any
		if err := rows.Scan(&id, &email, &name); err != nil {
			t.Fatal(err)
		}
		out[id] = [2]any{email, name}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func contact(id int64, op destination.Operation, email, name any) destination.Record {
	r := destination.Record{Key: fmt.Sprint(id), KeyValue: id, Op: op}
	if op != destination.OpDelete {
		r.Fields = map[string]any{"email": email, "name": name}
	}
	return r
}

func batch(records ...destination.Record) *destination.Batch {
	return &destination.Batch{Object: "contacts", KeyField: "id", Fields: []string{"email", "name"}, Records: records}
}

func mustAccept(t *testing.T, o destination.Outcome, n int) {
	t.Helper()
	if o.Err != nil {
		t.Fatalf("batch failed (retryable=%v): %v", o.Retryable, o.Err)
	}
	if len(o.Results) != n {
		t.Fatalf("got %d results, want %d", len(o.Results), n)
	}
	for i, r := range o.Results {
		if r.Err != nil {
			t.Fatalf("record %d rejected: %v", i, r.Err)
		}
	}
}

func TestSQLiteRoundTrip(t *testing.T) {
	ctx := context.Background()
	d, path := openSQLite(t, 0)

	mustAccept(t, d.Write(ctx, batch(
		contact(1, destination.OpUpsert, "a@x", "Ann"),
		contact(2, destination.OpUpsert, "b@x", "Bob"),
		contact(3, destination.OpInsert, "c@x", "Cy"),
	)), 3)
	want := map[int64][2]any{1: {"a@x", "Ann"}, 2: {"b@x", "Bob"}, 3: {"c@x", "Cy"}}
	if got := readContacts(t, path); !reflect.DeepEqual(got, want) {
		t.Fatalf("after upsert/insert: %v, want %v", got, want)
	}

	// Mixed batch: upsert changes 1, update 2, clear 3, delete a missing key.
	o := d.Write(ctx, batch(
		contact(1, destination.OpUpsert, "a2@x", "Ann2"),
		contact(2, destination.OpUpdate, "b2@x", "Bob2"),
		contact(9, destination.OpUpdate, "z@x", "Zed"),
		contact(4, destination.OpDelete, nil, nil),
	))
	if o.Err != nil || len(o.Results) != 4 {
		t.Fatalf("mixed batch: %+v", o)
	}
	if o.Results[0].Err != nil || o.Results[1].Err != nil || o.Results[3].Err != nil {
		t.Fatalf("unexpected per-record errors: %+v", o.Results)
	}
	if e := o.Results[2].Err; e == nil || e.Error() != "no record with key 9 to update" {
		t.Fatalf("update of missing key 9: got %v", e)
	}
	want = map[int64][2]any{1: {"a2@x", "Ann2"}, 2: {"b2@x", "Bob2"}, 3: {"c@x", "Cy"}}
	if got := readContacts(t, path); !reflect.DeepEqual(got, want) {
		t.Fatalf("after mixed batch: %v, want %v", got, want)
	}

	// clear sets mapped fields to NULL; email is NOT NULL, so clear only name.
	clear := &destination.Batch{Object: "contacts", KeyField: "id", Fields: []string{"name"}, Records: []destination.Record{
		{Key: "3", KeyValue: int64(3), Op: destination.OpClear, Fields: map[string]any{"name": nil}},
	}}
	mustAccept(t, d.Write(ctx, clear), 1)
	mustAccept(t, d.Write(ctx, batch(contact(1, destination.OpDelete, nil, nil), contact(1, destination.OpDelete, nil, nil))), 2)
	want = map[int64][2]any{2: {"b2@x", "Bob2"}, 3: {"c@x", nil}}
	if got := readContacts(t, path); !reflect.DeepEqual(got, want) {
		t.Fatalf("after clear/delete: %v, want %v", got, want)
	}
}

func TestSQLiteMultiRowCheckViolationRejectsWholeBatch(t *testing.T) {
	ctx := context.Background()
	d, path := openSQLite(t, 0)
	var recs []destination.Record
	for i := int64(1); i <= 100; i++ {
		email := fmt.Sprintf("u%d@x", i)
		if i == 57 {
			email = "not-an-email"
		}
		recs = append(recs, contact(i, destination.OpUpsert, email, nil))
	}
	o := d.Write(ctx, batch(recs...))
	if o.Err == nil || o.Retryable || o.Results != nil {
		t.Fatalf("want a whole-batch rejection, got %+v", o)
	}
	if !strings.Contains(o.Err.Error(), "CHECK constraint failed") {
		t.Fatalf("rejection should carry the database's message: %v", o.Err)
	}
	if got := readContacts(t, path); len(got) != 0 {
		t.Fatalf("nothing should be written, found %d rows", len(got))
	}
}

func TestSQLiteSingleRecordRejectionIsPerRecord(t *testing.T) {
	ctx := context.Background()
	d, _ := openSQLite(t, 0)
	o := d.Write(ctx, batch(contact(7, destination.OpUpsert, "bad", "x")))
	if o.Err != nil {
		t.Fatalf("want per-record result, got batch error %v", o.Err)
	}
	if len(o.Results) != 1 || o.Results[0].Err == nil || o.Results[0].Retryable {
		t.Fatalf("want one non-retryable per-record error, got %+v", o.Results)
	}
	if !strings.Contains(o.Results[0].Err.Error(), "CHECK constraint failed") {
		t.Fatalf("error should be the database's: %v", o.Results[0].Err)
	}
}

func TestSQLiteInsertConflictRejectsBatch(t *testing.T) {
	ctx := context.Background()
	d, path := openSQLite(t, 0)
	mustAccept(t, d.Write(ctx, batch(contact(1, destination.OpInsert, "a@x", "A"))), 1)
	o := d.Write(ctx, batch(contact(2, destination.OpInsert, "b@x", "B"), contact(1, destination.OpInsert, "a@x", "A")))
	if o.Err == nil || o.Retryable || !strings.Contains(o.Err.Error(), "UNIQUE constraint failed") {
		t.Fatalf("want whole-batch UNIQUE rejection, got %+v", o)
	}
	if got := readContacts(t, path); len(got) != 1 {
		t.Fatalf("rejected batch must write nothing: %v", got)
	}
}

func TestSQLiteChunksLargeBatches(t *testing.T) {
	ctx := context.Background()
	d, path := openSQLite(t, 0)
	const n = 25000 // 3 columns each: more than one statement's variables
	recs := make([]destination.Record, n)
	for i := range recs {
		recs[i] = contact(int64(i+1), destination.OpUpsert, fmt.Sprintf("u%d@x", i), "n")
	}
	mustAccept(t, d.Write(ctx, batch(recs...)), n)
	if got := readContacts(t, path); len(got) != n {
		t.Fatalf("got %d rows, want %d", len(got), n)
	}
	del := make([]destination.Record, n)
	for i := range del {
		del[i] = contact(int64(i+1), destination.OpDelete, nil, nil)
	}
	mustAccept(t, d.Write(ctx, batch(del...)), n)
	if got := readContacts(t, path); len(got) != 0 {
		t.Fatalf("got %d rows after delete, want 0", len(got))
	}
}

func TestSQLiteLockedIsRetryable(t *testing.T) {
	ctx := context.Background()
	d, path := openSQLite(t, 20*time.Millisecond)

	holder, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	conn, err := holder.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}

	o := d.Write(ctx, batch(contact(1, destination.OpUpsert, "a@x", "A"), contact(2, destination.OpUpsert, "b@x", "B")))
	if o.Err == nil || !o.Retryable {
		t.Fatalf("want retryable batch error under a held write lock, got %+v", o)
	}
	// A single record under a lock is still a retryable batch, not a rejection.
	o = d.Write(ctx, batch(contact(1, destination.OpUpsert, "a@x", "A")))
	if o.Err == nil || !o.Retryable {
		t.Fatalf("single record under lock: want retryable, got %+v", o)
	}

	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	mustAccept(t, d.Write(ctx, batch(contact(1, destination.OpUpsert, "a@x", "A"))), 1)
}

func TestSQLiteCancelledContextIsRetryable(t *testing.T) {
	d, _ := openSQLite(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	o := d.Write(ctx, batch(contact(1, destination.OpUpsert, "a@x", "A"), contact(2, destination.OpUpsert, "b@x", "B")))
	if o.Err == nil || !o.Retryable {
		t.Fatalf("want retryable, got %+v", o)
	}
}

func TestSQLitePrepare(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := destination.OpenSQLite(ctx, destination.Config{
		Name: "crm", Dir: dir, Path: "crm.db",
		InitSQL: contactsDDL + `
			CREATE TABLE IF NOT EXISTS leads (email TEXT, name TEXT);
			CREATE TABLE IF NOT EXISTS accounts (domain TEXT, name TEXT);
			CREATE UNIQUE INDEX IF NOT EXISTS accounts_domain ON accounts (domain);`,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	p, ok := d.(destination.Preparer)
	if !ok {
		t.Fatal("sqlite destination should implement Preparer")
	}
	tests := []struct {
		object, key string
		fields      []string
		wantErr     string // empty: no error
	}{
		{"contacts", "id", []string{"email", "name"}, ""},
		{"contacts", "ID", []string{"Email"}, ""},
		{"accounts", "domain", []string{"name"}, ""},
		{"deals", "id", nil, `table "deals" not found in crm.db`},
		{"contacts", "id", []string{"email", "phone"}, `column "phone" not found in table "contacts" (columns: id, email, name) in crm.db`},
		{"contacts", "uid", nil, `column "uid" not found in table "contacts"`},
		{"leads", "email", []string{"name"}, `key column "email" of table "leads" in crm.db has no PRIMARY KEY or UNIQUE constraint`},
		{"contacts", "email", []string{"name"}, `key column "email" of table "contacts" in crm.db has no PRIMARY KEY or UNIQUE constraint`},
	}
	for _, tt := range tests {
		t.Run(tt.object+"/"+tt.key, func(t *testing.T) {
			err := p.Prepare(ctx, tt.object, tt.key, tt.fields)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestSQLiteInitSQLAndOpenErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := destination.Config{Name: "crm", Dir: dir, Path: "crm.db", InitSQL: contactsDDL + "INSERT INTO contacts (id, email) VALUES (1, 'seed@x') ON CONFLICT DO NOTHING;"}
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

	cfg.InitSQL = "CREATE TABLE broken ("
	if _, err := destination.OpenSQLite(ctx, cfg); err == nil || !strings.Contains(err.Error(), `destination "crm": init_sql on crm.db`) {
		t.Fatalf("bad init_sql: got %v", err)
	}
	if _, err := destination.OpenSQLite(ctx, destination.Config{Name: "crm"}); err == nil {
		t.Fatal("missing path should fail")
	}
}
