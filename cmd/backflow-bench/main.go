// Command backflow-bench measures backflow against baselines taken in the
// same run (these machines are noisy) and prints one JSON object per
// scenario on stdout, with progress on stderr:
//
//	backflow-bench [--scenario NAME]... [--rows N] [--quick] [--db-state LIST]
//
// Without --scenario every scenario runs, in the order of the list below.
// --rows replaces each scenario's row count; --quick uses small counts so
// the whole harness runs in under a minute (CI runs it to keep it working;
// its figures mean little). Scenarios against PostgreSQL and MariaDB use
// the local servers (--postgres-dsn, --mysql-dsn; loopback by default).
//
// Each object has "scenario", the figures, the ratios against the
// baselines measured in the same run, and "target" where the project has
// one. Benchmarks are not tests: nothing is asserted.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/backflowhq/backflow/internal/testdb"
)

// scenario is one measurement the harness can run.
type scenario struct {
	name string
	doc  string
	run  func(ctx context.Context, e *env) (*result, error)
}

// scenarios lists every scenario, in the order a full run takes them.
var scenarios = []scenario{
	{"plan-embedded", "plan of 8-column rows on the embedded engine, 1% changed, vs the bare SELECT scan", runPlanEmbedded},
	{"plan-all-changed", "plan of 8-column rows on the embedded engine where every row changed (a mapping change), vs the bare SELECT scan", runPlanAllChanged},
	{"plan-postgres", "plan of a live PostgreSQL table, 1% changed, vs a plain pgx scan and COPY … TO STDOUT (CPU and wall)", runPlanPostgres},
	{"plan-pushdown", "a live PostgreSQL table, 1% changed, planned with the local diff and with warehouse CDC: rows and bytes read, wall time", runPlanPushdown},
	{"first-sync", "peak RSS of `backflow plan` (and `plan --out`, its file against the rows' JSON gzipped) when every row of a live PostgreSQL table is an add, and of `reset-cdc`", runFirstSync},
	{"apply-sqlite", "apply of N adds, then N changes, vs a direct multi-row upsert loop (same driver, batch size)", runApplySQLite},
	{"apply-postgres", "apply of N adds, then N changes, vs a direct multi-row upsert loop and vs COPY", runApplyPostgres},
	{"apply-mysql", "apply of N adds, then N changes, vs a direct multi-row upsert loop (same driver, batch size)", runApplyMySQL},
	{"apply-http", "apply to a loopback JSON API answering after 20 ms, vs batch_size × max_in_flight / latency and vs a bare client", runApplyHTTP},
	{"split", "requests to isolate k rejected records among n, vs halving and the bound ⌈log2 C(n,k)⌉", runSplit},
	{"locks", "the documented locked-rows example: statements sent and wall time, as built vs batch_size 1", runLocks},
	{"startup", "`backflow --help` and `fmt --check` as child processes, median of 25 runs, vs a Go hello-world", runStartup},
}

