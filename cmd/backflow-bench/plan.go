package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/backflowhq/backflow/engine"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/project"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/rules"
	"github.com/backflowhq/backflow/state"
)

const modelQuery = "SELECT id, email, name, company, country, score, ltv, active FROM people"

// writeFixture writes the 8-column table as CSV.
func writeFixture(dir string, rows int) error {
	f, err := os.Create(filepath.Join(dir, "people.csv"))
	if err != nil {
		return err
	}
	defer f.Close()
	var b strings.Builder
	b.WriteString("id,email,name,company,country,score,ltv,active\n")
	countries := []string{"FR", "DE", "US", "JP", "BR", "IN"}
	for i := 1; i <= rows; i++ {
		fmt.Fprintf(&b, "%d,user%d@example.com,User %d,Company %d,%s,%d,%d.%02d,%v\n",
			i, i, i, i%5000, countries[i%len(countries)], i%1000, i%100000, i%100, i%7 != 0)
		if b.Len() > 1<<20 {
			if _, err := f.WriteString(b.String()); err != nil {
				return err
			}
			b.Reset()
		}
	}
	_, err = f.WriteString(b.String())
	return err
}

func benchSync() *config.Sync {
	var mapping []config.Field
	for _, c := range []string{"company", "country", "email", "ltv", "name", "score", "active"} {
		mapping = append(mapping, config.Field{Field: c, Column: c})
	}
	return &config.Sync{
		Name: "bench", Object: "people", Key: "id", Mode: config.ModeUpsert, DeleteBehavior: config.DeleteDelete,
		Model:       &config.Model{Name: "people", Query: modelQuery, PrimaryKey: []string{"id"}},
		Destination: &config.Destination{Name: "dest"},
		Mapping:     mapping,
	}
}

// heapPeak samples the heap until stopped and reports two peaks: of the
// heap in use (HeapAlloc: live objects plus garbage not yet collected, which
// the GC lets grow to GOGC% of the live heap) and of the live heap as
// measured by each garbage collection.
type heapPeak struct {
	peak, live atomic.Uint64
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startHeapPeak() *heapPeak {
	h := &heapPeak{stop: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > h.peak.Load() {
				h.peak.Store(ms.HeapAlloc)
			}
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > h.live.Load() {
				h.live.Store(v)
			}
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapPeak) done() (inUse, live uint64) {
	close(h.stop)
	h.wg.Wait()
	return h.peak.Load(), h.live.Load()
}

func heapNow() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func benchPlan(rows int, changed float64, repeat int, rule string) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "backflow-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Printf("Plan benchmark: %d rows × 8 columns on the embedded engine, %.1f%% of rows differ from the snapshot\n", rows, changed*100)
	if err := writeFixture(dir, rows); err != nil {
		return err
	}
	start := time.Now()
	src := engine.NewEmbedded()
	if diags := src.LoadDir(dir, nil); diags.HasErrors() {
		return diags
	}
	defer src.Close()
	fmt.Printf("  fixture load (not measured below): %s\n", time.Since(start).Round(time.Millisecond))

	// The snapshot: every row as synced, except a fraction with other values.
	s := benchSync()
	if rule != "" {
		s.Excludes = []rules.Rule{{Name: "bench_rule", Expr: rule, Raw: []byte(strconv.Quote(rule))}}
		fmt.Printf("  exclude rule on every row: %s\n", rule)
	}
	all := *s
	all.Mode = config.ModeAll
	store, err := state.Open(filepath.Join(dir, "state"))
	if err != nil {
		return err
	}
	if err := func() error {
		res, err := project.DiffSync(ctx, src, &all, nil, project.Base{})
		if err != nil {
			return err
		}
		w, err := store.Begin(s.Name, true)
		if err != nil {
			return err
		}
		every := int(1 / changed)
		i := 0
		if err := res.Plan.Each(func(c *reconcile.Change) error {
			if i%every == 0 {
				c.After["name"] = "changed"
				c.Hash = reconcile.HashValues(res.Plan.Fields, c.After)
			}
			i++
			w.Accept(c.Key, c.Hash, c.After)
			return nil
		}); err != nil {
			return err
		}
		return w.Commit()
	}(); err != nil {
		return fmt.Errorf("building the snapshot: %w", err)
	}

	scan := func() (time.Duration, error) {
		t := time.Now()
		rs, err := src.Query(ctx, modelQuery)
		if err != nil {
			return 0, err
		}
		n := 0
		for rs.Next() {
			_ = rs.Row()
			n++
		}
		rs.Close()
		if n != rows {
			return 0, fmt.Errorf("scan read %d rows", n)
		}
		return time.Since(t), rs.Err()
	}
	var changes int
	plan := func() (time.Duration, error) {
		t := time.Now()
		snap, err := store.LoadSnapshot(s.Name)
		if err != nil {
			return 0, err
		}
		defer snap.Close()
		failures, err := store.LoadFailures(s.Name)
		if err != nil {
			return 0, err
		}
		res, err := project.DiffSync(ctx, src, s, nil, project.Base{Snapshot: snap, Failures: failures})
		if err != nil {
			return 0, err
		}
		changes = res.Plan.NumChanges()
		return time.Since(t), nil
	}

	var scans, plans []time.Duration
	base := heapNow()
	var peak, live uint64
	for i := 0; i < repeat; i++ {
		d, err := scan()
		if err != nil {
			return err
		}
		scans = append(scans, d)
		heapNow()
		h := startHeapPeak()
		d, err = plan()
		p, l := h.done()
		if err != nil {
			return err
		}
		plans = append(plans, d)
		peak, live = max(peak, p), max(live, l)
	}
	ms, mp := median(scans), median(plans)
	fmt.Printf("  changes planned: %d\n", changes)
	fmt.Printf("  bare SELECT scan: %s (median of %d: %v)\n", ms.Round(time.Millisecond), repeat, round(scans))
	fmt.Printf("  plan:             %s (median of %d: %v)\n", mp.Round(time.Millisecond), repeat, round(plans))
	fmt.Printf("  ratio plan/scan:  %.2f   (target ≤ 2.0)\n", float64(mp)/float64(ms))
	fmt.Printf("  heap before planning (the embedded engine's tables): %.0f MB\n", mb(base))
	fmt.Printf("  peak live heap during plan: %.0f MB, of which the plan's own: %.0f MB (target ≤ 250 MB)\n", mb(live), mb(live-min(live, base)))
	fmt.Printf("  peak heap in use during plan (live + garbage awaiting GC at GOGC=100): %.0f MB\n", mb(peak))
	return nil
}

func round(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }
