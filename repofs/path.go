package repofs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
)

// MaxFileSize is the largest file, in bytes, that can be read through this
// package (8 MiB): config files, files read with file(), fixtures. Reads
// stop at the limit whatever the file claims its size is, so a file that
// grows (or a device that got through) cannot exhaust memory.
const MaxFileSize = 8 << 20

// MaxStreamSize is the largest file that can be read as a stream with
// OpenStream (1 GiB): CSV and JSONL fixtures, which are read a row at a
// time and never held whole, so that offline CI can load realistic
// fixture sizes (a million rows of eight columns is about 80 MB).
const MaxStreamSize = 1 << 30

// maxLinks bounds the symlinks followed while resolving one path, as the
// kernel does (ELOOP).
const maxLinks = 40

// The reasons a path is refused. They are wrapped in *fs.PathError, with
// detail for ErrNotRegular (what the file is) and ErrTooLarge (its size).
var (
	ErrAbsolute       = errors.New("absolute paths are not allowed")
	ErrOutside        = errors.New("the path leads outside the repository")
	ErrSymlinkOutside = errors.New("a symlink on the path leads outside the repository")
	ErrGitDir         = errors.New("files under .git are not readable")
	ErrNotRegular     = errors.New("not a regular file")
	ErrTooLarge       = fmt.Errorf("larger than %d MiB", MaxFileSize>>20)
	ErrStreamTooLarge = fmt.Errorf("larger than %d MiB, the limit for a file read as a stream", MaxStreamSize>>20)
	ErrTooManyLinks   = errors.New("too many levels of symlinks")
)

