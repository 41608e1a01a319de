// Command backflow-bench measures backflow against baselines taken in the
// same run, and prints the figures:
//
//	backflow-bench plan  [-rows 1000000] [-changed 0.01] [-repeat 3] [-rule CEL]
//	backflow-bench split [-trials 200]
//	backflow-bench pushdown [-dsn URL] [-rows 1000000] [-changed 0.01] [-repeat 3] [-bandwidth Mbit/s] [-seed reset|copy]
//
// plan: a 1,000,000-row, 8-column model on the embedded engine, planned
// against a snapshot in which 1% of the rows differ; prints the time of the
// bare model SELECT scan, the plan time, their ratio and the peak heap.
//
// pushdown: a PostgreSQL table in which 1% of rows changed since the last
// apply, planned with the local diff and with warehouse CDC: rows and bytes
// each reads, wall times, ratios; the two plans must be identical.
//
// split: the group-testing table — for n bad-free records with k bad ones
// at random positions (fixed seeds), the mean number of requests backflow's
// split retries and plain recursive halving need to isolate them once the
// batch was rejected, against the bound ⌈log2 C(n,k)⌉.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: backflow-bench plan|split|pushdown [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "plan":
		fs := flag.NewFlagSet("plan", flag.ExitOnError)
		rows := fs.Int("rows", 1_000_000, "rows in the model")
		changed := fs.Float64("changed", 0.01, "fraction of rows that differ from the snapshot")
		repeat := fs.Int("repeat", 3, "measurements of each (the median is reported)")
		rule := fs.String("rule", "", "an exclude rule (CEL) the sync evaluates on every row")
		fs.Parse(os.Args[2:])
		err = benchPlan(*rows, *changed, *repeat, *rule)
	case "pushdown":
		fs := flag.NewFlagSet("pushdown", flag.ExitOnError)
		dsn := fs.String("dsn", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "the PostgreSQL database the table is created in")
		rows := fs.Int("rows", 1_000_000, "rows in the table")
		changed := fs.Float64("changed", 0.01, "fraction of rows changed since the last apply")
		repeat := fs.Int("repeat", 3, "measurements of each (the median is reported)")
		mbps := fs.Float64("bandwidth", 0, "Mbit/s of the link the plans read through (0: loopback, unlimited)")
		seed := fs.String("seed", "reset", "how the snapshot table is filled: reset (the reset-cdc path, every row in memory) or copy (from the local snapshot, for millions of rows)")
		fs.Parse(os.Args[2:])
		err = benchPushdown(*dsn, *rows, *changed, *repeat, *mbps, *seed)
	case "split":
		fs := flag.NewFlagSet("split", flag.ExitOnError)
		trials := fs.Int("trials", 200, "random placements per cell")
		fs.Parse(os.Args[2:])
		err = benchSplit(*trials)
	default:
		err = fmt.Errorf("unknown benchmark %q (plan, split, pushdown)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
