package reconcile

import (
	"context"
	"fmt"
	"os"
	"slices"
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
	admin := benchPostgres(b)
	s, cols, rows := benchPeople(n)
	res, err := Diff(context.Background(), DiffInput{Sync: s, Rows: newRows(cols, rows...), Snapshot: newMemSnapshot(cols[1:], nil), Failures: state.FailureIndex{}, SpillDir: b.TempDir()})
	if err != nil || !res.Plan.Spilled() || res.Plan.Add != n {
		b.Fatalf("spilled plan of %d adds: %v", n, err)
	}
	benchApplyPostgres(b, admin, res.Plan, "bench_apply_people", nil)
}

// BenchmarkApplyPostgresChanges is BenchmarkApplyPostgres for a plan of
// 300,000 changes (every record's name differs from what the table and
// the snapshot hold): upserts, the bulk statement's path rather than
// COPY's. The table is filled again before each apply, untimed.
//
//	go test -run '^$' -bench ApplyPostgresChanges -benchtime 3x ./reconcile/
func BenchmarkApplyPostgresChanges(b *testing.B) {
	const n = 300_000
	admin := benchPostgres(b)
	s, cols, rows := benchPeople(n)
	st, w := beginSync(b)
	fields := cols[1:]
	for _, r := range rows {
		v := map[string]any{}
		for j, f := range fields {
			v[f] = Canonical(r[j+1])
		}
		w.Accept(fmt.Sprint(r[0]), HashValues(fields, v), v)
	}
	if err := w.Commit(); err != nil {
		b.Fatal(err)
	}
	old := make([][]any, n)
	for i, r := range rows {
		old[i] = r
		r = slices.Clone(r)
		r[2] = r[2].(string) + " (renamed)"
		rows[i] = r
	}
	snap, err := st.LoadSnapshot("s")
	if err != nil {
		b.Fatal(err)
	}
	defer snap.Close()
	res, err := Diff(context.Background(), DiffInput{Sync: s, Rows: newRows(cols, rows...), Snapshot: snap, Failures: state.FailureIndex{}, SpillDir: b.TempDir()})
	if err != nil || !res.Plan.Spilled() || res.Plan.Change != n {
		b.Fatalf("spilled plan of %d changes: %v", n, err)
	}
	const table = "bench_apply_people_changes"
	benchApplyPostgres(b, admin, res.Plan, table, func(ctx context.Context) error {
		if _, err := admin.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(old)); err != nil {
			return err
		}
		_, err := admin.Exec(ctx, "VACUUM ANALYZE "+table)
		return err
	})
}

// benchPostgres connects to the benchmarks' server, closed when b ends,
// or skips b.
func benchPostgres(b *testing.B) *pgx.Conn {
	admin, err := pgx.Connect(context.Background(), benchPostgresDSN())
	if err != nil {
		b.Skipf("no PostgreSQL server: %v", err)
	}
	b.Cleanup(func() { admin.Close(context.Background()) })
	return admin
}

func benchPostgresDSN() string {
	if dsn := os.Getenv("BACKFLOW_TEST_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// benchApplyPostgres times the apply of plan to table, created again
// (then filled, when fill is set) and checkpointed before each one,
// untimed, with one and with four requests in flight.
func benchApplyPostgres(b *testing.B, admin *pgx.Conn, res *SyncPlan, table string, fill func(context.Context) error) {
	ctx := context.Background()
	exec := func(q string) {
		if _, err := admin.Exec(ctx, q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	defer exec("DROP TABLE IF EXISTS " + table)
	want := res.Add + res.Change
	for _, inFlight := range []int{1, 4} {
		b.Run(map[int]string{1: "in-flight-1", 4: "in-flight-4"}[inFlight], func(b *testing.B) {
			cfg, err := destination.Default().Config("postgres", "d", "", map[string]any{"dsn": benchPostgresDSN(), "max_in_flight": inFlight})
			if err != nil {
				b.Fatal(err)
			}
			d, err := destination.OpenPostgres(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			plan := *res
			plan.Object = table
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				exec("DROP TABLE IF EXISTS " + table)
				exec("CREATE TABLE " + table + " (id bigint PRIMARY KEY, email text, name text, company text, country text, score bigint, ltv double precision, active boolean)")
				if fill != nil {
					if err := fill(ctx); err != nil {
						b.Fatal(err)
					}
					exec("CHECKPOINT")
				}
				_, w := beginSync(b)
				b.StartTimer()
				c0 := cputime.Process()
				r, err := ApplyPlan(ctx, &plan, d, w, ApplyOptions{Policy: Policy{BatchSize: 1000, MaxAttempts: 1, MaxInFlight: inFlight}, Sleep: noSleep}, 0)
				if err != nil || r.Counts.Accepted != want {
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
