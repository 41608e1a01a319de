//go:build !unix

package main

import (
	"os"
	"time"
)

// cpuTime is not measured on this system.
func cpuTime() time.Duration { return 0 }

// maxRSS is not measured on this system.
func maxRSS(*os.ProcessState) uint64 { return 0 }
