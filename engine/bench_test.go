package engine

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
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

// BenchmarkLoadCSV loads 1,000,000 rows × 8 columns from CSV.
// Run: go test ./engine/ -run '^$' -bench LoadCSV -benchtime 1x
func BenchmarkLoadCSV(b *testing.B) {
	dir := writeBenchCSV(b, benchRows)
	b.ResetTimer()
	for range b.N {
		e := NewEmbedded()
		if diags := e.LoadDir(dir, nil); diags.HasErrors() {
			b.Fatal(diags.Error())
		}
		_ = e.Close()
	}
	b.ReportMetric(float64(benchRows*b.N)/b.Elapsed().Seconds(), "rows/s")
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
