// Package gittest builds small git repositories for tests, with go-git
// only (no git binary, no user configuration).
package gittest

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Repo is a repository with a working tree.
type Repo struct {
	Dir  string
	repo *git.Repository
	when time.Time
}

// Init creates a repository in dir (created if needed).
func Init(t testing.TB, dir string) *Repo {
	t.Helper()
	r, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	return &Repo{Dir: dir, repo: r, when: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// Write writes files (slash paths relative to the working tree) without
// committing them.
func (r *Repo) Write(t testing.TB, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(r.Dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Commit writes files, stages everything in the working tree (deletions
// too) and commits; it returns the commit hash.
func (r *Repo) Commit(t testing.TB, msg string, files map[string]string) string {
	t.Helper()
	r.Write(t, files)
	wt, err := r.repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	r.when = r.when.Add(time.Minute)
	sig := &object.Signature{Name: "test", Email: "test@example.com", When: r.when}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig, AllowEmptyCommits: true})
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// Tag creates a lightweight tag at HEAD.
func (r *Repo) Tag(t testing.TB, name string) {
	t.Helper()
	head, err := r.repo.Head()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.repo.CreateTag(name, head.Hash(), nil); err != nil {
		t.Fatal(err)
	}
}

// Branch creates a branch at HEAD, without switching to it.
func (r *Repo) Branch(t testing.TB, name string) {
	t.Helper()
	head, err := r.repo.Head()
	if err != nil {
		t.Fatal(err)
	}
	ref := plumbing.NewHashReference(plumbing.NewBranchReferenceName(name), head.Hash())
	if err := r.repo.Storer.SetReference(ref); err != nil {
		t.Fatal(err)
	}
}

// Bare makes a bare copy of the repository at dst, as `git clone --bare`
// would: the contents of .git, marked bare.
func (r *Repo) Bare(t testing.TB, dst string) {
	t.Helper()
	src := filepath.Join(r.Dir, ".git")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	bare, err := git.PlainOpen(dst)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := bare.Config()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Core.IsBare = true
	if err := bare.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
}
