package repofs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Location says where a folder sits in the repository holding it.
type Location struct {
	// Root is the absolute path (symlinks evaluated) of the repository's
	// working tree, or of a bare repository; for a folder in no
	// repository, the folder itself.
	Root string
	// Dir is the folder's path relative to Root, an io/fs path ("." for
	// Root itself).
	Dir string
	// Git says whether Root is a git repository, Bare whether it is one
	// without a working tree.
	Git, Bare bool
}

// Locate finds the repository holding the folder dir: the nearest folder
// at or above it that holds a .git entry (a folder, or a file for linked
// worktrees and submodules) or is a bare repository. Trailing elements of
// dir that do not exist are kept in Dir, so that a folder present only in
// a revision (or in a bare repository) can be named.
func Locate(dir string) (Location, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Location{}, err
	}
	// The nearest existing folder, and the missing elements below it.
	base, tail := abs, ""
	for {
		if info, err := os.Stat(base); err == nil {
			if !info.IsDir() {
				return Location{}, &fs.PathError{Op: "open", Path: dir, Err: errors.New("not a folder")}
			}
			break
		}
		parent := filepath.Dir(base)
		if parent == base {
			return Location{}, &fs.PathError{Op: "open", Path: dir, Err: fs.ErrNotExist}
		}
		tail = path.Join(filepath.Base(base), tail)
		base = parent
	}
	if real, err := filepath.EvalSymlinks(base); err == nil {
		base = real
	}
	for root := base; ; {
		_, dotGit := os.Lstat(filepath.Join(root, ".git"))
		bare := dotGit != nil && isBare(root)
		if dotGit == nil || bare {
			rel, err := filepath.Rel(root, base)
			if err != nil {
				return Location{}, err
			}
			return Location{Root: root, Dir: path.Join(filepath.ToSlash(rel), tail), Git: true, Bare: bare}, nil
		}
		parent := filepath.Dir(root)
		if parent == root {
			break
		}
		root = parent
	}
	if tail != "" {
		return Location{Root: base, Dir: tail}, nil
	}
	return Location{Root: base, Dir: "."}, nil
}

// isBare says whether dir looks like a bare git repository.
func isBare(dir string) bool {
	head, err := os.Stat(filepath.Join(dir, "HEAD"))
	if err != nil || !head.Mode().IsRegular() {
		return false
	}
	for _, sub := range []string{"objects", "refs"} {
		if info, err := os.Stat(filepath.Join(dir, sub)); err != nil || !info.IsDir() {
			return false
		}
	}
	return true
}

// ErrNotInGit is returned by OpenRevision for a folder in no repository.
var ErrNotInGit = errors.New("not in a git repository")

// UnknownRevisionError says a revision names no commit of the repository.
type UnknownRevisionError struct {
	Rev, Repo string
}

func (e *UnknownRevisionError) Error() string {
	return fmt.Sprintf("unknown revision %q: no branch, tag or commit of the repository at %s has that name", e.Rev, e.Repo)
}

