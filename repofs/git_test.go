package repofs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/backflowhq/backflow/internal/gittest"
)

func TestTree(t *testing.T) {
	repo := gittest.Init(t, t.TempDir())
	outside := secretFile(t)
	symlink(t, "../shared/q.sql", filepath.Join(repo.Dir, "config/q.sql"))
	symlink(t, outside, filepath.Join(repo.Dir, "config/out.sql"))
	symlink(t, "../../x", filepath.Join(repo.Dir, "config/climb"))
	write(t, filepath.Join(repo.Dir, "config/big.sql"), strings.Repeat("x", MaxFileSize+1))
	first := repo.Commit(t, "first", map[string]string{
		"config/main.hcl": "a = 1\n",
		"shared/q.sql":    "SELECT 1",
	})
	repo.Tag(t, "v1")
	repo.Commit(t, "second", map[string]string{"config/main.hcl": "a = 2\n"})

	for _, rev := range []string{"v1", first, first[:8], "HEAD~1"} {
		tree, err := OpenRevision(mustLocate(t, repo.Dir), rev)
		if err != nil {
			t.Fatalf("%s: %v", rev, err)
		}
		if tree.Commit() != first {
			t.Errorf("%s: commit %s, want %s", rev, tree.Commit(), first)
		}
		if b, err := tree.ReadFile("config/main.hcl"); err != nil || string(b) != "a = 1\n" {
			t.Errorf("%s: main.hcl = %q, %v", rev, b, err)
		}
	}
	tree, err := OpenRevision(mustLocate(t, repo.Dir), "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := tree.ReadFile("config/main.hcl"); err != nil || string(b) != "a = 2\n" {
		t.Errorf("HEAD: main.hcl = %q, %v", b, err)
	}
	for name, want := range map[string]error{
		"config/q.sql":    nil,
		"config/out.sql":  ErrSymlinkOutside,
		"config/climb":    ErrSymlinkOutside,
		"config/big.sql":  ErrTooLarge,
		"config":          ErrNotRegular,
		"config/none.sql": fs.ErrNotExist,
		".git/config":     ErrGitDir,
	} {
		b, err := tree.ReadFile(name)
		if !errors.Is(err, want) {
			t.Errorf("ReadFile(%s): %v, want %v", name, err, want)
		}
		if want == nil && string(b) != "SELECT 1" {
			t.Errorf("ReadFile(%s) = %q", name, b)
		}
		if strings.Contains(string(b)+errString(err), "TOP-SECRET") {
			t.Errorf("ReadFile(%s) read outside the repository", name)
		}
	}
	entries, err := tree.ReadDir("config")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"big.sql", "climb", "main.hcl", "out.sql", "q.sql"}; !slices.Equal(names, want) {
		t.Errorf("ReadDir = %v, want %v", names, want)
	}
	// A file over MaxFileSize streams whole through OpenStream.
	f, err := OpenStream(tree, "config/big.sql")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, err := io.Copy(io.Discard, f); err != nil || n != MaxFileSize+1 {
		t.Errorf("OpenStream(config/big.sql) read %d bytes, %v; want %d", n, err, MaxFileSize+1)
	}
}

func TestTreeIsAnFS(t *testing.T) {
	repo := gittest.Init(t, t.TempDir())
	symlink(t, "../shared/q.sql", filepath.Join(repo.Dir, "config/q.sql"))
	repo.Commit(t, "first", map[string]string{"config/main.hcl": "a = 1\n", "shared/q.sql": "SELECT 1"})
	tree, err := OpenRevision(mustLocate(t, repo.Dir), "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(tree, "config/main.hcl", "config/q.sql", "shared/q.sql"); err != nil {
		t.Fatal(err)
	}
}

func mustLocate(t *testing.T, dir string) Location {
	t.Helper()
	loc, err := Locate(dir)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestOpenRevisionErrors(t *testing.T) {
	repo := gittest.Init(t, t.TempDir())
	repo.Commit(t, "first", map[string]string{"main.hcl": ""})
	_, err := OpenRevision(mustLocate(t, repo.Dir), "nope")
	var unknown *UnknownRevisionError
	if !errors.As(err, &unknown) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown revision: %v", err)
	}
	_, err = OpenRevision(mustLocate(t, t.TempDir()), "main")
	if !errors.Is(err, ErrNotInGit) {
		t.Errorf("not in git: %v", err)
	}
}

func TestBareRevision(t *testing.T) {
	repo := gittest.Init(t, t.TempDir())
	repo.Commit(t, "first", map[string]string{"main.hcl": "a = 1\n", "sub/x.sql": "SELECT 1"})
	bare := filepath.Join(t.TempDir(), "repo.git")
	repo.Bare(t, bare)
	for dir, file := range map[string]string{bare: "main.hcl", filepath.Join(bare, "sub"): "sub/x.sql"} {
		loc := mustLocate(t, dir)
		tree, err := OpenRevision(loc, "master")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tree.ReadFile(file); err != nil {
			t.Errorf("%s: %v", dir, err)
		}
	}
}

func TestChanges(t *testing.T) {
	repo := gittest.Init(t, t.TempDir())
	repo.Commit(t, "first", map[string]string{
		"config/main.hcl":  "a = 1\n",
		"config/other.hcl": "b = 1\n",
		"shared/q.sql":     "SELECT 1",
		"README.md":        "hello",
	})
	changes := func() []string {
		t.Helper()
		d, err := NewDir(repo.Dir)
		if err != nil {
			t.Fatal(err)
		}
		entries, err := d.ReadDir("config")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".hcl") {
				if _, err := d.ReadFile("config/" + e.Name()); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := d.ReadFile("shared/q.sql"); err != nil {
			t.Fatal(err)
		}
		head, err := OpenRevision(mustLocate(t, repo.Dir), "HEAD")
		if err != nil {
			t.Fatal(err)
		}
		c, err := d.Changes(head)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := changes(); len(c) != 0 {
		t.Fatalf("clean tree: changes %v", c)
	}
	// Files nobody reads do not count, tracked or not.
	repo.Write(t, map[string]string{"README.md": "edited", "config/crm.db": "x", "config/.backflow/state": "x"})
	if c := changes(); len(c) != 0 {
		t.Fatalf("unread files count: %v", c)
	}
	repo.Write(t, map[string]string{"shared/q.sql": "SELECT 2", "config/new.hcl": ""})
	if err := os.Remove(filepath.Join(repo.Dir, "config/other.hcl")); err != nil {
		t.Fatal(err)
	}
	want := []string{"config/new.hcl", "config/other.hcl", "shared/q.sql"}
	if c := changes(); !slices.Equal(c, want) {
		t.Fatalf("changes = %v, want %v", c, want)
	}
}
