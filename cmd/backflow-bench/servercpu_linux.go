//go:build linux

package main

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// serverCPU is the CPU time (user and system) used so far by the
// processes of this machine whose name is one of names (a database
// server's: its backends, its background workers), and by their children
// that ended (a PostgreSQL backend whose connection closed is counted in
// the postmaster's), read from /proc. The
// scenarios measure loopback servers (loopbackDSNs), so the server's work
// for a step is the difference across it. ok is false when nothing was
// found.
func serverCPU(names []string) (d time.Duration, ok bool) {
	if len(names) == 0 {
		return 0, false
	}
	dir, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	for _, e := range dir {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone since listed
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		if !slices.Contains(names, s[open+1:end]) {
			continue
		}
		// After the name: state, then fields 4 onward; utime, stime,
		// cutime and cstime are fields 14 to 17, in clock ticks.
		f := strings.Fields(s[end+1:])
		if len(f) < 15 {
			continue
		}
		var ticks int64
		for _, x := range f[11:15] {
			n, err := strconv.ParseInt(x, 10, 64)
			if err != nil {
				ticks = 0
				break
			}
			ticks += n
		}
		d += time.Duration(ticks) * time.Second / clockTicks
		ok = true
	}
	return d, ok
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100
