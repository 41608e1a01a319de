package state

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// recordFsyncs records the fsyncs the state makes until the returned
// function is called, which returns them as paths relative to dir, a
// temporary file named by the file it replaces (".runs.jsonl.tmp-123" is
// "runs.jsonl"), "." for dir itself.
func recordFsyncs(t *testing.T, dir string) func() []string {
	t.Helper()
	var paths []string
	fsynced = func(path string) { paths = append(paths, path) }
	t.Cleanup(func() { fsynced = nil })
	tmp := regexp.MustCompile(`^\.(.+)\.tmp-[0-9]+$`)
	return func() []string {
		fsynced = nil
		var out []string
		for _, p := range paths {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				t.Fatal(err)
			}
			base := filepath.Base(rel)
			if m := tmp.FindStringSubmatch(base); m != nil {
				rel = filepath.Join(filepath.Dir(rel), m[1])
			}
			out = append(out, filepath.ToSlash(rel))
		}
		return out
	}
}

// An apply's journal has its content fsynced before its directory: where
// the file system commits a file's creation with its first fsync (ext4,
// XFS), the directory's fsync then has nothing left to commit. Later
// announcements fsync the journal alone.
func TestJournalIsSyncedBeforeItsDirectory(t *testing.T) {
	s := newStore(t)
	w, err := s.Begin("a", false) // a sync applied once before: its folder exists
	must(t, err)
	w.Accept("1", 1, map[string]any{"v": int64(1)})
	must(t, w.Commit())

	w, err = s.Begin("a", false)
	must(t, err)
	done := recordFsyncs(t, s.Dir())
	must(t, w.InFlight([]InFlightRecord{{Key: "2", Operation: "upsert"}}))
	if got := done(); strings.Join(got, " ") != "syncs/a/journal syncs/a" {
		t.Fatalf("fsyncs of the first announcement: %v, want the journal's then its folder's", got)
	}
	done = recordFsyncs(t, s.Dir())
	must(t, w.InFlight([]InFlightRecord{{Key: "3", Operation: "upsert"}}))
	if got := done(); strings.Join(got, " ") != "syncs/a/journal" {
		t.Fatalf("fsyncs of a second announcement: %v, want the journal's only", got)
	}
	must(t, w.Abort())
}
