package state

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/backflowhq/backflow/internal/crashpoint"
	"github.com/backflowhq/backflow/repofs"
)

const (
	dirPerm  = 0o700
	filePerm = 0o600
)

// fsynced, when set (by tests), is called before every fsync the state
// makes, with the path of the file or directory synced.
var fsynced func(path string)

// fsync makes f's content durable (f a file or a directory).
func fsync(f *os.File) error {
	if fsynced != nil {
		fsynced(f.Name())
	}
	return f.Sync()
}

// prevSuffix names the previous good generation of a file a commit
// replaced (snapshot.prev, failures.json.prev, state.json.prev, …).
const prevSuffix = ".prev"

// CorruptError reports a state file that is damaged, truncated, missing
// while the rest of the state needs it, or that does not belong with the
// files beside it. Nothing is written over such a file.
type CorruptError struct {
	Path    string
	Problem string
	// mixed marks files of different commits, which a load racing a
	// Commit's renames can see for a moment: such loads are retried.
	mixed bool
}

// retryMixed runs load again while it finds files of different commits:
// a Commit renames the snapshot, the failure index and the journal one
// after the other, and a reader taking no lock may read some before and
// some after. A mismatch that stays once the files stop changing (or for
// two seconds) is damage.
func retryMixed[T any](load func() (T, error)) (T, error) {
	deadline := time.Now().Add(2 * time.Second)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		v, err := load()
		var ce *CorruptError
		if err == nil || !errors.As(err, &ce) || !ce.mixed || time.Now().After(deadline) {
			return v, err
		}
		time.Sleep(wait)
	}
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("state file %s is damaged: %s. backflow changed nothing; run `backflow state recover` to see what restoring the last good generation would lose, and to restore it",
		e.Path, e.Problem)
}

func corrupt(path, format string, args ...any) *CorruptError {
	return &CorruptError{Path: path, Problem: fmt.Sprintf(format, args...)}
}

// VersionError reports a state file written by a newer backflow.
type VersionError struct {
	Path    string
	Version int // the file's format version
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("state file %s has format version %d; this build of backflow reads versions 1 to %d: upgrade backflow (the state is left as it is)",
		e.Path, e.Version, FormatVersion)
}

// fileErr adds what to do to an I/O error on a state file.
func fileErr(err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w: the state folder and its files must be readable and writable by the user running backflow (folder 0700, files 0600)", err)
	}
	return err
}

