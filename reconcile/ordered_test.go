package reconcile

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/backflowhq/backflow/state"
)

// A model read in key order is diffed without a set of its new keys, and
// its plan is the plan of the same rows in any order: duplicates (next to
// each other or not), keys excluded by a rule and failed keys included.
func TestKeyOrderedModelPlansLikeAnyOrder(t *testing.T) {
	snapVals := map[string]map[string]any{}
	for i := 0; i < 300; i += 3 { // every third key synced
		snapVals[fmt.Sprint(i)] = vals(fmt.Sprintf("u%d@x", i), "old")
	}
	failures := state.FailureIndex{
		"7":   {Key: "7", Error: "refused", Attempts: 1},
		"9":   {Key: "9", Error: "refused", Attempts: 2},
		"500": {Key: "500", Error: "refused", Attempts: 1}, // left the model
	}
	row := func(i int) []any {
		email := fmt.Sprintf("u%d@x", i)
		if i%17 == 0 {
			email = "nobody" // excluded by the rule
		}
		name := "old"
		if i%5 == 0 {
			name = "new"
		}
		return []any{int64(i), email, name}
	}
	ascending := func(extra ...int) [][]any {
		var rows [][]any
		for i := 0; i < 300; i++ {
			rows = append(rows, row(i))
			if i == 150 {
				for _, e := range extra {
					rows = append(rows, row(e))
				}
			}
		}
		return rows
	}
	diff := func(t *testing.T, rows [][]any) *DiffResult {
		t.Helper()
		res, err := Diff(context.Background(), DiffInput{
			Sync: testSync("upsert", "delete"), Rows: newRows(cols, rows...), Rules: ruleExcluder{},
			Snapshot: newMemSnapshot(fields, snapVals), Failures: failures, SpillDir: t.TempDir(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	shuffled := func(rows [][]any) [][]any {
		out := append([][]any(nil), rows...)
		r := rand.New(rand.NewPCG(1, 2))
		r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out
	}
	for _, spill := range []int{1 << 20, 10} {
		withSpillAfter(t, spill, func() {
			for _, tc := range []struct {
				name    string
				rows    [][]any
				ordered bool
			}{
				{"ascending", ascending(), true},
				{"a new key repeated next to itself", ascending(151, 151), false},
				{"a new key repeated later", ascending(20), false},
				{"a synced key repeated", ascending(30), true},
			} {
				t.Run(fmt.Sprintf("%s/spill after %d", tc.name, spill), func(t *testing.T) {
					got, want := diff(t, tc.rows), diff(t, shuffled(tc.rows))
					if got.KeyOrdered != tc.ordered {
						t.Fatalf("KeyOrdered = %v, want %v", got.KeyOrdered, tc.ordered)
					}
					if want.KeyOrdered {
						t.Fatal("shuffled rows diffed as ordered")
					}
					if g, w := allChanges(t, got.Plan), allChanges(t, want.Plan); !reflect.DeepEqual(g, w) {
						t.Fatalf("plans differ:\n in order  %v\n shuffled  %v", summary(&SyncPlan{Changes: g}), summary(&SyncPlan{Changes: w}))
					}
					if !reflect.DeepEqual(got.ExcludedKeys, want.ExcludedKeys) || !reflect.DeepEqual(got.Plan.Excluded, want.Plan.Excluded) {
						t.Fatalf("exclusions differ: %v %v / %v %v", got.ExcludedKeys, got.Plan.Excluded, want.ExcludedKeys, want.Plan.Excluded)
					}
					if got.Plan.Unchanged != want.Plan.Unchanged || !reflect.DeepEqual(got.Plan.DropFailures, want.Plan.DropFailures) {
						t.Fatalf("unchanged %d / %d, dropped failures %v / %v", got.Plan.Unchanged, want.Plan.Unchanged, got.Plan.DropFailures, want.Plan.DropFailures)
					}
					if tc.name != "ascending" && got.Plan.Excluded[ReasonDuplicateKey] == 0 {
						t.Fatalf("the repeated key was not held back: %v", got.Plan.Excluded)
					}
				})
			}
		})
	}
}

func TestCompareKeys(t *testing.T) {
	for _, tc := range []struct {
		a, b []any
		want int
	}{
		{[]any{int64(2)}, []any{int64(10)}, -1},
		{[]any{int64(10)}, []any{int64(2)}, 1},
		{[]any{"10"}, []any{"2"}, -1},
		{[]any{1.5}, []any{int64(1)}, 1},
		{[]any{int64(1), "b"}, []any{int64(1), "a"}, 1},
		{[]any{int64(1), "a"}, []any{int64(1), "a"}, 0},
		{[]any{"1"}, []any{int64(1)}, 0}, // different kinds: not ordered
		{[]any{true}, []any{false}, 0},
	} {
		idx := make([]int, len(tc.a))
		for i := range idx {
			idx[i] = i
		}
		prev := make([]any, len(tc.b))
		for i, v := range tc.b {
			prev[i] = Canonical(v)
		}
		if got := compareKeys(tc.a, idx, prev); got != tc.want {
			t.Errorf("compareKeys(%v, %v) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
