package project

import (
	"os"
	"runtime/debug"
	"testing"
)

// gcPercent is the collector's target now.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// An apply raises the collector's target while it runs, and the last of
// several applies running at once puts it back.
func TestApplyRaisesTheGCTargetWhileItRuns(t *testing.T) {
	if v, ok := os.LookupEnv("GOGC"); ok {
		os.Unsetenv("GOGC")
		t.Cleanup(func() { os.Setenv("GOGC", v) })
	}
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	first := raiseGC(applyGCFrom)
	if got := gcPercent(); got != applyGCPercent {
		t.Fatalf("during an apply GOGC is %d, want %d", got, applyGCPercent)
	}
	second := raiseGC(applyGCFrom)
	first()
	first() // restoring twice counts once
	if got := gcPercent(); got != applyGCPercent {
		t.Fatalf("with an apply still running GOGC is %d, want %d", got, applyGCPercent)
	}
	second()
	if got := gcPercent(); got != 100 {
		t.Fatalf("after the applies GOGC is %d, want 100", got)
	}
}

// A plan of fewer than applyGCFrom changes is applied at the target as
// it is.
func TestSmallApplyLeavesTheGCTarget(t *testing.T) {
	if v, ok := os.LookupEnv("GOGC"); ok {
		os.Unsetenv("GOGC")
		t.Cleanup(func() { os.Setenv("GOGC", v) })
	}
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	restore := raiseGC(applyGCFrom - 1)
	if got := gcPercent(); got != 100 {
		t.Fatalf("during an apply of %d changes GOGC is %d, want 100", applyGCFrom-1, got)
	}
	big := raiseGC(applyGCFrom)
	if got := gcPercent(); got != applyGCPercent {
		t.Fatalf("during an apply of %d changes GOGC is %d, want %d", applyGCFrom, got, applyGCPercent)
	}
	restore()
	if got := gcPercent(); got != applyGCPercent {
		t.Fatalf("the small apply's end lowered the big one's target to %d", got)
	}
	big()
	if got := gcPercent(); got != 100 {
		t.Fatalf("after the applies GOGC is %d, want 100", got)
	}
}

// A target set by the user (GOGC, or a higher one set in the process)
// is left alone.
func TestApplyLeavesAChosenGCTarget(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "50")
	debug.SetGCPercent(50)
	raiseGC(applyGCFrom)()
	restore := raiseGC(applyGCFrom)
	if got := gcPercent(); got != 50 {
		t.Fatalf("with GOGC=50 set, an apply runs at %d", got)
	}
	restore()
	os.Unsetenv("GOGC")
	debug.SetGCPercent(800)
	restore = raiseGC(applyGCFrom)
	if got := gcPercent(); got != 800 {
		t.Fatalf("with the target at 800, an apply lowered it to %d", got)
	}
	restore()
	if got := gcPercent(); got != 800 {
		t.Fatalf("after the apply the target is %d, want 800", got)
	}
}
