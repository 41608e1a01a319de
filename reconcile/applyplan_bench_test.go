package reconcile

import (
	"context"
	"testing"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/state"
)

// readingDest accepts everything after reading each record's values the
// way a SQL destination does (Record.Values when it reads them, else
// Record.Fields by field): an apply's own cost, without a database.
type readingDest struct {
	values bool
	sum    int
}

func (d *readingDest) Close() error      { return nil }
func (d *readingDest) ReadsValues() bool { return d.values }

func (d *readingDest) Write(_ context.Context, b *destination.Batch) destination.Outcome {
	for _, r := range b.Records {
		if r.Fields == nil {
			for _, v := range r.Values {
				if v != nil {
					d.sum++
				}
			}
			continue
		}
		for _, f := range b.Fields {
			if r.Fields[f] != nil {
				d.sum++
			}
		}
	}
	return destination.AllAccepted(len(b.Records))
}

// BenchmarkApplySpilledPlan applies a spilled plan of 300,000 adds of 8
// columns (batches of 1,000, one request in flight) to a destination
// that reads every value and answers at once, the local state writer
// recording: what backflow spends per record between the plan on disk and
// the destination, whether the destination reads values in order or by
// field name.
//
//	go test -run '^$' -bench ApplySpilledPlan -benchtime 5x -benchmem ./reconcile/
func BenchmarkApplySpilledPlan(b *testing.B) {
	const n = 300_000
	s, cols, rows := benchPeople(n)
	res, err := Diff(context.Background(), DiffInput{Sync: s, Rows: newRows(cols, rows...), Snapshot: newMemSnapshot(cols[1:], nil), Failures: state.FailureIndex{}, SpillDir: b.TempDir()})
	if err != nil || !res.Plan.Spilled() || res.Plan.Add != n {
		b.Fatalf("spilled plan of %d adds: %v", n, err)
	}
	for _, values := range []bool{false, true} {
		b.Run(map[bool]string{false: "by-name", true: "in-order"}[values], func(b *testing.B) {
			for b.Loop() {
				_, w := beginSync(b)
				dest := &readingDest{values: values}
				r, err := ApplyPlan(context.Background(), res.Plan, dest, w, ApplyOptions{Policy: Policy{BatchSize: 1000, MaxAttempts: 1}, Sleep: noSleep}, 0)
				if err != nil || r.Counts.Accepted != n || dest.sum == 0 {
					b.Fatalf("%v: %+v", err, r)
				}
				if err := w.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
