package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// cli builds the backflow command once per run and returns its path.
func (e *env) cli(ctx context.Context) (string, error) {
	if e.bin != "" {
		return e.bin, nil
	}
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("finding the module (run from the backflow checkout): %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	bin := filepath.Join(e.tmp, "backflow")
	e.logf("building the backflow command")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/backflow")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/backflow: %v\n%s", err, out)
	}
	e.bin = bin
	return bin, nil
}

// childRun is what child measured of one run of the backflow command.
type childRun struct {
	wall, cpu time.Duration // cpu: user and system
	rss       uint64        // peak RSS in bytes
	summary   []string
}

// child runs the backflow command with args in dir and reports its wall
// time, its CPU time, its peak RSS and the lines of its standard output
// that start with "Plan:" or "Reset complete:" (the rest, a rendering of
// every change, is discarded).
func (e *env) child(ctx context.Context, dir string, args ...string) (childRun, error) {
	var run childRun
	bin, err := e.cli(ctx)
	if err != nil {
		return run, err
	}
	// Linux counts in a child's peak RSS the memory of the process that
	// started it (vfork shares it until exec), so the command is started
	// by a fresh, small copy of this program (see measureChild) rather
	// than by this process, which may hold gigabytes by now.
	self, err := os.Executable()
	if err != nil {
		return run, err
	}
	rssFile := filepath.Join(e.tmp, "rss")
	cmd := exec.CommandContext(ctx, self, append([]string{bin, "-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), measureEnv+"="+rssFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return run, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return run, err
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "Plan:") || strings.HasPrefix(line, "Reset complete:") {
			run.summary = append(run.summary, line)
		}
	}
	io.Copy(io.Discard, out) // a line longer than the scanner takes
	err = cmd.Wait()
	run.wall = time.Since(start)
	if err != nil {
		return run, fmt.Errorf("backflow %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	b, err := os.ReadFile(rssFile)
	if err != nil {
		return run, err
	}
	rss, cpu, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	ns, cerr := strconv.ParseInt(cpu, 10, 64)
	run.rss, err = strconv.ParseUint(rss, 10, 64)
	if !ok || cerr != nil || err != nil {
		return run, fmt.Errorf("the measuring process wrote %q, want the peak RSS and CPU nanoseconds", b)
	}
	run.cpu = time.Duration(ns)
	return run, nil
}

// measureEnv names the file a measuring copy of this program writes its
// child's peak RSS to.
const measureEnv = "BACKFLOW_BENCH_RSS_FILE"

// measureChild runs args as a command with this process's standard
// streams, writes its peak RSS in bytes and its CPU time (user and
// system) in nanoseconds to file, and returns its exit code.
func measureChild(file string, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "backflow-bench: nothing to measure")
		return 2
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, measureEnv+"=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	err := cmd.Run()
	if cmd.ProcessState == nil {
		fmt.Fprintln(os.Stderr, "backflow-bench:", err)
		return 2
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if err := os.WriteFile(file, fmt.Appendf(nil, "%d %d", maxRSS(cmd.ProcessState), cpu.Nanoseconds()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "backflow-bench:", err)
		return 2
	}
	return cmd.ProcessState.ExitCode()
}

// rssTargetMB is the project's peak RSS target for first-sync and
// reset-cdc at 3,000,000 rows.
const rssTargetMB = 400

// runFirstSync plans a sync never applied, from a live PostgreSQL table:
// every row is an add. The figure is the plan command's peak RSS, against
// that of `backflow --help` (what the binary costs before any work). Then
// `backflow reset-cdc` takes the same rows as synced (every row an accept
// in the state's journal, then a snapshot of all of them): its peak RSS
// and wall time too.
func runFirstSync(ctx context.Context, e *env) (*result, error) {
	sizes := []int{1_000_000, 3_000_000}
	switch {
	case e.rows > 0:
		sizes = []int{e.rows}
	case e.quick:
		sizes = []int{20_000}
	}
	conn, err := pgx.Connect(ctx, e.postgresDSN)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	dir := filepath.Join(e.tmp, "first-sync")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := emptySQLiteTable(filepath.Join(dir, "crm.db"), "people"); err != nil {
		return nil, err
	}
	help, err := e.child(ctx, dir, "--help")
	if err != nil {
		return nil, err
	}
	helpRSS := help.rss
	r := newResult("first-sync").set("help_rss_mb", mb(helpRSS))
	var runs []map[string]any
	for _, rows := range sizes {
		table := benchName("bench_first")
		fig, err := func() (map[string]any, error) {
			// Dropped however the run ends, an interrupt included.
			defer conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+table)
			e.logf("creating %s with %d rows", table, rows)
			if err := postgresPeople(ctx, conn, table, rows); err != nil {
				return nil, err
			}
			cfg := `source "w" {
  type = "postgres"
  dsn  = ` + hclString(e.postgresDSN) + `
}
model "people" {
  source      = source.w
  query       = ` + hclString("SELECT "+peopleColumns+" FROM "+table) + `
  primary_key = "id"
}
destination "d" {
  type = "sqlite"
  path = "crm.db"
}
sync "people" {
  model       = model.people
  destination = destination.d
  object      = "people"
  key         = "id"
  mapping     = { email = "email", name = "name", company = "company", country = "country", score = "score", ltv = "ltv", active = "active" }
}
`
			if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg), 0o644); err != nil {
				return nil, err
			}
			e.logf("backflow plan of %d adds", rows)
			plan, err := e.child(ctx, dir, "plan")
			if err != nil {
				return nil, err
			}
			want := fmt.Sprintf("Plan: %d to add, 0 to change, 0 to remove, 0 to retry.", rows)
			if len(plan.summary) != 1 || plan.summary[0] != want {
				return nil, fmt.Errorf("backflow plan printed %q, want %q", plan.summary, want)
			}
			wall, rss := plan.wall, plan.rss
			e.logf("plan: %s, peak RSS %.0f MB", wall.Round(time.Millisecond), mb(rss))
			saved, err := e.savedPlan(ctx, conn, dir, table, want)
			if err != nil {
				return nil, err
			}
			e.logf("plan --out: %s, peak RSS %.0f MB; the file %.1f MB, the rows' JSON gzipped %.1f MB",
				saved.run.wall.Round(time.Millisecond), mb(saved.run.rss), mb(uint64(saved.size)), mb(uint64(saved.jsonGz)))
			e.logf("backflow reset-cdc of %d rows", rows)
			reset, err := e.child(ctx, dir, "reset-cdc", "people", "--auto-approve")
			if err != nil {
				return nil, err
			}
			done := fmt.Sprintf("Reset complete: sync \"people\" now takes %d records as synced.", rows)
			if len(reset.summary) != 2 || reset.summary[0] != want || reset.summary[1] != done {
				return nil, fmt.Errorf("backflow reset-cdc printed %q, want %q", reset.summary, []string{want, done})
			}
			if err := os.RemoveAll(filepath.Join(dir, ".backflow")); err != nil { // the next size starts unsynced
				return nil, err
			}
			resetRSS := reset.rss
			e.logf("reset-cdc: %s (%s CPU), peak RSS %.0f MB", reset.wall.Round(time.Millisecond), reset.cpu.Round(time.Millisecond), mb(resetRSS))
			fig := map[string]any{
				"rows": rows, "plan_s": secs(wall), "peak_rss_mb": mb(rss),
				"bytes_per_row": int64(float64(rss-min(rss, helpRSS)) / float64(rows)),
				"rss_vs_target": ratio(mb(rss), rssTargetMB),
				"reset_cdc_s":   secs(reset.wall), "reset_cdc_cpu_s": secs(reset.cpu), "reset_cdc_peak_rss_mb": mb(resetRSS),
				"reset_cdc_bytes_per_row": int64(float64(resetRSS-min(resetRSS, helpRSS)) / float64(rows)),
				"reset_cdc_rss_vs_target": ratio(mb(resetRSS), rssTargetMB),
				"plan_out_s":              secs(saved.run.wall), "plan_out_peak_rss_mb": mb(saved.run.rss),
				"plan_out_rss_vs_target": ratio(mb(saved.run.rss), rssTargetMB),
				"saved_plan_mb":          mb(uint64(saved.size)), "rows_json_mb": mb(uint64(saved.json)),
				"rows_json_gz_mb": mb(uint64(saved.jsonGz)), "saved_plan_vs_json_gz": ratio(float64(saved.size), float64(saved.jsonGz)),
			}
			for _, backend := range e.dbState {
				e.logf("backflow reset-cdc of %d rows, state in %s", rows, backend)
				db, err := e.resetDBState(ctx, dir, cfg, backend, []string{want, done})
				if err != nil {
					return nil, err
				}
				e.logf("reset-cdc, %s state: %s (%s CPU), peak RSS %.0f MB", backend, db.wall.Round(time.Millisecond), db.cpu.Round(time.Millisecond), mb(db.rss))
				p := "reset_cdc_" + dbStateKey[backend] + "_"
				fig[p+"s"], fig[p+"cpu_s"], fig[p+"peak_rss_mb"] = secs(db.wall), secs(db.cpu), mb(db.rss)
				fig[p+"vs_local_rss"] = ratio(mb(db.rss), mb(resetRSS))
				fig[p+"rss_vs_target"] = ratio(mb(db.rss), rssTargetMB)
			}
			return fig, nil
		}()
		if err != nil {
			return nil, err
		}
		runs = append(runs, fig)
	}
	target := fmt.Sprintf("peak_rss_mb ≤ %d at 3,000,000 rows (rss_vs_target ≤ 1); reset_cdc_peak_rss_mb ≤ %d at 3,000,000 rows (reset_cdc_rss_vs_target ≤ 1)", rssTargetMB, rssTargetMB)
	for _, backend := range e.dbState {
		target += fmt.Sprintf(", with %s state too (reset_cdc_%s_rss_vs_target ≤ 1)", backend, dbStateKey[backend])
	}
	target += fmt.Sprintf("; saved_plan_vs_json_gz ≤ %.1f (the file `plan --out` wrote, against the same rows as JSON, one object per row, gzipped)", savedPlanTarget)
	return r.set("runs", runs).set("target", target), nil
}

