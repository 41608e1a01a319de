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
