package pushdown_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/pushdown"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/state"
)

// TestStoresCreateTablesAtOnce: runners writing syncs of one schema at
// once (apply --parallelism, or several jobs sharing a database state)
// each create the snapshot tables if they are missing; all of them
// succeed. PostgreSQL's CREATE … IF NOT EXISTS of an object another
// session is creating fails on a unique index of its catalog: without the
// schema's lock, most rounds had a runner fail.
func TestStoresCreateTablesAtOnce(t *testing.T) {
	const runners, rounds = 4, 5
	for _, srv := range []server{postgresServer(t), mariadbServer(t)} {
		t.Run(string(srv.dialect), func(t *testing.T) {
			ctx := context.Background()
			for round := range rounds {
				cdc := testdb.Name("bfcdcc")
				t.Cleanup(func() { srv.drop(cdc) })
				target := pushdown.Target{Dialect: srv.dialect, Schema: cdc, DSN: srv.dsn}
				stores := make([]*pushdown.Store, runners)
				for i := range stores {
					s, err := pushdown.Open(ctx, target)
					if err != nil {
						t.Fatal(err)
					}
					defer s.Close()
					stores[i] = s
				}
				errs := make([]error, runners)
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i, s := range stores {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						name := fmt.Sprintf("s%d", i)
						errs[i] = s.Reset(ctx, &reconcile.SyncPlan{Name: name, Warehouse: &reconcile.WarehousePlan{}}, "fp")
					}()
				}
				close(start)
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("round %d: runner %d of %d creating the snapshot tables at once: %v", round+1, i+1, runners, err)
					}
				}
			}
		})
	}
}

// TestStoresApplySyncsAtOnce: runners applying different syncs of one
// schema at once (apply --parallelism, or several jobs) all commit. On
// MySQL, REPEATABLE READ's gap locks (the owner check of a sync with no
// cdc_syncs row yet, taken FOR UPDATE) made their inserts deadlock: most
// rounds had a runner fail after the destination had taken its records.
func TestStoresApplySyncsAtOnce(t *testing.T) {
	const runners, rounds, rows = 6, 4, 200
	for _, srv := range []server{postgresServer(t), mariadbServer(t)} {
		t.Run(string(srv.dialect), func(t *testing.T) {
			ctx := context.Background()
			tbl := testdb.Name("bfpar")
			srv.exec(t, "CREATE TABLE "+tbl+" (id integer, v integer)")
			t.Cleanup(func() { srv.exec(t, "DROP TABLE IF EXISTS "+tbl) })
			var values []string
			for i := range rows {
				values = append(values, fmt.Sprintf("(%d, %d)", i, i))
			}
			srv.exec(t, "INSERT INTO "+tbl+" VALUES "+strings.Join(values, ", "))
			src, err := srv.open(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			query := "SELECT id, v FROM " + tbl
			cols, err := src.Schema(ctx, query)
			if err != nil {
				t.Fatal(err)
			}
			for round := range rounds {
				cdc := testdb.Name("bfcdcp")
				t.Cleanup(func() { srv.drop(cdc) })
				target := pushdown.Target{Dialect: srv.dialect, Schema: cdc, DSN: srv.dsn, Owner: "0123456789abcdef"}
				type runner struct {
					st    *state.Store
					store *pushdown.Store
					plan  *reconcile.SyncPlan
				}
				rs := make([]runner, runners)
				for i := range rs {
					s := &config.Sync{Name: fmt.Sprintf("s%d", i), Object: "obj", Key: "ext", Mode: config.ModeUpsert, DeleteBehavior: config.DeleteNothing,
						Model: &config.Model{Name: "m", Query: query, PrimaryKey: []string{"id"}}, Destination: &config.Destination{Name: "dest"},
						MaxRemovals: config.Limit{Percent: true, Fraction: 1}, Mapping: []config.Field{{Field: "v", Column: "v"}}}
					got, _, err := pushdown.Diff(ctx, src, target, pushdown.Input{Sync: s, Columns: cols, Failures: state.FailureIndex{}, Lineage: target.Owner})
					if err != nil {
						t.Fatal(err)
					}
					st, err := state.Open(t.TempDir())
					if err != nil {
						t.Fatal(err)
					}
					store, err := pushdown.Open(ctx, target)
					if err != nil {
						t.Fatal(err)
					}
					defer store.Close()
					rs[i] = runner{st: st, store: store, plan: got.Plan}
				}
				errs := make([]error, runners)
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i, r := range rs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						w, err := r.st.Begin(r.plan.Name, false)
						if err != nil {
							errs[i] = err
							return
						}
						tx := r.store.Begin(w, r.plan.Name, r.plan.Warehouse)
						if _, err := reconcile.ApplySync(ctx, r.plan, acceptAll{}, tx, reconcile.ApplyOptions{Policy: destination0(), Threshold: 1,
							Sleep: func(context.Context, time.Duration) error { return nil }}); err != nil {
							tx.Abort()
							errs[i] = err
							return
						}
						errs[i] = tx.Commit()
					}()
				}
				close(start)
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("round %d: runner %d of %d applying its sync: %v", round+1, i+1, runners, err)
					}
				}
			}
		})
	}
}
