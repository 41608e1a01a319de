//go:build !unix

package engine

import "time"

// cpuTime and maxRSS are not measured on this platform.
func cpuTime() time.Duration { return 0 }

func maxRSS() int64 { return 0 }
