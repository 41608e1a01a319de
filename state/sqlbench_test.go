package state

import (
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkBackendApply records the outcome of an apply of 100,000 records
// in batches of 100 — per batch InFlight (durable before the send), then
// the accepts and a Checkpoint — and commits, on each backend: the cost
// state adds to an apply (apply-ms). Then it loads the snapshot index
// (load-ms) and reads every value in no key order (values-ms), as a plan
// of many changes does.
//
//	CI=true go test ./state -run '^$' -bench BackendApply -benchtime 1x
func BenchmarkBackendApply(b *testing.B) {
	const n, batch = 100_000, 100
	r := genRows(n)
	for _, c := range []struct {
		name string
		open func(tb testing.TB) Backend
	}{
		{"local", func(tb testing.TB) Backend {
			s, err := Open(filepath.Join(tb.TempDir(), ".backflow"))
			if err != nil {
				tb.Fatal(err)
			}
			return s.Backend()
		}},
		{"postgres", func(tb testing.TB) Backend { be, _ := newSQLState(tb, true, nil); return be }},
		{"mysql", func(tb testing.TB) Backend { be, _ := newSQLState(tb, false, nil); return be }},
	} {
		b.Run(c.name, func(b *testing.B) {
			var apply, load, values time.Duration
			for range b.N {
				be := c.open(b)
				start := time.Now()
				tx, err := be.Begin("s", false)
				if err != nil {
					b.Fatal(err)
				}
				recs := make([]InFlightRecord, batch)
				for first := 0; first < n; first += batch {
					for j := range recs {
						recs[j] = InFlightRecord{Key: r.keys[first+j], Operation: "upsert"}
					}
					if err := tx.InFlight(recs); err != nil {
						b.Fatal(err)
					}
					for j := range batch {
						tx.Accept(r.keys[first+j], uint64(first+j), map[string]any{"email": r.emails[first+j], "n": r.ns[first+j]})
					}
					if err := tx.Checkpoint(); err != nil {
						b.Fatal(err)
					}
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
				apply += time.Since(start)
				start = time.Now()
				sn, err := be.LoadSnapshot("s")
				if err != nil {
					b.Fatal(err)
				}
				load += time.Since(start)
				start = time.Now()
				for i := range n {
					if _, err := sn.Values((i * 7919) % n); err != nil {
						b.Fatal(err)
					}
				}
				values += time.Since(start)
				sn.Close()
			}
			b.ReportMetric(float64(apply.Milliseconds())/float64(b.N), "apply-ms")
			b.ReportMetric(float64(load.Milliseconds())/float64(b.N), "load-ms")
			b.ReportMetric(float64(values.Milliseconds())/float64(b.N), "values-ms")
		})
	}
}
