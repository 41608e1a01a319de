package reconcile

import (
	"bytes"
	stdflate "compress/flate"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
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
	for _, after := range []int{0, 100, 200 << 10} {
		err := p.write(&failingWriter{n: after})
		if !errors.Is(err, errDiskFull) {
			t.Errorf("failing after %d bytes: %v, want the write's error", after, err)
		}
		// The compressors are the chunk writer's goroutines, by their
		// stacks (a count of all goroutines also sees those other tests
		// left ending).
		if n := compressorsRunning(); n > 0 {
			t.Errorf("failing after %d bytes: %d compressors still running once the save returned", after, n)
		}
	}
}

// compressorsRunning counts the goroutines of chunk writers.
func compressorsRunning() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "reconcile.newChunkWriter.func")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// Chunks deflated by the standard library (plans saved before the deflate
// changed) read back as they were written, and chunks deflated now are
// read by the standard library's inflate: one format both ways.
func TestSavedPlanChunksReadAcrossDeflateImplementations(t *testing.T) {
	var raw []byte
	for i := range 5000 {
		raw = fmt.Appendf(raw, "change %d of a plan, user%d@example.com, Company %d\n", i, i, i%37)
	}
	// A chunk as encodeChunk frames it, its body deflated by compress/flate.
	var std bytes.Buffer
	fw, err := stdflate.NewWriter(&std, stdflate.DefaultCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	chunk, err := frameChunk(1, len(raw), std.Bytes(), methodFlate, ActionAdd)
	if err != nil {
		t.Fatal(err)
	}
	var buf []byte
	got, _, err := readChunk(bytes.NewReader(chunk), 0, &buf)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("a chunk deflated by compress/flate read back as %d bytes (%v), want the %d written", len(got), err, len(raw))
	}
	// And the other way: encodeChunk's deflate, read by compress/flate.
	ours, err := encodeChunk(1, raw, methodFlate, ActionAdd)
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(stdflate.NewReader(bytes.NewReader(ours[chunkHeader:])))
	if err != nil || !bytes.Equal(back, raw) {
		t.Fatalf("compress/flate read %d bytes of encodeChunk's deflate (%v), want the %d written", len(back), err, len(raw))
	}
}