// savedPlanTarget is the project's bound on a saved plan's size, against
// the changed rows' JSON compressed.
const savedPlanTarget = 1.5

// savedPlanRun is what savedPlan measured.
type savedPlanRun struct {
	run  childRun
	size int64 // the plan file's bytes
	// json and jsonGz are the bytes of the plan's rows as JSON, one
	// object per line (row_to_json of the model's query), and gzipped.
	json, jsonGz int64
}

// savedPlan runs `backflow plan --out` in dir, whose sync reads
// peopleColumns from table and has never been applied (every row an
// add), checks that it printed want, and measures the file against the
// rows as JSON, gzipped (compress/gzip's default level): what a plan
// holding the changed rows' values could be expected to take.
func (e *env) savedPlan(ctx context.Context, conn *pgx.Conn, dir, table, want string) (savedPlanRun, error) {
	var s savedPlanRun
	file := filepath.Join(dir, "first-sync.bfplan")
	defer os.Remove(file)
	e.logf("backflow plan --out")
	run, err := e.child(ctx, dir, "plan", "--out", file)
	if err != nil {
		return s, err
	}
	if len(run.summary) != 1 || run.summary[0] != want {
		return s, fmt.Errorf("backflow plan --out printed %q, want %q", run.summary, want)
	}
	st, err := os.Stat(file)
	if err != nil {
		return s, err
	}
	s.run, s.size = run, st.Size()
	e.logf("the rows as JSON, gzipped")
	var raw, gz countingWriter
	zw := gzip.NewWriter(&gz)
	q := "COPY (SELECT row_to_json(t) FROM (SELECT " + peopleColumns + " FROM " + table + ") t) TO STDOUT"
	if _, err := conn.PgConn().CopyTo(ctx, io.MultiWriter(&raw, zw), q); err != nil {
		return s, fmt.Errorf("the rows as JSON: %w", err)
	}
	if err := zw.Close(); err != nil {
		return s, err
	}
	s.json, s.jsonGz = raw.n, gz.n
	return s, nil
}

