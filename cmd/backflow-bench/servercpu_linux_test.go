//go:build linux

package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// serverCPU finds processes by name (this one, here) and sees their CPU
// time grow; a name no process has is not measured.
func TestServerCPUFollowsProcessesByName(t *testing.T) {
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	self := []string{strings.TrimSpace(string(b))}
	d0, ok := serverCPU(self)
	if !ok {
		t.Fatalf("serverCPU(%q) found no process, not even this one", self)
	}
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for {
		for i := range 10_000_000 {
			x ^= i
		}
		if d, _ := serverCPU(self); d > d0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s of work and serverCPU(%q) stayed at %v (%d)", self, d0, x)
		}
	}
	if _, ok := serverCPU([]string{"no-such-process-name"}); ok {
		t.Fatal("a name no process has was measured")
	}
}
