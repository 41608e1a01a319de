package reconcile

import (
	"context"
	"path/filepath"
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

// BenchmarkReadSavedPlan reads back the saved plan of BenchmarkSavePlan
// and goes through its changes, as `apply PLANFILE` and `show` do: the
// chunks' checks and decompression, and the changes' decoding.
//
//	go test -run '^$' -bench ReadSavedPlan -benchtime 3x -benchmem ./reconcile/
func BenchmarkReadSavedPlan(b *testing.B) {
	const n = 300_000
	s, cols, rows := benchPeople(n)
	res, err := Diff(context.Background(), DiffInput{Sync: s, Rows: newRows(cols, rows...), Snapshot: newMemSnapshot(cols[1:], nil), Failures: state.FailureIndex{}, SpillDir: b.TempDir()})
	if err != nil || !res.Plan.Spilled() || res.Plan.Add != n {
		b.Fatalf("spilled plan of %d adds: %v", n, err)
	}
	p := &Plan{FormatVersion: FormatVersion, Syncs: []*SyncPlan{res.Plan}}
	path := filepath.Join(b.TempDir(), "p.bfplan")
	if err := p.WriteFile(path); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		q, err := ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		if err := q.Syncs[0].Each(func(*Change) error { got++; return nil }); err != nil || got != n {
			b.Fatalf("read %d changes: %v", got, err)
		}
		q.Close()
	}
}
