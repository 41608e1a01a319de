//go:build unix

// Package cputime reads the CPU time the process has used, for benchmarks:
// a busy machine inflates it less than wall time.
package cputime

import (
	"syscall"
	"time"
)

// Process is the CPU time (user and system, every thread: the
// collector's too) this process has used; 0 when the system does not say.
func Process() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
