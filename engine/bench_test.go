package engine

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/backflowhq/backflow/internal/cputime"
)

// benchRows is the fixture size of the load and scan benchmarks.
const benchRows = 1_000_000

// writeBenchCSV writes an n-row, 8-column CSV (int, string, float, bool,
// timestamp, and three strings) and returns its folder.
func writeBenchCSV(b *testing.B, n int) string {
	b.Helper()
	dir := b.TempDir()
	f, err := os.Create(filepath.Join(dir, "users.csv"))
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "id,email,score,active,signed_up,city,country,note")
	for i := range n {
		fmt.Fprintf(w, "%d,user%d@example.com,%d.5,%t,2024-01-%02d 10:00:00,city%d,c%d,note %d\n",
			i, i, i%100, i%2 == 0, i%28+1, i%1000, i%50, i)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return dir
}

// BenchmarkLoadCSV loads 1,000,000 rows × 8 columns from CSV and reports
// ns/row (wall), cpu-ns/row (every thread, the collector's too), allocated
// B/row, retained B/row (live heap held by the loaded engine after a
// collection) and peak-rss B/row (growth of the process's peak RSS: run
// with -benchtime 1x in a fresh process for a clean figure).
// Run: go test ./engine/ -run '^$' -bench LoadCSV -benchtime 3x
func BenchmarkLoadCSV(b *testing.B) {
	dir := writeBenchCSV(b, benchRows)
	var before, held runtime.MemStats
	var retained, allocated uint64
	var cpu time.Duration
	rss := maxRSS()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		start := cputime.Process()
		e := NewEmbedded()
		if diags := e.LoadDir(dir, nil); diags.HasErrors() {
			b.Fatal(diags.Error())
		}
		cpu += cputime.Process() - start
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&held)
		allocated += held.TotalAlloc - before.TotalAlloc
		if held.HeapAlloc > before.HeapAlloc {
			retained += held.HeapAlloc - before.HeapAlloc
		}
		_ = e.Close()
		b.StartTimer()
	}
	rows := float64(benchRows * b.N)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/rows, "ns/row")
	b.ReportMetric(float64(cpu.Nanoseconds())/rows, "cpu-ns/row")
	b.ReportMetric(float64(allocated)/rows, "alloc-B/row")
	b.ReportMetric(float64(retained)/rows, "retained-B/row")
	b.ReportMetric(float64(maxRSS()-rss)/benchRows, "peak-rss-B/row")
}

// BenchmarkScan reads every row of a 1,000,000-row table through Rows.
// Run: go test ./engine/ -run '^$' -bench Scan -benchtime 3x
func BenchmarkScan(b *testing.B) {
	dir := writeBenchCSV(b, benchRows)
	e := NewEmbedded()
	defer e.Close()
	if diags := e.LoadDir(dir, nil); diags.HasErrors() {
		b.Fatal(diags.Error())
	}
	b.ResetTimer()
	for range b.N {
		rows, err := e.Query(context.Background(), "SELECT * FROM users")
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		if err := rows.Err(); err != nil {
			b.Fatal(err)
		}
		_ = rows.Close()
		if n != benchRows {
			b.Fatalf("scanned %d rows, want %d", n, benchRows)
		}
	}
	b.ReportMetric(float64(benchRows*b.N)/b.Elapsed().Seconds(), "rows/s")
}
