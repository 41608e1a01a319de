package engine

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/backflowhq/backflow/spec"
)

// DefaultMemoryLimit bounds the memory one embedded model query may take
// (memory_limit): far more than any fixture-sized query needs, far less
// than a CI runner has.
const DefaultMemoryLimit = 2 << 30

// memorySampleInterval is how often a query's watchdog samples the heap.
// The bound is about the limit plus what the engine allocates in one
// interval (and a forced collection, when the limit is crossed).
const memorySampleInterval = 10 * time.Millisecond

// memoryExceeded is the cause of a model query's context ending at the
// embedded source's memory_limit.
type memoryExceeded struct {
	limit   int64
	fixture bool // a .sql fixture's statements, not a model query
}

func (m *memoryExceeded) Error() string {
	if m.fixture {
		return fmt.Sprintf("the statements of this fixture took more than %s in the embedded engine (memory_limit); make the fixture smaller, or raise memory_limit",
			formatBytes(m.limit))
	}
	return fmt.Sprintf("the model query took more than %s in the embedded engine (memory_limit); make the fixtures or the query smaller, or raise memory_limit",
		formatBytes(m.limit))
}

// SetMemoryLimit bounds the memory each later model query may take, in
// bytes (DefaultMemoryLimit unless set); 0 or less leaves queries
// unbounded.
func (e *Embedded) SetMemoryLimit(n int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.memoryLimit = max(n, 0)
}

// heapObjectsMetric is the bytes of the heap's objects: live ones and
// those not yet swept.
const heapObjectsMetric = "/memory/classes/heap/objects:bytes"

// heapObjects samples heapObjectsMetric into s.
func heapObjects(s []metrics.Sample) int64 {
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(min(s[0].Value.Uint64(), math.MaxInt64))
}

// watchMemory watches the Go heap while a query runs: when it has grown by
// more than limit bytes since the start, confirmed by a collection (what
// grew may be garbage), it ends the query with cancel and cause. What was
// garbage at the start and is collected meanwhile is not counted: the
// bound is the limit plus, at worst, that garbage (at most about the live
// heap at the start, with the default GOGC). The heap is the process's, so what the caller
// keeps of the rows counts too. stop ends the watch; it may be called
// more than once. A limit of 0 watches nothing.
//
// The watch costs nothing per row: one goroutine samples the heap every
// memorySampleInterval. The engine never looks at the context while it
// computes some queries: ending the context makes Query and Next return
// (embeddedRows.abandon), and the abandoned engine goroutine may allocate
// on until it next answers; the CLI exits after a failed plan.
func watchMemory(limit int64, cause *memoryExceeded, cancel context.CancelCauseFunc) (stop func()) {
	if limit <= 0 {
		return func() {}
	}
	s := []metrics.Sample{{Name: heapObjectsMetric}}
	start := heapObjects(s)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(memorySampleInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			if heapObjects(s)-start <= limit {
				continue
			}
			runtime.GC()
			if heapObjects(s)-start <= limit {
				continue
			}
			select {
			case <-done: // ended meanwhile: its memory is not the query's
			default:
				cancel(cause)
			}
			return
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// byteUnits are the units a memory_limit may be written in.
var byteUnits = map[string]int64{
	"": 1, "b": 1,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
}

// ParseMemoryLimit reads a size in bytes written as a whole number and a
// unit: "2GiB", "512 MiB", "300MB"; "0" means unbounded.
func ParseMemoryLimit(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	unit, ok := byteUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	if i == 0 || !ok {
		return 0, fmt.Errorf("%q is not a size: write a whole number and a unit, like \"2GiB\", \"512MiB\" or \"300MB\" (or 0 for no bound)", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > math.MaxInt64/unit {
		return 0, fmt.Errorf("%q is too large a size", s)
	}
	return n * unit, nil
}

func checkMemoryLimit(s string) error {
	if _, err := ParseMemoryLimit(s); err != nil {
		return &spec.Problem{Summary: "Invalid memory limit", Detail: err.Error() + "."}
	}
	return nil
}

// formatBytes writes n in the largest binary unit that divides it, or
// with one decimal in the largest below it.
func formatBytes(n int64) string {
	units := []string{"TiB", "GiB", "MiB", "KiB"}
	for i, u := range units {
		size := int64(1) << (10 * (len(units) - i))
		if n >= size {
			if n%size == 0 {
				return fmt.Sprintf("%d %s", n/size, u)
			}
			return fmt.Sprintf("%.1f %s", float64(n)/float64(size), u)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}