// validName reports whether name is an HCL identifier usable as a
// directory name: a letter or underscore, then letters, digits, _ and -.
func validName(name string) bool {
	if name == "" || len(name) > MaxSyncName {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// MaxSyncName is the longest sync name, in bytes: a folder's name on
// common file systems, and the width of the database backends' sync
// columns on MySQL.
const MaxSyncName = 255

// CheckSyncName refuses a sync name the state cannot file a sync's records
// under (a folder, a database row): only ASCII letters, digits, _ and -,
// starting with a letter or _, at most MaxSyncName of them. The config
// loader applies it to sync blocks, so that validate refuses what plan and
// apply would.
func CheckSyncName(sync string) error {
	if !validName(sync) {
		return fmt.Errorf("invalid sync name %q: want at most %d letters, digits, _ and - starting with a letter or _", sync, MaxSyncName)
	}
	return nil
}

func checkName(sync string) error { return CheckSyncName(sync) }

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// writeAtomic replaces dir/name with what write produces: a temp file in
// dir, fsynced, renamed over name, then dir fsynced. A crash leaves either
// the old file or the new one, never a mix. dir is created if missing.
func writeAtomic(dir, name string, write func(w *bufio.Writer) error) error {
	return replaceFile(dir, name, false, write)
}

// writeKeepingPrev is writeAtomic that first keeps the file it replaces as
// name.prev: the previous good generation, for `state recover`. The file
// named stays in place at every moment (name.prev is a hard link to it,
// or a copy where links are not supported), so a crash leaves name old or
// new and name.prev absent, old, or the one before.
//
// The caller has verified the file it replaces: a damaged file must never
// become the previous generation.
func writeKeepingPrev(dir, name string, write func(w *bufio.Writer) error) error {
	return replaceFile(dir, name, true, write)
}

func replaceFile(dir, name string, keepPrev bool, write func(w *bufio.Writer) error) (err error) {
	if err := mkdirDurable(dir); err != nil {
		return fileErr(err)
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp-*") // mode 0600
	if err != nil {
		return fileErr(err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(&writingBack{f: f, start: writeback}, 1<<20)
	if err = write(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	if err = fsync(f); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	path := filepath.Join(dir, name)
	if keepPrev {
		if err = keepGeneration(path); err != nil {
			return err
		}
	}
	crashpoint.Hit("file.replace") // the new file written, not yet in place
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// writebackEvery is how many bytes of a file being replaced are written
// before the kernel is asked to start writing them to disk (writingBack).
const writebackEvery = 4 << 20

// writeback starts the writeback of a file being replaced (a variable
// for tests).
var writeback = startWriteback

// writingBack writes to f, and starts the writeback of every
// writebackEvery bytes once written (start): a large file (a snapshot of
// 30 MB for 300,000 records) goes to disk while the rest of it is made,
// rather than all at its fsync, which the commit waits for.
type writingBack struct {
	f     *os.File
	start func(f *os.File, off, n int64)
	// off is the bytes written; started, those whose writeback started.
	off, started int64
}

func (w *writingBack) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.started >= writebackEvery {
		w.start(w.f, w.started, w.off-w.started)
		w.started = w.off
	}
	return n, err
}

// keepGeneration makes path.prev the file now at path (if any).
func keepGeneration(path string) error {
	prev := path + prevSuffix
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := os.Remove(prev); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Link(path, prev); err == nil {
		// A file put there by hand may be readable by others: not its
		// previous generation.
		return os.Chmod(prev, filePerm)
	}
	// No hard links here (some network and FAT file systems): copy.
	src, err := openStateFile(path)
	if err != nil {
		return err
	}
	defer src.Close()
	return writeAtomic(filepath.Dir(path), filepath.Base(prev), func(w *bufio.Writer) error {
		_, err := io.Copy(w, src)
		return err
	})
}

// mkdirDurable creates dir and its missing parents (0700), fsyncing each
// new directory's parent so that the creation survives a crash.
func mkdirDurable(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirDurable(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, dirPerm); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil
		}
		return err
	}
	return syncDir(parent)
}

// writeFileAtomic is writeAtomic for a byte slice.
func writeFileAtomic(dir, name string, data []byte) error {
	return writeAtomic(dir, name, func(w *bufio.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// syncDir makes renames, creations and removals in dir durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be fsynced there; renames are durable enough
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = fsync(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// removeDurably removes path (a missing file is fine) and fsyncs its dir.
func removeDurably(path string) error {
	if err := os.Remove(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	return syncDir(filepath.Dir(path))
}

// readFile reads a state file; a missing file is (nil, nil).
func readFile(path string) ([]byte, error) {
	data, err := readStateFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fileErr(err)
	}
	return data, nil
}

// openStateFile opens a state file for reading. It must be a regular
// file, not a symbolic link (a state folder committed to a repository
// could link state.json to /dev/zero, a FIFO that blocks the read
// forever, or a file of the host), nor anything else: such a file is
// damaged (*CorruptError). A missing file's error is os.ErrNotExist.
func openStateFile(path string) (*os.File, error) {
	if err := checkRegular(path); err != nil {
		return nil, err
	}
	return os.Open(path)
}

// checkRegular returns a *CorruptError when path is there but is not a
// regular file (a link, a FIFO, a device, a folder), and Lstat's error
// (os.ErrNotExist when missing) when it cannot say.
func checkRegular(path string) error {
	st, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return corrupt(path, "%s: backflow writes its state as plain files; remove it", repofs.Kind(st.Mode()))
	}
	return nil
}

// readStateFile is os.ReadFile through openStateFile.
func readStateFile(path string) ([]byte, error) {
	f, err := openStateFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// discard skips n bytes of r.
func discard(r *bufio.Reader, n int64) error {
	for n > 0 {
		step := int(min(n, 1<<30))
		d, err := r.Discard(step)
		n -= int64(d)
		if err != nil {
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// checkSyncDirs refuses the folders holding a sync's files (syncs,
// syncs/SYNC, logs, logs/SYNC) when one is not a plain folder: backflow
// creates them, and a link there (a state folder committed to a
// repository) would have its files read and written elsewhere. The state
// folder itself may be a link.
func (s *Store) checkSyncDirs(sync string) error {
	for _, rel := range []string{syncsDir, filepath.Join(syncsDir, sync), logsDir, filepath.Join(logsDir, sync)} {
		p := filepath.Join(s.dir, rel)
		st, err := os.Lstat(p)
		if err != nil || st.IsDir() {
			continue // missing: created when written; other errors: the open says
		}
		what := repofs.Kind(st.Mode())
		if st.Mode().IsRegular() {
			what = "a file"
		}
		return corrupt(p, "%s, not a folder: backflow keeps a sync's files in plain folders inside the state folder; remove it", what)
	}
	return nil
}
