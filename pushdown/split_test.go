package pushdown_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/pushdown"
	"github.com/backflowhq/backflow/state"
)

// TestSplitPlanWhileTheModelIsRefreshed: a model table refreshed again and
// again by TRUNCATE and INSERT of the same rows (a common ELT pattern)
// while split plans run. A truncate is not MVCC-safe: a snapshot taken
// before it commits reads the table empty, and a split plan whose snapshot
// was exported before its halves locked the table planned every record's
// removal. No plan may change anything.
func TestSplitPlanWhileTheModelIsRefreshed(t *testing.T) {
	defer pushdown.ForceSplit(true)()
	srv := postgresServer(t)
	ctx := context.Background()
	tbl, cdcSchema := testdb.Name("bfref"), testdb.Name("bfcdcref")
	srv.exec(t, "CREATE TABLE "+tbl+" (id integer, v integer)", "INSERT INTO "+tbl+" SELECT g, g FROM generate_series(1, 2000) g")
	t.Cleanup(func() { srv.exec(t, "DROP TABLE IF EXISTS "+tbl); srv.drop(cdcSchema) })
	src, err := srv.open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	query := "SELECT id, v FROM " + tbl
	s := &config.Sync{
		Name: "r_" + strings.ReplaceAll(tbl, "bfref_", ""), Object: "obj", Key: "ext", Mode: config.ModeUpsert, DeleteBehavior: config.DeleteDelete,
		Model:       &config.Model{Name: "m", Query: query, PrimaryKey: []string{"id"}},
		Destination: &config.Destination{Name: "dest"},
		MaxRemovals: config.Limit{Percent: true, Fraction: 1},
		Mapping:     []config.Field{{Field: "v", Column: "v"}},
	}
	columns, err := src.Schema(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	_, wh, target, store := openStores(ctx, t, srv, cdcSchema)
	first, _, err := pushdown.Diff(ctx, src, target, pushdown.Input{Sync: s, Columns: columns, Failures: state.FailureIndex{}})
	if err != nil {
		t.Fatal(err)
	}
	apply(t, ctx, wh, store, first.Plan, acceptAll{}, destination0())

	conn, err := pgx.Connect(ctx, testdb.PostgresDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var stop atomic.Bool
	var refreshes atomic.Int64
	done := make(chan error, 1)
	go func() {
		for !stop.Load() {
			if _, err := conn.Exec(ctx, "BEGIN; TRUNCATE "+tbl+"; INSERT INTO "+tbl+" SELECT g, g FROM generate_series(1, 2000) g; COMMIT"); err != nil {
				done <- err
				return
			}
			refreshes.Add(1)
		}
		done <- nil
	}()
	parts := map[int]int{}
	for i := 0; i < 8; i++ {
		got, stats, err := pushdown.Diff(ctx, src, target, pushdown.Input{Sync: s, Columns: columns, Failures: state.FailureIndex{}})
		if err != nil {
			t.Fatal(err)
		}
		parts[stats.Parts]++
		if n := len(got.Plan.Changes); n > 0 {
			t.Fatalf("plan %d (%d parts, %d settled) changes %d records of a table refreshed with the same rows; first: %+v", i, stats.Parts, stats.Settled, n, got.Plan.Changes[0])
		}
	}
	stop.Store(true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("plans by parts run: %v; refreshes meanwhile: %d", parts, refreshes.Load())
	if refreshes.Load() == 0 {
		t.Fatal("no refresh ran during the plans")
	}
}

// TestSplitByTheSyncsRows: left to itself (no ForceSplit), a plan splits
// its statement by the sync's own rows in the snapshot table, not by the
// table's size: a sync of ten rows beside another sync's 600,000 (a table
// of more than 32 MB) runs whole; one past the threshold splits.
func TestSplitByTheSyncsRows(t *testing.T) {
	srv := postgresServer(t)
	ctx := context.Background()
	tbl, cdcSchema := testdb.Name("bfauto"), testdb.Name("bfcdcauto")
	srv.exec(t, "CREATE TABLE "+tbl+" (id integer, v integer)", "INSERT INTO "+tbl+" SELECT g, g FROM generate_series(1, 10) g")
	t.Cleanup(func() { srv.exec(t, "DROP TABLE IF EXISTS "+tbl); srv.drop(cdcSchema) })
	src, err := srv.open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	query := "SELECT id, v FROM " + tbl
	s := &config.Sync{
		Name: "a_" + strings.ReplaceAll(tbl, "bfauto_", ""), Object: "obj", Key: "ext", Mode: config.ModeUpsert, DeleteBehavior: config.DeleteDelete,
		Model:       &config.Model{Name: "m", Query: query, PrimaryKey: []string{"id"}},
		Destination: &config.Destination{Name: "dest"},
		MaxRemovals: config.Limit{Percent: true, Fraction: 1},
		Mapping:     []config.Field{{Field: "v", Column: "v"}},
	}
	columns, err := src.Schema(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	_, wh, target, store := openStores(ctx, t, srv, cdcSchema)
	plan := func() int {
		t.Helper()
		got, stats, err := pushdown.Diff(ctx, src, target, pushdown.Input{Sync: s, Columns: columns, Failures: state.FailureIndex{}})
		if err != nil {
			t.Fatal(err)
		}
		apply(t, ctx, wh, store, got.Plan, acceptAll{}, destination0())
		return stats.Parts
	}
	plan() // creates the tables
	srv.exec(t, "INSERT INTO "+cdcSchema+".cdc_rows SELECT 'other', 'k' || g, repeat('0', 40), true, false FROM generate_series(1, 600000) g")
	if n := plan(); n != 1 {
		t.Fatalf("a sync of 10 rows beside another's 600,000 ran in %d parts, want 1", n)
	}
	defer pushdown.SetSplitRows(10)()
	if n := plan(); n != 2 {
		t.Fatalf("a sync of 10 rows, 10 splitting, ran in %d parts, want 2", n)
	}
	defer pushdown.SetSplitRows(11)()
	if n := plan(); n != 1 {
		t.Fatalf("a sync of 10 rows, 11 splitting, ran in %d parts, want 1", n)
	}
}
