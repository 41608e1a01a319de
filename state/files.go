package state

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
)

const (
	dirPerm  = 0o700
	filePerm = 0o600
)

// validName reports whether name is an HCL identifier usable as a
// directory name: a letter or underscore, then letters, digits, _ and -.
func validName(name string) bool {
	if name == "" {
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

func checkName(sync string) error {
	if !validName(sync) {
		return fmt.Errorf("invalid sync name %q: want letters, digits, _ and - starting with a letter or _", sync)
	}
	return nil
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// writeAtomic replaces dir/name with what write produces: a temp file in
// dir, fsynced, renamed over name, then dir fsynced. A crash leaves either
// the old file or the new one, never a mix. dir is created if missing.
func writeAtomic(dir, name string, write func(w *bufio.Writer) error) (err error) {
	if err := mkdirDurable(dir); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp-*") // mode 0600
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err = write(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
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
	err = d.Sync()
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
