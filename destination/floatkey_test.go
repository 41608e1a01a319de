package destination_test

import (
	"context"
	"testing"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/jackc/pgx/v5"
)

// A key of a floating-point column reads back from the lock step as the
// server prints it (1000000, 1e+21), not as Go does (1e+06): the keys
// must still match, or a delete of an existing row is taken for a delete
// of a missing one, skipped and answered accepted.
func TestPostgresFloatKeysMatchTheLockStep(t *testing.T) {
	admin := pgAdmin(t)
	for _, typ := range []string{"double precision", "real"} {
		t.Run(typ, func(t *testing.T) { floatKeys(t, admin, typ) })
	}
}

func floatKeys(t *testing.T, admin *pgx.Conn, typ string) {
	ctx := context.Background()
	table := testdb.PostgresTable(t, admin, "id "+typ+" PRIMARY KEY, v text")
	d, err := destination.OpenPostgres(ctx, config(t, "postgres", "warehouse", "", map[string]any{"dsn": postgresDSN()}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.(destination.Preparer).Prepare(ctx, table, "id", []string{"v"}); err != nil {
		t.Fatal(err)
	}
	keys := []float64{1e6, 1.5e7, 1e21, 0.5, 1e-7, 0.1, 123456789.25}
	var ups, dels []destination.Record
	for _, k := range keys {
		ups = append(ups, destination.Record{Key: "k", KeyValue: k, Op: destination.OpUpsert, Fields: map[string]any{"v": "x"}})
		dels = append(dels, destination.Record{Key: "k", KeyValue: k, Op: destination.OpDelete})
	}
	for _, recs := range [][]destination.Record{ups, dels} {
		o := d.Write(ctx, &destination.Batch{Object: table, KeyField: "id", Fields: []string{"v"}, Records: recs})
		if !allWritten(o, len(recs)) {
			t.Fatalf("%s: %v %+v", recs[0].Op, o.Err, o.Results)
		}
	}
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows left after deleting every key (%v)", n, err)
	}
}

// The same on MariaDB, whose DOUBLE prints 1e21 and 1000000.
func TestMySQLFloatKeysMatchTheLockStep(t *testing.T) {
	ctx := context.Background()
	admin := testdb.MariaDB(t)
	table := testdb.MariaDBTable(t, admin, "id double PRIMARY KEY, v varchar(10)")
	d, err := destination.OpenMySQL(ctx, config(t, "mysql", "warehouse", "", map[string]any{"dsn": mysqlDSN()}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.(destination.Preparer).Prepare(ctx, table, "id", []string{"v"}); err != nil {
		t.Fatal(err)
	}
	var ups, dels []destination.Record
	for _, k := range []float64{1e6, 1.5e7, 1e21, 0.5, 1e-7, 0.1, 123456789.25} {
		ups = append(ups, destination.Record{Key: "k", KeyValue: k, Op: destination.OpUpsert, Fields: map[string]any{"v": "x"}})
		dels = append(dels, destination.Record{Key: "k", KeyValue: k, Op: destination.OpDelete})
	}
	for _, recs := range [][]destination.Record{ups, dels} {
		o := d.Write(ctx, &destination.Batch{Object: table, KeyField: "id", Fields: []string{"v"}, Records: recs})
		if !allWritten(o, len(recs)) {
			t.Fatalf("%s: %v %+v", recs[0].Op, o.Err, o.Results)
		}
	}
	var n int
	if err := admin.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows left after deleting every key (%v)", n, err)
	}
}

// Keys the server compares other than bytewise (citext ignores case, char(n)
// ignores trailing spaces): the lock step answers with the batch's own
// keys, so a delete or update of a row the server matches is not taken for
// one of a missing row, skipped and answered accepted.
func TestPostgresKeysEqualByTheServerMatchTheLockStep(t *testing.T) {
	ctx := context.Background()
	admin := pgAdmin(t)
	if _, err := admin.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS citext"); err != nil {
		t.Skipf("no citext extension: %v", err)
	}
	for _, tc := range []struct{ typ, stored, sent string }{
		{"citext", "Abc", "aBC"},
		{"char(6)", "ab", "ab  "},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			table := testdb.PostgresTable(t, admin, "id "+tc.typ+" PRIMARY KEY, v text")
			if _, err := admin.Exec(ctx, "INSERT INTO "+table+" VALUES ($1, 'old'), ('other', 'old')", tc.stored); err != nil {
				t.Fatal(err)
			}
			d, err := destination.OpenPostgres(ctx, config(t, "postgres", "warehouse", "", map[string]any{"dsn": postgresDSN()}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			b := &destination.Batch{Object: table, KeyField: "id", Fields: []string{"v"}, Records: []destination.Record{
				{Key: "u", KeyValue: "other", Op: destination.OpUpdate, Fields: map[string]any{"v": "new"}},
				{Key: "d", KeyValue: tc.sent, Op: destination.OpDelete},
			}}
			mustAccept(t, d.Write(ctx, b), 2)
			var n int
			if err := admin.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE id = $1", tc.stored).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Fatalf("the delete of %q was answered accepted, and the row %q stays", tc.sent, tc.stored)
			}
		})
	}
}
