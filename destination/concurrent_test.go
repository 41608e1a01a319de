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
// test is in pgcopy_test.go).
func TestMySQLTakesConcurrentWrites(t *testing.T) {
	h := mysqlHarness(t)
	table, d := contactsDest(t, h)
	if _, ok := d.(destination.ConcurrentWriter); !ok {
		t.Fatal("the mysql driver does not take concurrent writes")
	}
	if err := d.(destination.Preparer).Prepare(context.Background(), table, "id", []string{"email", "name"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	outs := make([]destination.Outcome, 16)
	for g := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var recs []destination.Record
			for i := range 10 {
				id := int64(g*10 + i + 1)
				recs = append(recs, contact(id, destination.OpUpsert, fmt.Sprintf("u%d@x", id), "N"))
			}
			outs[g] = d.Write(context.Background(), batchFor(table, recs...))
		}()
	}
	wg.Wait()
	for _, o := range outs {
		mustAccept(t, o, 10)
	}
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
