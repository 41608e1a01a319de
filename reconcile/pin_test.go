package reconcile

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/state"
)

// keyRecorder keeps what a state writer keeps in memory during an apply:
// the failure entries, not the accepted records (written out).
type keyRecorder struct {
	failed   map[string]state.Failure
	accepted int
}

func (m *keyRecorder) Accept(string, uint64, map[string]any) { m.accepted++ }
func (m *keyRecorder) Forget(string)                         {}
func (m *keyRecorder) Fail(f state.Failure)                  { m.failed[f.Key] = f }
func (m *keyRecorder) Checkpoint() error                     { return nil }
func (m *keyRecorder) Unsent([]string)                       {}
func (m *keyRecorder) InFlight([]state.InFlightRecord) error { return nil }

// keyDest rejects the records of poisoned keys and keeps nothing.
type keyDest struct{ poison map[string]bool }

func (d keyDest) Close() error { return nil }
func (d keyDest) Write(_ context.Context, b *destination.Batch) destination.Outcome {
	res := make([]destination.Result, len(b.Records))
	for i, r := range b.Records {
		if d.poison[r.Key] {
			res[i].Err = errors.New("refused")
		}
	}
	return destination.Outcome{Results: res}
}

// A streamed apply holds a window of the plan, whatever it rejects: the
// keys it keeps (failure entries, the row log's records) are not slices
// of the chunks they were decoded from, which would keep every chunk
// holding a rejected record in memory, values and all.
func TestStreamedApplyKeepsNoChunkOfItsRejections(t *testing.T) {
	const chunks = 48
	s := testSync("upsert", "delete")
	wide := strings.Repeat("w", 1000)
	var rows [][]any
	poison := map[string]bool{}
	for k := 0; k < chunks*spillChunkSize; k++ {
		rows = append(rows, []any{int64(k), fmt.Sprintf("u%d@x", k), wide})
		if k%spillChunkSize == 7 {
			poison[fmt.Sprint(k)] = true
		}
	}
	var res *DiffResult
	var err error
	withSpillAfter(t, 0, func() {
		res, err = Diff(context.Background(), DiffInput{Sync: s, Rows: newRows(cols, rows...), Snapshot: newMemSnapshot(fields, nil), SpillDir: t.TempDir()})
	})
	if err != nil {
		t.Fatal(err)
	}
	rows = nil
	oldW := maxWindow
	maxWindow = 2 * spillChunkSize
	defer func() { maxWindow = oldW }()
	opts := ApplyOptions{Policy: Policy{BatchSize: 64, MaxAttempts: 1, SplitRetries: true}, Threshold: 1, Sleep: noSleep}
	for _, keep := range []int{10, -1} { // the row log: the default, and log_accepted = "all"
		rec := &keyRecorder{failed: map[string]state.Failure{}}
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		got, err := ApplyPlan(context.Background(), res.Plan, keyDest{poison}, rec, opts, keep)
		if err != nil {
			t.Fatal(err)
		}
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got.Counts.Rejected != chunks || len(rec.failed) != chunks {
			t.Fatalf("rejected %d, failure entries %d; want %d", got.Counts.Rejected, len(rec.failed), chunks)
		}
		// The plan's chunks hold about 1 MB each: kept, they would be about
		// chunks MB; one window is 2 MB.
		if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 16<<20 {
			t.Fatalf("keeping %d accepted: the heap grew by %d MB over the apply, with %d rejections kept", keep, grown>>20, chunks)
		}
		runtime.KeepAlive(got)
		runtime.KeepAlive(rec)
	}
}
