package reconcile

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/backflowhq/backflow/state"
)

// Changes spilled at once take their Before values from the snapshot's
// records without a map; read back, they equal those of a plan held in
// memory, for every kind of stored value.
func TestSpilledBeforeValuesFromTheSnapshot(t *testing.T) {
	st, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w, err := st.Begin("s", false)
	if err != nil {
		t.Fatal(err)
	}
	stored := func(i int) map[string]any {
		v := map[string]any{"email": fmt.Sprintf("u%d@x", i), "full_name": fmt.Sprintf("Ünïcode \"%d\"\n", i), "external_id": int64(i)}
		switch i % 5 {
		case 0:
			v["full_name"] = nil
		case 1:
			v["score"] = 1.5 + float64(i)
		case 2:
			v["active"] = i%2 == 0
		case 3:
			v["big"] = int64(-1) << 62
		}
		return v
	}
	const n = 40
	for i := 0; i < n; i++ {
		w.Accept(fmt.Sprint(i), uint64(i), stored(i))
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	snap, err := st.LoadSnapshot("s")
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	var rows [][]any
	for i := 0; i < n; i++ {
		rows = append(rows, []any{int64(i), fmt.Sprintf("new%d@x", i), "New"}) // every row changed
	}
	diff := func(spill int) []Change {
		var res *DiffResult
		withSpillAfter(t, spill, func() {
			res, err = Diff(context.Background(), DiffInput{Sync: testSync("upsert", "delete"), Rows: newRows(cols, rows...), Snapshot: snap, Failures: state.FailureIndex{}, SpillDir: t.TempDir()})
		})
		if err != nil {
			t.Fatal(err)
		}
		if spill == 0 && !res.Plan.Spilled() {
			t.Fatal("the plan was not spilled")
		}
		return allChanges(t, res.Plan)
	}
	spilled, whole := diff(0), diff(1000)
	if len(spilled) != n {
		t.Fatalf("%d changes, want %d", len(spilled), n)
	}
	for i := range spilled {
		if !reflect.DeepEqual(spilled[i].Before, whole[i].Before) {
			t.Fatalf("key %s: Before %#v spilled, %#v in memory", spilled[i].Key, spilled[i].Before, whole[i].Before)
		}
		if k := spilled[i].Key; spilled[i].Before["email"] != stored(atoi(t, k))["email"] {
			t.Fatalf("key %s: Before %v", k, spilled[i].Before)
		}
	}
	if !reflect.DeepEqual(spilled, whole) {
		t.Fatal("spilled and in-memory plans differ")
	}
}

func atoi(t *testing.T, s string) int {
	var i int
	if _, err := fmt.Sscan(s, &i); err != nil {
		t.Fatal(err)
	}
	return i
}
