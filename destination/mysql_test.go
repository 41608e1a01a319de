package destination_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
	_ "github.com/go-sql-driver/mysql"
)

func mysqlDSN() string {
	if dsn := os.Getenv("BACKFLOW_TEST_MYSQL_DSN"); dsn != "" {
		return dsn
	}
	return "root@tcp(127.0.0.1:3306)/test"
}

// myTable creates a uniquely named contacts table and returns its name and
// an admin pool; both are dropped at cleanup.
func myTable(t *testing.T) (string, *sql.DB) {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("mysql", mysqlDSN())
	if err != nil {
		t.Fatal(err)
	}
	serverOrSkip(t, "mysql", db.PingContext(ctx))
	table := fmt.Sprintf("contacts_%d", time.Now().UnixNano())
	_, err = db.ExecContext(ctx, `CREATE TABLE `+table+` (
		id BIGINT PRIMARY KEY,
		email VARCHAR(100) NOT NULL CHECK (email LIKE '%@%'),
		name VARCHAR(10),
		age INT) ENGINE=InnoDB`)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Exec(`DROP TABLE IF EXISTS ` + table)
		db.Close()
	})
	return table, db
}

func myRows(t *testing.T, db *sql.DB, table string) map[int64][2]any {
	t.Helper()
	rows, err := db.Query(`SELECT id, email, name FROM ` + table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64][2]any{}
	for rows.Next() {
		var id int64
		var email, name sql.NullString
		if err := rows.Scan(&id, &email, &name); err != nil {
			t.Fatal(err)
		}
		v := [2]any{nil, nil}
		if email.Valid {
			v[0] = email.String
		}
		if name.Valid {
			v[1] = name.String
		}
		out[id] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func openMySQL(t *testing.T, timeout time.Duration) destination.Destination {
	t.Helper()
	d, err := destination.OpenMySQL(context.Background(), destination.Config{Name: "app", DSN: mysqlDSN(), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestMySQLRoundTripAndRejections(t *testing.T) {
	ctx := context.Background()
	table, admin := myTable(t)
	d := openMySQL(t, 0)
	b := func(recs ...destination.Record) *destination.Batch {
		x := batch(recs...)
		x.Object = table
		return x
	}

	mustAccept(t, d.Write(ctx, b(
		contact(1, destination.OpUpsert, "a@x", "Ann"),
		contact(2, destination.OpInsert, "b@x", "Bob"),
		contact(3, destination.OpUpsert, "c@x", "Cy"),
	)), 3)
	o := d.Write(ctx, b(
		contact(1, destination.OpUpsert, "a2@x", "Ann2"),
		contact(2, destination.OpUpdate, "b@x", "Bob"), // unchanged values: still found
		contact(9, destination.OpUpdate, "z@x", "Zed"),
		contact(3, destination.OpDelete, nil, nil),
		contact(4, destination.OpDelete, nil, nil),
	))
	if o.Err != nil || o.Results[0].Err != nil || o.Results[1].Err != nil || o.Results[3].Err != nil || o.Results[4].Err != nil {
		t.Fatalf("mixed batch: %+v", o)
	}
	if e := o.Results[2].Err; e == nil || e.Error() != "no record with key 9 to update" {
		t.Fatalf("update of missing key: %v", e)
	}
	clear := &destination.Batch{Object: table, KeyField: "id", Fields: []string{"name"}, Records: []destination.Record{
		{Key: "1", KeyValue: int64(1), Op: destination.OpClear},
	}}
	mustAccept(t, d.Write(ctx, clear), 1)
	want := map[int64][2]any{1: {"a2@x", nil}, 2: {"b@x", "Bob"}}
	if got := myRows(t, admin, table); !reflect.DeepEqual(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}

	// One CHECK violation fails the whole multi-row upsert; nothing written.
	var recs []destination.Record
	for i := int64(10); i < 110; i++ {
		email := fmt.Sprintf("u%d@x", i)
		if i == 50 {
			email = "bad"
		}
		recs = append(recs, contact(i, destination.OpUpsert, email, nil))
	}
	o = d.Write(ctx, b(recs...))
	if o.Err == nil || o.Retryable || !strings.Contains(strings.ToLower(o.Err.Error()), "constraint") {
		t.Fatalf("want whole-batch check rejection, got %+v", o)
	}
	if got := myRows(t, admin, table); len(got) != 2 {
		t.Fatalf("rejected batch wrote rows: %v", got)
	}
	// A too-long value (1406) on a single record is that record's own error.
	o = d.Write(ctx, b(contact(5, destination.OpUpsert, "e@x", "far too long for ten")))
	if o.Err != nil || len(o.Results) != 1 || o.Results[0].Err == nil || o.Results[0].Retryable {
		t.Fatalf("single too-long record: want per-record rejection, got %+v", o)
	}
}

func TestMySQLRowLockIsRetryable(t *testing.T) {
	ctx := context.Background()
	table, admin := myTable(t)
	if _, err := admin.ExecContext(ctx, `INSERT INTO `+table+` (id, email) VALUES (1, 'a@x')`); err != nil {
		t.Fatal(err)
	}
	tx, err := admin.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `SELECT * FROM `+table+` WHERE id = 1 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}

	d := openMySQL(t, time.Second) // innodb_lock_wait_timeout has a 1s floor
	b := batch(contact(1, destination.OpUpsert, "new@x", "N"), contact(2, destination.OpUpsert, "b@x", "B"))
	b.Object = table
	o := d.Write(ctx, b)
	if o.Err == nil || !o.Retryable || !strings.Contains(o.Err.Error(), "Lock wait timeout") {
		t.Fatalf("want retryable lock wait timeout, got %+v", o)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	mustAccept(t, d.Write(ctx, b), 2)
}

func TestMySQLPrepareAndOpen(t *testing.T) {
	ctx := context.Background()
	table, admin := myTable(t)
	if _, err := admin.ExecContext(ctx, `CREATE TABLE `+table+`_nokey (email VARCHAR(50), name TEXT)`); err != nil {
		t.Fatal(err)
	}
	defer admin.Exec(`DROP TABLE ` + table + `_nokey`)
	defer admin.Exec(`DROP TABLE IF EXISTS ` + table + `_init`)
	d, err := destination.OpenMySQL(ctx, destination.Config{
		Name: "app", DSN: mysqlDSN(),
		InitSQL: `CREATE TABLE IF NOT EXISTS ` + table + `_init (k VARCHAR(20), v TEXT);
			CREATE UNIQUE INDEX IF NOT EXISTS k_unique ON ` + table + `_init (k);`,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	p := d.(destination.Preparer)
	tests := []struct {
		object, key string
		fields      []string
		wantErr     string
	}{
		{table, "id", []string{"email", "name"}, ""},
		{"test." + table, "ID", []string{"Email"}, ""},
		{table + "_init", "k", []string{"v"}, ""},
		{table + "_missing", "id", nil, `table "` + table + `_missing" not found in database "test" on 127.0.0.1:3306`},
		{table, "id", []string{"phone"}, `column "phone" not found in table "` + table + `" (columns: id, email, name, age)`},
		{table, "email", nil, "has no PRIMARY KEY or UNIQUE constraint"},
		{table + "_nokey", "email", []string{"name"}, "has no PRIMARY KEY or UNIQUE constraint"},
	}
	for _, tt := range tests {
		err := p.Prepare(ctx, tt.object, tt.key, tt.fields)
		if tt.wantErr == "" && err != nil {
			t.Errorf("Prepare(%s, %s): %v", tt.object, tt.key, err)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("Prepare(%s, %s): got %v, want %q", tt.object, tt.key, err, tt.wantErr)
		}
	}

	secret := "root:s3cr3t-pw@tcp(127.0.0.1:1)/test?timeout=2s"
	_, err = destination.OpenMySQL(ctx, destination.Config{Name: "app", DSN: secret})
	if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") || strings.Contains(err.Error(), secret) {
		t.Fatalf("connection failure should fail without the secret: %v", err)
	}
	_, err = destination.OpenMySQL(ctx, destination.Config{Name: "app", DSN: "root:s3cr3t-pw@tcp(127.0.0.1:1)test"})
	if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("invalid dsn should fail without the secret: %v", err)
	}
}
