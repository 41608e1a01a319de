package pushdown_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/engine"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/pushdown"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/rules"
	"github.com/backflowhq/backflow/schema"
	"github.com/backflowhq/backflow/state"
)

// server is one database the equality test runs on.
type server struct {
	dialect pushdown.Dialect
	dsn     string
	exec    func(t testing.TB, stmts ...string)
	// create is the table's DDL: id and k2 the key, a–e mapped, n read
	// only by a rule.
	create string
	open   func(ctx context.Context) (engine.Source, error)
	drop   func(schemaName string)
	// hash is the hash method plans must report.
	hash string
	// parts is how many parts the statement must have run in (0: any).
	parts int
}

func postgresServer(t testing.TB) server {
	conn := testdb.Postgres(t)
	return server{
		dialect: pushdown.Postgres, dsn: testdb.PostgresDSN,
		exec:   func(t testing.TB, stmts ...string) { testdb.PostgresExec(t, conn, stmts...) },
		create: "id integer, k2 text, a text, b bigint, c double precision, d boolean, e timestamptz, f numeric(12,3), n integer",
		open: func(ctx context.Context) (engine.Source, error) {
			return engine.OpenPostgres(ctx, testdb.PostgresDSN, engine.LiveOptions{})
		},
		drop: func(s string) { conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+s+" CASCADE") },
		hash: "hash_record",
	}
}

func mariadbServer(t testing.TB) server {
	db := testdb.MariaDB(t)
	return server{
		dialect: pushdown.MySQL, dsn: testdb.MariaDBDSN,
		exec: func(t testing.TB, stmts ...string) { testdb.MariaDBExec(t, db, stmts...) },
		// b and n unsigned: MariaDB types an unsigned integer column
		// UNION ALL a NULL as DECIMAL(20,0), which must not reach the plan
		// (b, mapped) or the rule (n) as a decimal.
		create: "id INT, k2 VARCHAR(40), a VARCHAR(60), b BIGINT UNSIGNED, c DOUBLE, d BOOLEAN, e DATETIME(6), f DECIMAL(12,3), n INT UNSIGNED",
		open: func(ctx context.Context) (engine.Source, error) {
			return engine.OpenMySQL(ctx, testdb.MariaDBDSN+"?parseTime=true", engine.LiveOptions{})
		},
		drop: func(s string) { db.Exec("DROP DATABASE IF EXISTS " + s) },
		hash: "md5",
	}
}

var _ = sql.ErrNoRows

// TestPlanEqualsLocalPostgres asserts that warehouse CDC plans exactly what
// the local diff plans, run after run, on randomised data.
func TestPlanEqualsLocalPostgres(t *testing.T) { testPlanEqualsLocal(t, postgresServer(t), 0) }

// TestPlanEqualsLocalPostgresMD5 is the same with the hash of servers
// before PostgreSQL 14 (md5 of the row's text), on a share of the variants.
func TestPlanEqualsLocalPostgresMD5(t *testing.T) {
	defer pushdown.ForceMD5()()
	srv := postgresServer(t)
	srv.hash = "md5"
	testPlanEqualsLocal(t, srv, 5)
}

// TestPlanEqualsLocalPostgresLookups is the same with the values stored
// read each way (by key, by hashing the table) whatever the number of
// keys picked, on a share of the variants.
func TestPlanEqualsLocalPostgresLookups(t *testing.T) {
	for _, always := range []bool{true, false} {
		t.Run(fmt.Sprintf("lookup=%v", always), func(t *testing.T) {
			defer pushdown.ForceLookup(always)()
			testPlanEqualsLocal(t, postgresServer(t), 5)
		})
	}
}

// TestPlanEqualsLocalPostgresSplit is the same with the statement split in
// parts run at once on connections sharing a snapshot (as on large
// tables), on every variant, and the values stored read each way.
func TestPlanEqualsLocalPostgresSplit(t *testing.T) {
	defer pushdown.ForceSplit(true)()
	srv := postgresServer(t)
	srv.parts = 2
	testPlanEqualsLocal(t, srv, 0)
	t.Run("hashed", func(t *testing.T) {
		defer pushdown.ForceLookup(false)()
		testPlanEqualsLocal(t, srv, 5)
	})
}

