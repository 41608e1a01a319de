package destination_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/backflowhq/backflow/destination"
)

// The drivers that say they take concurrent writes do: 16 batches written
// from 16 goroutines at once all land (run with -race; PostgreSQL's own
// test is in pgbulk_test.go).
func TestMySQLTakesConcurrentWrites(t *testing.T) {
	h := mysqlHarness(t)
	table, d := contactsDest(t, h)
	if _, ok := d.(destination.ConcurrentWriter); !ok {
		t.Fatal("the mysql driver does not take concurrent writes")
	}
	if err := d.(destination.Preparer).Prepare(context.Background(), table, "id", []string{"email", "name"}); err != nil {
		t.Fatal(err)
	}
	writeAtOnce(t, d, table, 16, 10, func(int) bool { return false })
	if got := h.rows(t, table); len(got) != 160 {
		t.Fatalf("%d rows, want 160", len(got))
	}
}

// The SQLite writer holds one connection: it takes one request at a time,
// which reconcile and project honour.
func TestSQLiteDoesNotClaimConcurrentWrites(t *testing.T) {
	if _, ok := sqliteHarness(t).open(t, 0, "").(destination.ConcurrentWriter); ok {
		t.Error("sqlite claims concurrent writes on one connection")
	}
}

// writeAtOnce makes writers Writes of per new contacts each to table at
// once, the records of writer g new to backflow when isNew(g), and checks
// every one is accepted whole.
func writeAtOnce(t *testing.T, d destination.Destination, table string, writers, per int, isNew func(g int) bool) {
	t.Helper()
	var wg sync.WaitGroup
	outs := make([]destination.Outcome, writers)
	for g := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var recs []destination.Record
			for i := range per {
				id := int64(g*per + i + 1)
				r := contact(id, destination.OpUpsert, fmt.Sprintf("u%d@x", id), "N")
				r.New = isNew(g)
				recs = append(recs, r)
			}
			outs[g] = d.Write(context.Background(), batchFor(table, recs...))
		}()
	}
	wg.Wait()
	for _, o := range outs {
		mustAccept(t, o, per)
	}
}
