//go:build linux

package state

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// pidStartedAfter reports whether the process with this pid provably
// started after t (its start time read from /proc, in clock ticks of 1/100
// s since boot): then it is not a process that was running at t, whatever
// its pid. False when it cannot tell.
func pidStartedAfter(pid int, t time.Time) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The command name, in parentheses, may hold spaces: fields count from
	// the last ')'. starttime is field 22, the 20th after it.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return false
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 {
		return false
	}
	ticks, err := strconv.ParseInt(fields[19], 10, 64)
	if err != nil {
		return false
	}
	boot, ok := bootTime()
	if !ok {
		return false
	}
	started := boot.Add(time.Duration(ticks) * 10 * time.Millisecond)
	// A second's margin: lock times are kept to the second, boot time too.
	return started.After(t.Add(2 * time.Second))
}

// bootTime is when the system booted (btime in /proc/stat).
func bootTime() (time.Time, bool) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, false
			}
			return time.Unix(s, 0), true
		}
	}
	return time.Time{}, false
}