// TestPlanEqualsLocalPostgresNotSplit: a source that cannot open a second
// connection (a role limited to one) runs the statement whole, as if it
// were not split, and plans the same.
func TestPlanEqualsLocalPostgresNotSplit(t *testing.T) {
	defer pushdown.ForceSplit(true)()
	srv := postgresServer(t)
	role := testdb.Name("bfone")
	srv.exec(t, "CREATE ROLE "+role+" LOGIN CONNECTION LIMIT 1", "GRANT pg_read_all_data TO "+role)
	t.Cleanup(func() { srv.exec(t, "DROP ROLE IF EXISTS "+role) })
	dsn := strings.Replace(testdb.PostgresDSN, "postgres@", role+"@", 1)
	srv.open = func(ctx context.Context) (engine.Source, error) {
		return engine.OpenPostgres(ctx, dsn, engine.LiveOptions{})
	}
	srv.parts = 1
	testPlanEqualsLocal(t, srv, 3)
}

// TestPlanEqualsLocalMariaDB is the same on MariaDB.
func TestPlanEqualsLocalMariaDB(t *testing.T) { testPlanEqualsLocal(t, mariadbServer(t), 0) }

// testPlanEqualsLocal runs every variant, or the first n when n > 0.
func testPlanEqualsLocal(t *testing.T, srv server, n int) {
	type variant struct {
		mode, del string
		composite bool
		rule      bool
	}
	var variants []variant
	for _, mode := range []string{config.ModeUpsert, config.ModeUpdate, config.ModeInsert, config.ModeAll} {
		for _, del := range []string{config.DeleteNothing, config.DeleteClear, config.DeleteDelete} {
			variants = append(variants, variant{mode, del, len(variants)%2 == 1, len(variants)%3 != 0})
		}
	}
	// Every mode and delete behaviour once with each key shape and with
	// and without a rule.
	for i, v := range variants[:4] {
		variants = append(variants, variant{v.mode, v.del, !v.composite, !v.rule || i%2 == 0})
	}
	if n > 0 {
		variants = variants[:n]
	}
	for i, v := range variants {
		name := fmt.Sprintf("%s_%s_composite=%v_rule=%v", v.mode, v.del, v.composite, v.rule)
		t.Run(name, func(t *testing.T) {
			runEquality(t, srv, uint64(i+1), v.mode, v.del, v.composite, v.rule)
		})
	}
}

func runEquality(t *testing.T, srv server, seed uint64, mode, del string, composite, withRule bool) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 42))
	tbl := testdb.Name("bfpd")
	cdcSchema := testdb.Name("bfcdc")
	srv.exec(t, "CREATE TABLE "+tbl+" ("+srv.create+")")
	t.Cleanup(func() { srv.exec(t, "DROP TABLE IF EXISTS "+tbl); srv.drop(cdcSchema) })

	src, err := srv.open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	query := "SELECT id, k2, a, b, c, d, e, f, n FROM " + tbl
	pk := []string{"id"}
	if composite {
		pk = []string{"id", "k2"}
	}
	s := &config.Sync{
		Name: "s_" + strings.ReplaceAll(tbl, "bfpd_", ""), Object: "obj", Key: "ext", Mode: mode, DeleteBehavior: del,
		Model:       &config.Model{Name: "m", Query: query, PrimaryKey: pk},
		Destination: &config.Destination{Name: "dest"},
		// Small, so that plans carry the mass-removal figures (removals
		// against the records synced) and they are compared too.
		MaxRemovals: config.Limit{Count: 2},
		Mapping: []config.Field{
			{Field: "a", Column: "a"}, {Field: "b", Column: "b"}, {Field: "c", Column: "c"},
			{Field: "d", Column: "d"}, {Field: "e", Column: "e"}, {Field: "f", Column: "f"},
		},
	}
	if withRule {
		s.Excludes = []rules.Rule{{Name: "odd_n", Expr: "row.n != null && row.n % 3 == 1"}}
	}
	cols, err := src.Schema(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	var prog reconcile.Excluder
	if withRule {
		p, d := rules.Compile(cols, s.Excludes)
		if d.HasErrors() {
			t.Fatal(d.Error())
		}
		prog = p
	}
	local, wh, target, store := openStores(ctx, t, srv, cdcSchema)

	g := &gen{rng: rng, tbl: tbl, mysql: srv.dialect == pushdown.MySQL}
	srv.exec(t, g.initial(60)...)
	policy := destination.Policy{BatchSize: 7, SplitRetries: true, MaxAttempts: 1}
	totals := map[reconcile.Action]int{}
	for round := 0; round < 6; round++ {
		if round > 0 {
			srv.exec(t, g.mutate()...)
		}
		if round == 4 && withRule {
			// A rule that changes re-reads every row once.
			s.Excludes[0].Expr = "row.n != null && row.n % 3 == 2"
			p, d := rules.Compile(cols, s.Excludes)
			if d.HasErrors() {
				t.Fatal(d.Error())
			}
			prog = p
		}
		skip := round == 3
		want := localPlan(t, ctx, src, local, s, prog, skip)
		failures, err := wh.LoadFailures(s.Name)
		if err != nil {
			t.Fatal(err)
		}
		got, stats, err := pushdown.Diff(ctx, src, target, pushdown.Input{Sync: s, Columns: cols, Rules: prog, Failures: failures, SkipRemovals: skip})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if got.Plan.Warehouse == nil || got.Plan.Warehouse.Hash != srv.hash {
			t.Fatalf("round %d: the warehouse plan's section is %+v, want hash method %s", round, got.Plan.Warehouse, srv.hash)
		}
		wantSamePlan(t, round, want, got)
		// Round 0 plans before the snapshot tables exist: nothing to split.
		if srv.parts > 0 && round > 0 && stats.Parts != srv.parts {
			t.Fatalf("round %d: the statement ran in %d parts, want %d", round, stats.Parts, srv.parts)
		}
		if mode != config.ModeAll && round > 1 && !(round == 4 && withRule) && stats.Settled == 0 {
			t.Errorf("round %d: the database settled no row (read %d)", round, stats.Rows)
		}
		for _, c := range want.Plan.Changes {
			totals[c.Action]++
		}
		dest := &flaky{round: round}
		apply(t, ctx, local, nil, want.Plan, dest, policy)
		dest = &flaky{round: round}
		apply(t, ctx, wh, store, got.Plan, dest, policy)
	}
	for _, a := range []reconcile.Action{reconcile.ActionAdd, reconcile.ActionChange, reconcile.ActionRemove, reconcile.ActionRetry} {
		if totals[a] == 0 && !(a == reconcile.ActionChange && mode == config.ModeInsert) {
			t.Errorf("no round planned a %s: the data exercise too little", a)
		}
	}
}

