package pushdown_test

import (
	"context"
	"strings"
	"testing"
	"time"

	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/pushdown"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/state"
)

// TestApplyLockWaitIsBounded: another session holding a lock on the
// snapshot tables (a LOCK TABLE left open) makes apply fail after the
// lock wait, saying so, rather than hang until the write's 10 minutes.
func TestApplyLockWaitIsBounded(t *testing.T) {
	defer pushdown.SetLockWait(time.Second)()
	for _, srv := range []server{postgresServer(t), mariadbServer(t)} {
		t.Run(string(srv.dialect), func(t *testing.T) {
			ctx := context.Background()
			ls := newLockSync(ctx, t, srv, "lk", "lk")
			ls.synced(ctx, t)
			srv.exec(t, "UPDATE "+ls.tbl+" SET v = 10")
			sp, err := ls.plan(ctx)
			if err != nil {
				t.Fatal(err)
			}

			unlock := lockTable(t, srv, ls.cdc+".cdc_rows")
			defer unlock()
			w, err := ls.wh.Begin(ls.s.Name, false)
			if err != nil {
				t.Fatal(err)
			}
			tx := ls.store.Begin(w, ls.s.Name, sp.Warehouse)
			start := time.Now()
			_, err = reconcile.ApplySync(ctx, sp, acceptAll{}, tx, reconcile.ApplyOptions{Policy: destination0(), Threshold: 1,
				Sleep: func(context.Context, time.Duration) error { return nil }})
			if err == nil {
				err = tx.Commit()
			} else {
				tx.Abort()
			}
			if err == nil || !strings.Contains(err.Error(), "held a lock on the snapshot tables") {
				t.Fatalf("apply with the snapshot table locked: %v", err)
			}
			if d := time.Since(start); d > 30*time.Second {
				t.Fatalf("apply gave up after %v, want about the 1s lock wait", d)
			}
		})
	}
}

// lockSync is a one-sync project with warehouse CDC over a table of two
// rows, its snapshot schema in the same server, with the model query's
// source open: what the lock-wait tests plan and apply.
type lockSync struct {
	tbl, cdc string
	s        *config.Sync
	wh       *state.Store
	store    *pushdown.Store
	plan     func(ctx context.Context) (*reconcile.SyncPlan, error)
}

// newLockSync creates the table (named from prefix) and opens the rest,
// dropped and closed at cleanup.
func newLockSync(ctx context.Context, t *testing.T, srv server, prefix, name string) *lockSync {
	t.Helper()
	ls := &lockSync{tbl: testdb.Name("bf" + prefix), cdc: testdb.Name("bfcdc" + prefix)}
	srv.exec(t, "CREATE TABLE "+ls.tbl+" (id integer, v integer)", "INSERT INTO "+ls.tbl+" VALUES (1, 1), (2, 2)")
	t.Cleanup(func() { srv.exec(t, "DROP TABLE IF EXISTS "+ls.tbl); srv.drop(ls.cdc) })
	src, err := srv.open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	query := "SELECT id, v FROM " + ls.tbl
	ls.s = &config.Sync{Name: name, Object: "obj", Key: "ext", Mode: config.ModeUpsert, DeleteBehavior: config.DeleteNothing,
		Model: &config.Model{Name: "m", Query: query, PrimaryKey: []string{"id"}}, Destination: &config.Destination{Name: "dest"},
		MaxRemovals: config.Limit{Percent: true, Fraction: 1}, Mapping: []config.Field{{Field: "v", Column: "v"}}}
	cols, err := src.Schema(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	var target pushdown.Target
	_, ls.wh, target, ls.store = openStores(ctx, t, srv, ls.cdc)
	ls.plan = func(ctx context.Context) (*reconcile.SyncPlan, error) {
		got, _, err := pushdown.Diff(ctx, src, target, pushdown.Input{Sync: ls.s, Columns: cols, Failures: state.FailureIndex{}, Lineage: target.Owner})
		if err != nil {
			return nil, err
		}
		return got.Plan, nil
	}
	return ls
}

// synced plans and applies the sync once, every record accepted.
func (ls *lockSync) synced(ctx context.Context, t *testing.T) {
	t.Helper()
	sp, err := ls.plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, ctx, ls.wh, ls.store, sp, acceptAll{}, destination0())
}

// lockTable locks table from a session of its own until unlock.
func lockTable(t *testing.T, srv server, table string) (unlock func()) {
	t.Helper()
	ctx := context.Background()
	if srv.dialect == pushdown.Postgres {
		conn := testdb.Postgres(t)
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		return func() { tx.Rollback(ctx) }
	}
	conn, err := testdb.MariaDB(t).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "LOCK TABLES "+table+" WRITE"); err != nil {
		t.Fatal(err)
	}
	return func() { conn.ExecContext(ctx, "UNLOCK TABLES"); conn.Close() }
}

