package pushdown_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/backflowhq/backflow/engine"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/pushdown"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/schema"
	"github.com/backflowhq/backflow/state"
)

// idSync is a sync of a table (id integer, v integer) planned with
// warehouse CDC on PostgreSQL, its records upserted and deleted.
type idSync struct {
	t      *testing.T
	ctx    context.Context
	srv    server
	tbl    string
	cdc    string // the snapshot tables' schema
	src    engine.Source
	s      *config.Sync
	cols   []schema.Column
	wh     *state.Store
	target pushdown.Target
	store  *pushdown.Store
}

// newIDSync creates the table with rows 1 to n and opens the sync's stores;
// everything goes with the test.
func newIDSync(t *testing.T, n int) *idSync {
	t.Helper()
	x := &idSync{t: t, ctx: context.Background(), srv: postgresServer(t), tbl: testdb.Name("bfid"), cdc: testdb.Name("bfcdcid")}
	x.srv.exec(t, "CREATE TABLE "+x.tbl+" (id integer, v integer)", x.fill(n))
	t.Cleanup(func() { x.srv.exec(t, "DROP TABLE IF EXISTS "+x.tbl); x.srv.drop(x.cdc) })
	src, err := x.srv.open(x.ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	x.src = src
	query := "SELECT id, v FROM " + x.tbl
	x.s = &config.Sync{
		Name: "i_" + strings.ReplaceAll(x.tbl, "bfid_", ""), Object: "obj", Key: "ext", Mode: config.ModeUpsert, DeleteBehavior: config.DeleteDelete,
		Model:       &config.Model{Name: "m", Query: query, PrimaryKey: []string{"id"}},
		Destination: &config.Destination{Name: "dest"},
		MaxRemovals: config.Limit{Percent: true, Fraction: 1},
		Mapping:     []config.Field{{Field: "v", Column: "v"}},
	}
	if x.cols, err = src.Schema(x.ctx, query); err != nil {
		t.Fatal(err)
	}
	_, x.wh, x.target, x.store = openStores(x.ctx, t, x.srv, x.cdc)
	return x
}

// fill is the statement inserting rows 1 to n (v = id).
func (x *idSync) fill(n int) string {
	return fmt.Sprintf("INSERT INTO %s SELECT g, g FROM generate_series(1, %d) g", x.tbl, n)
}

// plan plans the sync with warehouse CDC, the failure index empty.
func (x *idSync) plan() (*reconcile.DiffResult, pushdown.Stats) {
	x.t.Helper()
	got, stats, err := pushdown.Diff(x.ctx, x.src, x.target, pushdown.Input{Sync: x.s, Columns: x.cols, Failures: state.FailureIndex{}})
	if err != nil {
		x.t.Fatal(err)
	}
	return got, stats
}

// apply applies plan, every record accepted.
func (x *idSync) apply(plan *reconcile.SyncPlan) {
	x.t.Helper()
	apply(x.t, x.ctx, x.wh, x.store, plan, acceptAll{}, destination0())
}

// TestSplitPlanWhileTheModelIsRefreshed: a model table refreshed again and
// again by TRUNCATE and INSERT of the same rows (a common ELT pattern)
// while split plans run. A truncate is not MVCC-safe: a snapshot taken
// before it commits reads the table empty, and a split plan whose snapshot
// was exported before its halves locked the table planned every record's
// removal. No plan may change anything.
func TestSplitPlanWhileTheModelIsRefreshed(t *testing.T) {
	defer pushdown.ForceSplit(true)()
	x := newIDSync(t, 2000)
	first, _ := x.plan()
	x.apply(first.Plan)

	conn, err := pgx.Connect(x.ctx, testdb.PostgresDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var stop atomic.Bool
	var refreshes atomic.Int64
	done := make(chan error, 1)
	go func() {
		for !stop.Load() {
			if _, err := conn.Exec(x.ctx, "BEGIN; TRUNCATE "+x.tbl+"; "+x.fill(2000)+"; COMMIT"); err != nil {
				done <- err
				return
			}
			refreshes.Add(1)
		}
		done <- nil
	}()
	parts := map[int]int{}
	for i := 0; i < 8; i++ {
		got, stats := x.plan()
		parts[stats.Parts]++
		if n := len(got.Plan.Changes); n > 0 {
			stop.Store(true)
			<-done
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
	x := newIDSync(t, 10)
	plan := func() int {
		t.Helper()
		got, stats := x.plan()
		x.apply(got.Plan)
		return stats.Parts
	}
	plan() // creates the tables
	x.srv.exec(t, "INSERT INTO "+x.cdc+".cdc_rows SELECT 'other', 'k' || g, repeat('0', 40), true, false FROM generate_series(1, 600000) g")
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