// Join returns the io/fs path of rel, a path written by a user relative to
// the folder dir (itself an io/fs path). It refuses absolute paths and
// paths whose ".." climb above the root of the file system. Backslashes
// are separators too, so a path written on Windows means the same.
func Join(dir, rel string) (string, error) {
	slashed := strings.ReplaceAll(rel, `\`, "/")
	if filepath.IsAbs(rel) || path.IsAbs(slashed) || filepath.VolumeName(rel) != "" {
		return "", &fs.PathError{Op: "open", Path: rel, Err: ErrAbsolute}
	}
	p := path.Join(dir, slashed)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", &fs.PathError{Op: "open", Path: rel, Err: ErrOutside}
	}
	return p, nil
}

// node is what resolve needs of a file system: the type of a name that is
// already resolved up to its last element, and a symlink's target.
type node interface {
	lstat(name string) (fs.FileMode, error)
	readlink(name string) (string, error)
	// inside maps an absolute symlink target to a path of the file
	// system, when it points inside its root.
	inside(target string) (string, bool)
}

// resolve returns name with every symlink replaced by its target, an
// io/fs path naming no symlink, or an error when a symlink leaves the root,
// a component is a .git folder or the path does not exist. Like the
// kernel, ".." in a link target applies to the link's resolved parent.
func resolve(n node, op, name string) (string, error) {
	if !fs.ValidPath(name) {
		return "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	fail := func(err error) (string, error) { return "", &fs.PathError{Op: op, Path: name, Err: err} }
	var done []string
	pending := strings.Split(name, "/")
	links := 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) == 0 {
				return fail(ErrSymlinkOutside)
			}
			done = done[:len(done)-1]
			continue
		}
		if strings.EqualFold(c, ".git") {
			return fail(ErrGitDir)
		}
		cur := strings.Join(append(done, c), "/")
		mode, err := n.lstat(cur)
		if err != nil {
			return fail(unwrap(err))
		}
		if mode&fs.ModeSymlink == 0 {
			done = append(done, c)
			continue
		}
		if links++; links > maxLinks {
			return fail(ErrTooManyLinks)
		}
		target, err := n.readlink(cur)
		if err != nil {
			return fail(unwrap(err))
		}
		if filepath.IsAbs(target) || path.IsAbs(target) {
			rel, ok := n.inside(target)
			if !ok {
				return fail(ErrSymlinkOutside)
			}
			done, target = nil, rel
		}
		pending = append(strings.Split(target, "/"), pending...)
	}
	if len(done) == 0 {
		return ".", nil
	}
	return strings.Join(done, "/"), nil
}

// unwrap drops the path of an *fs.PathError, which callers name themselves.
func unwrap(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Kind names what a file of mode m is when it is not a regular file ("a
// folder", "a named pipe", "a symlink", …), for messages.
func Kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a folder"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m&fs.ModeIrregular != 0:
		return "a special file"
	}
	return "not a regular file"
}

func notRegular(m fs.FileMode) error {
	return fmt.Errorf("%w (%s)", ErrNotRegular, Kind(m))
}

func tooLarge(size int64) error { return tooLargeFor(MaxFileSize, size) }

func tooLargeFor(limit, size int64) error {
	return fmt.Errorf("%w: the file has %d bytes", limitError(limit), size)
}

func limitError(limit int64) error {
	if limit == MaxStreamSize {
		return ErrStreamTooLarge
	}
	return ErrTooLarge
}

// limitedReader returns ErrTooLarge once more than its limit (MaxFileSize,
// or MaxStreamSize for OpenStream) has been read, so no reader of this
// package can return more.
type limitedReader struct {
	r     io.Reader
	left  int64
	limit int64
}

func newLimitedReader(r io.Reader) *limitedReader { return newReaderLimited(r, MaxFileSize) }

func newReaderLimited(r io.Reader, limit int64) *limitedReader {
	return &limitedReader{r: r, left: limit, limit: limit}
}

// streamOpener is implemented by this package's file systems.
type streamOpener interface {
	openStream(name string) (fs.File, error)
}

// OpenStream opens a regular file of fsys to be read front to back, of at
// most MaxStreamSize bytes when fsys is one of this package's file systems
// (which apply MaxFileSize to Open). Use it only for readers that never
// hold the whole file.
func OpenStream(fsys fs.FS, name string) (fs.File, error) {
	if s, ok := fsys.(streamOpener); ok {
		return s.openStream(name)
	}
	return fsys.Open(name)
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, limitError(l.limit)
	}
	// Read one byte past the limit, to tell "exactly the limit" from more.
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n + int(l.left), limitError(l.limit)
	}
	return n, err
}

// ReadFile reads a regular file of fsys, of at most MaxFileSize bytes,
// whatever fsys is: with a file system of this package the path is also
// confined to the repository. Reading stops at the limit, so a file
// reporting a wrong size cannot exhaust memory either.
func ReadFile(fsys fs.FS, name string) ([]byte, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrInvalid}
	}
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: name, Err: notRegular(info.Mode())}
	}
	if info.Size() > MaxFileSize {
		return nil, &fs.PathError{Op: "read", Path: name, Err: tooLarge(info.Size())}
	}
	return readAll(name, f, info.Size())
}

// readAll reads r to its end, at most MaxFileSize bytes; size is a hint.
func readAll(name string, r io.Reader, size int64) ([]byte, error) {
	if size < 0 || size > MaxFileSize {
		size = 0
	}
	buf := make([]byte, 0, size+1)
	lr := newLimitedReader(r)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, ErrTooLarge) {
			return nil, &fs.PathError{Op: "read", Path: name, Err: fmt.Errorf("%w: reading stopped there", ErrTooLarge)}
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: name, Err: err}
		}
	}
}

// resolveParent resolves every element of name but the last, for Lstat
// and ReadLink, which describe a symlink itself.
func resolveParent(n node, op, name string) (string, error) {
	if !fs.ValidPath(name) {
		return "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return ".", nil
	}
	dir, err := resolve(n, op, path.Dir(name))
	if err != nil {
		return "", err
	}
	base := path.Base(name)
	if strings.EqualFold(base, ".git") {
		return "", &fs.PathError{Op: op, Path: name, Err: ErrGitDir}
	}
	return path.Join(dir, base), nil
}
