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
	table := testdb.PostgresTable(t, admin, "id "+typ+" PRIMARY KEY, v text")
	d := openPrepared(t, table, []string{"v"}, func(ctx context.Context) (destination.Destination, error) {
		return destination.OpenPostgres(ctx, config(t, "postgres", "warehouse", "", map[string]any{"dsn": postgresDSN()}))
	})
	writeAndDeleteFloatKeys(t, d, table, func(ctx context.Context) (n int, err error) {
		return n, admin.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n)
	})
}

// The same on MariaDB, whose DOUBLE prints 1e21 and 1000000.
func TestMySQLFloatKeysMatchTheLockStep(t *testing.T) {
	admin := testdb.MariaDB(t)
	table := testdb.MariaDBTable(t, admin, "id double PRIMARY KEY, v varchar(10)")
	d := openPrepared(t, table, []string{"v"}, openMySQL(t))
	writeAndDeleteFloatKeys(t, d, table, func(ctx context.Context) (n int, err error) {
		return n, admin.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n)
	})
}

// writeAndDeleteFloatKeys upserts rows of float keys (some of which the
// server prints otherwise than Go), then deletes every one of them: left
// must count no row after.
func writeAndDeleteFloatKeys(t *testing.T, d destination.Destination, table string, left func(context.Context) (int, error)) {
	ctx := context.Background()
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
	if n, err := left(ctx); err != nil || n != 0 {
		t.Fatalf("%d rows left after deleting every key (%v)", n, err)
	}
}

// openPrepared opens a destination, closed with the test, and prepares
// it for table's key id and fields.
func openPrepared(t *testing.T, table string, fields []string, open func(context.Context) (destination.Destination, error)) destination.Destination {
	t.Helper()
	ctx := context.Background()
	d, err := open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.(destination.Preparer).Prepare(ctx, table, "id", fields); err != nil {
		t.Fatal(err)
	}
	return d
}

// openMySQL opens the test MariaDB as a destination.
func openMySQL(t *testing.T) func(context.Context) (destination.Destination, error) {
	return func(ctx context.Context) (destination.Destination, error) {
		return destination.OpenMySQL(ctx, config(t, "mysql", "warehouse", "", map[string]any{"dsn": mysqlDSN()}))
	}
}
