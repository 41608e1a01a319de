package pushdown_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/pushdown"
	"github.com/backflowhq/backflow/reconcile"
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
		srv.exec(b, "CREATE TABLE "+tbl+" (id bigint PRIMARY KEY, name text, email text, country text, score numeric(8,2), signup timestamptz, active boolean, visits integer)",
			fmt.Sprintf(`INSERT INTO %s SELECT i, 'user ' || i, 'user' || i || '@example.com', (ARRAY['FR','DE','US','JP'])[1 + i %% 4],
				(i %% 10000) / 100.0, timestamptz '2024-01-01' + i * interval '1 second', i %% 3 = 0, i %% 97 FROM generate_series(1, %d) i`, tbl, rows),
			"VACUUM ANALYZE "+tbl)
	} else {
		srv.exec(b, "CREATE TABLE "+tbl+" (id BIGINT PRIMARY KEY, name TEXT, email TEXT, country TEXT, score DECIMAL(8,2), signup DATETIME(6), active BOOLEAN, visits INT)",
			fmt.Sprintf(`INSERT INTO %s SELECT seq, CONCAT('user ', seq), CONCAT('user', seq, '@example.com'), ELT(1 + seq %% 4, 'FR','DE','US','JP'),
				(seq %% 10000) / 100.0, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND, seq %% 3 = 0, seq %% 97 FROM seq_1_to_%d`, tbl, rows),
			"ANALYZE TABLE "+tbl)
	}
	src, err := srv.open(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	query := "SELECT id, name, email, country, score, signup, active, visits FROM " + tbl
	s := &config.Sync{Name: "bench", Object: "contacts", Key: "id", Mode: config.ModeUpsert, DeleteBehavior: config.DeleteNothing,
		Model:       &config.Model{Name: "bench", Query: query, PrimaryKey: []string{"id"}},
		Destination: &config.Destination{Name: "dest"},
		MaxRemovals: config.Limit{Percent: true, Fraction: 1},
		Mapping: []config.Field{{Field: "active", Column: "active"}, {Field: "country", Column: "country"}, {Field: "email", Column: "email"},
			{Field: "name", Column: "name"}, {Field: "score", Column: "score"}, {Field: "signup", Column: "signup"}, {Field: "visits", Column: "visits"}},
	}
	cols, err := src.Schema(ctx, query)
	if err != nil {
		b.Fatal(err)
	}
	local, err := state.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	target := pushdown.Target{Dialect: srv.dialect, Schema: cdc, DSN: srv.dsn}
	store, err := pushdown.Open(ctx, target)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()

	// Every row synced, both ways: the local snapshot, and the table
	// through reset-cdc's path.
	all := *s
	all.Mode = config.ModeAll
	rs, err := src.Query(ctx, query)
	if err != nil {
		b.Fatal(err)
	}
	res, err := reconcile.Diff(ctx, reconcile.DiffInput{Sync: &all, Rows: rs, Snapshot: reconcile.EmptySnapshot{}})
	rs.Close()
	if err != nil {
		b.Fatal(err)
	}
	w, err := local.Begin(s.Name, true)
	if err != nil {
		b.Fatal(err)
	}
	if err := res.Plan.Each(func(c *reconcile.Change) error { w.Accept(c.Key, c.Hash, c.After); return nil }); err != nil {
		b.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		b.Fatal(err)
	}
	wres, _, err := pushdown.Diff(ctx, src, target, pushdown.Input{Sync: &all, Columns: cols})
	if err != nil {
		b.Fatal(err)
	}
	if err := store.Reset(ctx, wres.Plan, pushdown.Fingerprint(srv.dialect, wres.Plan.Warehouse.Hash, s, cols)); err != nil {
		b.Fatal(err)
	}
	wres = nil
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
		snap, err := local.LoadSnapshot(s.Name)
		if err != nil {
			b.Fatal(err)
		}
		rs, err := src.Query(ctx, query)
		if err != nil {
			b.Fatal(err)
		}
		lres, err := reconcile.Diff(ctx, reconcile.DiffInput{Sync: s, Rows: rs, Snapshot: snap, Failures: state.FailureIndex{}})
		rs.Close()
		snap.Close()
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
