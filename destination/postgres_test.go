package destination_test

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
	"github.com/jackc/pgx/v5"
)

// serverOrSkip skips a test when the server behind dsn is unreachable,
// unless CI is set: there the servers are part of the job and a missing one
// must fail loudly.
func serverOrSkip(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s unreachable under CI: %v", what, err)
	}
	t.Skipf("%s unreachable (set CI to make this fail): %v", what, err)
}

func postgresDSN() string {
	if dsn := os.Getenv("BACKFLOW_TEST_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// pgTable creates a uniquely named contacts table and returns its name and
// an admin connection; both are dropped at cleanup.
func pgTable(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, postgresDSN())
	serverOrSkip(t, "postgres", err)
	table := fmt.Sprintf("contacts_%d", time.Now().UnixNano())
	_, err = conn.Exec(ctx, `CREATE TABLE `+table+` (
		id bigint PRIMARY KEY,
		email text NOT NULL CHECK (email LIKE '%@%'),
		name text,
		age int)`)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Exec(context.Background(), `DROP TABLE IF EXISTS `+table)
		conn.Close(context.Background())
	})
	return table, conn
}

func pgRows(t *testing.T, conn *pgx.Conn, table string) map[int64][2]any {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT id, email, name FROM `+table)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64][2]any{}
	for rows.Next() {
		var id int64
		var email, name *string
		if err := rows.Scan(&id, &email, &name); err != nil {
			t.Fatal(err)
		}
		v := [2]any{nil, nil}
		if email != nil {
			v[0] = *email
		}
		if name != nil {
			v[1] = *name
		}
		out[id] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func openPostgres(t *testing.T, timeout time.Duration) destination.Destination {
	t.Helper()
	d, err := destination.OpenPostgres(context.Background(), destination.Config{Name: "warehouse", DSN: postgresDSN(), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestPostgresRoundTripAndRejections(t *testing.T) {
	ctx := context.Background()
	table, admin := pgTable(t)
	d := openPostgres(t, 0)
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
		contact(2, destination.OpUpdate, "b2@x", nil),
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
	want := map[int64][2]any{1: {"a2@x", nil}, 2: {"b2@x", nil}}
	if got := pgRows(t, admin, table); !reflect.DeepEqual(got, want) {
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
	if o.Err == nil || o.Retryable || !strings.Contains(o.Err.Error(), "violates check constraint") {
		t.Fatalf("want whole-batch check rejection, got %+v", o)
	}
	if got := pgRows(t, admin, table); len(got) != 2 {
		t.Fatalf("rejected batch wrote rows: %v", got)
	}
	// A data error (22xxx) on a single record is that record's own error.
	bad := &destination.Batch{Object: table, KeyField: "id", Fields: []string{"email", "age"}, Records: []destination.Record{
		{Key: "5", KeyValue: int64(5), Op: destination.OpUpsert, Fields: map[string]any{"email": "e@x", "age": int64(1) << 40}},
	}}
	o = d.Write(ctx, bad)
	if o.Err != nil || len(o.Results) != 1 || o.Results[0].Err == nil || o.Results[0].Retryable {
		t.Fatalf("single out-of-range record: want per-record rejection, got %+v", o)
	}
}

func TestPostgresRowLockIsRetryable(t *testing.T) {
	ctx := context.Background()
	table, admin := pgTable(t)
	if _, err := admin.Exec(ctx, `INSERT INTO `+table+` (id, email) VALUES (1, 'a@x')`); err != nil {
		t.Fatal(err)
	}
	holder, err := pgx.Connect(ctx, postgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT * FROM `+table+` WHERE id = 1 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}

	d := openPostgres(t, 100*time.Millisecond)
	b := batch(contact(1, destination.OpUpsert, "new@x", "N"), contact(2, destination.OpUpsert, "b@x", "B"))
	b.Object = table
	o := d.Write(ctx, b)
	if o.Err == nil || !o.Retryable || !strings.Contains(o.Err.Error(), "lock") {
		t.Fatalf("want retryable lock timeout, got %+v", o)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	mustAccept(t, d.Write(ctx, b), 2)
}

func TestPostgresPrepareAndOpen(t *testing.T) {
	ctx := context.Background()
	table, admin := pgTable(t)
	if _, err := admin.Exec(ctx, `CREATE TABLE `+table+`_nokey (email text, name text)`); err != nil {
		t.Fatal(err)
	}
	defer admin.Exec(ctx, `DROP TABLE `+table+`_nokey`)
	d, err := destination.OpenPostgres(ctx, destination.Config{
		Name: "warehouse", DSN: postgresDSN(),
		InitSQL: `CREATE TABLE IF NOT EXISTS ` + table + `_init (k text PRIMARY KEY); CREATE UNIQUE INDEX IF NOT EXISTS ` + table + `_init_k ON ` + table + `_init (k);`,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	defer admin.Exec(ctx, `DROP TABLE `+table+`_init`)
	p := d.(destination.Preparer)
	tests := []struct {
		object, key string
		fields      []string
		wantErr     string
	}{
		{table, "id", []string{"email", "name"}, ""},
		{"public." + table, "id", []string{"email"}, ""},
		{table + "_init", "k", nil, ""},
		{table + "_missing", "id", nil, `table "` + table + `_missing" not found in database "test" on 127.0.0.1:5432`},
		{table, "id", []string{"phone"}, `column "phone" not found in table "` + table + `" (columns: id, email, name, age)`},
		{table, "email", nil, `key column "email" of table "` + table + `"`},
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

	// Errors never carry the DSN or its password.
	secret := "postgres://postgres:s3cr3t-pw@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"
	_, err = destination.OpenPostgres(ctx, destination.Config{Name: "warehouse", DSN: secret})
	t.Logf("connect failure: %v", err)
	if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") || strings.Contains(err.Error(), secret) {
		t.Fatalf("connection failure should fail without the secret: %v", err)
	}
	_, err = destination.OpenPostgres(ctx, destination.Config{Name: "warehouse", DSN: "postgres://u:s3cr3t-pw@host:notaport/db"})
	if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("invalid dsn should fail without the secret: %v", err)
	}
}

func TestPostgresLostConnectionIsRetryableThenReconnects(t *testing.T) {
	ctx := context.Background()
	table, admin := pgTable(t)
	app := fmt.Sprintf("backflow_test_%d", time.Now().UnixNano())
	d, err := destination.OpenPostgres(ctx, destination.Config{Name: "warehouse", DSN: postgresDSN() + "&application_name=" + app})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var killed int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminate destination backend: killed %d, %v", killed, err)
	}
	b := batch(contact(1, destination.OpUpsert, "a@x", "A"))
	b.Object = table
	o := d.Write(ctx, b)
	if o.Err == nil || !o.Retryable {
		t.Fatalf("write on a terminated connection: want retryable, got %+v", o)
	}
	mustAccept(t, d.Write(ctx, b), 1)
	if got := pgRows(t, admin, table); len(got) != 1 {
		t.Fatalf("rows after reconnect: %v", got)
	}
}
