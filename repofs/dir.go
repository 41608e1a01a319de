package repofs

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// Dir is a working tree (or any folder) read as a confined file system:
// see the package documentation for what it refuses. It records the files
// it opens and the folders it lists, so that Changes can compare what was
// read with a commit. It is safe for concurrent use.
type Dir struct {
	root string // absolute, symlinks evaluated

	mu     sync.Mutex
	opened map[string]bool // resolved names of files opened
	listed map[string]bool // resolved names of folders listed
}

var (
	_ fs.ReadFileFS = (*Dir)(nil)
	_ fs.ReadDirFS  = (*Dir)(nil)
	_ fs.StatFS     = (*Dir)(nil)
)

// NewDir returns the file system of the folder root. Every operation opens
// root afresh (an os.Root), so a Dir holds no file descriptor.
func NewDir(root string) (*Dir, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	return &Dir{root: abs, opened: map[string]bool{}, listed: map[string]bool{}}, nil
}

// Root returns the absolute path of the folder.
func (d *Dir) Root() string { return d.root }

// dirNode resolves names with an open os.Root, which also refuses any
// escape on its own, should the tree change during resolution.
type dirNode struct {
	r    *os.Root
	root string
}

func (n dirNode) lstat(name string) (fs.FileMode, error) {
	info, err := n.r.Lstat(name)
	if err != nil {
		return 0, err
	}
	return info.Mode(), nil
}

func (n dirNode) readlink(name string) (string, error) { return n.r.Readlink(name) }

func (n dirNode) inside(target string) (string, bool) {
	rel, ok := strings.CutPrefix(filepath.Clean(target), n.root+string(filepath.Separator))
	if !ok {
		return "", false
	}
	return filepath.ToSlash(rel), true
}

// open resolves name and opens it: a regular file (at most MaxFileSize
// bytes) or a folder. Nothing else is opened at all: a FIFO or device is
// refused from its lstat, and opening never blocks (O_NONBLOCK) should
// one be swapped in after the check; the open file is checked again.
func (d *Dir) open(op, name string) (*os.File, string, fs.FileInfo, error) {
	return d.openLimited(op, name, MaxFileSize)
}

func (d *Dir) openLimited(op, name string, limit int64) (*os.File, string, fs.FileInfo, error) {
	r, err := os.OpenRoot(d.root)
	if err != nil {
		return nil, "", nil, &fs.PathError{Op: op, Path: name, Err: unwrap(err)}
	}
	defer r.Close()
	resolved, err := resolve(dirNode{r: r, root: d.root}, op, name)
	if err != nil {
		return nil, "", nil, err
	}
	fail := func(err error) (*os.File, string, fs.FileInfo, error) {
		return nil, "", nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	info, err := r.Lstat(resolved)
	if err != nil {
		return fail(unwrap(err))
	}
	if err := check(info, limit); err != nil {
		return fail(err)
	}
	f, err := r.OpenFile(resolved, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fail(unwrap(err))
	}
	if info, err = f.Stat(); err == nil {
		err = check(info, limit)
	}
	if err != nil {
		f.Close()
		return fail(unwrap(err))
	}
	return f, resolved, info, nil
}

// check accepts folders and regular files of at most limit bytes.
func check(info fs.FileInfo, limit int64) error {
	switch m := info.Mode(); {
	case m.IsDir():
		return nil
	case !m.IsRegular():
		return notRegular(m)
	case info.Size() > limit:
		return tooLargeFor(limit, info.Size())
	}
	return nil
}

// Open opens a regular file or a folder. Reading a file returns an error
// wrapping ErrTooLarge past MaxFileSize bytes.
func (d *Dir) Open(name string) (fs.File, error) {
	f, resolved, info, err := d.open("open", name)
	if err != nil {
		return nil, err
	}
	d.record(resolved, info.IsDir())
	if info.IsDir() {
		return &dirFile{f: f, name: name}, nil
	}
	return &osFile{f: f, r: newLimitedReader(f)}, nil
}

func (d *Dir) openStream(name string) (fs.File, error) {
	f, resolved, info, err := d.openLimited("open", name, MaxStreamSize)
	if err != nil {
		return nil, err
	}
	d.record(resolved, info.IsDir())
	if info.IsDir() {
		return &dirFile{f: f, name: name}, nil
	}
	return &osFile{f: f, r: newReaderLimited(f, MaxStreamSize)}, nil
}

// ReadFile reads a regular file of at most MaxFileSize bytes.
func (d *Dir) ReadFile(name string) ([]byte, error) {
	f, resolved, info, err := d.open("read", name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if info.IsDir() {
		return nil, &fs.PathError{Op: "read", Path: name, Err: notRegular(info.Mode())}
	}
	d.record(resolved, false)
	return readAll(name, f, info.Size())
}

// ReadDir lists a folder, sorted by name. Entries are not resolved: a
// symlink is listed as one, and opening it resolves it.
func (d *Dir) ReadDir(name string) ([]fs.DirEntry, error) {
	f, resolved, info, err := d.open("readdir", name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if !info.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: syscall.ENOTDIR}
	}
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: unwrap(err)}
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	d.record(resolved, true)
	return entries, nil
}

// Stat describes name after resolving its symlinks; unlike Open it does
// not refuse what is not a regular file or a folder.
func (d *Dir) Stat(name string) (fs.FileInfo, error) {
	r, err := os.OpenRoot(d.root)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: unwrap(err)}
	}
	defer r.Close()
	resolved, err := resolve(dirNode{r: r, root: d.root}, "stat", name)
	if err != nil {
		return nil, err
	}
	info, err := r.Lstat(resolved)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: unwrap(err)}
	}
	return info, nil
}

func (d *Dir) record(resolved string, dir bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if dir {
		d.listed[resolved] = true
	} else {
		d.opened[resolved] = true
	}
}

// osFile is an open regular file whose reads stop at MaxFileSize. It
// exposes only fs.File's methods: no ReadAt, Seek or WriteTo that would
// read past the limit.
type osFile struct {
	f *os.File
	r *limitedReader
}

func (f *osFile) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f *osFile) Stat() (fs.FileInfo, error) { return f.f.Stat() }
func (f *osFile) Close() error               { return f.f.Close() }

// dirFile is an open folder.
type dirFile struct {
	f    *os.File
	name string
}

func (f *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: f.name, Err: syscall.EISDIR}
}
func (f *dirFile) Stat() (fs.FileInfo, error) { return f.f.Stat() }
func (f *dirFile) Close() error               { return f.f.Close() }
func (f *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	return f.f.ReadDir(n)
}

var _ fs.ReadLinkFS = (*Dir)(nil)

// Lstat describes name without following a final symlink.
func (d *Dir) Lstat(name string) (fs.FileInfo, error) {
	r, err := os.OpenRoot(d.root)
	if err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: name, Err: unwrap(err)}
	}
	defer r.Close()
	p, err := resolveParent(dirNode{r: r, root: d.root}, "lstat", name)
	if err != nil {
		return nil, err
	}
	info, err := r.Lstat(p)
	if err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: name, Err: unwrap(err)}
	}
	return info, nil
}

// ReadLink returns a symlink's target, which may point anywhere: only
// following it is confined.
func (d *Dir) ReadLink(name string) (string, error) {
	r, err := os.OpenRoot(d.root)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: unwrap(err)}
	}
	defer r.Close()
	p, err := resolveParent(dirNode{r: r, root: d.root}, "readlink", name)
	if err != nil {
		return "", err
	}
	target, err := r.Readlink(p)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: unwrap(err)}
	}
	return target, nil
}