// OpenRevision returns the file system of the commit that rev names (a
// branch, tag, commit hash or anything go-git resolves, like HEAD~1) in the
// repository at loc, read from git's objects without a checkout.
func OpenRevision(loc Location, rev string) (*Tree, error) {
	if !loc.Git {
		return nil, fmt.Errorf("%s is %w", loc.Root, ErrNotInGit)
	}
	repo, err := git.PlainOpenWithOptions(loc.Root, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
	if err != nil {
		return nil, fmt.Errorf("opening the git repository at %s: %w", loc.Root, err)
	}
	hash, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return nil, &UnknownRevisionError{Rev: rev, Repo: loc.Root}
	}
	commit, err := repo.CommitObject(*hash)
	if err != nil {
		return nil, fmt.Errorf("reading commit %s (%s): %w", hash, rev, err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, fmt.Errorf("reading the tree of commit %s (%s): %w", hash, rev, err)
	}
	return &Tree{commit: commit, tree: tree}, nil
}

// Tree is the tree of a git commit read as a confined file system: see the
// package documentation for what it refuses. Submodules are not followed.
type Tree struct {
	commit *object.Commit
	tree   *object.Tree
}

var (
	_ fs.ReadFileFS = (*Tree)(nil)
	_ fs.ReadDirFS  = (*Tree)(nil)
	_ fs.StatFS     = (*Tree)(nil)
)

// Commit returns the hash of the commit, in hex.
func (t *Tree) Commit() string { return t.commit.Hash.String() }

func (t *Tree) lstat(name string) (fs.FileMode, error) {
	e, err := t.entry(name)
	if err != nil {
		return 0, err
	}
	return gitMode(e.Mode), nil
}

// maxLinkSize bounds a symlink's target read from git (PATH_MAX).
const maxLinkSize = 4096

func (t *Tree) readlink(name string) (string, error) {
	e, err := t.entry(name)
	if err != nil {
		return "", err
	}
	f, err := t.tree.TreeEntryFile(e)
	if err != nil {
		return "", err
	}
	if f.Size > maxLinkSize {
		return "", tooLarge(f.Size)
	}
	s, err := f.Contents()
	return s, err
}

func (t *Tree) inside(string) (string, bool) { return "", false }

func (t *Tree) entry(name string) (*object.TreeEntry, error) {
	e, err := t.tree.FindEntry(name)
	if errors.Is(err, object.ErrEntryNotFound) || errors.Is(err, object.ErrDirectoryNotFound) || errors.Is(err, object.ErrFileNotFound) {
		return nil, fs.ErrNotExist
	}
	return e, err
}

func gitMode(m filemode.FileMode) fs.FileMode {
	switch m {
	case filemode.Dir:
		return fs.ModeDir | 0o755
	case filemode.Executable:
		return 0o755
	case filemode.Regular, filemode.Deprecated:
		return 0o644
	case filemode.Symlink:
		return fs.ModeSymlink | 0o777
	}
	return fs.ModeIrregular // a submodule
}

// open resolves name to a folder (its tree) or a regular file (its blob).
func (t *Tree) open(op, name string) (*treeFile, error) {
	return t.openLimited(op, name, MaxFileSize)
}

func (t *Tree) openStream(name string) (fs.File, error) {
	return t.openLimited("open", name, MaxStreamSize)
}

func (t *Tree) openLimited(op, name string, limit int64) (*treeFile, error) {
	resolved, err := resolve(t, op, name)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*treeFile, error) { return nil, &fs.PathError{Op: op, Path: name, Err: err} }
	info := &fileInfo{name: path.Base(resolved), mode: fs.ModeDir | 0o755, mod: t.commit.Committer.When}
	if resolved == "." {
		return &treeFile{name: name, info: info, tree: t.tree}, nil
	}
	e, err := t.entry(resolved)
	if err != nil {
		return fail(err)
	}
	info.mode = gitMode(e.Mode)
	switch {
	case e.Mode == filemode.Dir:
		sub, err := t.tree.Tree(resolved)
		if err != nil {
			return fail(err)
		}
		return &treeFile{name: name, info: info, tree: sub}, nil
	case e.Mode == filemode.Submodule:
		return fail(fmt.Errorf("%w (a submodule, whose files are in another repository)", ErrNotRegular))
	case !info.mode.IsRegular():
		return fail(notRegular(info.mode))
	}
	f, err := t.tree.TreeEntryFile(e)
	if err != nil {
		return fail(err)
	}
	info.size = f.Size
	if f.Size > limit {
		return fail(tooLargeFor(limit, f.Size))
	}
	rc, err := f.Reader()
	if err != nil {
		return fail(err)
	}
	return &treeFile{name: name, info: info, rc: rc, r: newReaderLimited(rc, limit)}, nil
}

// Open opens a regular file or a folder.
func (t *Tree) Open(name string) (fs.File, error) {
	f, err := t.open("open", name)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// ReadFile reads a regular file of at most MaxFileSize bytes.
func (t *Tree) ReadFile(name string) ([]byte, error) {
	f, err := t.open("read", name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if f.tree != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: notRegular(f.info.mode)}
	}
	return readAll(name, f.r, f.info.size)
}

// ReadDir lists a folder, sorted by name.
func (t *Tree) ReadDir(name string) ([]fs.DirEntry, error) {
	f, err := t.open("readdir", name)
	if err != nil {
		return nil, err
	}
	if f.tree == nil {
		f.Close()
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a folder")}
	}
	return f.ReadDir(-1)
}

// Stat describes name after resolving its symlinks.
func (t *Tree) Stat(name string) (fs.FileInfo, error) {
	resolved, err := resolve(t, "stat", name)
	if err != nil {
		return nil, err
	}
	info := &fileInfo{name: path.Base(resolved), mode: fs.ModeDir | 0o755, mod: t.commit.Committer.When}
	if resolved == "." {
		return info, nil
	}
	e, err := t.entry(resolved)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	info.mode = gitMode(e.Mode)
	if info.mode.IsRegular() {
		if info.size, err = t.tree.Size(resolved); err != nil {
			return nil, &fs.PathError{Op: "stat", Path: name, Err: err}
		}
	}
	return info, nil
}

// treeFile is an open file (rc set) or folder (tree set) of a Tree.
type treeFile struct {
	name string
	info *fileInfo
	rc   io.ReadCloser
	r    *limitedReader
	tree *object.Tree
	read int // entries already returned by ReadDir
}

func (f *treeFile) Stat() (fs.FileInfo, error) { return f.info, nil }

func (f *treeFile) Read(p []byte) (int, error) {
	if f.tree != nil {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: errors.New("is a folder")}
	}
	return f.r.Read(p)
}

func (f *treeFile) Close() error {
	if f.rc != nil {
		return f.rc.Close()
	}
	return nil
}

