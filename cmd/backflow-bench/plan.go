package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/backflowhq/backflow/engine"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/internal/cputime"
	"github.com/backflowhq/backflow/project"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/state"
)

// The benchmark table: 8 columns of the usual kinds.
const peopleColumns = "id, email, name, company, country, score, ltv, active"

var countries = []string{"FR", "DE", "US", "JP", "BR", "IN"}

// writeFixture writes rows of the 8-column table as people.csv in dir; name
// is "User N" followed by suffix, so two fixtures with different suffixes
// differ in one column of every row.
func writeFixture(dir string, rows int, suffix string) error {
	f, err := os.Create(filepath.Join(dir, "people.csv"))
	if err != nil {
		return err
	}
	defer f.Close()
	var b strings.Builder
	b.WriteString(strings.ReplaceAll(peopleColumns, " ", "") + "\n")
	for i := 1; i <= rows; i++ {
		fmt.Fprintf(&b, "%d,user%d@example.com,User %d%s,Company %d,%s,%d,%d.%02d,%v\n",
			i, i, i, suffix, i%5000, countries[i%len(countries)], i%1000, i%100000, i%100, i%7 != 0)
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

// postgresPeople creates table with rows of the 8-column table, made by
// the server.
func postgresPeople(ctx context.Context, conn *pgx.Conn, table string, rows int) error {
	_, err := conn.Exec(ctx, `CREATE TABLE `+table+` (id bigint PRIMARY KEY, email text, name text, company text,
		country text, score bigint, ltv numeric(12,2), active boolean)`)
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, `INSERT INTO `+table+` SELECT i, 'user'||i||'@example.com', 'User '||i, 'Company '||(i%5000),
		(ARRAY['FR','DE','US','JP','BR','IN'])[i%6+1], i%1000, (i%100000) + (i%100)/100.0, i%7 <> 0
		FROM generate_series(1, $1::bigint) AS i`, rows)
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, `ANALYZE `+table)
	return err
}

