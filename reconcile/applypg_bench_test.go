package reconcile

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/internal/cputime"
	"github.com/backflowhq/backflow/state"
)

// BenchmarkApplyPostgres applies a spilled plan of 300,000 adds of 8
// columns (batches of 1,000) to a PostgreSQL table, empty at each
// iteration, with one and with four requests in flight, the local state
// writer recording and committing: what the harness's apply-postgres adds
// step times, without the harness, and the process's CPU time per apply
// (cpu-s/op: backflow's own, the server being another process). It skips when the server (the tests'
// loopback one, or BACKFLOW_TEST_POSTGRES_DSN) does not answer.
//
//	go test -run '^$' -bench ApplyPostgres -benchtime 3x ./reconcile/
func BenchmarkApplyPostgres(b *testing.B) {
	const n = 300_000
	dsn := os.Getenv("BACKFLOW_TEST_POSTGRES_DSN")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Skipf("no PostgreSQL server: %v", err)
	}
	defer admin.Close(ctx)
	s, cols, rows := benchPeople(n)
	res, err := Diff(ctx, DiffInput{Sync: s, Rows: newRows(cols, rows...), Snapshot: newMemSnapshot(cols[1:], nil), Failures: state.FailureIndex{}, SpillDir: b.TempDir()})
	if err != nil || !res.Plan.Spilled() || res.Plan.Add != n {
		b.Fatalf("spilled plan of %d adds: %v", n, err)
	}
	const table = "bench_apply_people"
	exec := func(q string) {
		if _, err := admin.Exec(ctx, q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	defer exec("DROP TABLE IF EXISTS " + table)
	for _, inFlight := range []int{1, 4} {
		b.Run(map[int]string{1: "in-flight-1", 4: "in-flight-4"}[inFlight], func(b *testing.B) {
			cfg, err := destination.Default().Config("postgres", "d", "", map[string]any{"dsn": dsn, "max_in_flight": inFlight})
			if err != nil {
				b.Fatal(err)
			}
			d, err := destination.OpenPostgres(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			plan := *res.Plan
			plan.Object = table
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				exec("DROP TABLE IF EXISTS " + table)
				exec("CREATE TABLE " + table + " (id bigint PRIMARY KEY, email text, name text, company text, country text, score bigint, ltv double precision, active boolean)")
				_, w := beginSync(b)
				b.StartTimer()
				c0 := cputime.Process()
				r, err := ApplyPlan(ctx, &plan, d, w, ApplyOptions{Policy: Policy{BatchSize: 1000, MaxAttempts: 1, MaxInFlight: inFlight}, Sleep: noSleep}, 0)
				if err != nil || r.Counts.Accepted != n {
					b.Fatalf("%v: %+v", err, r)
				}
				if err := w.Commit(); err != nil {
					b.Fatal(err)
				}
				cpu += cputime.Process() - c0
			}
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
		})
	}
}
