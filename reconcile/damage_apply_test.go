package reconcile

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// A spilled plan whose chunk is damaged while it is applied (read ahead in
// its own goroutine) stops the apply with the damage: the windows read
// before it are sent and recorded, nothing after it is, and no record is
// recorded accepted that the destination was not sent.
func TestApplyPlanStopsAtADamagedChunk(t *testing.T) {
	s := testSync("upsert", "delete")
	var rows [][]any
	for k := 0; k < 3000; k++ {
		rows = append(rows, []any{int64(k), fmt.Sprintf("u%d@x", k), "n"})
	}
	var res *DiffResult
	var err error
	withSpillAfter(t, 0, func() {
		res, err = Diff(context.Background(), DiffInput{Sync: s, Rows: newRows(cols, rows...), Snapshot: newMemSnapshot(fields, nil), SpillDir: t.TempDir()})
	})
	if err != nil {
		t.Fatal(err)
	}
	sf := res.Plan.spill
	adds := sf.streams[actionIndex(ActionAdd)].chunks
	if len(adds) != 3 {
		t.Fatalf("%d chunks of adds, want 3", len(adds))
	}
	if _, err := sf.f.WriteAt([]byte("damage"), adds[1].off+chunkHeader+100); err != nil {
		t.Fatal(err)
	}
	oldW := maxWindow
	maxWindow = 100
	defer func() { maxWindow = oldW }()
	d, rec := newPoisonDest(), newRecorder()
	opts := ApplyOptions{Policy: Policy{BatchSize: 10, MaxAttempts: 2}, Threshold: 1, Sleep: noSleep}
	got, err := ApplyPlan(context.Background(), res.Plan, d, rec, opts, -1)
	if !errors.Is(err, errDamagedChunk) {
		t.Fatalf("err = %v, want a damaged chunk", err)
	}
	// The whole windows before the damage: the first of firstBatches
	// batches, then maxWindow changes each.
	w0 := min(opts.Policy.BatchSize*firstBatches, maxWindow)
	first := w0 + (adds[0].count-w0)/maxWindow*maxWindow
	if got.Counts.Accepted != first || len(rec.accepted) != first || len(d.written) != first {
		t.Fatalf("accepted %d, recorded %d, written %d; want %d", got.Counts.Accepted, len(rec.accepted), len(d.written), first)
	}
	for k := range rec.inFlight {
		if _, ok := rec.accepted[k]; !ok {
			t.Fatalf("%s announced in flight, never answered", k)
		}
	}
	if got.Unsettled() != 3000-first {
		t.Fatalf("unsettled %d, want %d", got.Unsettled(), 3000-first)
	}
}