func benchSync(query string) *config.Sync {
	var mapping []config.Field
	for _, c := range []string{"company", "country", "email", "ltv", "name", "score", "active"} {
		mapping = append(mapping, config.Field{Field: c, Column: c})
	}
	return &config.Sync{
		Name: "bench", Object: "people", Key: "id", Mode: config.ModeUpsert, DeleteBehavior: config.DeleteDelete,
		Model:       &config.Model{Name: "people", Query: query, PrimaryKey: []string{"id"}},
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

func mb(b uint64) float64 { return round3(float64(b) / (1 << 20)) }

// timing is the wall and CPU time (this process, user + system) of a
// measured step.
// timing is a step's wall and CPU time, and when it started.
type timing struct {
	wall, cpu time.Duration
	start     time.Time
	// server is the CPU time the database server's processes used
	// meanwhile (measureServer; serverOK false: not measured).
	server   time.Duration
	serverOK bool
}

func measure(fn func() error) (timing, error) { return measureServer(nil, fn) }

// measureServer is measure, with the CPU time of the local server whose
// processes are named server (serverCPU) over the same span.
func measureServer(server []string, fn func() error) (timing, error) {
	s0, ok0 := serverCPU(server)
	c0 := cputime.Process()
	t := time.Now()
	err := fn()
	tm := timing{wall: time.Since(t), cpu: cputime.Process() - c0, start: t}
	if ok0 {
		// Backends whose connection the step closed end a moment later;
		// one read while the postmaster reaps one can miss its time (read
		// neither live nor in the postmaster's children's), so the largest of
		// a few reads 10 ms apart counts (the times only grow otherwise).
		var s1 time.Duration
		ok1 := false
		for i := range 5 {
			if i > 0 {
				time.Sleep(10 * time.Millisecond)
			}
			if d, ok := serverCPU(server); ok && d > s1 {
				s1, ok1 = d, true
			}
		}
		if ok1 && s1 >= s0 {
			tm.server, tm.serverOK = s1-s0, true
		}
	}
	return tm, err
}

// medians of each of wall and CPU time.
func medians(ts []timing) timing {
	var w, c []time.Duration
	for _, t := range ts {
		w, c = append(w, t.wall), append(c, t.cpu)
	}
	return timing{wall: median(w), cpu: median(c)}
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// planBench is a plan of benchSync over src against a snapshot in which a
// fraction of the rows differ, measured alternately with baselines that
// read the same rows.
type planBench struct {
	src       engine.Source
	query     string
	rows      int
	changed   float64
	repeat    int
	baselines []baseline
	// heap samples the heap during each plan (it stops the world every
	// 5 ms, so the CPU figures of a scenario that compares CPU go without).
	heap bool
}

type baseline struct {
	name string
	run  func(ctx context.Context) error
}

type planFigures struct {
	changes   int
	plan      timing
	plans     []timing
	baselines map[string]timing
	heapBase  uint64
	heapLive  uint64
	heapInUse uint64
}

func (pb *planBench) run(ctx context.Context, e *env) (*planFigures, error) {
	s := benchSync(pb.query)
	all := *s
	all.Mode = config.ModeAll
	store, err := state.Open(filepath.Join(e.tmp, fmt.Sprintf("state-%d", time.Now().UnixNano())))
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(store.Dir())
	e.logf("building the snapshot (%d rows, %.1f%% differ)", pb.rows, pb.changed*100)
	if err := func() error {
		res, err := project.DiffSync(ctx, pb.src, &all, nil, project.Base{})
		if err != nil {
			return err
		}
		if n := res.Plan.NumChanges(); n != pb.rows {
			return fmt.Errorf("the model returned %d rows, want %d", n, pb.rows)
		}
		w, err := store.Begin(s.Name, true)
		if err != nil {
			return err
		}
		every := int(1 / pb.changed)
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
		return nil, fmt.Errorf("building the snapshot: %w", err)
	}
	f := &planFigures{baselines: map[string]timing{}}
	plan := func() error {
		snap, err := store.LoadSnapshot(s.Name)
		if err != nil {
			return err
		}
		defer snap.Close()
		failures, err := store.LoadFailures(s.Name)
		if err != nil {
			return err
		}
		res, err := project.DiffSync(ctx, pb.src, s, nil, project.Base{Snapshot: snap, Failures: failures})
		if err != nil {
			return err
		}
		f.changes = res.Plan.NumChanges()
		return nil
	}
	runs := map[string][]timing{}
	f.heapBase = heapNow()
	for i := 0; i < pb.repeat; i++ {
		for _, b := range pb.baselines {
			heapNow()
			t, err := measure(func() error { return b.run(ctx) })
			if err != nil {
				return nil, fmt.Errorf("%s: %w", b.name, err)
			}
			runs[b.name] = append(runs[b.name], t)
		}
		heapNow()
		var h *heapPeak
		if pb.heap {
			h = startHeapPeak()
		}
		t, err := measure(plan)
		if h != nil {
			p, l := h.done()
			f.heapInUse, f.heapLive = max(f.heapInUse, p), max(f.heapLive, l)
		}
		if err != nil {
			return nil, fmt.Errorf("plan: %w", err)
		}
		f.plans = append(f.plans, t)
		e.logf("round %d/%d: plan %s wall, %s CPU", i+1, pb.repeat, t.wall.Round(time.Millisecond), t.cpu.Round(time.Millisecond))
	}
	f.plan = medians(f.plans)
	for name, ts := range runs {
		f.baselines[name] = medians(ts)
	}
	return f, nil
}

// countRows is the bare scan of a model query through a Source.
func countRows(src engine.Source, query string, want int) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		rs, err := src.Query(ctx, query)
		if err != nil {
			return err
		}
		n := 0
		for rs.Next() {
			_ = rs.Row()
			n++
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("scan read %d rows, want %d", n, want)
		}
		return nil
	}
}

func runPlanEmbedded(ctx context.Context, e *env) (*result, error) {
	return planEmbedded(ctx, e, "plan-embedded", 0.01, e.pick(20_000, 1_000_000), "plan_vs_scan ≤ 2.0; plan_live_heap_mb ≤ 250; at 1,000,000 rows fixture_load_s ≤ 2 and fixture_bytes_per_row ≤ 300")
}

// runPlanAllChanged is the plan after a change that touches every row (a
// mapping change): every key's snapshot values are read and every row is a
// change.
func runPlanAllChanged(ctx context.Context, e *env) (*result, error) {
	return planEmbedded(ctx, e, "plan-all-changed", 1, e.pick(20_000, 300_000), "plan_vs_scan ≤ 2.0")
}

func planEmbedded(ctx context.Context, e *env, name string, changed float64, rows int, target string) (*result, error) {
	dir := filepath.Join(e.tmp, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := writeFixture(dir, rows, ""); err != nil {
		return nil, err
	}
	e.logf("loading %d rows into the embedded engine", rows)
	before := heapNow()
	start := time.Now()
	src := engine.NewEmbedded()
	if diags := src.LoadDir(dir, nil); diags.HasErrors() {
		return nil, diags
	}
	defer src.Close()
	load := time.Since(start)
	// What the loaded rows hold (the engine's tables, after a
	// collection), per row.
	held := heapNow()
	perRow := int64(float64(held-min(held, before)) / float64(rows))
	query := "SELECT " + peopleColumns + " FROM people"
	pb := &planBench{src: src, query: query, rows: rows, changed: changed, repeat: repeats(e), heap: true,
		baselines: []baseline{{"scan", countRows(src, query, rows)}}}
	f, err := pb.run(ctx, e)
	if err != nil {
		return nil, err
	}
	scan := f.baselines["scan"]
	return newResult(name).
		set("rows", rows).set("changed_rows", f.changes).
		set("fixture_load_s", secs(load)).set("fixture_bytes_per_row", perRow).
		set("scan_s", secs(scan.wall)).set("plan_s", secs(f.plan.wall)).
		set("plan_runs_s", wallSecs(f.plans)).
		set("plan_vs_scan", ratio(f.plan.wall.Seconds(), scan.wall.Seconds())).
		set("engine_heap_mb", mb(f.heapBase)).
		set("plan_live_heap_mb", mb(f.heapLive-min(f.heapLive, f.heapBase))).
		set("peak_heap_in_use_mb", mb(f.heapInUse)).
		set("target", target), nil
}

func runPlanPostgres(ctx context.Context, e *env) (*result, error) {
	rows := e.pick(20_000, 1_000_000)
	conn, err := pgx.Connect(ctx, e.postgresDSN)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	table := benchName("bench_plan")
	e.logf("creating %s with %d rows", table, rows)
	if err := postgresPeople(ctx, conn, table, rows); err != nil {
		return nil, err
	}
	defer conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+table)
	src, err := engine.OpenPostgres(ctx, e.postgresDSN, engine.LiveOptions{})
	if err != nil {
		return nil, err
	}
	defer src.Close()
	query := "SELECT " + peopleColumns + " FROM " + table
	// The plain scan reads every value as pgx decodes it by default; COPY
	// moves the same rows as text without decoding them.
	pgxScan := func(ctx context.Context) error {
		rs, err := conn.Query(ctx, query)
		if err != nil {
			return err
		}
		n := 0
		for rs.Next() {
			if _, err := rs.Values(); err != nil {
				rs.Close()
				return err
			}
			n++
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return err
		}
		if n != rows {
			return fmt.Errorf("pgx scan read %d rows, want %d", n, rows)
		}
		return nil
	}
	var copied int64
	copyOut := func(ctx context.Context) error {
		tag, err := conn.PgConn().CopyTo(ctx, io.Discard, "COPY ("+query+") TO STDOUT")
		copied = tag.RowsAffected()
		return err
	}
	pb := &planBench{src: src, query: query, rows: rows, changed: 0.01, repeat: repeats(e),
		baselines: []baseline{{"pgx", pgxScan}, {"copy", copyOut}}}
	f, err := pb.run(ctx, e)
	if err != nil {
		return nil, err
	}
	if copied != int64(rows) {
		return nil, fmt.Errorf("COPY moved %d rows, want %d", copied, rows)
	}
	px, cp := f.baselines["pgx"], f.baselines["copy"]
	return newResult("plan-postgres").
		set("rows", rows).set("changed_rows", f.changes).
		set("plan_wall_s", secs(f.plan.wall)).set("plan_cpu_s", secs(f.plan.cpu)).
		set("pgx_scan_wall_s", secs(px.wall)).set("pgx_scan_cpu_s", secs(px.cpu)).
		set("copy_wall_s", secs(cp.wall)).set("copy_cpu_s", secs(cp.cpu)).
		set("plan_vs_pgx_cpu", ratio(f.plan.cpu.Seconds(), px.cpu.Seconds())).
		set("plan_vs_pgx_wall", ratio(f.plan.wall.Seconds(), px.wall.Seconds())).
		set("plan_vs_copy_wall", ratio(f.plan.wall.Seconds(), cp.wall.Seconds())).
		set("target", "plan_vs_pgx_cpu ≤ 1.3"), nil
}

// runPlanPushdown plans a PostgreSQL table in which 1% of rows changed
// with the local diff and with warehouse CDC (see benchPushdown).
func runPlanPushdown(ctx context.Context, e *env) (*result, error) {
	return benchPushdown(ctx, e, e.postgresDSN, e.pick(20_000, 1_000_000), 0.01, repeats(e), e.bandwidth, "copy")
}

func repeats(e *env) int {
	if e.quick {
		return 1
	}
	return 3
}

func wallSecs(ts []timing) []float64 {
	out := make([]float64, len(ts))
	for i, t := range ts {
		out[i] = secs(t.wall)
	}
	return out
}

// benchName is a table name no other run uses.
func benchName(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), time.Now().UnixNano()%1e9)
}
