package reconcile

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"

	"github.com/backflowhq/backflow/state"
)

// spilledAdds is a plan of n adds of the benchmark's 8 columns, spilled
// to a temporary file of chunks.
func spilledAdds(tb testing.TB, n int) *Plan {
	tb.Helper()
	old := SpillAfter
	SpillAfter = min(SpillAfter, 100)
	defer func() { SpillAfter = old }()
	s, cols, rows := benchPeople(n)
	res, err := Diff(context.Background(), DiffInput{Sync: s, Rows: newRows(cols, rows...), Snapshot: newMemSnapshot(cols[1:], nil),
		Failures: state.FailureIndex{}, SpillDir: tb.TempDir()})
	if err != nil || !res.Plan.Spilled() || res.Plan.Add != n {
		tb.Fatalf("spilled plan of %d adds: %v", n, err)
	}
	return &Plan{FormatVersion: FormatVersion, Syncs: []*SyncPlan{res.Plan}}
}

// A saved plan's chunks are compressed on several goroutines: the file
// still holds them in plan order.
func TestSavedPlanKeepsTheOrderOfItsChunks(t *testing.T) {
	const n = 30 * spillChunkSize // 30 chunks, more than the compressors hold
	p := spilledAdds(t, n)
	path := filepath.Join(t.TempDir(), "p.bfplan")
	if err := p.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	q, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var want, got []string
	collect := func(sp *SyncPlan, into *[]string) {
		if err := sp.Each(func(c *Change) error {
			*into = append(*into, c.Key)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	collect(p.Syncs[0], &want)
	collect(q.Syncs[0], &got)
	if len(got) != n || !reflect.DeepEqual(got, want) {
		t.Fatalf("read back %d changes, want the %d saved in the same order", len(got), len(want))
	}
}

// failingWriter takes n bytes, then fails every write.
type failingWriter struct{ n int }

var errDiskFull = errors.New("no space left on device")

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errDiskFull
	}
	w.n -= len(p)
	return len(p), nil
}

// A write failing half way through a saved plan ends the save with that
// error, and leaves no compressor running.
func TestSavingAPlanStopsAtAFailedWrite(t *testing.T) {
	p := spilledAdds(t, 30*spillChunkSize)
	before := runtime.NumGoroutine()
	for _, after := range []int{0, 100, 200 << 10} {
		err := p.write(&failingWriter{n: after})
		if !errors.Is(err, errDiskFull) {
			t.Errorf("failing after %d bytes: %v, want the write's error", after, err)
		}
	}
	if got := runtime.NumGoroutine(); got > before {
		t.Errorf("%d goroutines after the saves, %d before: a compressor was left running", got, before)
	}
}
