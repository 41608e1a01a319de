//go:build !linux

package main

import "time"

// serverCPU is not measured on this system.
func serverCPU([]string) (time.Duration, bool) { return 0, false }
