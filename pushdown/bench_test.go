package pushdown_test

import (
	"context"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/backflowhq/backflow/internal/pdbench"
	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/pushdown"
	"github.com/backflowhq/backflow/state"
)

// BenchmarkWarehouseDiff plans a sync of a table of BACKFLOW_BENCH_ROWS
// rows (default 100,000) of 8 columns, 1% of them changed since every row
// was synced, with warehouse CDC (the time per op) and with the local diff
// over the same source, on the local PostgreSQL and MariaDB:
//
//	BACKFLOW_BENCH_ROWS=1000000 go test -run '^$' -bench WarehouseDiff -benchtime 3x ./pushdown/
//
// local_s is the local diff's median time, warehouse/local their ratio.
// The snapshot table is filled through reset-cdc's own path, which holds
// every row in memory (about 3 GB at a million rows).
func BenchmarkWarehouseDiff(b *testing.B) {
	rows := 100_000
	if v := os.Getenv("BACKFLOW_BENCH_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 {
			b.Fatalf("BACKFLOW_BENCH_ROWS=%q: want a number of rows, at least 100", v)
		}
		rows = n
	}
	for _, open := range []func(testing.TB) server{postgresServer, mariadbServer} {
		srv := open(b)
		b.Run(string(srv.dialect), func(b *testing.B) { benchWarehouseDiff(b, srv, rows) })
	}
}

func benchWarehouseDiff(b *testing.B, srv server, rows int) {
	ctx := context.Background()
	tbl, cdc := testdb.Name("bfpdb"), testdb.Name("bfcdcb")
	b.Cleanup(func() { srv.exec(b, "DROP TABLE IF EXISTS "+tbl); srv.drop(cdc) })
	if srv.dialect == pushdown.Postgres {
		srv.exec(b, append(pdbench.PostgresTable(tbl, rows), "VACUUM "+tbl)...)
	} else {
		srv.exec(b, pdbench.MariaDBTable(tbl, rows)...)
	}
	src, err := srv.open(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	s := pdbench.Sync(tbl)
	query := s.Model.Query
	cols, err := src.Schema(ctx, query)
	if err != nil {
		b.Fatal(err)
	}
	local, err := state.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	target := pushdown.Target{Dialect: srv.dialect, Schema: cdc, DSN: srv.dsn}
	// Every row synced, both ways: the local snapshot, and the table
	// through reset-cdc's path.
	if err := pdbench.SeedLocal(ctx, src, local, s); err != nil {
		b.Fatal(err)
	}
	if err := pdbench.SeedTable(ctx, src, target, s, cols); err != nil {
		b.Fatal(err)
	}
	srv.exec(b, "UPDATE "+tbl+" SET name = CONCAT(name, ' (changed)') WHERE id % 100 = 0")
	want := rows / 100

	var localTimes []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got, stats, err := pushdown.Diff(ctx, src, target, pushdown.Input{Sync: s, Columns: cols, Failures: state.FailureIndex{}})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if len(got.Plan.Changes) != want || stats.Rows != int64(want) {
			b.Fatalf("warehouse CDC planned %d changes from %d rows read, want %d", len(got.Plan.Changes), stats.Rows, want)
		}
		start := time.Now()
		lres, err := pdbench.LocalDiff(ctx, src, local, s, nil)
		if err != nil {
			b.Fatal(err)
		}
		localTimes = append(localTimes, time.Since(start))
		if lres.Plan.Change != want {
			b.Fatalf("the local diff planned %d changes, want %d", lres.Plan.Change, want)
		}
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(localTimes)
	med := localTimes[len(localTimes)/2].Seconds()
	b.ReportMetric(med, "local_s")
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)/med, "warehouse/local")
}
