package state

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// A file written through writingBack has the writeback of its bytes
// started in order, every writebackEvery bytes or so, without a gap or an
// overlap, and holds exactly what was written; a file smaller than that
// has none started (its fsync writes it all).
func TestWritingBackStartsInOrder(t *testing.T) {
	for _, size := range []int{100, writebackEvery - 1, 3*writebackEvery + 12345} {
		f, err := os.Create(filepath.Join(t.TempDir(), "f"))
		if err != nil {
			t.Fatal(err)
		}
		type span struct{ off, n int64 }
		var started []span
		w := &writingBack{f: f, start: func(_ *os.File, off, n int64) { started = append(started, span{off, n}) }}
		bw := bufio.NewWriterSize(w, 1<<20)
		want := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
		for b := want; len(b) > 0; {
			k := min(len(b), 70_001)
			if _, err := bw.Write(b[:k]); err != nil {
				t.Fatal(err)
			}
			b = b[k:]
		}
		if err := bw.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(f.Name()); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: the file holds %d bytes (%v)", size, len(got), err)
		}
		var next int64
		for _, s := range started {
			if s.off != next || s.n < writebackEvery || s.n > writebackEvery+(1<<20) {
				t.Fatalf("%d bytes: writeback started for %v", size, started)
			}
			next += s.n
		}
		if tail := int64(size) - next; tail < 0 || tail >= writebackEvery {
			t.Errorf("%d bytes: writeback started for %v, leaving %d bytes to the fsync", size, started, tail)
		}
	}
}

// Replacing a file (the snapshot's way) starts the writeback of a large
// one as it is written.
func TestReplaceFileStartsWriteback(t *testing.T) {
	var started int64
	defer func(f func(*os.File, int64, int64)) { writeback = f }(writeback)
	writeback = func(f *os.File, off, n int64) {
		started += n
		startWriteback(f, off, n)
	}
	dir := t.TempDir()
	big := bytes.Repeat([]byte("x"), 2*writebackEvery+1)
	if err := writeKeepingPrev(dir, "big", func(w *bufio.Writer) error { _, err := w.Write(big); return err }); err != nil {
		t.Fatal(err)
	}
	if started < 2*writebackEvery {
		t.Errorf("writeback started for %d bytes of %d", started, len(big))
	}
	if got, err := os.ReadFile(filepath.Join(dir, "big")); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("the file holds %d bytes (%v)", len(got), err)
	}
}
