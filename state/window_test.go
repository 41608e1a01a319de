package state

import (
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unsafe"
)

// journalSize is the size of a sync's journal file (0 when missing).
func journalSize(t *testing.T, s *Store, sync string) int64 {
	t.Helper()
	st, err := os.Stat(journalPath(s, sync))
	if os.IsNotExist(err) {
		return 0
	}
	must(t, err)
	return st.Size()
}

// TestJournalWindow records a journal many frames long: the writer's
// memory stays a window of it (the rest goes to the file before any
// Checkpoint), frames written without their group's last frame count for
// nothing after an Abort, and a Commit reading the journal back from the
// file (records in shuffled key order, keys accepted twice, forgotten)
// builds the snapshot the records describe.
func TestJournalWindow(t *testing.T) {
	s := newStore(t)
	w := begin(t, s, "users", false)
	for i := range 100 {
		w.Accept(fmt.Sprintf("old%03d", i), uint64(i), map[string]any{"n": int64(i)})
	}
	must(t, w.Commit())
	before, _ := contents(t, load(t, s, "users"))

	const n = 150_000 // about 40 MB of journal
	pad := strings.Repeat("x", 200)
	value := func(i, round int) map[string]any {
		return map[string]any{"n": int64(i), "round": int64(round), "pad": pad}
	}
	keys := rand.New(rand.NewPCG(1, 2)).Perm(n)
	record := func(w *SyncWriter) (maxCap int) {
		for j, i := range keys {
			w.Accept(fmt.Sprint(i), uint64(i), value(i, 1))
			if j%3 == 0 { // accepted again, later in the journal: the later record wins
				k := keys[j/2]
				w.Accept(fmt.Sprint(k), uint64(k)+1, value(k, 2))
			}
			if j%1000 == 999 {
				w.Forget(fmt.Sprint(keys[j-500]))
			}
			w.mu.Lock()
			maxCap = max(maxCap, cap(w.log))
			w.mu.Unlock()
		}
		return maxCap
	}

	// Recorded, never checkpointed, aborted: the frames in the file are a
	// torn tail.
	size := journalSize(t, s, "users")
	w = begin(t, s, "users", false)
	maxCap := record(w)
	grown := journalSize(t, s, "users")
	must(t, w.Abort())
	if grown < 30<<20 {
		t.Fatalf("journal file of %d bytes after recording about 40 MB: frames stayed in memory", grown)
	}
	if maxCap > 3*maxFramePayload {
		t.Fatalf("the writer's log reached %d bytes for a journal of %d: not a window", maxCap, grown)
	}
	// Loading reads the journal a frame at a time, not the whole torn tail.
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	sn := load(t, s, "users")
	runtime.ReadMemStats(&m1)
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 3*maxFramePayload {
		t.Fatalf("loading the snapshot beside a %d-byte journal allocated %d bytes", grown, alloc)
	}
	if got, _ := contents(t, sn); !reflect.DeepEqual(got, before) {
		t.Fatalf("an aborted, never checkpointed apply changed the snapshot: %d keys, want %d", len(got), len(before))
	}

	// A crash in the middle of a spilled frame: still a torn tail.
	must(t, os.Truncate(journalPath(s, "users"), grown-12345))
	if got, _ := contents(t, load(t, s, "users")); !reflect.DeepEqual(got, before) {
		t.Fatalf("a torn spilled frame changed the snapshot: %d keys, want %d", len(got), len(before))
	}

	// Recorded again and committed: Begin cut the torn tail first.
	w = begin(t, s, "users", true)
	if got := journalSize(t, s, "users"); got > size+1<<10 {
		t.Fatalf("journal of %d bytes after Begin, want the torn tail cut (%d before it)", got, size)
	}
	record(w)
	must(t, w.Commit())
	want := map[string]map[string]any{}
	for j, i := range keys {
		want[fmt.Sprint(i)] = value(i, 1)
		if j%3 == 0 {
			k := keys[j/2]
			want[fmt.Sprint(k)] = value(k, 2)
		}
		if j%1000 == 999 {
			delete(want, fmt.Sprint(keys[j-500]))
		}
	}
	hashes, values := contents(t, load(t, s, "users"))
	if len(values) != len(want) {
		t.Fatalf("%d keys, want %d", len(values), len(want))
	}
	for k, v := range want {
		h := uint64(v["n"].(int64))
		if v["round"] == int64(2) {
			h++
		}
		if hashes[k] != h || !reflect.DeepEqual(values[k], v) {
			t.Fatalf("%s = %d %v, want %d %v", k, hashes[k], values[k], h, v)
		}
	}
}

