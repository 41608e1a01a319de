package destination_test

import (
	"context"
	"maps"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/internal/testdb"
)

// TestPostgresKeysOneRowApart: a key column of type citext, or of a
// nondeterministic collation, takes keys of different bytes for one row,
// as MySQL's _ci collations do (TestMySQLKeysOneRowApart). No record may
// write another key's row: the second is rejected naming both, a removal
// of it removes nothing, and no row ends with another record's values.
func TestPostgresKeysOneRowApart(t *testing.T) {
	admin := testdb.Postgres(t)
	ctx := context.Background()
	testdb.PostgresExec(t, admin, "CREATE EXTENSION IF NOT EXISTS citext")
	coll := testdb.Name("bf_ci")
	testdb.PostgresExec(t, admin, `CREATE COLLATION `+coll+` (provider = icu, locale = 'und-u-ks-level2', deterministic = false)`)
	t.Cleanup(func() { admin.Exec(context.Background(), "DROP COLLATION IF EXISTS "+coll) })
	d1, d2 := testdb.Name("bf_d1"), testdb.Name("bf_d2")
	testdb.PostgresExec(t, admin, "CREATE DOMAIN "+d1+" AS citext", "CREATE DOMAIN "+d2+" AS "+d1)
	t.Cleanup(func() { admin.Exec(context.Background(), "DROP DOMAIN IF EXISTS "+d2+", "+d1) })
	for _, tc := range []struct{ name, keyType, what string }{
		{"citext", "citext", "citext"},
		{"nondeterministic", "text COLLATE " + coll, "collation " + coll},
		{"citext behind two domains", d2, "citext"},
		{"text with a nondeterministic unique index", "text", "collation " + coll},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var table string
			if tc.keyType == "text" {
				table = testdb.PostgresTable(t, admin, "k text NOT NULL, v text")
				testdb.PostgresExec(t, admin, "CREATE UNIQUE INDEX ON "+table+" (k COLLATE "+coll+")")
			} else {
				table = testdb.PostgresTable(t, admin, "k "+tc.keyType+" PRIMARY KEY, v text")
			}
			d, err := destination.OpenPostgres(ctx, config(t, "postgres", "warehouse", "", map[string]any{"dsn": postgresDSN()}))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			rec := func(key string, op destination.Operation, isNew bool) destination.Record {
				return destination.Record{Key: key, KeyValue: key, Op: op, New: isNew, Fields: map[string]any{"v": "of " + key}}
			}
			write := func(recs ...destination.Record) destination.Outcome {
				t.Helper()
				o := d.Write(ctx, &destination.Batch{Object: table, KeyField: "k", Fields: []string{"v"}, Records: recs})
				if o.Err != nil {
					t.Fatalf("batch failed whole: %v", o.Err)
				}
				return o
			}
			rows := func() map[string]string {
				t.Helper()
				out := map[string]string{}
				r, err := admin.Query(ctx, "SELECT k::text, v FROM "+table)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				for r.Next() {
					var k, v string
					if err := r.Scan(&k, &v); err != nil {
						t.Fatal(err)
					}
					out[k] = v
				}
				return out
			}
			o := write(rec("A", destination.OpUpsert, true), rec("b", destination.OpUpsert, true), rec("a", destination.OpUpsert, true))
			if o.Results[0].Err != nil || o.Results[1].Err != nil {
				t.Fatalf("A and b: %+v", o.Results)
			}
			if err := o.Results[2].Err; err == nil || !strings.Contains(err.Error(), `key "a" is the same row as key "A"`) || !strings.Contains(err.Error(), tc.what) {
				t.Errorf("a beside A: %v, want a rejection naming both keys and the %s", err, tc.what)
			}
			// Later batches: a retry, an add and an update of 'a' find A's row.
			for _, r := range []destination.Record{rec("a", destination.OpUpsert, false), rec("a", destination.OpUpsert, true), rec("a", destination.OpUpdate, false), rec("B", destination.OpUpsert, true)} {
				o := write(r, rec("c", destination.OpUpsert, true))
				// (With the collation on the index alone, an UPDATE's
				// WHERE compares by the column's: it finds no row.)
				err := o.Results[0].Err
				noRow := tc.keyType == "text" && r.Op == destination.OpUpdate && err != nil && strings.Contains(err.Error(), "no record with key")
				if err == nil || !(strings.Contains(err.Error(), "is the same row as key") || noRow) {
					t.Errorf("%s %q: %v, want a rejection", r.Op, r.Key, err)
				}
				if o.Results[1].Err != nil {
					t.Errorf("c beside it: %v", o.Results[1].Err)
				}
			}
			if got, want := rows(), map[string]string{"A": "of A", "b": "of b", "c": "of c"}; !maps.Equal(got, want) {
				t.Errorf("rows %v, want %v", got, want)
			}
			// A removal of a key whose row is another's removes nothing.
			o = write(destination.Record{Key: "a", KeyValue: "a", Op: destination.OpDelete}, destination.Record{Key: "C", KeyValue: "C", Op: destination.OpClear, Fields: map[string]any{"v": nil}})
			if o.Results[0].Err != nil || o.Results[1].Err != nil {
				t.Errorf("a deleted, C cleared: %+v", o.Results)
			}
			if got, want := rows(), map[string]string{"A": "of A", "b": "of b", "c": "of c"}; !maps.Equal(got, want) {
				t.Errorf("rows %v after a's removal and C's clear, want %v", got, want)
			}
			// Many adds at once (the COPY path, from 500 records): the
			// collisions are found there too.
			var many []destination.Record
			for i := range 600 {
				k := "x" + strings.Repeat("y", i%7) + string(rune('a'+i%26)) + string(rune('0'+i/26%10)) + string(rune('0'+i/260))
				many = append(many, rec(k, destination.OpUpsert, true))
			}
			// A twin of one of them, and one of a row written before ("c").
			many = append(many, rec("X"+many[5].Key[1:], destination.OpUpsert, true), rec("C", destination.OpUpsert, true))
			o = write(many...)
			for i, r := range o.Results {
				if want := i >= len(many)-2; (r.Err != nil) != want {
					t.Errorf("record %d (%q) of the COPY batch: %v", i, many[i].Key, r.Err)
				}
			}
			if got := rows(); got[many[5].Key] != "of "+many[5].Key || got["c"] != "of c" || len(got) != 3+600 {
				t.Errorf("rows %q: %q and c: %q after the COPY batch, %d rows, want 603", many[5].Key, got[many[5].Key], got["c"], len(got))
			}
			// What the lookups cost: two statements more than the same
			// batch of upserts to a table whose key is plain text.
			plain := testdb.PostgresTable(t, admin, "k text PRIMARY KEY, v text")
			count := func(table string) int64 {
				t.Helper()
				before := destination.Statements(d)
				o := d.Write(ctx, &destination.Batch{Object: table, KeyField: "k", Fields: []string{"v"}, Records: []destination.Record{rec("u1", destination.OpUpsert, false), rec("u2", destination.OpUpsert, false)}})
				if o.Err != nil || o.Results[0].Err != nil || o.Results[1].Err != nil {
					t.Fatalf("upserts to %s: %+v", table, o)
				}
				return destination.Statements(d) - before
			}
			if n, m := count(table), count(plain); n != m+2 {
				t.Errorf("a batch of upserts took %d statements, %d for plain text keys: want 2 more (the batch's keys grouped, then looked up)", n, m)
			}
		})
	}
}

