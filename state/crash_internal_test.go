package state

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCrashBetweenSnapshotAndFailureRenames stops a reset's commit after the
// new snapshot is in place but before the failure index is (the failure
// index's rename is made to fail, as a crash at that point would leave it):
// the next load must still see the two agree.
func TestCrashBetweenSnapshotAndFailureRenames(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.Begin("s", false)
	if err != nil {
		t.Fatal(err)
	}
	w.Accept("a", 1, map[string]any{"v": int64(1)})
	now := time.Now()
	w.Fail(Failure{Key: "gone", Operation: "delete", Error: "refused", Attempts: 1, FirstFailed: now, LastFailed: now})
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}

	r, err := s.Begin("s", true)
	if err != nil {
		t.Fatal(err)
	}
	r.Accept("b", 2, map[string]any{"v": int64(2)})
	failuresPath := filepath.Join(s.syncDir("s"), failuresFile)
	old, err := os.ReadFile(failuresPath)
	if err != nil {
		t.Fatal(err)
	}
	// A non-empty directory in the failure index's place makes its rename fail.
	if err := os.Remove(failuresPath); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(failuresPath, "blocker"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(); err == nil {
		t.Fatal("commit succeeded although the failure index could not be replaced")
	}
	// What a crash at that point leaves: the new snapshot, the old index.
	if err := os.RemoveAll(failuresPath); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(failuresPath, old, 0o600); err != nil {
		t.Fatal(err)
	}

	snap, err := s.LoadSnapshot("s")
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if snap.Len() != 1 || snap.Key(0) != "b" {
		t.Fatalf("snapshot after the crash has %d keys, want only b", snap.Len())
	}
	failures, err := s.LoadFailures("s")
	if err != nil {
		t.Fatal(err)
	}
	if len(failures) != 0 {
		t.Fatalf("failure index after the crash %v: the reset must have emptied it", failures)
	}
}

// TestResetIsAllOrNothing cuts the journal of a reset-cdc at every byte of
// the group it writes (as a kill during that write would): every load sees
// either the state before the reset or all of it, never a part.
func TestResetIsAllOrNothing(t *testing.T) {
	s := newStore(t)
	w := begin(t, s, "s", false)
	for i := range 50 {
		w.Accept(key7(i), uint64(i), map[string]any{"v": int64(i)})
	}
	w.Fail(Failure{Key: "f", Operation: "upsert", Error: "e", Attempts: 1})
	must(t, w.Commit())
	before, _ := contents(t, load(t, s, "s"))

	r := begin(t, s, "s", true)
	for i := 25; i < 300; i++ {
		r.Accept(key7(i), uint64(i)+1000, map[string]any{"v": int64(-i)})
	}
	must(t, r.Checkpoint()) // what Commit writes first, as one group
	must(t, r.Abort())
	path := journalPath(s, "s")
	full, err := os.ReadFile(path)
	must(t, err)
	must(t, os.Remove(path))
	after, _ := contents(t, load(t, s, "s"))
	if len(after) != 50 {
		t.Fatalf("setup: %d keys", len(after))
	}
	cuts := 0
	for cut := 0; cut <= len(full); cut += 1 + cut/50 {
		must(t, os.WriteFile(path, full[:cut], 0o600))
		sn, err := s.LoadSnapshot("s")
		must(t, err)
		hashes, _ := contents(t, sn)
		_ = sn.Close()
		idx, err := s.LoadFailures("s")
		must(t, err)
		switch {
		case cut == len(full):
			if _, old := hashes[key7(0)]; len(hashes) != 275 || old || len(idx) != 0 {
				t.Fatalf("complete reset: %d keys, failures %v", len(hashes), idx)
			}
		case len(hashes) != len(before) || len(idx) != 1:
			t.Fatalf("journal cut at %d of %d: %d keys and %d failures, want the state before the reset (%d keys, 1 failure)", cut, len(full), len(hashes), len(idx), len(before))
		}
		cuts++
	}
	t.Logf("%d cut points", cuts)
}