// TestJournalWindowConcurrent records from several goroutines, each
// checkpointing now and then, so that frames spilled without an fsync
// interleave with groups that Checkpoints end: every record reaches the
// snapshot, and the journal the commit leaves (journal.prev) reads back
// intact, group after group.
func TestJournalWindowConcurrent(t *testing.T) {
	s := newStore(t)
	w := begin(t, s, "users", false)
	const workers, each = 4, 25_000
	pad := strings.Repeat("y", 300)
	errs := make(chan error, workers)
	for g := range workers {
		go func() {
			for i := range each {
				k := fmt.Sprintf("g%d-%05d", g, i)
				w.Accept(k, uint64(g*each+i), map[string]any{"pad": pad, "i": int64(i)})
				if i%(12000+1000*g) == 0 {
					if err := w.Checkpoint(); err != nil {
						errs <- err
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		must(t, <-errs)
	}
	must(t, w.Commit())
	hashes, values := contents(t, load(t, s, "users"))
	if len(hashes) != workers*each {
		t.Fatalf("%d keys, want %d", len(hashes), workers*each)
	}
	for g := range workers {
		for i := range each {
			k := fmt.Sprintf("g%d-%05d", g, i)
			if hashes[k] != uint64(g*each+i) || values[k]["i"] != int64(i) || values[k]["pad"] != pad {
				t.Fatalf("%s = %d %v", k, hashes[k], values[k])
			}
		}
	}
	data, err := os.ReadFile(journalPath(s, "users") + prevSuffix)
	must(t, err)
	js, err := scanJournal("journal.prev", data, func(int, []byte) error { return nil })
	must(t, err)
	if js.valid != len(data) {
		t.Fatalf("journal.prev: %d of %d bytes intact", js.valid, len(data))
	}
}

// TestSpillMakesEndedGroupsDurableFirst: a group a Checkpoint sealed but
// has not written yet (it waits for the file) is written and fsynced by a
// spill before any frame of the group after it, so the file never holds a
// later group's frames beside an earlier group that is not durable.
func TestSpillMakesEndedGroupsDurableFirst(t *testing.T) {
	s := newStore(t)
	w := begin(t, s, "users", false)
	pad := strings.Repeat("z", 1000)
	fill := func(prefix string) {
		for i := range (maxFramePayload + spillAt) / 1000 {
			w.Accept(fmt.Sprintf("%s%05d", prefix, i), 1, map[string]any{"pad": pad})
		}
	}
	w.flushMu.Lock() // a write in progress: no spill can start
	fill("a")
	w.mu.Lock()
	w.sealFrame(true) // what a Checkpoint does before it waits for the file
	g1 := w.ended
	w.mu.Unlock()
	fill("b")
	w.flushMu.Unlock()
	w.Accept("c", 1, map[string]any{"pad": pad}) // spills
	w.mu.Lock()
	flushed, written := w.flushed, w.written
	w.mu.Unlock()
	if flushed < g1 || written <= g1 {
		t.Fatalf("after the spill: %d bytes durable, %d written; the first group ends at %d and must be durable before the second's frames are written", flushed, written, g1)
	}
	must(t, w.Abort())
	hashes, _ := contents(t, load(t, s, "users"))
	if _, ok := hashes["a00000"]; !ok || len(hashes) != (maxFramePayload+spillAt)/1000 {
		t.Fatalf("%d keys after the abort, want the first group's %d", len(hashes), (maxFramePayload+spillAt)/1000)
	}
}

// TestJournalBufferIsUsedAgain: once a window's worth of the journal is in
// the file, the writer moves what is left to the front of its buffer
// rather than taking a fresh one (fresh memory costs a page fault per
// page).
func TestJournalBufferIsUsedAgain(t *testing.T) {
	s := newStore(t)
	w := begin(t, s, "users", false)
	pad := strings.Repeat("y", 500)
	buffers := map[*byte]bool{}
	spills := 0
	lastOff := 0
	for i := range 8 * spillAt / 500 {
		w.Accept(fmt.Sprint(i), uint64(i), map[string]any{"pad": pad})
		w.mu.Lock()
		if w.logOff != lastOff {
			spills++
			lastOff = w.logOff
			buffers[unsafe.SliceData(w.log)] = true
		}
		w.mu.Unlock()
	}
	if spills < 3 {
		t.Fatalf("%d spills: the journal never went to the file", spills)
	}
	if len(buffers) != 1 {
		t.Errorf("%d buffers after %d spills, want the same one every time", len(buffers), spills)
	}
	must(t, w.Commit())
	hashes, _ := contents(t, load(t, s, "users"))
	if len(hashes) != 8*spillAt/500 {
		t.Fatalf("%d keys committed, want %d", len(hashes), 8*spillAt/500)
	}
}