// TestPlanLockWaitIsBounded: another session holding a lock on one of the
// snapshot tables makes the warehouse plan fail after the lock wait,
// naming the table and how to find the session, rather than wait until
// the query timeout (10 minutes here) and then say nothing of a lock.
func TestPlanLockWaitIsBounded(t *testing.T) {
	defer pushdown.SetLockWait(time.Second)()
	for _, srv := range []server{postgresServer(t), mariadbServer(t)} {
		t.Run(string(srv.dialect), func(t *testing.T) {
			ctx := context.Background()
			ls := newLockSync(ctx, t, srv, "pk", "pk")
			ls.synced(ctx, t)
			cdc, plan := ls.cdc, ls.plan

			hint := "pg_locks"
			if srv.dialect == pushdown.MySQL {
				hint = "SHOW PROCESSLIST"
			}
			for _, table := range []string{"cdc_syncs", "cdc_rows", "cdc_vals"} {
				t.Run(table, func(t *testing.T) {
					unlock := lockTable(t, srv, cdc+"."+table)
					defer unlock()
					// Far below the query timeout: a plan still waiting
					// then fails the test instead of hanging it.
					ctx, cancel := context.WithTimeout(ctx, time.Minute)
					defer cancel()
					start := time.Now()
					_, err := plan(ctx)
					took := time.Since(start)
					t.Logf("plan failed after %v: %v", took, err)
					if err == nil {
						t.Fatal("plan with a snapshot table locked succeeded")
					}
					for _, want := range []string{cdc, table, "another session", hint, "plan again"} {
						if !strings.Contains(err.Error(), want) {
							t.Errorf("the error does not say %q: %v", want, err)
						}
					}
					if took > 20*time.Second {
						t.Errorf("plan gave up after %v, want about the 1s lock wait", took)
					}
				})
			}
			// Released, the plan goes on.
			if _, err := plan(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestPlanModelLockWaitsAsBefore: the lock wait bounds only the snapshot
// tables. A plan whose model table another session locks (a table swap in
// the warehouse) waits past it, and goes on once the lock is released.
func TestPlanModelLockWaitsAsBefore(t *testing.T) {
	defer pushdown.SetLockWait(time.Second)()
	for _, srv := range []server{postgresServer(t), mariadbServer(t)} {
		t.Run(string(srv.dialect), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			ls := newLockSync(ctx, t, srv, "pm", "pm")
			ls.synced(ctx, t)
			tbl := ls.tbl
			srv.exec(t, "UPDATE "+tbl+" SET v = 10 WHERE id = 1")

			unlock := lockTable(t, srv, tbl)
			type result struct {
				sp  *reconcile.SyncPlan
				err error
			}
			done := make(chan result, 1)
			go func() { sp, err := ls.plan(ctx); done <- result{sp, err} }()
			// Release the model table once the plan has waited for it
			// twice the lock wait.
			waited := waitedFor(t, srv, tbl)
			for waited() < 2 {
				select {
				case r := <-done:
					unlock()
					t.Fatalf("the plan ended while its model table was locked: %v", r.err)
				case <-ctx.Done():
					unlock()
					t.Fatal("the plan was never seen waiting for its model table")
				case <-time.After(50 * time.Millisecond):
				}
			}
			unlock()
			r := <-done
			if r.err != nil {
				t.Fatalf("plan after waiting for its model table: %v", r.err)
			}
			if len(r.sp.Changes) != 1 {
				t.Fatalf("plan has %d changes, want the one update", len(r.sp.Changes))
			}
		})
	}
}

// waitedFor returns how many seconds a session has waited for a lock on
// table (-1: none waits), asked on a connection of its own.
func waitedFor(t *testing.T, srv server, table string) func() float64 {
	t.Helper()
	if srv.dialect == pushdown.Postgres {
		conn := testdb.Postgres(t)
		q := "SELECT COALESCE(MAX(EXTRACT(EPOCH FROM clock_timestamp() - a.query_start)), -1)::float8 FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE l.relation = '" + table + "'::regclass AND NOT l.granted"
		return func() float64 {
			var v float64
			if err := conn.QueryRow(context.Background(), q).Scan(&v); err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	db := testdb.MariaDB(t)
	q := "SELECT COALESCE(MAX(TIME), -1) FROM information_schema.processlist WHERE STATE = 'Waiting for table metadata lock' AND INFO LIKE '%" + table + "%'"
	return func() float64 {
		var v float64
		if err := db.QueryRow(q).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// TestPlanLockWaitIsBoundedSplit is TestPlanLockWaitIsBounded with
// PostgreSQL's statement split: the first half's transaction waits for the
// locks as the whole statement's does.
func TestPlanLockWaitIsBoundedSplit(t *testing.T) {
	defer pushdown.ForceSplit(true)()
	TestPlanLockWaitIsBounded(t)
}
