package reconcile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestBadPlanFiles reads every damaged, cut, edited or foreign plan file
// of testdata/badplans and checks the message it is refused with (the
// folder's expect file); a FIFO, a folder and a missing file are made here.
func TestBadPlanFiles(t *testing.T) {
	dirs, err := filepath.Glob("testdata/badplans/*")
	if err != nil || len(dirs) < 10 {
		t.Fatalf("bad plan corpus: %d cases, %v", len(dirs), err)
	}
	type tc struct{ name, path, want string }
	var cases []tc
	for _, d := range dirs {
		want, err := os.ReadFile(filepath.Join(d, "expect"))
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, tc{filepath.Base(d), filepath.Join(d, "plan"), strings.TrimSpace(string(want))})
	}
	tmp := t.TempDir()
	fifo := filepath.Join(tmp, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cases = append(cases,
		tc{"fifo", fifo, "is not a regular file"},
		tc{"folder", tmp, "is not a regular file"},
		tc{"missing", filepath.Join(tmp, "nope"), "no such file"},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := ReadFile(c.path)
			if err == nil || p != nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ReadFile = %v, %v; want an error containing %q", p, err, c.want)
			}
		})
	}
}

// FuzzReadPlan feeds arbitrary bytes to the saved-plan reader, seeded with
// the corpus: nothing may panic, and a file that decodes must have passed
// its checksum.
func FuzzReadPlan(f *testing.F) {
	dirs, _ := filepath.Glob("testdata/badplans/*")
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, "plan")); err == nil {
			f.Add(b)
		}
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "p")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := ReadFile(path)
		if err == nil && (p == nil || !strings.Contains(string(data), `"checksum":"sha256:`)) {
			t.Fatalf("a plan read without its checksum: %q", data)
		}
	})
}
