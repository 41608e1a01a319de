package pushdown_test

import (
	"context"
	"errors"
	"sync"
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

// TestCrashInFlight: records journaled in flight when the process died
// come back from the state as failures of unknown outcome; the table
// flagged them before they were sent, so the next plan retries them.
func TestCrashInFlight(t *testing.T) {
	ctx := context.Background()
	f := pgCrashSetup(t, "(1, 'a'), (2, 'b'), (3, 'c')", "crash", config.ModeInsert, config.DeleteNothing)
	s, src, cols, target, store := f.s, f.src, f.cols, f.target, f.store
	dir := t.TempDir()
	st, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := pushdown.Diff(ctx, src, target, pushdown.Input{Sync: s, Columns: cols, Failures: state.FailureIndex{}})
	if err != nil {
		t.Fatal(err)
	}
	w, err := st.Begin(s.Name, false)
	if err != nil {
		t.Fatal(err)
	}
	tx := store.Begin(w, s.Name, res.Plan.Warehouse)
	// Key 1 accepted and checkpointed; keys 2 and 3 sent, then the
	// process dies.
	c := res.Plan.Changes[0]
	tx.Accept(c.Key, c.Hash, c.After)
	if err := tx.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if err := tx.InFlight([]state.InFlightRecord{{Key: "2", Operation: "insert"}, {Key: "3", Operation: "insert"}}); err != nil {
		t.Fatal(err)
	}

	st, err = state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	failures, err := st.LoadFailures(s.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(failures) != 2 {
		t.Fatalf("the state recovered %d failures, want the 2 records in flight", len(failures))
	}
	res, _, err = pushdown.Diff(ctx, src, target, pushdown.Input{Sync: s, Columns: cols, Failures: failures})
	if err != nil {
		t.Fatalf("plan after the crash: %v", err)
	}
	var got []string
	for _, c := range res.Plan.Changes {
		got = append(got, string(c.Action)+" "+c.Key+" "+string(c.Op))
	}
	want := []string{"retry 2 upsert", "retry 3 upsert"}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] || res.Plan.Unchanged != 1 {
		t.Fatalf("plan after the crash: %v (unchanged %d), want %v and key 1 unchanged", got, res.Plan.Unchanged, want)
	}
}

// crashAtCheckpoint is a state transaction whose process dies when it
// checkpoints: what it recorded since the last checkpoint is lost.
type crashAtCheckpoint struct{ state.Tx }

func (crashAtCheckpoint) Checkpoint() error { return errors.New("crash") }

// TestCrashBetweenTableAndState: the table took a record's accept and the
// process died before the state recorded it; the state recovers the
// record as in flight, and the next plan retries it rather than refusing
// to plan (the table keeps outcomes flagged until the state has them).
func TestCrashBetweenTableAndState(t *testing.T) {
	ctx := context.Background()
	f := pgCrashSetup(t, "(1, 'a'), (2, 'b'), (3, 'c')", "crash2", config.ModeUpsert, config.DeleteDelete)
	s, src, cols, target, store := f.s, f.src, f.cols, f.target, f.store
	dir := t.TempDir()
	plan := func() *reconcile.SyncPlan {
		t.Helper()
		st, err := state.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		failures, err := st.LoadFailures(s.Name)
		if err != nil {
			t.Fatal(err)
		}
		res, _, err := pushdown.Diff(ctx, src, target, pushdown.Input{Sync: s, Columns: cols, Failures: failures})
		if err != nil {
			t.Fatalf("plan: %v", err)
		}
		return res.Plan
	}
	begin := func() state.Tx {
		t.Helper()
		st, err := state.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		w, err := st.Begin(s.Name, false)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	sp := plan()
	tx := store.Begin(begin(), s.Name, sp.Warehouse)
	for _, c := range sp.Changes {
		tx.Accept(c.Key, c.Hash, c.After)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	testdb.PostgresExec(t, f.conn, "UPDATE "+f.tbl+" SET v = 'B' WHERE id = 2", "DELETE FROM "+f.tbl+" WHERE id = 3")
	sp = plan()
	if sp.Change != 1 || sp.Remove != 1 {
		t.Fatalf("plan after the update: %d changes, %d removals; want 1 and 1", sp.Change, sp.Remove)
	}
	tx = store.Begin(crashAtCheckpoint{begin()}, s.Name, sp.Warehouse)
	if err := tx.InFlight([]state.InFlightRecord{{Key: "2", Operation: "upsert"}, {Key: "3", Operation: "delete"}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range sp.Changes {
		if c.Op == "delete" {
			tx.Forget(c.Key)
		} else {
			tx.Accept(c.Key, c.Hash, c.After)
		}
	}
	if err := tx.Checkpoint(); err == nil {
		t.Fatal("the checkpoint did not crash")
	}

	sp = plan()
	var got []string
	for _, c := range sp.Changes {
		got = append(got, string(c.Action)+" "+c.Key+" "+string(c.Op))
	}
	if len(got) != 2 || got[0] != "retry 2 upsert" || got[1] != "retry 3 delete" {
		t.Fatalf("plan after the crash: %v, want [retry 2 upsert, retry 3 delete]", got)
	}
}

// holdForget is a state transaction whose first Forget waits for release,
// having closed entered: what the state has not recorded yet while a
// checkpoint runs on another goroutine (apply announces and checkpoints in
// the background while answers are recorded).
type holdForget struct {
	state.Tx
	entered, release chan struct{}
	once             sync.Once
}

func (h *holdForget) Forget(key string) {
	h.once.Do(func() {
		close(h.entered)
		<-h.release
	})
	h.Tx.Forget(key)
}

// TestAcceptDuringCheckpoint: a checkpoint that runs while an accept is
// being recorded must not settle the accept in the table before the state
// has it. Settled too early, a crash left the state with the record in
// flight and the table with no flag: the next plan refused to run until
// reset-cdc ("out of step").
func TestAcceptDuringCheckpoint(t *testing.T) {
	ctx := context.Background()
	f := pgCrashSetup(t, "(1, 'a'), (2, 'b')", "race", config.ModeUpsert, config.DeleteDelete)
	s, src, cols, target, store := f.s, f.src, f.cols, f.target, f.store
	dir := t.TempDir()
	st, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	plan := func() *reconcile.SyncPlan {
		t.Helper()
		res, _, err := pushdown.Diff(ctx, src, target, pushdown.Input{Sync: s, Columns: cols, Failures: state.FailureIndex{}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Plan
	}
	apply(t, ctx, st, store, plan(), acceptAll{}, destination0())
	testdb.PostgresExec(t, f.conn, "UPDATE "+f.tbl+" SET v = v || '2'")
	sp := plan()
	w, err := st.Begin(s.Name, false)
	if err != nil {
		t.Fatal(err)
	}
	inner := &holdForget{Tx: w, entered: make(chan struct{}), release: make(chan struct{})}
	tx := store.Begin(inner, s.Name, sp.Warehouse)
	if err := tx.InFlight([]state.InFlightRecord{{Key: "1", Operation: "upsert"}, {Key: "2", Operation: "upsert"}}); err != nil {
		t.Fatal(err)
	}
	c := sp.Changes[0]
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		tx.Accept(c.Key, c.Hash, c.After)
	}()
	<-inner.entered
	if err := tx.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	// The process dies here: the state is what its last checkpoint wrote.
	st2, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	failures, err := st2.LoadFailures(s.Name)
	if err != nil {
		t.Fatal(err)
	}
	res2, _, err := pushdown.Diff(ctx, src, target, pushdown.Input{Sync: s, Columns: cols, Failures: failures})
	close(inner.release)
	<-accepted
	tx.Abort()
	if err != nil {
		t.Fatalf("plan after a crash following a checkpoint taken during an accept: %v", err)
	}
	if res2.Plan.Retry != len(failures) {
		t.Fatalf("plan after the crash retries %d records, want the %d the state holds in flight", res2.Plan.Retry, len(failures))
	}
}

// pgCrashSetup makes a PostgreSQL table (id integer, v text) holding rows
// (an SQL VALUES list), a sync of it named name with mode and delete
// behaviour (v mapped), the source and its columns, and a warehouse CDC
// store in a schema of its own, all closed and dropped when the test ends.
func pgCrashSetup(t *testing.T, rows, name, mode, del string) pgCrash {
	t.Helper()
	ctx := context.Background()
	conn := testdb.Postgres(t)
	tbl := testdb.PostgresTable(t, conn, "id integer, v text")
	cdcSchema := testdb.Name("bfcdc")
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+cdcSchema+" CASCADE") })
	testdb.PostgresExec(t, conn, "INSERT INTO "+tbl+" VALUES "+rows)
	query := "SELECT id, v FROM " + tbl
	s := &config.Sync{Name: name, Object: "o", Key: "id", Mode: mode, DeleteBehavior: del,
		Model: &config.Model{Name: "m", Query: query, PrimaryKey: []string{"id"}}, Destination: &config.Destination{Name: "d"},
		MaxRemovals: config.Limit{Percent: true, Fraction: 1}, Mapping: []config.Field{{Field: "v", Column: "v"}}}
	src, err := engine.OpenPostgres(ctx, testdb.PostgresDSN, engine.LiveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	cols, err := src.Schema(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	target := pushdown.Target{Dialect: pushdown.Postgres, Schema: cdcSchema, DSN: testdb.PostgresDSN}
	store, err := pushdown.Open(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return pgCrash{s: s, src: src, cols: cols, target: target, store: store, conn: conn, tbl: tbl}
}

// pgCrash is what pgCrashSetup made: conn is a session on the database,
// tbl the table's name.
type pgCrash struct {
	s      *config.Sync
	src    engine.Source
	cols   []schema.Column
	target pushdown.Target
	store  *pushdown.Store
	conn   *pgx.Conn
	tbl    string
}
