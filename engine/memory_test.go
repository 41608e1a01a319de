package engine

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// hostileMemoryQuery returns 24 rows of 16 MB (384 MB in all), then
// computes for seconds without a row and without looking at its context
// (as TestQueryTimeoutEndsAQueryThatNeverLooks): rows are read ahead 256 at
// a time, so all 24 are held meanwhile.
const hostileMemoryQuery = "WITH RECURSIVE r(i, s) AS (SELECT 1, REPEAT('x', 16000000) UNION ALL SELECT i+1, REPEAT('y', 16000000) FROM r WHERE i < 24), " +
	"n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 100) " +
	"SELECT s FROM r UNION ALL SELECT a.i FROM n a, n b, n c WHERE a.i + b.i + c.i < 0"

// A query taking far more memory than memory_limit fails with an error
// naming the limit and what to do, long before it would have finished;
// a query under the limit still runs.
func TestMemoryLimitEndsAQuery(t *testing.T) {
	e := NewEmbedded()
	defer e.Close()
	e.SetMemoryLimit(64 << 20)
	runtime.GC() // the limit counts from the heap at the start, garbage included

	done := make(chan error, 1)
	go func() {
		_, err := queryAll(e, hostileMemoryQuery)
		done <- err
	}()
	select {
	case err := <-done:
		want := "the model query took more than 64 MiB in the embedded engine (memory_limit); make the fixtures or the query smaller, or raise memory_limit"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error = %v, want %q", err, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the query ran on for 30 s past its memory_limit")
	}
	// The watch ends with the engine's last row, so the error means the
	// query was ended before it finished (in about 2 s, without the
	// limit). If it was left to end on its own, it is let end before the
	// test does, so that nothing keeps allocating in the test process.
	if q := e.stuck.Load(); q != nil {
		<-q.ended
	}

	got, err := queryAll(e, "SELECT i, LENGTH(REPEAT('x', 1000000)) FROM (SELECT 1 AS i UNION ALL SELECT 2) t ORDER BY i")
	if err != nil || len(got) != 2 {
		t.Fatalf("a query under the limit: rows %v, error %v", got, err)
	}
}

// memory_limit 0 leaves a query unbounded.
func TestMemoryLimitZeroIsUnbounded(t *testing.T) {
	e := NewEmbedded()
	defer e.Close()
	e.SetMemoryLimit(0)
	got, err := queryAll(e, "WITH RECURSIVE r(i, s) AS (SELECT 1, REPEAT('x', 8000000) UNION ALL SELECT i+1, REPEAT('y', 8000000) FROM r WHERE i < 4) SELECT i, LENGTH(s) FROM r")
	if err != nil || len(got) != 4 {
		t.Fatalf("rows %v, error %v", got, err)
	}
}

func TestParseMemoryLimit(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "2GiB": 2 << 30, "512 MiB": 512 << 20, "64mib": 64 << 20, "1KiB": 1024,
		"1GB": 1e9, "300MB": 300e6, "4096": 4096, "1TiB": 1 << 40,
	} {
		got, err := ParseMemoryLimit(in)
		if err != nil || got != want {
			t.Errorf("ParseMemoryLimit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1GiB", "2 gigs", "GiB", "1.5GiB", "99999999999TiB"} {
		if got, err := ParseMemoryLimit(in); err == nil {
			t.Errorf("ParseMemoryLimit(%q) = %d, want an error", in, got)
		}
	}
}

// A .sql fixture whose values take far more memory than memory_limit
// (24 values of 16 MB from a few lines) fails to load, at its statement,
// naming the limit; a small fixture beside it loads.
func TestMemoryLimitBoundsASQLFixture(t *testing.T) {
	values := strings.TrimSuffix(strings.Repeat("(REPEAT('x', 16000000)),", 24), ",")
	dir := writeFixtures(t, map[string]string{
		"big.sql":   "CREATE TABLE big (s LONGTEXT);\nINSERT INTO big VALUES " + values + ";\n",
		"small.sql": "CREATE TABLE small (s LONGTEXT);\nINSERT INTO small VALUES (REPEAT('x', 1000000));\n",
	})
	e := NewEmbedded()
	defer e.Close()
	e.SetMemoryLimit(64 << 20)
	runtime.GC() // the limit counts from the heap at the start, garbage included
	diags := e.LoadDir(dir, nil)
	if len(diags) != 1 || diags[0].Subject == nil || filepath.Base(diags[0].Subject.Filename) != "big.sql" || diags[0].Subject.Start.Line != 2 ||
		diags[0].Detail != "The statements of this fixture took more than 64 MiB in the embedded engine (memory_limit); make the fixture smaller, or raise memory_limit." {
		t.Fatalf("diagnostics: %v, want one at big.sql:2 naming memory_limit", diags)
	}
	if _, rows := collect(t, e, "SELECT LENGTH(s) FROM small"); len(rows) != 1 {
		t.Errorf("the small fixture was not loaded beside the big one")
	}
}
