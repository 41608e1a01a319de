package reconcile

import (
	"path/filepath"
	"testing"
)

// BenchmarkSavePlan writes a spilled plan of 300,000 adds of 8 columns as
// `plan --out` does (every chunk compressed), to a writer that keeps
// nothing: the saved plan's encoding and compression, without the disk.
//
//	go test -run '^$' -bench SavePlan -benchtime 3x ./reconcile/
func BenchmarkSavePlan(b *testing.B) {
	const n = 300_000
	p := spilledAdds(b, n)
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
	p := spilledAdds(b, n)
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
