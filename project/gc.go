package project

import (
	"os"
	"runtime/debug"
	"sync"
)

// applyGCPercent is the collector's target (GOGC) while an apply streams
// its plan, unless the GOGC environment variable sets one.
//
// An apply's live heap is bounded (three windows of the plan, the state
// writer's buffers) while most of what it decodes, converts and encodes
// is garbage within a batch or two: at the default of 100 the collector
// cost the apply-postgres adds (300,000 rows, 4 in flight, the server on
// the same two cores) a sixth of the process's CPU. At 400 they took
// 0.73–0.80 CPU-s where they took 0.88–0.96 (three alternating runs of
// each), and the apply's peak RSS went from 142 MB to 239 MB.
//
// The larger heap is a cost of its own, paid once per apply: its pages
// are fresh memory, and on a machine where a page fault on fresh memory
// takes 11.5 µs (a VM whose freed pages go back to its host) the harness's
// apply-postgres of 300,000 rows took more CPU at 400 than at 100 (adds,
// one in flight: 1.34–1.44 CPU-s against 0.95–1.03; changes: 1.86–2.11
// against 1.20–1.35; two alternating runs of two), while at 1,000,000
// rows 400 still won (adds: 3.16 against 4.17 CPU-s, 5.40 s against
// 6.80 s). What the collector saves grows with the records applied, what
// the heap's growth costs does not: the target is raised only for a plan
// of applyGCFrom changes or more.
const (
	applyGCPercent = 400
	applyGCFrom    = 500_000
)

var applyGC struct {
	sync.Mutex
	n    int // applies running
	prev int // the target before the first of them
}

// raiseGC sets the collector's target to applyGCPercent for an apply of
// changes changes, unless they are fewer than applyGCFrom, GOGC is set or
// the current target is already higher; the returned function restores
// it once no apply is running.
func raiseGC(changes int) (restore func()) {
	if _, set := os.LookupEnv("GOGC"); set || changes < applyGCFrom {
		return func() {}
	}
	applyGC.Lock()
	defer applyGC.Unlock()
	if applyGC.n == 0 {
		applyGC.prev = debug.SetGCPercent(applyGCPercent)
		if applyGC.prev < 0 || applyGC.prev > applyGCPercent {
			debug.SetGCPercent(applyGC.prev) // off, or higher already: left as it was
		}
	}
	applyGC.n++
	return sync.OnceFunc(func() {
		applyGC.Lock()
		defer applyGC.Unlock()
		applyGC.n--
		if applyGC.n == 0 {
			debug.SetGCPercent(applyGC.prev)
		}
	})
}
