//go:build unix

package state

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestStateFilesMustBeRegular: a state file that is a symbolic link (to
// /dev/zero, or to a file of the host) or a FIFO, as a state folder
// committed to a repository may hold, is refused as damaged, at once: it
// was read until memory ran out (/dev/zero) or forever (a FIFO).
func TestStateFilesMustBeRegular(t *testing.T) {
	base := filepath.Join("testdata", "bad", "base")
	for _, tc := range []struct{ file, op, kind string }{
		{"state.json", "open", "zero"},
		{"state.json", "open", "fifo"},
		{"runs.jsonl", "runs", "zero"},
		{"syncs/users/snapshot", "load", "fifo"},
		{"syncs/users/failures.json", "load", "zero"},
		{"syncs/users/failures.json", "begin", "host"},
	} {
		t.Run(tc.file+"/"+tc.kind, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			copyDir(t, base, dir)
			p := filepath.Join(dir, filepath.FromSlash(tc.file))
			must(t, os.Remove(p))
			switch tc.kind {
			case "zero":
				must(t, os.Symlink("/dev/zero", p))
			case "host":
				host := filepath.Join(t.TempDir(), "host.txt")
				must(t, os.WriteFile(host, []byte("[]"), 0o600))
				must(t, os.Symlink(host, p))
			case "fifo":
				if err := syscall.Mkfifo(p, 0o600); err != nil {
					t.Skip("no FIFOs here:", err)
				}
			}
			err := runBadOp(tc.op, dir)
			var ce *CorruptError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), filepath.Base(tc.file)) {
				t.Fatalf("%s: %v, want a CorruptError naming the file", tc.op, err)
			}
		})
	}
}

// TestLockFileMustBeRegular: a lock file that is a FIFO (opening it would
// block for good) or a link (followed, it would create or lock a file
// anywhere) is refused by Lock, LockStatus and ForceUnlock.
func TestLockFileMustBeRegular(t *testing.T) {
	for _, kind := range []string{"fifo", "link"} {
		t.Run(kind, func(t *testing.T) {
			s := newStore(t)
			must(t, os.MkdirAll(s.Dir(), 0o700))
			p := filepath.Join(s.Dir(), lockFile)
			target := filepath.Join(t.TempDir(), "elsewhere")
			if kind == "fifo" {
				if err := syscall.Mkfifo(p, 0o600); err != nil {
					t.Skip("no FIFOs here:", err)
				}
			} else {
				must(t, os.Symlink(target, p))
			}
			var ce *CorruptError
			if _, err := s.Lock("apply"); !errors.As(err, &ce) {
				t.Errorf("Lock: %v, want a CorruptError", err)
			}
			if _, err := s.LockStatus(); !errors.As(err, &ce) {
				t.Errorf("LockStatus: %v, want a CorruptError", err)
			}
			if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the link's target was created: %v", err)
			}
		})
	}
}

// TestSyncFoldersMustBeFolders: a sync's folder (or the logs or syncs
// folder) that is a link is refused: its files would be read and written
// wherever it points.
func TestSyncFoldersMustBeFolders(t *testing.T) {
	base := filepath.Join("testdata", "bad", "base")
	for _, tc := range []struct{ dir, op string }{
		{"syncs/users", "load"},
		{"syncs/users", "begin"},
		{"logs/users", "logs"},
		{"syncs", "load"},
	} {
		t.Run(tc.dir+"/"+tc.op, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			copyDir(t, base, dir)
			p := filepath.Join(dir, filepath.FromSlash(tc.dir))
			elsewhere := filepath.Join(t.TempDir(), "elsewhere")
			must(t, os.Rename(p, elsewhere))
			must(t, os.Symlink(elsewhere, p))
			err := runBadOp(tc.op, dir)
			var ce *CorruptError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), "not a folder") {
				t.Fatalf("%s: %v, want a CorruptError", tc.op, err)
			}
		})
	}
}
