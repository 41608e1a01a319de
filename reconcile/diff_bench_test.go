package reconcile

import (
	"context"
	"fmt"
	"testing"

	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/state"
)

// benchPeople is a sync of 8-column rows, every column but the key mapped,
// and n of its rows.
func benchPeople(n int) (*config.Sync, []string, [][]any) {
	cols := []string{"id", "email", "name", "company", "country", "score", "ltv", "active"}
	s := &config.Sync{
		Name: "s", Object: "people", Key: "id", Mode: config.ModeUpsert, DeleteBehavior: "delete",
		Model:       &config.Model{Name: "m", PrimaryKey: []string{"id"}},
		Destination: &config.Destination{Name: "d"},
	}
	for _, c := range cols[1:] {
		s.Mapping = append(s.Mapping, config.Field{Field: c, Column: c})
	}
	rows := make([][]any, n)
	for i := range rows {
		rows[i] = []any{int64(i), fmt.Sprintf("user%d@example.com", i), fmt.Sprint("User ", i), fmt.Sprint("Company ", i%1000),
			"FR", int64(i % 100), float64(i) * 1.25, i%2 == 0}
	}
	return s, cols, rows
}

// BenchmarkDiffEveryRowChanged diffs 300,000 rows of 8 columns against a
// local snapshot whose every record differs (a mapping change), the rows
// held in memory: the diff's own cost, without a source's.
//
//	go test -run '^$' -bench DiffEveryRowChanged -benchtime 5x ./reconcile/
func BenchmarkDiffEveryRowChanged(b *testing.B) {
	const n = 300_000
	s, cols, rows := benchPeople(n)
	st, w := beginSync(b)
	fields := append([]string(nil), cols[1:]...)
	for _, r := range rows {
		v := map[string]any{}
		for j, f := range fields {
			v[f] = Canonical(r[j+1])
		}
		v["name"] = "old"
		w.Accept(fmt.Sprint(r[0]), HashValues(fields, v), v)
	}
	if err := w.Commit(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		snap, err := st.LoadSnapshot("s")
		if err != nil {
			b.Fatal(err)
		}
		res, err := Diff(context.Background(), DiffInput{Sync: s, Rows: newRows(cols, rows...), Snapshot: snap, Failures: state.FailureIndex{}, SpillDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		if res.Plan.Change != n {
			b.Fatalf("%d changes, want %d", res.Plan.Change, n)
		}
		snap.Close()
	}
}
