package pushdown_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/pushdown"
	"github.com/backflowhq/backflow/reconcile"
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
