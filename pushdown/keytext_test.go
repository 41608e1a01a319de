package pushdown_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/engine"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/pushdown"
	"github.com/backflowhq/backflow/schema"
	"github.com/backflowhq/backflow/state"
)

// keyScenario is a table whose key's text form is tricky, and the
// statements run before each plan: warehouse CDC must plan what the local
// diff plans at every step, every record applied (accepted) in between.
type keyScenario struct {
	create string // the table's columns: id (the key) and v
	// cols and key, when set, are the model's columns and key (default
	// "id, v" and id).
	cols  string
	key   []string
	steps [][]string
	// after, when set, runs on the table's schema after the step's apply
	// (to age the snapshot tables as an older version left them).
	after map[int]func(cdcSchema, sync string) []string
	// settled are the steps whose statement must return no row.
	settled map[int]bool
}

func runKeyScenario(t *testing.T, srv server, sc keyScenario) {
	t.Helper()
	ctx := context.Background()
	tbl, cdcSchema := testdb.Name("bfpk"), testdb.Name("bfcdck")
	srv.exec(t, "CREATE TABLE "+tbl+" ("+sc.create+")")
	t.Cleanup(func() { srv.exec(t, "DROP TABLE IF EXISTS "+tbl); srv.drop(cdcSchema) })
	src, err := srv.open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	cols, key := "id, v", []string{"id"}
	if sc.cols != "" {
		cols, key = sc.cols, sc.key
	}
	query := "SELECT " + cols + " FROM " + tbl
	s := &config.Sync{
		Name: "k_" + strings.ReplaceAll(tbl, "bfpk_", ""), Object: "obj", Key: "ext", Mode: config.ModeUpsert, DeleteBehavior: config.DeleteDelete,
		Model:       &config.Model{Name: "m", Query: query, PrimaryKey: key},
		Destination: &config.Destination{Name: "dest"},
		MaxRemovals: config.Limit{Percent: true, Fraction: 1},
		Mapping:     []config.Field{{Field: "v", Column: "v"}},
	}
	columns, err := src.Schema(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	local, wh, target, store := openStores(ctx, t, srv, cdcSchema)
	policy := destination0()
	for i, step := range sc.steps {
		for _, q := range step {
			srv.exec(t, strings.ReplaceAll(q, "{t}", tbl))
		}
		want := localPlan(t, ctx, src, local, s, nil, false)
		failures, err := wh.LoadFailures(s.Name)
		if err != nil {
			t.Fatal(err)
		}
		got, stats, err := pushdown.Diff(ctx, src, target, pushdown.Input{Sync: s, Columns: columns, Failures: failures})
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		wantSamePlan(t, i, want, got)
		// Step 0 plans before the snapshot tables exist: nothing to split.
		if splitKeys && srv.dialect == pushdown.Postgres && i > 0 && stats.Parts != 2 {
			t.Fatalf("step %d: the statement ran in %d parts, want 2", i, stats.Parts)
		}
		apply(t, ctx, local, nil, want.Plan, acceptAll{}, policy)
		apply(t, ctx, wh, store, got.Plan, acceptAll{}, policy)
		if f := sc.after[i]; f != nil {
			srv.exec(t, f(cdcSchema, s.Name)...)
		} else {
			wantTableRows(t, ctx, src, local, cdcSchema, s.Name, i)
		}
		if sc.settled[i] && stats.Rows != 0 {
			t.Errorf("step %d: the statement returned %d rows, want none (every record settled)", i, stats.Rows)
		}
	}
	got, _, err := pushdown.Diff(ctx, src, target, pushdown.Input{Sync: s, Columns: columns, Failures: state.FailureIndex{}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Plan.Changes) != 0 {
		t.Fatalf("after the last apply, warehouse CDC plans %d changes, want none", len(got.Plan.Changes))
	}
}

// wantTableRows fails the test unless the snapshot table holds one row
// per record of local's snapshot: none stale.
func wantTableRows(t *testing.T, ctx context.Context, src engine.Source, local *state.Store, cdcSchema, sync string, step int) {
	t.Helper()
	snap, err := local.LoadSnapshot(sync)
	if err != nil {
		t.Fatal(err)
	}
	want := snap.Len()
	snap.Close()
	rows, err := src.Query(ctx, fmt.Sprintf("SELECT COUNT(*) FROM %s.cdc_rows WHERE sync = '%s'", cdcSchema, sync))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() {
		t.Fatalf("step %d: no count: %v", step, rows.Err())
	}
	if n := fmt.Sprint(rows.Row()[0]); n != fmt.Sprint(want) {
		t.Fatalf("step %d: the snapshot table holds %s rows for %d records synced", step, n, want)
	}
}

// TestKeyTextNegativeZero: a float key moving between 0 and -0 is one
// record to backflow; the table kept a row for each text ("k0", "k-0"),
// and the stale one later settled the record while the other was planned
// as a removal of a record still in the model.
func TestKeyTextNegativeZero(t *testing.T) {
	for _, srv := range []server{postgresServer(t), mariadbServer(t)} {
		t.Run(string(srv.dialect), func(t *testing.T) {
			create, negZero := "id double precision, v double precision", "CAST('-0' AS double precision)"
			if srv.dialect == pushdown.MySQL {
				create, negZero = "id DOUBLE, v DOUBLE", "-0e0"
			}
			runKeyScenario(t, srv, keyScenario{create: create, steps: [][]string{
				{"INSERT INTO {t} VALUES (0, 0), (1, 1)"},
				{"UPDATE {t} SET v = 5 WHERE id = 0"},
				{"UPDATE {t} SET id = " + negZero + ", v = 6 WHERE id = 0"},
				{"UPDATE {t} SET id = 0, v = 5 WHERE id = 0"},
				{"UPDATE {t} SET id = " + negZero + " WHERE id = 0"},
				{"DELETE FROM {t} WHERE id = 0"},
			}, settled: map[int]bool{4: true}})
		})
	}
}

// TestKeyTextStaleRowDropped: a table an older version left with two rows
// for one record (its key's text changed: here "k0" and "k-0") settles
// once the fingerprint moves on: the record is not planned as removed,
// and the stale row is dropped by the apply.
func TestKeyTextStaleRowDropped(t *testing.T) {
	srv := postgresServer(t)
	runKeyScenario(t, srv, keyScenario{create: "id double precision, v double precision",
		steps: [][]string{
			{"INSERT INTO {t} VALUES (0, 0), (1, 1)"},
			{"UPDATE {t} SET v = 7 WHERE id = 1"},
			{"UPDATE {t} SET v = 8 WHERE id = 1"},
		},
		after: map[int]func(string, string) []string{0: func(cdc, sync string) []string {
			return []string{
				fmt.Sprintf("INSERT INTO %[1]s.cdc_rows SELECT sync, 'k-0', dbhash, synced, failed FROM %[1]s.cdc_rows WHERE sync = '%[2]s' AND dbkey = 'k0'", cdc, sync),
				fmt.Sprintf("INSERT INTO %[1]s.cdc_vals SELECT sync, 'k-0', bkey, hash, vals FROM %[1]s.cdc_vals WHERE sync = '%[2]s' AND dbkey = 'k0'", cdc, sync),
				fmt.Sprintf("UPDATE %s.cdc_syncs SET fingerprint = 'an older version' WHERE sync = '%s'", cdc, sync),
			}
		}},
	})
}

// TestKeyTextNondeterministicCollation: keys and values under a
// case-insensitive collation are compared as bytes, as backflow does:
// 'a' -> 'A' in a value is a change, and keys 'a' and 'A' two records.
func TestKeyTextNondeterministicCollation(t *testing.T) {
	srv := postgresServer(t)
	coll := testdb.Name("bfci")
	srv.exec(t, "CREATE COLLATION "+coll+" (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
	t.Cleanup(func() { srv.exec(t, "DROP COLLATION IF EXISTS "+coll+" CASCADE") })
	runKeyScenario(t, srv, keyScenario{create: "id text COLLATE " + coll + ", v text COLLATE " + coll, steps: [][]string{
		{"INSERT INTO {t} VALUES ('a', 'x'), ('B', 'y'), ('c', 'z')"},
		{"UPDATE {t} SET v = 'X' WHERE id = 'a'"},
		{"INSERT INTO {t} VALUES ('A', 'w')"},
		{"DELETE FROM {t} WHERE id = 'a' COLLATE \"C\""},
	}})
}

// TestKeyTextLong: keys longer than a B-tree entry holds are kept as
// their hash; short ones as before.
func TestKeyTextLong(t *testing.T) {
	srv := postgresServer(t)
	long := func() string {
		b := make([]byte, 1800)
		rand.Read(b)
		return hex.EncodeToString(b) // 3,600 bytes, incompressible
	}
	a, b := long(), long()
	runKeyScenario(t, srv, keyScenario{create: "id text, v integer", steps: [][]string{
		{fmt.Sprintf("INSERT INTO {t} VALUES ('%s', 1), ('%s', 2), ('short', 3)", a, b)},
		{fmt.Sprintf("UPDATE {t} SET v = 10 WHERE id = '%s'", a)},
		{fmt.Sprintf("DELETE FROM {t} WHERE id = '%s'", b)},
	}})
}

// TestKeyIntegerColumns: a key of integer columns is grouped by their
// values (PostgreSQL) rather than by the key's text: NULL key columns,
// duplicated keys (rows alike or not), keys changing sign, on both
// servers and with a composite key.
func TestKeyIntegerColumns(t *testing.T) {
	for _, srv := range []server{postgresServer(t), mariadbServer(t)} {
		t.Run(string(srv.dialect), func(t *testing.T) {
			runKeyScenario(t, srv, keyScenario{create: "id integer, id2 bigint, v integer", cols: "id, id2, v", key: []string{"id", "id2"}, steps: [][]string{
				{"INSERT INTO {t} VALUES (1, 1, 1), (1, 2, 2), (2, 1, 3), (NULL, 1, 4), (3, NULL, 5), (-1, 1, 6)"},
				{"UPDATE {t} SET v = 9 WHERE id = 1 AND id2 = 2", "INSERT INTO {t} VALUES (2, 1, 3), (NULL, 1, 4)"},
				{"DELETE FROM {t} WHERE id = 2", "INSERT INTO {t} VALUES (2, 1, 7), (1, 2, 8)"},
				{"DELETE FROM {t} WHERE id = 1 AND v = 8", "UPDATE {t} SET id = -id WHERE id2 = 1"},
				{"DELETE FROM {t} WHERE id IS NULL OR id2 IS NULL"},
			}})
			runKeyScenario(t, srv, keyScenario{create: "id bigint, v integer", steps: [][]string{
				{"INSERT INTO {t} VALUES (1, 1), (2, 2), (NULL, 3), (-9223372036854775808, 4), (9223372036854775807, 5)"},
				{"INSERT INTO {t} VALUES (2, 2), (1, 10)"},
				{"DELETE FROM {t} WHERE id IN (1, 2)", "INSERT INTO {t} VALUES (2, 2)"},
				{"DELETE FROM {t} WHERE id IS NULL"},
			}})
		})
	}
}

// TestKeyIntegerColumnsMixed: keys grouped by value on PostgreSQL with
// integer columns of three widths (their extremes), values that would
// read alike run together ((1, 23) and (12, 3)), NULLs in any column, a
// duplicate, signs flipped; and an oid key (unsigned).
func TestKeyIntegerColumnsMixed(t *testing.T) {
	srv := postgresServer(t)
	runKeyScenario(t, srv, keyScenario{create: "a smallint, b bigint, c integer, v integer", cols: "a, b, c, v", key: []string{"a", "b", "c"}, steps: [][]string{
		{"INSERT INTO {t} VALUES (1, 23, 0, 1), (12, 3, 0, 2), (-32768, -9223372036854775808, -2147483648, 3), (32767, 9223372036854775807, 2147483647, 4)"},
		{"INSERT INTO {t} VALUES (1, NULL, 0, 5), (NULL, 23, 0, 6), (NULL, NULL, NULL, 7)"},
		{"INSERT INTO {t} VALUES (1, 23, 0, 1)", "UPDATE {t} SET v = 8 WHERE a = 12"},
		{"DELETE FROM {t} WHERE v = 1", "INSERT INTO {t} VALUES (1, 23, 0, 9)"},
		{"DELETE FROM {t} WHERE a IS NULL OR b IS NULL OR c IS NULL", "UPDATE {t} SET a = -a WHERE a > 0 AND a < 100"},
		{"INSERT INTO {t} VALUES (-1, 23, 0, 9)"},
		{"DELETE FROM {t} WHERE v = 9"},
	}})
	runKeyScenario(t, srv, keyScenario{create: "id oid, v integer", steps: [][]string{
		{"INSERT INTO {t} VALUES (0, 1), (4294967295, 2), (NULL, 3)"},
		{"INSERT INTO {t} VALUES (0, 1)"},
		{"DELETE FROM {t} WHERE v = 1"},
	}})
}

// splitKeys: TestKeysSplit runs the key scenarios, whose statements must
// then run split.
var splitKeys bool

// TestKeysSplit runs the key scenarios with PostgreSQL's statement split in
// parts: a key's part is computed from the model's row and from the table's
// key text, which must agree for every key (signs, zero, NULL columns, the
// extremes of each integer width, oid, long and collated text keys).
func TestKeysSplit(t *testing.T) {
	defer pushdown.ForceSplit(true)()
	splitKeys = true
	defer func() { splitKeys = false }()
	for name, f := range map[string]func(*testing.T){
		"IntegerColumns": TestKeyIntegerColumns, "IntegerColumnsMixed": TestKeyIntegerColumnsMixed,
		"NegativeZero": TestKeyTextNegativeZero, "StaleRowDropped": TestKeyTextStaleRowDropped,
		"Nondeterministic": TestKeyTextNondeterministicCollation, "Long": TestKeyTextLong,
		"MovedToNewFormat": TestKeyTextMovedToNewFormat,
	} {
		t.Run(name, f)
	}
	// A single integer key's part is its parity: negative odd numbers,
	// zero and signs flipped.
	t.Run("Parity", func(t *testing.T) {
		runKeyScenario(t, postgresServer(t), keyScenario{create: "id integer, v integer", steps: [][]string{
			{"INSERT INTO {t} VALUES (-3, 1), (-2, 2), (-1, 3), (0, 4), (1, 5), (NULL, 6), (7, 7)"},
			{"UPDATE {t} SET v = v + 10 WHERE id <> 7"},
			{"UPDATE {t} SET id = -id WHERE id <> 0", "INSERT INTO {t} VALUES (-7, 8)"},
			{"DELETE FROM {t} WHERE id < 0 OR id IS NULL"},
		}})
	})
}

// acceptAll accepts every record.
type acceptAll struct{}

func (acceptAll) Write(_ context.Context, b *destination.Batch) destination.Outcome {
	return destination.Outcome{Results: make([]destination.Result, len(b.Records))}
}

func (acceptAll) Close() error { return nil }

func destination0() destination.Policy {
	return destination.Policy{BatchSize: 10, MaxAttempts: 1}
}

// TestKeyTextMovedToNewFormat: a key stored as its text by an older
// version, and now kept as its hash (it is long), moves to its new
// database key once the fingerprint moves on, with its values: a later
// change is planned against them, and no row is left behind.
func TestKeyTextMovedToNewFormat(t *testing.T) {
	srv := postgresServer(t)
	long := strings.Repeat("x", 1500)
	runKeyScenario(t, srv, keyScenario{create: "id text, v integer",
		steps: [][]string{
			{fmt.Sprintf("INSERT INTO {t} VALUES ('%s', 1), ('short', 2)", long)},
			{"UPDATE {t} SET v = 3 WHERE id = 'short'"},
			{},
			{fmt.Sprintf("UPDATE {t} SET v = 4 WHERE id = '%s'", long)},
		},
		settled: map[int]bool{2: true},
		after: map[int]func(string, string) []string{0: func(cdc, sync string) []string {
			return []string{
				fmt.Sprintf("UPDATE %[1]s.cdc_rows SET dbkey = 'k%[3]s' WHERE sync = '%[2]s' AND dbkey LIKE 'h%%'", cdc, sync, long),
				fmt.Sprintf("UPDATE %[1]s.cdc_vals SET dbkey = 'k%[3]s' WHERE sync = '%[2]s' AND dbkey LIKE 'h%%'", cdc, sync, long),
				fmt.Sprintf("UPDATE %s.cdc_syncs SET fingerprint = 'an older version' WHERE sync = '%s'", cdc, sync),
			}
		}},
	})
}

// TestModelColumnsNamedApart: a model column the statement would take for
// its own, or a name the model returns twice, is refused before anything
// runs, with what to do.
func TestModelColumnsNamedApart(t *testing.T) {
	s := &config.Sync{Name: "s", Key: "id", Mode: config.ModeUpsert, DeleteBehavior: config.DeleteNothing,
		Model: &config.Model{Name: "m", Query: "SELECT 1", PrimaryKey: []string{"id"}}}
	for _, tt := range []struct {
		d    pushdown.Dialect
		cols []string
		want string
	}{
		{pushdown.Postgres, []string{"id", "__bf_k"}, `"__bf_k": names starting with __bf_ are warehouse CDC's own`},
		{pushdown.MySQL, []string{"id", "__BF_kind"}, `"__BF_kind": names starting with __bf_`},
		{pushdown.Postgres, []string{"id", "v", "v"}, `two columns named "v"`},
		{pushdown.MySQL, []string{"id", "v", "V"}, `two columns named "v" ("V")`},
	} {
		var cols []schema.Column
		for _, c := range tt.cols {
			cols = append(cols, schema.Column{Name: c})
		}
		_, _, err := pushdown.Diff(context.Background(), nil, pushdown.Target{Dialect: tt.d, Schema: "backflow"}, pushdown.Input{Sync: s, Columns: cols})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s %q: got %v, want an error with %q", tt.d, tt.cols, err, tt.want)
		}
	}
}
