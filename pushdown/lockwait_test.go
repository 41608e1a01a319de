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
			tbl, cdc := testdb.Name("bflk"), testdb.Name("bfcdcl")
			srv.exec(t, "CREATE TABLE "+tbl+" (id integer, v integer)", "INSERT INTO "+tbl+" VALUES (1, 1), (2, 2)")
			t.Cleanup(func() { srv.exec(t, "DROP TABLE IF EXISTS "+tbl); srv.drop(cdc) })
			src, err := srv.open(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			query := "SELECT id, v FROM " + tbl
			s := &config.Sync{Name: "lk", Object: "obj", Key: "ext", Mode: config.ModeUpsert, DeleteBehavior: config.DeleteNothing,
				Model: &config.Model{Name: "m", Query: query, PrimaryKey: []string{"id"}}, Destination: &config.Destination{Name: "dest"},
				MaxRemovals: config.Limit{Percent: true, Fraction: 1}, Mapping: []config.Field{{Field: "v", Column: "v"}}}
			cols, err := src.Schema(ctx, query)
			if err != nil {
				t.Fatal(err)
			}
			_, wh, target, store := openStores(ctx, t, srv, cdc)
			plan := func() *reconcile.SyncPlan {
				got, _, err := pushdown.Diff(ctx, src, target, pushdown.Input{Sync: s, Columns: cols, Failures: state.FailureIndex{}})
				if err != nil {
					t.Fatal(err)
				}
				return got.Plan
			}
			apply(t, ctx, wh, store, plan(), acceptAll{}, destination0())
			srv.exec(t, "UPDATE "+tbl+" SET v = 10")
			sp := plan()

			unlock := lockTable(t, srv, cdc+".cdc_rows")
			defer unlock()
			w, err := wh.Begin(s.Name, false)
			if err != nil {
				t.Fatal(err)
			}
			tx := store.Begin(w, s.Name, sp.Warehouse)
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