// TestInFlightRecordsSurviveACrashAsUnknownOutcomes: a crash between a
// request and the recording of its outcome leaves the records as failure
// entries to retry, accumulated onto the entries they had, and a commit
// of a run that never learnt an outcome does the same.
func TestInFlightRecordsSurviveACrashAsUnknownOutcomes(t *testing.T) {
	s := newStore(t)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	w := begin(t, s, "s", false)
	w.Accept("kept", 1, nil)
	w.Fail(Failure{Key: "retried", Operation: "upsert", Error: "locked", Attempts: 2, FirstFailed: t0, LastFailed: t0})
	must(t, w.Commit())

	w = begin(t, s, "s", false)
	must(t, w.InFlight([]InFlightRecord{{Key: "new", Operation: "insert"}, {Key: "retried", Operation: "upsert"}, {Key: "kept", Operation: "delete"}, {Key: "done", Operation: "upsert"}}))
	w.Accept("done", 4, nil) // its outcome arrived; the others' did not
	must(t, w.Checkpoint())
	_ = w.journal.Close() // the process dies
	_ = w.base.Close()

	check := func(idx FailureIndex) {
		t.Helper()
		if len(idx) != 3 || idx["done"] != nil {
			t.Fatalf("failures %v, want new, retried and kept", idx)
		}
		for k, op := range map[string]string{"new": "insert", "retried": "upsert", "kept": "delete"} {
			f := idx[k]
			if f == nil || !f.Unknown || f.Operation != op || !strings.Contains(f.Error, "outcome unknown") {
				t.Errorf("%s: %+v", k, f)
			}
		}
		if f := idx["retried"]; f.Attempts != 3 || !f.FirstFailed.Equal(t0) {
			t.Errorf("retried: %+v, want attempts 3 since %v", f, t0)
		}
	}
	idx, err := s.LoadFailures("s")
	must(t, err)
	check(idx)
	hashes, _ := contents(t, load(t, s, "s"))
	if len(hashes) != 2 || hashes["kept"] != 1 || hashes["done"] != 4 {
		t.Fatalf("snapshot %v: an unknown outcome leaves the snapshot as it was", hashes)
	}
	// The next run carries them over; committing it keeps them.
	w = begin(t, s, "s", false)
	check(w.Failures())
	must(t, w.Commit())
	idx, err = s.LoadFailures("s")
	must(t, err)
	check(idx)

	// A run that stops with records in flight (a timeout, Ctrl-C) commits
	// them as unknown too.
	// Each keeps the operation and the time it was announced with.
	w = begin(t, s, "s", false)
	before := time.Now()
	must(t, w.InFlight([]InFlightRecord{{Key: "late", Operation: "upsert"}, {Key: "later", Operation: "insert"}}))
	after := time.Now()
	must(t, w.Commit())
	idx, err = s.LoadFailures("s")
	must(t, err)
	for k, op := range map[string]string{"late": "upsert", "later": "insert"} {
		f := idx[k]
		if f == nil || !f.Unknown || f.Attempts != 1 || f.Operation != op || !f.FirstFailed.Equal(f.LastFailed) ||
			f.FirstFailed.Before(before.Truncate(time.Microsecond)) || f.FirstFailed.After(after) {
			t.Fatalf("%s: %+v, want an unknown outcome of %s announced between %v and %v", k, f, op, before, after)
		}
	}
}

