// Package pdbench is what the warehouse CDC benchmarks share (the
// harness's plan-pushdown scenario and pushdown's BenchmarkWarehouseDiff):
// their sync, both snapshots taken as synced, and the local diff they
// compare with.
package pdbench

import (
	"context"
	"fmt"

	"github.com/backflowhq/backflow/engine"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/pushdown"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/schema"
	"github.com/backflowhq/backflow/state"
)

// Columns are the benchmark table's columns, in its model's order.
const Columns = "id, name, email, country, score, signup, active, visits"

// PostgresTable is the statements that create table with rows rows on
// PostgreSQL.
func PostgresTable(table string, rows int) []string {
	return []string{
		"CREATE TABLE " + table + " (id bigint PRIMARY KEY, name text, email text, country text, score numeric(8,2), signup timestamptz, active boolean, visits integer)",
		fmt.Sprintf(`INSERT INTO %s SELECT i, 'user ' || i, 'user' || i || '@example.com', (ARRAY['FR','DE','US','JP'])[1 + i %% 4],
			(i %% 10000) / 100.0, timestamptz '2024-01-01' + i * interval '1 second', i %% 3 = 0, i %% 97 FROM generate_series(1, %d) i`, table, rows),
		"ANALYZE " + table,
	}
}

// MariaDBTable is PostgresTable on MariaDB (its seq_1_to_N tables).
func MariaDBTable(table string, rows int) []string {
	return []string{
		"CREATE TABLE " + table + " (id BIGINT PRIMARY KEY, name TEXT, email TEXT, country TEXT, score DECIMAL(8,2), signup DATETIME(6), active BOOLEAN, visits INT)",
		fmt.Sprintf(`INSERT INTO %s SELECT seq, CONCAT('user ', seq), CONCAT('user', seq, '@example.com'), ELT(1 + seq %% 4, 'FR','DE','US','JP'),
			(seq %% 10000) / 100.0, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND, seq %% 3 = 0, seq %% 97 FROM seq_1_to_%d`, table, rows),
		"ANALYZE TABLE " + table,
	}
}

// Sync is the benchmarks' sync of table: every column but id mapped.
func Sync(table string) *config.Sync {
	query := "SELECT " + Columns + " FROM " + table
	return &config.Sync{Name: "bench", Object: "contacts", Key: "id", Mode: config.ModeUpsert, DeleteBehavior: config.DeleteNothing,
		Model:       &config.Model{Name: "bench", Query: query, PrimaryKey: []string{"id"}},
		Destination: &config.Destination{Name: "dest"},
		MaxRemovals: config.Limit{Percent: true, Fraction: 1},
		Mapping: []config.Field{{Field: "active", Column: "active"}, {Field: "country", Column: "country"}, {Field: "email", Column: "email"},
			{Field: "name", Column: "name"}, {Field: "score", Column: "score"}, {Field: "signup", Column: "signup"}, {Field: "visits", Column: "visits"}},
	}
}

// SeedLocal takes every row of s's model as synced in local's snapshot.
func SeedLocal(ctx context.Context, src engine.Source, local *state.Store, s *config.Sync) error {
	all := *s
	all.Mode = config.ModeAll
	rs, err := src.Query(ctx, s.Model.Query)
	if err != nil {
		return err
	}
	defer rs.Close()
	res, err := reconcile.Diff(ctx, reconcile.DiffInput{Sync: &all, Rows: rs, Snapshot: reconcile.EmptySnapshot{}})
	if err != nil {
		return err
	}
	w, err := local.Begin(s.Name, true)
	if err != nil {
		return err
	}
	if err := res.Plan.Each(func(c *reconcile.Change) error {
		w.Accept(c.Key, c.Hash, c.After)
		return nil
	}); err != nil {
		w.Abort()
		return err
	}
	return w.Commit()
}

// SeedTable takes every row of s's model as synced in target's snapshot
// table, through reset-cdc's path (every row held in memory).
func SeedTable(ctx context.Context, src engine.Source, target pushdown.Target, s *config.Sync, cols []schema.Column) error {
	all := *s
	all.Mode = config.ModeAll
	res, _, err := pushdown.Diff(ctx, src, target, pushdown.Input{Sync: &all, Columns: cols})
	if err != nil {
		return err
	}
	store, err := pushdown.Open(ctx, target)
	if err != nil {
		return err
	}
	defer store.Close()
	return store.Reset(ctx, res.Plan, pushdown.Fingerprint(target.Dialect, res.Plan.Warehouse.Hash, s, cols))
}

// LocalDiff plans s with the local diff against local's snapshot, its
// model's rows passed through wrap when it is not nil.
func LocalDiff(ctx context.Context, src engine.Source, local *state.Store, s *config.Sync, wrap func(schema.Rows) schema.Rows) (*reconcile.DiffResult, error) {
	snap, err := local.LoadSnapshot(s.Name)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	rs, err := src.Query(ctx, s.Model.Query)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var rows schema.Rows = rs
	if wrap != nil {
		rows = wrap(rs)
	}
	return reconcile.Diff(ctx, reconcile.DiffInput{Sync: s, Rows: rows, Snapshot: snap, Failures: state.FailureIndex{}})
}
