package repofs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"

	"github.com/backflowhq/backflow/internal/gittest"
)

func TestJoin(t *testing.T) {
	tests := []struct {
		dir, rel, want string
		err            error
	}{
		{".", "models/a.sql", "models/a.sql", nil},
		{"config", "models/a.sql", "config/models/a.sql", nil},
		{"config", "../shared/a.sql", "shared/a.sql", nil},
		{"config", "./a/../b.sql", "config/b.sql", nil},
		{"config", `models\a.sql`, "config/models/a.sql", nil},
		{"config", "", "config", nil},
		{".", "../x", "", ErrOutside},
		{"config", "../../x", "", ErrOutside},
		{"config", "a/../../../x", "", ErrOutside},
		{".", "..", "", ErrOutside},
		{".", "/etc/passwd", "", ErrAbsolute},
		{".", `\etc\passwd`, "", ErrAbsolute},
		{"config", "/proc/self/environ", "", ErrAbsolute},
	}
	for _, tt := range tests {
		got, err := Join(tt.dir, tt.rel)
		if !errors.Is(err, tt.err) || got != tt.want {
			t.Errorf("Join(%q, %q) = %q, %v; want %q, %v", tt.dir, tt.rel, got, err, tt.want, tt.err)
		}
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// secretFile is a file outside the root whose content must never be read.
func secretFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	write(t, p, "TOP-SECRET")
	return p
}

func TestDirConfinement(t *testing.T) {
	root := t.TempDir()
	outside := secretFile(t)
	write(t, filepath.Join(root, "models/a.sql"), "SELECT 1")
	write(t, filepath.Join(root, ".git/config"), "[http] extraheader = AUTHORIZATION: basic TOP-SECRET")
	symlink(t, "../models/a.sql", filepath.Join(root, "config/link.sql"))
	symlink(t, filepath.Join(root, "models/a.sql"), filepath.Join(root, "config/abs.sql"))
	symlink(t, outside, filepath.Join(root, "config/out.sql"))
	symlink(t, "/etc/passwd", filepath.Join(root, "config/passwd"))
	symlink(t, "../../../../../../../../../../etc/passwd", filepath.Join(root, "config/climb"))
	symlink(t, filepath.Dir(outside), filepath.Join(root, "config/outdir"))
	symlink(t, "../.git", filepath.Join(root, "config/gitdir"))
	symlink(t, "loop2", filepath.Join(root, "config/loop1"))
	symlink(t, "loop1", filepath.Join(root, "config/loop2"))
	symlink(t, "/dev/zero", filepath.Join(root, "config/zero"))
	if err := syscall.Mkfifo(filepath.Join(root, "config/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(root, "config/big.sql")
	write(t, big, "")
	if err := os.Truncate(big, MaxFileSize+1); err != nil {
		t.Fatal(err)
	}
	exact := filepath.Join(root, "config/exact.sql")
	write(t, exact, "")
	if err := os.Truncate(exact, MaxFileSize); err != nil {
		t.Fatal(err)
	}

	d, err := NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want string // content, when err is nil
		err  error
	}{
		{"models/a.sql", "SELECT 1", nil},
		{"config/link.sql", "SELECT 1", nil},
		{"config/abs.sql", "SELECT 1", nil},
		{"config/out.sql", "", ErrSymlinkOutside},
		{"config/passwd", "", ErrSymlinkOutside},
		{"config/climb", "", ErrSymlinkOutside},
		{"config/outdir/secret", "", ErrSymlinkOutside},
		{".git/config", "", ErrGitDir},
		{".GIT/config", "", ErrGitDir},
		{"config/gitdir/config", "", ErrGitDir},
		{"config/loop1", "", ErrTooManyLinks},
		{"config/zero", "", ErrSymlinkOutside},
		{"config/fifo", "", ErrNotRegular},
		{"config", "", ErrNotRegular},
		{"config/big.sql", "", ErrTooLarge},
		{"config/missing.sql", "", fs.ErrNotExist},
		{"../x", "", fs.ErrInvalid},
		{"/etc/passwd", "", fs.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := d.ReadFile(tt.name)
			if !errors.Is(err, tt.err) {
				t.Fatalf("ReadFile: err = %v, want %v", err, tt.err)
			}
			if string(b) != tt.want {
				t.Errorf("ReadFile = %q, want %q", b, tt.want)
			}
			if strings.Contains(errString(err), "TOP-SECRET") {
				t.Errorf("error quotes the content: %v", err)
			}
			// Open refuses the same (except a folder, which it opens).
			f, err := d.Open(tt.name)
			if tt.name == "config" {
				if err != nil {
					t.Fatalf("Open folder: %v", err)
				}
				f.Close()
				return
			}
			if tt.err == nil {
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(f)
				f.Close()
				if err != nil || string(b) != tt.want {
					t.Errorf("Open+ReadAll = %q, %v", b, err)
				}
				return
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("Open: err = %v, want %v", err, tt.err)
			}
		})
	}
	if b, err := d.ReadFile("config/exact.sql"); err != nil || len(b) != MaxFileSize {
		t.Errorf("a file of exactly MaxFileSize: %d bytes, %v", len(b), err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// endless is what /dev/zero reads as.
type endless struct{}

func (endless) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// endlessFS serves one file that claims to be small but never ends, as a
// /proc file or a device would if it got through.
type endlessFS struct{}

func (endlessFS) Open(string) (fs.File, error) { return endlessFile{}, nil }

type endlessFile struct{ endless }

func (endlessFile) Stat() (fs.FileInfo, error) {
	return fstest.MapFS{"f": {Data: []byte("x")}}.Stat("f")
}
func (endlessFile) Close() error { return nil }

func TestReadsAreBounded(t *testing.T) {
	b, err := ReadFile(endlessFS{}, "f")
	if !errors.Is(err, ErrTooLarge) || b != nil {
		t.Fatalf("ReadFile of an endless file = %d bytes, %v; want ErrTooLarge", len(b), err)
	}
	n, err := io.Copy(io.Discard, newLimitedReader(endless{}))
	if !errors.Is(err, ErrTooLarge) || n != MaxFileSize {
		t.Fatalf("copy = %d, %v; want %d bytes then ErrTooLarge", n, err, MaxFileSize)
	}
}

func TestDirIsAnFS(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "main.hcl"), "x = 1\n")
	write(t, filepath.Join(root, "data/users.csv"), "id\n1\n")
	symlink(t, "data/users.csv", filepath.Join(root, "users.csv"))
	d, err := NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(d, "main.hcl", "data/users.csv", "users.csv"); err != nil {
		t.Fatal(err)
	}
}

func TestLocate(t *testing.T) {
	repo := gittest.Init(t, t.TempDir())
	repo.Commit(t, "init", map[string]string{"config/main.hcl": ""})
	plain := t.TempDir()
	for _, tt := range []struct {
		dir       string
		root, rel string
		git, bare bool
	}{
		{repo.Dir, repo.Dir, ".", true, false},
		{filepath.Join(repo.Dir, "config"), repo.Dir, "config", true, false},
		{filepath.Join(repo.Dir, "config/not/yet"), repo.Dir, "config/not/yet", true, false},
		{plain, plain, ".", false, false},
	} {
		loc, err := Locate(tt.dir)
		if err != nil {
			t.Fatal(err)
		}
		root, _ := filepath.EvalSymlinks(tt.root)
		if loc.Root != root || loc.Dir != tt.rel || loc.Git != tt.git || loc.Bare != tt.bare {
			t.Errorf("Locate(%s) = %+v, want root %s dir %s git %v bare %v", tt.dir, loc, root, tt.rel, tt.git, tt.bare)
		}
	}
	bare := filepath.Join(t.TempDir(), "repo.git")
	repo.Bare(t, bare)
	loc, err := Locate(bare)
	if err != nil {
		t.Fatal(err)
	}
	if !loc.Git || !loc.Bare || loc.Dir != "." {
		t.Errorf("Locate(bare) = %+v", loc)
	}
}

// OpenStream reads past MaxFileSize (a fixture read a row at a time) up to
// MaxStreamSize, from a folder and from a commit; Open and ReadFile still
// stop at MaxFileSize; a sparse file past MaxStreamSize is refused.
func TestOpenStreamAllowsLargeFiles(t *testing.T) {
	root := t.TempDir()
	big := filepath.Join(root, "data/big.csv")
	write(t, big, "")
	if err := os.Truncate(big, MaxFileSize+100); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(root, "data/huge.csv")
	write(t, huge, "")
	if err := os.Truncate(huge, MaxStreamSize+1); err != nil {
		t.Fatal(err)
	}
	d, err := NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadFile("data/big.csv"); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ReadFile of a file over MaxFileSize: %v, want ErrTooLarge", err)
	}
	f, err := OpenStream(d, "data/big.csv")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, f)
	f.Close()
	if err != nil || n != MaxFileSize+100 {
		t.Fatalf("streamed %d bytes, %v; want %d", n, err, MaxFileSize+100)
	}
	if _, err := OpenStream(d, "data/huge.csv"); !errors.Is(err, ErrStreamTooLarge) {
		t.Fatalf("OpenStream of a file over MaxStreamSize: %v, want ErrStreamTooLarge", err)
	}
	n, err = io.Copy(io.Discard, newReaderLimited(endless{}, MaxStreamSize))
	if !errors.Is(err, ErrStreamTooLarge) || n != MaxStreamSize {
		t.Fatalf("copy = %d, %v; want %d bytes then ErrStreamTooLarge", n, err, MaxStreamSize)
	}
}