func localPlan(t *testing.T, ctx context.Context, src engine.Source, st *state.Store, s *config.Sync, prog reconcile.Excluder, skip bool) *reconcile.DiffResult {
	t.Helper()
	snap, err := st.LoadSnapshot(s.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	failures, err := st.LoadFailures(s.Name)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := src.Query(ctx, s.Model.Query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	res, err := reconcile.Diff(ctx, reconcile.DiffInput{Sync: s, Rows: rows, Rules: prog, Snapshot: snap, Failures: failures, SkipRemovals: skip})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func apply(t *testing.T, ctx context.Context, st *state.Store, store *pushdown.Store, sp *reconcile.SyncPlan, dest destination.Destination, policy destination.Policy) {
	t.Helper()
	w, err := st.Begin(sp.Name, false)
	if err != nil {
		t.Fatal(err)
	}
	var tx state.Tx = w
	if store != nil {
		tx = store.Begin(w, sp.Name, sp.Warehouse)
	}
	if _, err := reconcile.ApplySync(ctx, sp, dest, tx, reconcile.ApplyOptions{Policy: policy, Threshold: 1,
		Sleep: func(context.Context, time.Duration) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// wantSamePlan fails the test unless the warehouse diff got planned what
// the local diff want did (the warehouse's own section aside) and excluded
// the same keys.
func wantSamePlan(t *testing.T, round int, want, got *reconcile.DiffResult) {
	t.Helper()
	gp := *got.Plan
	gp.Warehouse = nil
	if !reflect.DeepEqual(normal(t, want.Plan), normal(t, &gp)) {
		t.Fatalf("round %d: plans differ\nlocal:     %s\nwarehouse: %s", round, js(t, want.Plan), js(t, &gp))
	}
	if !reflect.DeepEqual(want.ExcludedKeys, got.ExcludedKeys) {
		t.Fatalf("round %d: excluded keys differ\nlocal:     %v\nwarehouse: %v", round, want.ExcludedKeys, got.ExcludedKeys)
	}
}

// normal is a plan as JSON data, so that values compare by what they mean.
func normal(t *testing.T, sp *reconcile.SyncPlan) any {
	var v any
	if err := json.Unmarshal([]byte(js(t, sp)), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func js(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// flaky rejects about one record in five, the same ones for the same key
// and round whatever the batch.
type flaky struct{ round int }

func (f *flaky) Write(_ context.Context, b *destination.Batch) destination.Outcome {
	res := make([]destination.Result, len(b.Records))
	for i, r := range b.Records {
		h := fnv.New32a()
		fmt.Fprintf(h, "%s/%d", r.Key, f.round)
		if h.Sum32()%5 == 0 {
			res[i] = destination.Result{Err: fmt.Errorf("rejected %s", r.Key)}
		}
	}
	return destination.Outcome{Results: res}
}

func (f *flaky) Close() error { return nil }

// gen writes random rows and random changes to them.
type gen struct {
	rng   *rand.Rand
	tbl   string
	mysql bool
	next  int
}

func (g *gen) val(kind byte) string {
	if g.rng.IntN(8) == 0 {
		return "NULL"
	}
	switch kind {
	case 'a':
		words := []string{"'x'", "'X'", "''", "'a b'", "'o''k'", "'caf\u00e9'", "'x '", "'back\\\\slash'", "'line\nbreak'"}
		if !g.mysql {
			words[7] = `'back\slash'`
		}
		return words[g.rng.IntN(len(words))]
	case 'b':
		if g.mysql {
			return fmt.Sprint(g.rng.Int64N(1 << 40)) // BIGINT UNSIGNED
		}
		return fmt.Sprint(g.rng.Int64N(1<<40) - 1<<39)
	case 'c':
		vals := []string{"0.1", "0.30000000000000004", "0.3", "1e-7", "-2.5", "3", "123456789.125", "0", "'-0'"}
		if g.mysql {
			vals[8] = "-0e0" // a double's negative zero
		}
		return vals[g.rng.IntN(len(vals))]
	case 'd':
		return []string{"TRUE", "FALSE"}[g.rng.IntN(2)]
	case 'e':
		ts := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(g.rng.Int64N(1e6)) * time.Microsecond * 997)
		return "'" + ts.Format("2006-01-02 15:04:05.999999") + "'"
	case 'f':
		return fmt.Sprintf("%d.%03d", g.rng.IntN(1000), g.rng.IntN(1000))
	case 'n':
		return fmt.Sprint(g.rng.IntN(9))
	case 'k':
		return fmt.Sprintf("'k%d'", g.rng.IntN(2))
	}
	return "NULL"
}

func (g *gen) row(id int) string {
	idv := fmt.Sprint(id)
	if g.rng.IntN(40) == 0 {
		idv = "NULL"
	}
	k2 := g.val('k')
	if k2 == "NULL" {
		k2 = "'k0'"
	}
	return fmt.Sprintf("(%s, %s, %s, %s, %s, %s, %s, %s, %s)", idv, k2, g.val('a'), g.val('b'), g.val('c'), g.val('d'), g.val('e'), g.val('f'), g.val('n'))
}

func (g *gen) initial(n int) []string {
	var rows []string
	for i := 0; i < n; i++ {
		g.next++
		rows = append(rows, g.row(g.next))
	}
	return []string{"INSERT INTO " + g.tbl + " VALUES " + strings.Join(rows, ", ")}
}

// mutate changes mapped columns, the rule's column, deletes, inserts and
// duplicates rows.
func (g *gen) mutate() []string {
	var out []string
	cols := []byte("abcdefn")
	for i := 0; i < 8; i++ {
		c := cols[g.rng.IntN(len(cols))]
		out = append(out, fmt.Sprintf("UPDATE %s SET %c = %s WHERE id = %d", g.tbl, c, g.val(c), 1+g.rng.IntN(g.next)))
	}
	for i := 0; i < 3; i++ {
		out = append(out, fmt.Sprintf("DELETE FROM %s WHERE id = %d", g.tbl, 1+g.rng.IntN(g.next)))
	}
	var rows []string
	for i := 0; i < 4; i++ {
		g.next++
		rows = append(rows, g.row(g.next))
	}
	// A row duplicating an existing key, and one bringing back a deleted key.
	rows = append(rows, g.row(1+g.rng.IntN(g.next)))
	out = append(out, "INSERT INTO "+g.tbl+" VALUES "+strings.Join(rows, ", "))
	if g.rng.IntN(2) == 0 {
		// Resolve some duplicates.
		out = append(out, fmt.Sprintf("DELETE FROM %s WHERE id = %d", g.tbl, 1+g.rng.IntN(g.next)))
	}
	return out
}

var _ = schema.TypeInt

// openStores opens two local states (one for the local diff, one for
// warehouse CDC) and the snapshot tables of srv in schema cdcSchema; the
// store is closed with the test.
func openStores(ctx context.Context, t *testing.T, srv server, cdcSchema string) (local, wh *state.Store, target pushdown.Target, store *pushdown.Store) {
	t.Helper()
	var err error
	if local, err = state.Open(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if wh, err = state.Open(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	target = pushdown.Target{Dialect: srv.dialect, Schema: cdcSchema, DSN: srv.dsn}
	if store, err = pushdown.Open(ctx, target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return local, wh, target, store
}
