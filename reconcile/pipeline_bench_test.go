package reconcile

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/state"
)

// sleepDest takes d per request and writes everything: a destination whose
// work happens elsewhere (a remote database), so that what an apply adds
// between requests shows.
type sleepDest struct{ d time.Duration }

func (s sleepDest) Close() error { return nil }

func (s sleepDest) Write(_ context.Context, b *destination.Batch) destination.Outcome {
	time.Sleep(s.d)
	return destination.AllAccepted(len(b.Records))
}

// BenchmarkApplyPipeline applies 100 batches of 1,000 records, one request
// in flight, to a destination taking 2 ms per request, with the local state
// writer recording: the plan held in memory, and spilled (streamed by
// ApplyPlan, its windows read ahead). vs_ideal is 100 × 2 ms over the
// apply's wall time, and bare_vs_ideal the same for a loop of 100 sleeps of
// 2 ms measured just before (what the timer allows on this machine).
//
//	go test -run '^$' -bench ApplyPipeline -benchtime 5x ./reconcile/
func BenchmarkApplyPipeline(b *testing.B) {
	const batches, per = 100, 2 * time.Millisecond
	whole := upsertPlan(batches * 1000)
	rows := make([][]any, 0, batches*1000)
	for i := 0; i < batches*1000; i++ {
		rows = append(rows, []any{int64(i), fmt.Sprintf("u%d@x", i), "Name"})
	}
	old := SpillAfter
	SpillAfter = 0
	res, err := Diff(context.Background(), DiffInput{Sync: testSync("upsert", "delete"), Rows: newRows(cols, rows...), Snapshot: newMemSnapshot(fields, nil), Failures: state.FailureIndex{}, SpillDir: b.TempDir()})
	SpillAfter = old
	if err != nil || !res.Plan.Spilled() {
		b.Fatalf("spilled plan: %v", err)
	}
	spilled := res.Plan
	for _, tc := range []struct {
		name  string
		apply func(w *state.SyncWriter) (*SyncResult, error)
	}{
		{"in-memory", func(w *state.SyncWriter) (*SyncResult, error) {
			return ApplySync(context.Background(), whole, sleepDest{per}, w, ApplyOptions{Policy: Policy{BatchSize: 1000, MaxAttempts: 1}, Sleep: noSleep})
		}},
		{"spilled", func(w *state.SyncWriter) (*SyncResult, error) {
			return ApplyPlan(context.Background(), spilled, sleepDest{per}, w, ApplyOptions{Policy: Policy{BatchSize: 1000, MaxAttempts: 1}, Sleep: noSleep}, 0)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var apply, bare time.Duration
			for b.Loop() {
				_, w := beginSync(b)
				t0 := time.Now()
				for range batches {
					time.Sleep(per)
				}
				bare += time.Since(t0)
				t0 = time.Now()
				res, err := tc.apply(w)
				if err != nil {
					b.Fatal(err)
				}
				apply += time.Since(t0)
				if res.Requests != batches || res.Counts.Accepted != batches*1000 {
					b.Fatalf("%d requests, %d accepted", res.Requests, res.Counts.Accepted)
				}
				w.Abort()
			}
			ideal := float64(batches*per) * float64(b.N)
			b.ReportMetric(ideal/float64(apply), "vs_ideal")
			b.ReportMetric(ideal/float64(bare), "bare_vs_ideal")
		})
	}
}
