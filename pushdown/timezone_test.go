package pushdown_test

import (
	"context"
	"testing"

	"github.com/backflowhq/backflow/engine"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/pushdown"
	"github.com/backflowhq/backflow/state"
)

// TestKeysDoNotDependOnTheSession: a runner whose session has another time
// zone sees the same database keys and hashes (a timestamptz key and
// value), so nothing needs a look.
func TestKeysDoNotDependOnTheSession(t *testing.T) {
	ctx := context.Background()
	conn := testdb.Postgres(t)
	tbl := testdb.PostgresTable(t, conn, "at timestamptz, d date, v text")
	cdcSchema := testdb.Name("bfcdc")
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+cdcSchema+" CASCADE") })
	testdb.PostgresExec(t, conn, "INSERT INTO "+tbl+" VALUES ('2024-03-01 10:00:00.123456+00', '2024-03-01', 'a'), ('2024-03-02 23:30:00+00', '2024-03-02', 'b')")
	query := "SELECT at, d, v FROM " + tbl
	s := &config.Sync{Name: "tz", Object: "o", Key: "k", Mode: config.ModeUpsert, DeleteBehavior: config.DeleteDelete,
		Model: &config.Model{Name: "m", Query: query, PrimaryKey: []string{"at"}}, Destination: &config.Destination{Name: "d"},
		MaxRemovals: config.Limit{Percent: true, Fraction: 1},
		Mapping:     []config.Field{{Field: "d", Column: "d"}, {Field: "v", Column: "v"}}}
	target := pushdown.Target{Dialect: pushdown.Postgres, Schema: cdcSchema, DSN: testdb.PostgresDSN}
	plan := func(tz string) (int, int64) {
		t.Helper()
		src, err := engine.OpenPostgres(ctx, testdb.PostgresDSN+"&timezone="+tz+"&datestyle=SQL,DMY", engine.LiveOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		cols, err := src.Schema(ctx, query)
		if err != nil {
			t.Fatal(err)
		}
		res, st, err := pushdown.Diff(ctx, src, target, pushdown.Input{Sync: s, Columns: cols, Failures: state.FailureIndex{}})
		if err != nil {
			t.Fatal(err)
		}
		if tz == "UTC" {
			store, err := pushdown.Open(ctx, target)
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			if err := store.Reset(ctx, res.Plan, pushdown.Fingerprint(pushdown.Postgres, res.Plan.Warehouse.Hash, s, cols)); err != nil {
				t.Fatal(err)
			}
		}
		return len(res.Plan.Changes), st.Rows
	}
	if n, _ := plan("UTC"); n != 2 {
		t.Fatalf("first plan: %d changes, want 2", n)
	}
	if n, read := plan("Asia/Tokyo"); n != 0 || read != 0 {
		t.Fatalf("plan from a session in Asia/Tokyo: %d changes, %d rows read; want none", n, read)
	}
}
