package state

import (
	"os"
	"path/filepath"
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
