package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/backflowhq/backflow/engine"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/internal/pdbench"
	"github.com/backflowhq/backflow/pushdown"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/schema"
	"github.com/backflowhq/backflow/state"
)

// benchPushdown plans a sync of a rows-row, 8-column PostgreSQL table in
// which a fraction of rows changed since the last apply, with the local diff
// (every row read, diffed against the snapshot in the state) and with
// warehouse CDC (the database diffs against its snapshot table), and
// prints rows and bytes each read, their wall times and the ratios.
func benchPushdown(ctx context.Context, e *env, dsn string, rows int, changed float64, repeat int, mbps float64, seed string) (*result, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	// The clean-up runs after an interrupt too, so not under ctx.
	defer conn.Close(context.Background())
	tbl, cdc := benchName("bench_pd"), benchName("bench_cdc")
	defer conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+tbl)
	defer conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+cdc+" CASCADE")
	fmt.Fprintf(e.log, "Pushdown benchmark: %d rows × 8 columns in PostgreSQL, %.1f%% of rows changed since the last apply\n", rows, changed*100)
	start := time.Now()
	for _, q := range pdbench.PostgresTable(tbl, rows) {
		if _, err := conn.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	fmt.Fprintf(e.log, "  table load (not measured below): %s\n", time.Since(start).Round(time.Millisecond))

	srcDSN := dsn
	if mbps > 0 {
		// The plans read through a link of mbps megabits per second; the
		// setup and the snapshot table's writes do not.
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			return nil, err
		}
		link, err := throttle(net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), mbps*1e6/8)
		if err != nil {
			return nil, err
		}
		defer link.close()
		u, err := url.Parse(dsn)
		if err != nil {
			return nil, fmt.Errorf("-bandwidth needs a URL dsn: %w", err)
		}
		u.Host = link.addr()
		srcDSN = u.String()
		fmt.Fprintf(e.log, "  plans read through a link of %g Mbit/s (server to client)\n", mbps)
	}
	src, err := engine.OpenPostgres(ctx, srcDSN, engine.LiveOptions{})
	if err != nil {
		return nil, err
	}
	defer src.Close()
	s := pdbench.Sync(tbl)
	query := s.Model.Query
	cols, err := src.Schema(ctx, query)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "backflow-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	local, err := state.Open(filepath.Join(dir, "local"))
	if err != nil {
		return nil, err
	}
	target := pushdown.Target{Dialect: pushdown.Postgres, Schema: cdc, DSN: dsn}

	// Both snapshots: every row as synced now (reset-cdc's own paths).
	start = time.Now()
	if err := pdbench.SeedLocal(ctx, src, local, s); err != nil {
		return nil, fmt.Errorf("building the local snapshot: %w", err)
	}
	fmt.Fprintf(e.log, "  local snapshot built: %s\n", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if seed == "copy" {
		if err := seedByCopy(ctx, conn, local, target, s, cols, tbl, cdc); err != nil {
			return nil, fmt.Errorf("building the snapshot table: %w", err)
		}
		fmt.Fprintf(e.log, "  snapshot table built (copied from the local snapshot): %s\n", time.Since(start).Round(time.Millisecond))
	} else {
		if err := pdbench.SeedTable(ctx, src, target, s, cols); err != nil {
			return nil, fmt.Errorf("building the snapshot table: %w", err)
		}
		fmt.Fprintf(e.log, "  snapshot table built (reset-cdc path): %s\n", time.Since(start).Round(time.Millisecond))
	}

	every := int(1 / changed)
	if _, err := conn.Exec(ctx, fmt.Sprintf("UPDATE %s SET name = name || ' (changed)' WHERE id %% %d = 0", tbl, every)); err != nil {
		return nil, err
	}
	want := rows / every

	type run struct {
		d           time.Duration
		rows, bytes int64
		plan        *reconcile.SyncPlan
		settled     int
		parts       int
	}
	localPlan := func() (run, error) {
		t := time.Now()
		var counted *countingRows
		res, err := pdbench.LocalDiff(ctx, src, local, s, func(rs schema.Rows) schema.Rows {
			counted = &countingRows{Rows: rs}
			return counted
		})
		if err != nil {
			return run{}, err
		}
		return run{d: time.Since(t), rows: counted.rows, bytes: counted.bytes, plan: res.Plan}, nil
	}
	warehousePlan := func() (run, error) {
		t := time.Now()
		res, st, err := pushdown.Diff(ctx, src, target, pushdown.Input{Sync: s, Columns: cols, Failures: state.FailureIndex{}})
		if err != nil {
			return run{}, err
		}
		return run{d: time.Since(t), rows: st.Rows, bytes: st.Bytes, plan: res.Plan, settled: st.Settled, parts: st.Parts}, nil
	}
	var lr, wr []run
	for i := 0; i < repeat; i++ {
		r, err := localPlan()
		if err != nil {
			return nil, fmt.Errorf("local plan: %w", err)
		}
		lr = append(lr, r)
		r, err = warehousePlan()
		if err != nil {
			return nil, fmt.Errorf("warehouse plan: %w", err)
		}
		wr = append(wr, r)
	}
	// Peak live heap of one more run of each, measured apart: sampling
	// the heap stops the world and would skew the times above.
	heapOf := func(f func() (run, error)) (uint64, error) {
		base := heapNow()
		h := startHeapPeak()
		_, err := f()
		inUse, _ := h.done()
		return inUse - min(inUse, base), err
	}
	lheap, err := heapOf(localPlan)
	if err != nil {
		return nil, err
	}
	wheap, err := heapOf(warehousePlan)
	if err != nil {
		return nil, err
	}
	lp, wp := *lr[0].plan, *wr[0].plan
	wp.Warehouse = nil
	lj, _ := json.Marshal(lp)
	wj, _ := json.Marshal(wp)
	if string(lj) != string(wj) {
		return nil, fmt.Errorf("the two plans differ (local %d changes, warehouse %d)", len(lp.Changes), len(wp.Changes))
	}
	if len(lp.Changes) != want {
		return nil, fmt.Errorf("planned %d changes, want %d", len(lp.Changes), want)
	}
	if wr[0].rows != int64(want) {
		return nil, fmt.Errorf("warehouse CDC read %d rows for %d changed", wr[0].rows, want)
	}
	med := func(rs []run) time.Duration {
		ds := make([]time.Duration, len(rs))
		for i, r := range rs {
			ds[i] = r.d
		}
		return median(ds)
	}
	durs := func(rs []run) []time.Duration {
		ds := make([]time.Duration, len(rs))
		for i, r := range rs {
			ds[i] = r.d.Round(time.Millisecond)
		}
		return ds
	}
	ml, mw := med(lr), med(wr)
	fmt.Fprintf(e.log, "  changes planned: %d (plans identical)\n", want)
	fmt.Fprintf(e.log, "  local diff:     %s (median of %d: %v), rows read %d, payload %.1f MB\n", ml.Round(time.Millisecond), repeat, durs(lr), lr[0].rows, float64(lr[0].bytes)/1e6)
	fmt.Fprintf(e.log, "  warehouse CDC:  %s (median of %d: %v), rows read %d, payload %.1f MB, rows settled in the database %d, statement parts run at once %d\n", mw.Round(time.Millisecond), repeat, durs(wr), wr[0].rows, float64(wr[0].bytes)/1e6, wr[0].settled, wr[0].parts)
	fmt.Fprintf(e.log, "  peak heap in use during the plan (above the heap before it): local %.0f MB, warehouse CDC %.0f MB\n", mb(lheap), mb(wheap))
	fmt.Fprintf(e.log, "  ratios warehouse/local: wall time %.2f (target ≤ 0.3), rows read %.4f, payload %.4f; rows read / changed rows %.2f (target ≤ 1.1)\n",
		float64(mw)/float64(ml), float64(wr[0].rows)/float64(lr[0].rows), float64(wr[0].bytes)/float64(lr[0].bytes), float64(wr[0].rows)/float64(want))
	return newResult("plan-pushdown").set("rows", rows).set("changed_rows", want).set("bandwidth_mbit_s", mbps).
		set("local_s", secs(ml)).set("warehouse_s", secs(mw)).
		set("local_rows_read", lr[0].rows).set("warehouse_rows_read", wr[0].rows).
		set("local_payload_mb", float64(lr[0].bytes)/1e6).set("warehouse_payload_mb", float64(wr[0].bytes)/1e6).
		set("local_heap_mb", mb(lheap)).set("warehouse_heap_mb", mb(wheap)).set("warehouse_parts", wr[0].parts).
		set("warehouse_vs_local_wall", ratio(mw.Seconds(), ml.Seconds())).
		set("rows_read_vs_changed", ratio(float64(wr[0].rows), float64(want))).
		set("target", "rows_read_vs_changed ≤ 1.1; warehouse_vs_local_wall ≤ 0.3 at 5M rows"), nil
}