func (f *treeFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if f.tree == nil {
		return nil, &fs.PathError{Op: "readdir", Path: f.name, Err: errors.New("not a folder")}
	}
	all := make([]fs.DirEntry, 0, len(f.tree.Entries))
	for _, e := range f.tree.Entries {
		all = append(all, &dirEntry{tree: f.tree, e: e, mod: f.info.mod})
	}
	slices.SortFunc(all, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	all = all[f.read:]
	if n > 0 && len(all) > n {
		all = all[:n]
	}
	f.read += len(all)
	if n > 0 && len(all) == 0 {
		return nil, io.EOF
	}
	return all, nil
}

type dirEntry struct {
	tree *object.Tree
	e    object.TreeEntry
	mod  time.Time
}

func (d *dirEntry) Name() string      { return d.e.Name }
func (d *dirEntry) IsDir() bool       { return d.e.Mode == filemode.Dir }
func (d *dirEntry) Type() fs.FileMode { return gitMode(d.e.Mode).Type() }
func (d *dirEntry) Info() (fs.FileInfo, error) {
	info := &fileInfo{name: d.e.Name, mode: gitMode(d.e.Mode), mod: d.mod}
	if info.mode.IsRegular() || info.mode&fs.ModeSymlink != 0 {
		size, err := d.tree.Size(d.e.Name)
		if err != nil {
			return nil, err
		}
		info.size = size
	}
	return info, nil
}

type fileInfo struct {
	name string
	size int64
	mode fs.FileMode
	mod  time.Time
}

func (i *fileInfo) Name() string       { return i.name }
func (i *fileInfo) Size() int64        { return i.size }
func (i *fileInfo) Mode() fs.FileMode  { return i.mode }
func (i *fileInfo) ModTime() time.Time { return i.mod }
func (i *fileInfo) IsDir() bool        { return i.mode.IsDir() }
func (i *fileInfo) Sys() any           { return nil }

// Changes compares what was read through d with the same paths in t: it
// returns, sorted, the files read whose content differs from t's (or that
// t lacks), and the files of t that are missing from a folder d listed and
// have an extension of a file read from that folder (a deleted *.hcl
// file or fixture). So "changed" means "the config read is not the one
// committed": edits elsewhere in the working tree, untracked files nobody
// read (state folders, database files) and ignored files do not count.
func (d *Dir) Changes(t *Tree) ([]string, error) {
	d.mu.Lock()
	opened := sortedKeys(d.opened)
	listed := sortedKeys(d.listed)
	d.mu.Unlock()
	wasOpened := map[string]bool{}
	for _, name := range opened {
		wasOpened[name] = true
	}
	var changed []string
	exts := map[string]map[string]bool{} // folder → extensions read there
	for _, name := range opened {
		dir, ext := path.Dir(name), path.Ext(name)
		if exts[dir] == nil {
			exts[dir] = map[string]bool{}
		}
		exts[dir][ext] = true
		b, err := d.ReadFile(name)
		if err != nil {
			changed = append(changed, name)
			continue
		}
		e, err := t.entry(name)
		if err != nil || !gitMode(e.Mode).IsRegular() || e.Hash != plumbing.ComputeHash(plumbing.BlobObject, b) {
			changed = append(changed, name)
		}
	}
	r, err := os.OpenRoot(d.root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	for _, dir := range listed {
		sub := t.tree
		if dir != "." {
			if sub, err = t.tree.Tree(dir); err != nil {
				continue // a new folder: its files read were compared above
			}
		}
		for _, e := range sub.Entries {
			name := path.Join(dir, e.Name)
			if !gitMode(e.Mode).IsRegular() || !exts[dir][path.Ext(e.Name)] || wasOpened[name] {
				continue
			}
			if _, err := r.Lstat(name); errors.Is(err, fs.ErrNotExist) {
				changed = append(changed, name)
			}
		}
	}
	slices.Sort(changed)
	return changed, nil
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var _ fs.ReadLinkFS = (*Tree)(nil)

// Lstat describes name without following a final symlink.
func (t *Tree) Lstat(name string) (fs.FileInfo, error) {
	p, err := resolveParent(t, "lstat", name)
	if err != nil {
		return nil, err
	}
	info := &fileInfo{name: path.Base(p), mode: fs.ModeDir | 0o755, mod: t.commit.Committer.When}
	if p == "." {
		return info, nil
	}
	e, err := t.entry(p)
	if err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: name, Err: err}
	}
	info.mode = gitMode(e.Mode)
	if info.mode.IsRegular() || info.mode&fs.ModeSymlink != 0 {
		if info.size, err = t.tree.Size(p); err != nil {
			return nil, &fs.PathError{Op: "lstat", Path: name, Err: err}
		}
	}
	return info, nil
}

// ReadLink returns a symlink's target, which may point anywhere: only
// following it is confined.
func (t *Tree) ReadLink(name string) (string, error) {
	p, err := resolveParent(t, "readlink", name)
	if err != nil {
		return "", err
	}
	if m, err := t.lstat(p); err != nil || m&fs.ModeSymlink == 0 {
		if err == nil {
			err = fs.ErrInvalid
		}
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	target, err := t.readlink(p)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	return target, nil
}
