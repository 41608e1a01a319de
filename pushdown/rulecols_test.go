package pushdown_test

import (
	"context"
	"testing"

	"github.com/backflowhq/backflow/destination"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/pushdown"
	"github.com/backflowhq/backflow/rules"
)

// dynamicRule reads column n without naming it: its text holds no "n".
// It type-checks, but uses the row as a value, which rules.Compile
// refuses: no config holds it today.
const dynamicRule = `[row, 1][0]["N".lowerAscii()] % 3 == 1`

// dynamicExcluder is dynamicRule's verdict, computed in Go: CEL cannot
// evaluate a rule that uses the row as a value today (rules'
// TestRowIsNoValueAtRunTime), and Compile refuses one, but the database
// hashes must not rely on either.
type dynamicExcluder struct{ n int }

func (e dynamicExcluder) Exclude(row []any) (string, error) {
	if v, ok := row[e.n].(int64); ok && v%3 == 1 {
		return "odd_n", nil
	}
	return "", nil
}

// TestRuleReadingTheRowDynamicallyHashesEveryColumn: a rule that reads a
// column it does not name sees that column change and flip its verdict;
// the warehouse plan must still equal the local one, so the column must
// be hashed.
func TestRuleReadingTheRowDynamicallyHashesEveryColumn(t *testing.T) {
	for _, srv := range []func(testing.TB) server{postgresServer, mariadbServer} {
		srv := srv(t)
		t.Run(string(srv.dialect), func(t *testing.T) { testDynamicRule(t, srv) })
	}
}

func testDynamicRule(t *testing.T, srv server) {
	ctx := context.Background()
	tbl := testdb.Name("bfpd")
	cdcSchema := testdb.Name("bfcdc")
	srv.exec(t, "CREATE TABLE "+tbl+" ("+srv.create+")")
	t.Cleanup(func() { srv.exec(t, "DROP TABLE IF EXISTS "+tbl); srv.drop(cdcSchema) })
	srv.exec(t, "INSERT INTO "+tbl+" VALUES "+
		"(1, 'k0', 'x', 1, 0.5, TRUE, '2024-01-01 00:00:00', 1.5, 0), "+
		"(2, 'k0', 'y', 2, 1.5, FALSE, '2024-01-02 00:00:00', 2.5, 1), "+
		"(3, 'k0', 'z', 3, 2.5, TRUE, '2024-01-03 00:00:00', 3.5, 3)")
	src, err := srv.open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	query := "SELECT id, k2, a, b, c, d, e, f, n FROM " + tbl
	s := &config.Sync{
		Name: "dyn", Object: "obj", Key: "ext", Mode: config.ModeUpsert, DeleteBehavior: config.DeleteDelete,
		Model:       &config.Model{Name: "m", Query: query, PrimaryKey: []string{"id"}},
		Destination: &config.Destination{Name: "dest"},
		MaxRemovals: config.Limit{Percent: true, Fraction: 1},
		Mapping:     []config.Field{{Field: "a", Column: "a"}, {Field: "b", Column: "b"}},
		Excludes:    []rules.Rule{{Name: "odd_n", Expr: dynamicRule}},
	}
	cols, err := src.Schema(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	if _, d := rules.Compile(cols, s.Excludes); !d.HasErrors() {
		t.Fatal("rules.Compile accepts a rule using the row as a value")
	}
	prog := dynamicExcluder{n: 8}
	local, wh, target, store := openStores(ctx, t, srv, cdcSchema)
	policy := destination.Policy{BatchSize: 10, MaxAttempts: 1}
	for round, update := range []string{
		"",
		// Flip the verdict of each row through n alone: 1 and 3 are now
		// excluded, 2 no longer is.
		"UPDATE " + tbl + " SET n = CASE id WHEN 1 THEN 4 WHEN 2 THEN 2 ELSE 7 END",
	} {
		if update != "" {
			srv.exec(t, update)
		}
		want := localPlan(t, ctx, src, local, s, prog, false)
		failures, err := wh.LoadFailures(s.Name)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := pushdown.Diff(ctx, src, target, pushdown.Input{Sync: s, Columns: cols, Rules: prog, Failures: failures})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if round == 1 && len(want.Plan.Changes) != 3 {
			t.Fatalf("round 1: the local plan has %d changes, want 3 (remove 1 and 3, add 2): %s", len(want.Plan.Changes), js(t, want.Plan))
		}
		wantSamePlan(t, round, want, got)
		apply(t, ctx, local, nil, want.Plan, &flaky{round: -1}, policy)
		apply(t, ctx, wh, store, got.Plan, &flaky{round: -1}, policy)
	}
}