// countingRows counts the rows and the payload a scan receives, the way
// pushdown.Stats counts them.
type countingRows struct {
	schema.Rows
	rows, bytes int64
}

func (c *countingRows) Next() bool {
	if !c.Rows.Next() {
		return false
	}
	c.rows++
	for _, v := range c.Rows.Row() {
		switch x := v.(type) {
		case string:
			c.bytes += int64(len(x))
		case []byte:
			c.bytes += int64(len(x))
		case nil:
			c.bytes++
		default:
			c.bytes += 8
		}
	}
	return true
}

// seedByCopy fills the snapshot table as the reset-cdc path would, without
// holding every row: the database's keys and hashes computed by the
// database (the expressions warehouse CDC uses on PostgreSQL 14+ for this
// table; a mismatch makes every row read, which the benchmark refuses),
// backflow's keys, hashes and values copied from the local snapshot.
func seedByCopy(ctx context.Context, conn *pgx.Conn, local *state.Store, target pushdown.Target, s *config.Sync, cols []schema.Column, tbl, cdc string) error {
	store, err := pushdown.Open(ctx, target)
	if err != nil {
		return err
	}
	defer store.Close()
	// An empty reset creates the tables and records the fingerprint.
	empty := &reconcile.SyncPlan{Name: s.Name, Warehouse: &reconcile.WarehousePlan{}}
	if err := store.Reset(ctx, empty, pushdown.Fingerprint(pushdown.Postgres, "hash_record", s, cols)); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.cdc_rows SELECT $1, 'k' || CAST(q.id AS text),
		CAST(hash_record_extended(ROW(CAST(q.name AS text), CAST(q.email AS text), CAST(q.country AS text), CAST(q.score AS text), q.signup, q.active, q.visits), 0) AS text),
		TRUE, FALSE FROM %s q`, cdc, tbl), s.Name)
	if err != nil {
		return err
	}
	snap, err := local.LoadSnapshot(s.Name)
	if err != nil {
		return err
	}
	defer snap.Close()
	i := -1
	var rerr error
	src := pgx.CopyFromFunc(func() ([]any, error) {
		i++
		if i >= snap.Len() || rerr != nil {
			return nil, rerr
		}
		key := snap.Key(i)
		_, hash, _ := snap.Lookup(key)
		vals, err := snap.Values(i)
		if err != nil {
			return nil, err
		}
		enc, err := state.EncodeValues(vals)
		if err != nil {
			return nil, err
		}
		return []any{s.Name, "k" + key, key, int64(hash), enc}, nil
	})
	_, err = conn.CopyFrom(ctx, pgx.Identifier{cdc, "cdc_vals"}, []string{"sync", "dbkey", "bkey", "hash", "vals"}, src)
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, fmt.Sprintf("ANALYZE %s.cdc_rows; ANALYZE %s.cdc_vals", cdc, cdc))
	return err
}