// countingWriter counts the bytes written to it and keeps none.
type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// dbStateKey is the part of the figures' names that says which database
// state backend reset-cdc ran with.
var dbStateKey = map[string]string{"postgres": "pgstate", "mysql": "mysqlstate"}

// resetDBState runs `backflow reset-cdc people --auto-approve` on the
// project cfg with its state in a database (backend "postgres" on
// --postgres-dsn or "mysql" on --mysql-dsn), in a fresh schema dropped
// afterwards, and checks that it printed want.
func (e *env) resetDBState(ctx context.Context, dir, cfg, backend string, want []string) (childRun, error) {
	schema := benchName("bench_state")
	var dsn string
	var drop func() error
	switch backend {
	case "postgres":
		dsn = e.postgresDSN
		drop = func() error {
			conn, err := pgx.Connect(context.Background(), e.postgresDSN)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			_, err = conn.Exec(context.Background(), `DROP SCHEMA IF EXISTS "`+schema+`" CASCADE`)
			return err
		}
	case "mysql":
		dsn = e.mysqlDSN
		drop = func() error {
			db, err := sql.Open("mysql", e.mysqlDSN)
			if err != nil {
				return err
			}
			defer db.Close()
			_, err = db.ExecContext(context.Background(), "DROP DATABASE IF EXISTS `"+schema+"`")
			return err
		}
	default:
		return childRun{}, fmt.Errorf("no database state backend %q", backend)
	}
	block := "state {\n  backend = " + hclString(backend) + "\n  dsn     = " + hclString(dsn) + "\n  schema  = " + hclString(schema) + "\n}\n"
	main := filepath.Join(dir, "main.hcl")
	if err := os.WriteFile(main, []byte(cfg+block), 0o644); err != nil {
		return childRun{}, err
	}
	run, err := e.child(ctx, dir, "reset-cdc", "people", "--auto-approve")
	if derr := drop(); derr != nil && err == nil {
		err = fmt.Errorf("dropping the state schema %s: %w", schema, derr)
	}
	if rerr := os.WriteFile(main, []byte(cfg), 0o644); rerr != nil && err == nil {
		err = rerr
	}
	if rerr := os.RemoveAll(filepath.Join(dir, ".backflow")); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return run, err
	}
	if !slices.Equal(run.summary, want) {
		return run, fmt.Errorf("backflow reset-cdc with %s state printed %q, want %q", backend, run.summary, want)
	}
	return run, nil
}

// emptySQLiteTable creates a SQLite file holding an empty table of the
// benchmark's shape, for plans that inspect their destination.
func emptySQLiteTable(path, table string) error {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.Exec(`CREATE TABLE ` + table + ` (id INTEGER PRIMARY KEY, email TEXT, name TEXT, company TEXT,
		country TEXT, score INTEGER, ltv REAL, active BOOLEAN)`)
	return err
}
