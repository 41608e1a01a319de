package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
)

// crowdDest takes concurrent writes, and answers a request only once want
// requests are out at once (or the last of the apply's total came): a
// request left alone for long is refused as fatal, which halts the apply.
type crowdDest struct {
	*poisonDest
	want, total int
	mu          sync.Mutex
	out         int
	arrived     int
	most        int
	alone       int
	crowd       chan struct{}
}

func (d *crowdDest) ConcurrentWrites() {}

func (d *crowdDest) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	d.mu.Lock()
	d.out++
	d.arrived++
	d.most = max(d.most, d.out)
	ch := d.crowd
	if d.out >= d.want || d.arrived == d.total {
		close(ch)
		d.crowd = make(chan struct{})
	}
	d.mu.Unlock()
	var ok bool
	select {
	case <-ch:
		ok = true
	case <-time.After(5 * time.Second): // a guard: the others never came
	}
	d.mu.Lock()
	d.out--
	if !ok {
		d.alone++
	}
	d.mu.Unlock()
	if !ok {
		return destination.Fatal(errors.New("left alone in flight"))
	}
	return d.poisonDest.Write(ctx, b)
}

// A streamed apply keeps max_in_flight requests out across its windows:
// the requests of the next window go out while the last ones of the window
// before are answered, rather than after (which drained the pipeline at
// every window: a quarter of an apply-postgres with 4 in flight idle).
// Here every window is one batch, and each request is answered only once
// four are out together.
func TestStreamedApplyKeepsRequestsInFlightAcrossWindows(t *testing.T) {
	const rows, batch = 400, 10
	s := testSync("upsert", "delete")
	var in [][]any
	for k := range rows {
		in = append(in, []any{int64(k), fmt.Sprintf("u%d@x", k), "n"})
	}
	var res *DiffResult
	var err error
	withSpillAfter(t, 0, func() {
		res, err = Diff(context.Background(), DiffInput{Sync: s, Rows: newRows([]string{"id", "email", "name"}, in...), Snapshot: newMemSnapshot(nil, nil), SpillDir: t.TempDir()})
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Plan.Spilled() {
		t.Fatal("the plan was not spilled")
	}
	oldW := maxWindow
	maxWindow = batch // a window a batch
	defer func() { maxWindow = oldW }()
	d := &crowdDest{poisonDest: newPoisonDest(), want: 4, total: rows / batch, crowd: make(chan struct{})}
	rec := newRecorder()
	opts := ApplyOptions{Policy: Policy{BatchSize: batch, MaxAttempts: 2, MaxInFlight: 4}, Threshold: 0, Sleep: noSleep}
	got, err := ApplyPlan(context.Background(), res.Plan, d, rec, opts, -1)
	if err != nil {
		t.Fatal(err)
	}
	if d.alone > 0 || got.Halted != nil || got.Counts.Accepted != rows || len(rec.accepted) != rows {
		t.Fatalf("%d requests left alone, halted %v, accepted %d (recorded %d) of %d", d.alone, got.Halted, got.Counts.Accepted, len(rec.accepted), rows)
	}
	if d.most != 4 || got.Requests != rows/batch || got.Unsettled() != 0 {
		t.Fatalf("at most %d in flight, %d requests, %d unsettled; want 4, %d, 0", d.most, got.Requests, got.Unsettled(), rows/batch)
	}
}