// TestCheckpointIsDurableWhenItReturns runs concurrent recorders: when a
// Checkpoint returns, the journal file already replays what its caller
// recorded before calling it, however the writes were grouped.
func TestCheckpointIsDurableWhenItReturns(t *testing.T) {
	s := newStore(t)
	w := begin(t, s, "s", false)
	path := journalPath(s, "s")
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 25 {
				key := fmt.Sprintf("g%d-%02d", g, i)
				w.Accept(key, uint64(i), map[string]any{"g": int64(g)})
				if err := w.Checkpoint(); err != nil {
					errs <- err
					return
				}
				data, err := os.ReadFile(path)
				if err != nil {
					errs <- err
					return
				}
				found := false
				if _, err := scanJournal(path, data, func(_ int, rec []byte) error {
					if rec[0] == recAccept {
						d := decoder{b: rec[1:]}
						found = found || string(d.bytes()) == key
					}
					return nil
				}); err != nil {
					errs <- err
					return
				}
				if !found {
					errs <- fmt.Errorf("%s not in the journal after its Checkpoint returned", key)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	must(t, w.Commit())
	if sn := load(t, s, "s"); sn.Len() != 200 {
		t.Fatalf("%d keys committed, want 200", sn.Len())
	}
}

// TestLoadsRacingCommitsSeeOneGeneration loads a sync while another writer
// commits it again and again: a load may see the state before or after a
// commit, never an error about files of different commits.
func TestLoadsRacingCommitsSeeOneGeneration(t *testing.T) {
	s := newStore(t)
	w := begin(t, s, "s", false)
	w.Accept("k", 0, map[string]any{"v": int64(0)})
	must(t, w.Commit())
	done := make(chan error, 1)
	go func() {
		for i := 1; i <= 20; i++ {
			w, err := s.Begin("s", false)
			if err != nil {
				done <- err
				return
			}
			w.Accept("k", uint64(i), map[string]any{"v": int64(i)})
			w.Fail(Failure{Key: fmt.Sprint("f", i), Operation: "upsert", Error: "e", Attempts: 1})
			if err := w.Commit(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for {
		select {
		case err := <-done:
			must(t, err)
			return
		default:
		}
		sn, err := s.LoadSnapshot("s")
		must(t, err)
		_, err = sn.Values(0)
		must(t, err)
		_ = sn.Close()
		_, err = s.LoadFailures("s")
		must(t, err)
	}
}

// TestApplyAfterACommitStoppedBeforeItsJournalMoved: a commit that stopped
// after replacing the snapshot (and the failure index) but before moving
// its journal to journal.prev leaves a journal of the snapshot's parent.
// The next apply must not append to that journal: a second stop, between
// its own snapshot and failure index renames, would leave a snapshot two
// generations from the journal, which no load accepts. Found by the crash
// harness (./crash), killing at commit.failures then commit.snapshot.
func TestApplyAfterACommitStoppedBeforeItsJournalMoved(t *testing.T) {
	s := newStore(t)
	dir := s.syncDir("s")
	w := begin(t, s, "s", false)
	w.Accept("a", 1, map[string]any{"v": int64(1)})
	must(t, w.Commit())

	// Commit 2 stops before its journal moves: a directory in
	// journal.prev's place makes the rename fail, as a crash would.
	w = begin(t, s, "s", false)
	w.Accept("b", 2, map[string]any{"v": int64(2)})
	w.Fail(Failure{Key: "f", Operation: "upsert", Error: "refused", Attempts: 1})
	prev := filepath.Join(dir, journalFile+prevSuffix)
	must(t, os.RemoveAll(prev))
	must(t, os.MkdirAll(filepath.Join(prev, "blocker"), 0o700))
	if err := w.Commit(); err == nil {
		t.Fatal("commit succeeded although the journal could not be moved")
	}
	must(t, os.RemoveAll(prev))

	// Commit 3 stops between its snapshot and failure index renames.
	w = begin(t, s, "s", false)
	w.Accept("c", 3, map[string]any{"v": int64(3)})
	w.Fail(Failure{Key: "g", Operation: "upsert", Error: "refused", Attempts: 1})
	fpath := filepath.Join(dir, failuresFile)
	old, err := os.ReadFile(fpath)
	must(t, err)
	must(t, os.Remove(fpath))
	must(t, os.MkdirAll(filepath.Join(fpath, "blocker"), 0o700))
	if err := w.Commit(); err == nil {
		t.Fatal("commit succeeded although the failure index could not be replaced")
	}
	must(t, os.RemoveAll(fpath))
	must(t, os.WriteFile(fpath, old, 0o600))

	sn, err := s.LoadSnapshot("s")
	if err != nil {
		t.Fatalf("state after the second stop does not load: %v", err)
	}
	hashes, _ := contents(t, sn)
	if len(hashes) != 3 || hashes["a"] != 1 || hashes["b"] != 2 || hashes["c"] != 3 {
		t.Fatalf("snapshot %v, want a, b and c", hashes)
	}
	idx, err := s.LoadFailures("s")
	must(t, err)
	if len(idx) != 2 || idx["f"] == nil || idx["g"] == nil {
		t.Fatalf("failure index %v, want f and g", idx)
	}
	// And the next apply builds on it.
	w = begin(t, s, "s", false)
	w.Accept("d", 4, nil)
	must(t, w.Commit())
	hashes, _ = contents(t, load(t, s, "s"))
	if len(hashes) != 4 {
		t.Fatalf("snapshot %v after the next commit", hashes)
	}
}
