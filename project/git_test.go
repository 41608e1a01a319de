package project

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/hcl/v2"

	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/internal/gittest"
	"github.com/backflowhq/backflow/repofs"
	"github.com/backflowhq/backflow/schema"
)

// refConfig is a config folder "config" whose model reads a query from a
// sibling folder of the repository and whose fixtures are in config/data.
var refConfig = map[string]string{
	"config/main.hcl": `source "w" {
  type     = "embedded"
  fixtures = "data"
}

model "m" {
  source      = source.w
  query       = file("../shared/users.sql")
  primary_key = "id"
}
`,
	"config/other.hcl":      "",
	"config/data/users.csv": "id,email\n1,a@v1.example\n",
	"shared/users.sql":      "SELECT id, email FROM users",
	"README.md":             "hello",
}

func open(t *testing.T, dir string, opts Options) *Project {
	t.Helper()
	p, diags := Open(context.Background(), dir, opts)
	if p != nil {
		t.Cleanup(func() { p.Close() })
	}
	if diags.HasErrors() {
		t.Fatalf("Open(%s, %+v): %s", dir, opts, diags.Error())
	}
	return p
}

func rowCount(t *testing.T, p *Project) int {
	t.Helper()
	m := p.Config.Models[0]
	rows, err := p.Source(m).Query(context.Background(), m.Query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestOpenRef(t *testing.T) {
	repo := gittest.Init(t, t.TempDir())
	v1 := repo.Commit(t, "v1", refConfig)
	repo.Tag(t, "v1")
	// The working tree changes the file read by file() and the fixtures,
	// uncommitted.
	repo.Write(t, map[string]string{
		"shared/users.sql":      "SELECT id, email, 'new' AS tag FROM users",
		"config/data/users.csv": "id,email\n1,a@v1.example\n2,b@wip.example\n",
	})
	dir := filepath.Join(repo.Dir, "config")

	p := open(t, dir, Options{Ref: "v1"})
	if q := p.Config.Models[0].Query; q != "SELECT id, email FROM users" {
		t.Errorf("query read from the working tree: %q", q)
	}
	if n := rowCount(t, p); n != 1 {
		t.Errorf("fixtures read from the working tree: %d rows", n)
	}
	if commit, dirty := p.Revision(); commit != v1 || dirty {
		t.Errorf("Revision() = %s, %v; want %s, false", commit, dirty, v1)
	}
	if p.Commit() != v1 {
		t.Errorf("Commit() = %s", p.Commit())
	}
	// Diagnostics name files under the folder given, as from the working tree.
	if _, ok := p.Files[filepath.Join(dir, "main.hcl")]; !ok {
		t.Errorf("Files = %v", keys(p.Files))
	}

	p = open(t, dir, Options{})
	if q := p.Config.Models[0].Query; !strings.Contains(q, "'new'") {
		t.Errorf("working tree query = %q", q)
	}
	if n := rowCount(t, p); n != 2 {
		t.Errorf("working tree fixtures: %d rows", n)
	}
	if commit, dirty := p.Revision(); commit != v1 || !dirty {
		t.Errorf("Revision() = %s, %v; want %s, true", commit, dirty, v1)
	}
}

func keys(m map[string]*hcl.File) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestOpenRefErrors(t *testing.T) {
	repo := gittest.Init(t, t.TempDir())
	repo.Commit(t, "v1", refConfig)
	dir := filepath.Join(repo.Dir, "config")
	for ref, want := range map[string]string{
		"no-such-branch": `--ref "no-such-branch" names no branch, tag or commit`,
		"HEAD~5":         `--ref "HEAD~5" names no branch`,
	} {
		_, diags := Open(context.Background(), dir, Options{Ref: ref})
		if len(diags) != 1 || diags[0].Summary != "Unknown Revision" || !strings.Contains(diags[0].Detail, want) {
			t.Errorf("--ref %s: %v", ref, diags)
		}
	}
	_, diags := Open(context.Background(), t.TempDir(), Options{Ref: "main"})
	if len(diags) != 1 || diags[0].Summary != "Not A Git Repository" {
		t.Errorf("outside git: %v", diags)
	}
	// A folder that the revision lacks is the usual missing folder.
	_, diags = Open(context.Background(), filepath.Join(repo.Dir, "elsewhere"), Options{Ref: "HEAD"})
	if len(diags) != 1 || diags[0].Summary != "Cannot read config folder" {
		t.Errorf("missing folder: %v", diags)
	}
}

func TestRevisionDirty(t *testing.T) {
	repo := gittest.Init(t, t.TempDir())
	head := repo.Commit(t, "v1", refConfig)
	dir := filepath.Join(repo.Dir, "config")
	tests := []struct {
		name   string
		change func()
		dirty  bool
	}{
		{"clean", func() {}, false},
		{"files nobody reads", func() {
			repo.Write(t, map[string]string{"README.md": "edited", "config/crm.db": "x", "config/.backflow/lock": "x", "config/data/notes.txt": "x"})
		}, false},
		{"a file read by file()", func() { repo.Write(t, map[string]string{"shared/users.sql": "SELECT id, email FROM users -- edited"}) }, true},
		{"a fixture", func() { repo.Write(t, map[string]string{"config/data/users.csv": "id,email\n"}) }, true},
		{"a new fixture", func() { repo.Write(t, map[string]string{"config/data/more.csv": "x\n1\n"}) }, true},
		{"a new config file", func() { repo.Write(t, map[string]string{"config/new.hcl": ""}) }, true},
		{"a deleted config file", func() {
			if err := os.Remove(filepath.Join(dir, "other.hcl")); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo.Commit(t, "reset", refConfig)
			for _, extra := range []string{"config/crm.db", "config/.backflow", "config/data/notes.txt", "config/data/more.csv", "config/new.hcl"} {
				os.RemoveAll(filepath.Join(repo.Dir, extra))
			}
			head = repo.Commit(t, "clean", nil)
			tt.change()
			commit, dirty := open(t, dir, Options{}).Revision()
			if commit != head || dirty != tt.dirty {
				t.Errorf("Revision() = %s, %v; want %s, %v", commit, dirty, head, tt.dirty)
			}
		})
	}
	// Outside git there is no commit.
	plain := t.TempDir()
	if err := os.WriteFile(filepath.Join(plain, "main.hcl"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if commit, dirty := open(t, plain, Options{}).Revision(); commit != "" || dirty {
		t.Errorf("outside git: %q, %v", commit, dirty)
	}
}

// TestFixturesStayInsideTheRepository checks the files of a fixtures
// folder: a symlink out of the repository, a FIFO and a file over the size
// limit are each a diagnostic at the file, the other files still load, and
// nothing of the outside file is shown.
func TestFixturesStayInsideTheRepository(t *testing.T) {
	const canary = "CANARY-52e1"
	secret := filepath.Join(t.TempDir(), "passwd.csv")
	if err := os.WriteFile(secret, []byte("name\n"+canary+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	repo := gittest.Init(t, dir)
	repo.Write(t, map[string]string{
		"main.hcl": `source "w" {
  type     = "embedded"
  fixtures = "data"
}
`,
		"data/users.csv": "id\n1\n",
		"data/big.jsonl": "",
	})
	if err := os.Symlink(secret, filepath.Join(dir, "data/passwd.csv")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "data/etc.csv")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "data/pipe.sql"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, "data/big.jsonl"), repofs.MaxFileSize+1); err != nil {
		t.Fatal(err)
	}
	p, diags := Open(context.Background(), dir, Options{})
	if p == nil {
		t.Fatal(diags.Error())
	}
	defer p.Close()
	want := map[string]string{
		"big.jsonl":  "larger than 8 MiB",
		"etc.csv":    "outside the repository",
		"passwd.csv": "outside the repository",
		"pipe.sql":   "must be a regular file",
	}
	if len(diags) != len(want) {
		for _, d := range diags {
			t.Logf("%s: %s: %s", d.Subject.Filename, d.Summary, d.Detail)
		}
		t.Fatalf("diags = %s", diags.Error())
	}
	for _, d := range diags {
		name := filepath.Base(d.Subject.Filename)
		if (d.Summary != "Cannot Read Fixture" && d.Summary != "Fixture Is Not A Regular File") || !strings.Contains(d.Detail, want[name]) || filepath.Dir(d.Subject.Filename) != filepath.Join(dir, "data") {
			t.Errorf("%s: %s: %s", d.Subject.Filename, d.Summary, d.Detail)
		}
	}
	var out strings.Builder
	if err := config.WriteDiagnostics(&out, p.Files, diags, false, 0); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), canary) || strings.Contains(out.String(), "root:") {
		t.Fatalf("outside content shown:\n%s", out.String())
	}
	cols, err := p.Source(&config.Model{Source: p.Config.Sources[0]}).Schema(context.Background(), "SELECT id FROM users")
	if err != nil || len(cols) != 1 || cols[0].Type != schema.TypeInt {
		t.Errorf("the good fixture did not load: %v, %v", cols, err)
	}
	if _, err := p.Source(&config.Model{Source: p.Config.Sources[0]}).Schema(context.Background(), "SELECT * FROM passwd"); err == nil {
		t.Error("the symlinked fixture was loaded")
	}
}
