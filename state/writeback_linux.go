//go:build linux

package state

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing the n bytes of f from
// off to disk, without waiting for them: the fsync that makes the file
// durable then finds most of it written. A hint; it changes nothing of
// what the fsync guarantees, and its failure is of no consequence.
func startWriteback(f *os.File, off, n int64) {
	if c, err := f.SyscallConn(); err == nil {
		_ = c.Control(func(fd uintptr) {
			_ = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
		})
	}
}
