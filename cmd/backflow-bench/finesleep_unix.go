//go:build unix

package main

import (
	"time"

	"golang.org/x/sys/unix"
)

// fineSleep sleeps d in the calling OS thread (nanosleep), which wakes
// within tens of microseconds of d where a runtime timer may wake up to a
// millisecond late (see latencyAPI.waitUntil). An interrupted sleep
// returns early; the caller sleeps the rest.
func fineSleep(d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	_ = unix.Nanosleep(&ts, nil)
}
