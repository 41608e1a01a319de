//go:build !unix

package reconcile

import "os"

// ownedByMe cannot tell on this platform: any regular file is replaceable.
func ownedByMe(os.FileInfo) bool { return true }

// openRegular opens path for reading, refusing anything but a regular file.
func openRegular(path string) (*os.File, error) {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, errNotRegular
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, errNotRegular
	}
	return f, nil
}
