//go:build !linux

package state

import "time"

// pidStartedAfter cannot tell on this platform.
func pidStartedAfter(int, time.Time) bool { return false }