// TestPostgresCharKeysOneRowApart: character(n) pads with spaces, so 'a'
// and 'a ' are one key there: the second never writes the first's row.
func TestPostgresCharKeysOneRowApart(t *testing.T) {
	admin := testdb.Postgres(t)
	ctx := context.Background()
	table := testdb.PostgresTable(t, admin, "k char(3) PRIMARY KEY, v text")
	d, err := destination.OpenPostgres(ctx, config(t, "postgres", "warehouse", "", map[string]any{"dsn": postgresDSN()}))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rec := func(key string) destination.Record {
		return destination.Record{Key: key, KeyValue: key, Op: destination.OpUpsert, Fields: map[string]any{"v": "of " + key}}
	}
	for _, batch := range [][]destination.Record{{rec("a"), rec("a "), rec("b")}, {rec("b "), rec("c")}} {
		o := d.Write(ctx, &destination.Batch{Object: table, KeyField: "k", Fields: []string{"v"}, Records: batch})
		if o.Err != nil {
			t.Fatalf("batch failed whole: %v", o.Err)
		}
		for i, r := range o.Results {
			if strings.HasSuffix(batch[i].Key, " ") != (r.Err != nil) {
				t.Errorf("%q: %v", batch[i].Key, r.Err)
			}
			if r.Err != nil && !strings.Contains(r.Err.Error(), "pads text with spaces") {
				t.Errorf("%q: %v, want the reason", batch[i].Key, r.Err)
			}
		}
	}
	var got string
	if err := admin.QueryRow(ctx, `SELECT string_agg(rtrim(k) || '=' || v, ',' ORDER BY k) FROM `+table).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "a=of a,b=of b,c=of c"; got != want {
		t.Errorf("rows %s, want %s", got, want)
	}
}
