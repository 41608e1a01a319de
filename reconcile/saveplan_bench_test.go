package reconcile

import (
	"context"
	"testing"

	"github.com/backflowhq/backflow/state"
)

// BenchmarkSavePlan writes a spilled plan of 300,000 adds of 8 columns as
// `plan --out` does (every chunk compressed), to a writer that keeps
// nothing: the saved plan's encoding and compression, without the disk.
//
//	go test -run '^$' -bench SavePlan -benchtime 3x ./reconcile/
func BenchmarkSavePlan(b *testing.B) {
	const n = 300_000
	s, cols, rows := benchPeople(n)
	res, err := Diff(context.Background(), DiffInput{Sync: s, Rows: newRows(cols, rows...), Snapshot: newMemSnapshot(cols[1:], nil), Failures: state.FailureIndex{}, SpillDir: b.TempDir()})
	if err != nil || !res.Plan.Spilled() || res.Plan.Add != n {
		b.Fatalf("spilled plan of %d adds: %v", n, err)
	}
	p := &Plan{FormatVersion: FormatVersion, Syncs: []*SyncPlan{res.Plan}}
	var size int64
	b.ReportAllocs()
	for b.Loop() {
		var w byteCounter
		if err := p.write(&w); err != nil {
			b.Fatal(err)
		}
		size = w.n
	}
	b.ReportMetric(float64(size)/n, "B/change")
}

type byteCounter struct{ n int64 }

func (c *byteCounter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}