// options are the parsed command line.
type options struct {
	scenarios   []string
	rows        int
	quick       bool
	postgresDSN string
	mysqlDSN    string
	cpuProfile  string
	traceOut    string
	memProfile  string
	bandwidth   float64
	dbState     []string // first-sync: database state backends reset-cdc also runs with
	repeat      int      // runs of each scenario, combined by median
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func scenarioNames() []string {
	names := make([]string, len(scenarios))
	for i, s := range scenarios {
		names[i] = s.name
	}
	return names
}

func lookup(name string) (scenario, bool) {
	for _, s := range scenarios {
		if s.name == name {
			return s, true
		}
	}
	return scenario{}, false
}

// parseArgs reads the command line; an unknown scenario or a bad value is
// an error that says what is accepted.
func parseArgs(args []string, stderr io.Writer) (options, error) {
	var o options
	var names stringList
	fs := flag.NewFlagSet("backflow-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&names, "scenario", "a scenario to run (repeatable; default all): "+strings.Join(scenarioNames(), ", "))
	fs.IntVar(&o.rows, "rows", 0, "rows per scenario, replacing each scenario's own count (0: the scenario's default)")
	fs.BoolVar(&o.quick, "quick", false, "small row counts: the whole harness in under a minute")
	fs.StringVar(&o.postgresDSN, "postgres-dsn", testdb.PostgresDSN, "the PostgreSQL server to measure against")
	fs.StringVar(&o.mysqlDSN, "mysql-dsn", testdb.MariaDBDSN, "the MySQL or MariaDB server to measure against (go-sql-driver form)")
	fs.Float64Var(&o.bandwidth, "bandwidth", 0, "plan-pushdown: Mbit/s of the link the plans read through (0: loopback, unlimited)")
	dbState := fs.String("db-state", "postgres,mysql", "first-sync: database state backends reset-cdc also runs with, each in a fresh schema dropped afterwards (comma-separated: postgres, mysql; none)")
	fs.StringVar(&o.memProfile, "memprofile", "", "write an allocation profile of the whole run to this file, for go tool pprof -sample_index=alloc_space")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (setup included) to this file, for go tool pprof")
	fs.StringVar(&o.traceOut, "trace", "", "write an execution trace of the whole run to this file, for go tool trace")
	fs.IntVar(&o.repeat, "repeat", 1, "run each scenario this many times, one after the other, and print the median of each figure (every ratio is still of one run's measurements) with its range")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: backflow-bench [--scenario NAME]... [--rows N] [--quick] [--repeat N] [--db-state LIST]")
		fmt.Fprintln(stderr, "\nscenarios:")
		for _, s := range scenarios {
			fmt.Fprintf(stderr, "  %-15s %s\n", s.name, s.doc)
		}
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q: name scenarios with --scenario (one of %s)", fs.Arg(0), strings.Join(scenarioNames(), ", "))
	}
	if o.rows < 0 {
		return o, fmt.Errorf("--rows %d: give a positive row count, or 0 for each scenario's default", o.rows)
	}
	if o.repeat < 1 || o.repeat > 99 {
		return o, fmt.Errorf("--repeat %d: give a number of runs from 1 to 99", o.repeat)
	}
	for _, b := range strings.Split(*dbState, ",") {
		switch b = strings.TrimSpace(b); b {
		case "postgres", "mysql":
			if !slices.Contains(o.dbState, b) {
				o.dbState = append(o.dbState, b)
			}
		case "none", "":
		default:
			return o, fmt.Errorf("--db-state %q: choose among postgres, mysql, none (comma-separated)", b)
		}
	}
	for _, f := range []struct{ flag, dsn string }{{"--postgres-dsn", o.postgresDSN}, {"--mysql-dsn", o.mysqlDSN}} {
		if !hclHolds(f.dsn) {
			return o, fmt.Errorf("%s: not valid UTF-8 in Unicode normal form C, so the configs the scenarios write cannot hold it as given", f.flag)
		}
	}
	if err := loopbackDSNs(o.postgresDSN, o.mysqlDSN); err != nil {
		return o, err
	}
	seen := map[string]bool{}
	for _, n := range names {
		if _, ok := lookup(n); !ok {
			return o, fmt.Errorf("unknown scenario %q: choose among %s", n, strings.Join(scenarioNames(), ", "))
		}
		if !seen[n] {
			o.scenarios = append(o.scenarios, n)
			seen[n] = true
		}
	}
	if len(o.scenarios) == 0 {
		o.scenarios = scenarioNames()
	}
	return o, nil
}

// loopbackDSNs refuses a server off this machine: the scenarios create,
// fill and drop tables, and their figures are for loopback.
func loopbackDSNs(postgresDSN, mysqlDSN string) error {
	pg, err := pgconn.ParseConfig(postgresDSN)
	if err != nil {
		return fmt.Errorf("--postgres-dsn: %w", err)
	}
	hosts := []string{pg.Host}
	for _, f := range pg.Fallbacks {
		hosts = append(hosts, f.Host)
	}
	for _, h := range hosts {
		if !loopbackHost(h) {
			return fmt.Errorf("--postgres-dsn: host %q is not a loopback address (127.0.0.1, ::1, localhost or a Unix socket)", h)
		}
	}
	my, err := mysql.ParseDSN(mysqlDSN)
	if err != nil {
		return fmt.Errorf("--mysql-dsn: %w", err)
	}
	if my.Net == "unix" {
		return nil
	}
	host, _, err := net.SplitHostPort(my.Addr)
	if err != nil {
		host = my.Addr
	}
	if !loopbackHost(host) {
		return fmt.Errorf("--mysql-dsn: host %q is not a loopback address (127.0.0.1, ::1, localhost or a Unix socket)", host)
	}
	return nil
}

// loopbackHost reports whether host is a loopback IP, localhost or a Unix
// socket path.
func loopbackHost(host string) bool {
	if strings.HasPrefix(host, "/") || host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// env is what every scenario gets.
type env struct {
	options
	log io.Writer
	// bin is the built backflow CLI (see cli).
	bin string
	tmp string
}

// pick is the row count for a scenario: --rows, else the quick or the full
// default.
func (e *env) pick(quick, full int) int {
	switch {
	case e.rows > 0:
		return e.rows
	case e.quick:
		return quick
	}
	return full
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.log, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// result is one scenario's JSON object, keys in the order they were set.
type result struct {
	keys []string
	vals map[string]any
}

func newResult(name string) *result {
	r := &result{vals: map[string]any{}}
	return r.set("scenario", name)
}

func (r *result) set(k string, v any) *result {
	if _, ok := r.vals[k]; !ok {
		r.keys = append(r.keys, k)
	}
	r.vals[k] = v
	return r
}

// combine is one result for several runs of a scenario: each number is
// the median of the runs' (the lower middle one for an even count), with
// its range under "ranges" when the runs differ; anything else is the
// first run's. One run is returned as it is.
func combine(runs []*result) *result {
	if len(runs) == 1 {
		return runs[0]
	}
	out := &result{vals: map[string]any{}}
	ranges := map[string][2]float64{}
	for _, k := range runs[0].keys {
		first := runs[0].vals[k]
		var nums []float64
		for _, r := range runs {
			f, ok := number(r.vals[k])
			if !ok {
				nums = nil
				break
			}
			nums = append(nums, f)
		}
		if nums == nil {
			out.set(k, first)
			continue
		}
		slices.Sort(nums)
		out.set(k, nums[(len(nums)-1)/2])
		if nums[0] != nums[len(nums)-1] {
			ranges[k] = [2]float64{nums[0], nums[len(nums)-1]}
		}
	}
	out.set("repeats", len(runs))
	if len(ranges) > 0 {
		out.set("ranges", ranges)
	}
	return out
}

// number is v as a float64 when it is a number.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	}
	return 0, false
}

func (r *result) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range r.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		vb, err := json.Marshal(r.vals[k])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// ratio is a/b rounded to 3 decimals (0 when b is 0).
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return round3(a / b)
}

func round3(x float64) float64 {
	return float64(int64(x*1000+0.5)) / 1000
}

func secs(d time.Duration) float64 { return round3(d.Seconds()) }

func run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	tmp, err := os.MkdirTemp("", "backflow-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	e := &env{options: o, log: stderr, tmp: tmp}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if o.traceOut != "" {
		f, err := os.Create(o.traceOut)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return err
		}
		defer trace.Stop()
	}
	if o.memProfile != "" {
		defer func() {
			f, err := os.Create(o.memProfile)
			if err != nil {
				fmt.Fprintln(stderr, "memprofile:", err)
				return
			}
			defer f.Close()
			if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
				fmt.Fprintln(stderr, "memprofile:", err)
			}
		}()
	}
	var failed []string
	for _, name := range o.scenarios {
		s, _ := lookup(name)
		e.logf("== %s", name)
		start := time.Now()
		loadBefore, haveLoad := loadAverage()
		var runs []*result
		var err error
		for i := range max(o.repeat, 1) {
			if o.repeat > 1 {
				e.logf("%s: run %d of %d", name, i+1, o.repeat)
			}
			var r *result
			if r, err = s.run(ctx, e); err != nil {
				break
			}
			runs = append(runs, r)
		}
		var r *result
		if err == nil {
			r = combine(runs)
		}
		if err == nil {
			// How busy the machine was: ratios of the same run move less
			// than wall times, but they move.
			if loadAfter, ok := loadAverage(); haveLoad && ok {
				r.set("load_average_before", loadBefore).set("load_average_after", loadAfter)
			}
			var b []byte
			if b, err = json.Marshal(r); err == nil {
				fmt.Fprintf(stdout, "%s\n", b)
			}
		}
		if err != nil {
			// The other scenarios still run; the failure is one JSON
			// object too, so a reader of stdout sees it.
			e.logf("%s failed: %v", name, err)
			b, _ := json.Marshal(newResult(name).set("error", err.Error()))
			fmt.Fprintf(stdout, "%s\n", b)
			failed = append(failed, name)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		e.logf("%s done in %s", name, time.Since(start).Round(time.Millisecond))
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d scenarios failed: %s", len(failed), len(o.scenarios), strings.Join(failed, ", "))
	}
	return nil
}

func main() {
	if file := os.Getenv(measureEnv); file != "" {
		os.Exit(measureChild(file, os.Args[1:]))
	}
	if latency, ok := os.LookupEnv(apiEnv); ok {
		os.Exit(serveAPI(latency))
	}
	o, err := parseArgs(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "backflow-bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "backflow-bench:", err)
		os.Exit(1)
	}
}

// loadAverage is the 1-minute load average /proc/loadavg gives (ok
// false where there is none).
func loadAverage() (float64, bool) {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	return v, err == nil
}
