package reconcile

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
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
		{[]any{int64(1)<<53 + 1}, []any{float64(int64(1) << 53)}, 1}, // exact, not rounded to a float
		{[]any{float64(int64(1) << 53)}, []any{int64(1)<<53 + 1}, -1},
		{[]any{2.5}, []any{int64(2)}, 1},
		{[]any{-2.5}, []any{int64(-2)}, -1},
		{[]any{1e300}, []any{int64(math.MaxInt64)}, 1},
		{[]any{math.NaN()}, []any{int64(0)}, -1},
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

// Keys that seem to increase can come back to a key met before when a
// column mixes integers and floats past 2^53, where an integer converted
// to a float loses its last bit: the ordered diff must still hold the
// repeated key back, as the unordered one does.
func TestKeyOrderedIntegerFloatRepeat(t *testing.T) {
	const n = int64(1) << 53
	s := testSync("upsert", "delete")
	s.Model.PrimaryKey = []string{"id", "email"}
	rows := [][]any{
		{n + 1, "a@x", "x"},
		{float64(n), "b@x", "x"}, // equal to n+1 as floats, "b" > "a"
		{n, "c@x", "x"},          // equal to float64(n), "c" > "b"
		{n + 1, "a@x", "y"},      // n+1 > n: the first key again
	}
	diff := func(rows [][]any) *DiffResult {
		res, err := Diff(context.Background(), DiffInput{
			Sync: s, Rows: newRows(cols, rows...), Snapshot: newMemSnapshot(fields, nil), SpillDir: t.TempDir(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	got, want := diff(rows), diff([][]any{rows[3], rows[0], rows[1], rows[2]})
	if g, w := allChanges(t, got.Plan), allChanges(t, want.Plan); !reflect.DeepEqual(g, w) {
		t.Fatalf("plans differ:\n in order  %v\n reordered %v", summary(&SyncPlan{Changes: g}), summary(&SyncPlan{Changes: w}))
	}
	if got.Plan.Excluded[ReasonDuplicateKey] != 2 {
		t.Fatalf("the repeated key was not held back: %v", got.Plan.Excluded)
	}
}

// Random rows with composite keys of mixed kinds (integers, floats about
// 2^53, strings in no collation's order, NULLs), sorted as a source might
// sort them, plan like the same rows shuffled.
func TestKeyOrderedRandomCompositeKeys(t *testing.T) {
	const big = int64(1) << 53
	ids := []any{int64(1), int64(2), 2.5, int64(3), big - 1, big, float64(big), big + 1, float64(big + 2), big + 3, nil}
	tags := []any{"a", "B", "b", "é", "a|b", `a\`, "", nil, int64(7)}
	s := testSync("upsert", "delete")
	s.Model.PrimaryKey = []string{"id", "name"}
	for seed := uint64(0); seed < 300; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		var rows [][]any
		for n := r.IntN(30); n >= 0; n-- {
			rows = append(rows, []any{ids[r.IntN(len(ids))], fmt.Sprintf("u%d@x", r.IntN(3)), tags[r.IntN(len(tags))]})
		}
		snap := map[string]map[string]any{}
		failures := state.FailureIndex{}
		for _, row := range rows {
			key, ok := KeyOf(row, []int{0, 2})
			if !ok {
				continue
			}
			switch r.IntN(4) {
			case 0:
				snap[key] = vals(row[1].(string), fmt.Sprint(row[2]))
			case 1:
				failures[key] = &state.Failure{Key: key, Error: "refused", Attempts: 1}
			}
		}
		// Sorted by the columns' values, kinds apart (a source's order),
		// except for a few rows swapped.
		sorted := append([][]any(nil), rows...)
		rank := func(v any) int {
			switch v.(type) {
			case nil:
				return 0
			case string:
				return 2
			}
			return 1
		}
		slices.SortStableFunc(sorted, func(a, b []any) int {
			for _, p := range []int{0, 2} {
				x, y := Canonical(a[p]), Canonical(b[p])
				if c := cmp.Compare(rank(x), rank(y)); c != 0 {
					return c
				}
				if c, ok := compareValues(x, y); ok && c != 0 {
					return c
				}
			}
			return 0
		})
		if len(sorted) > 2 && r.IntN(3) == 0 {
			i, j := r.IntN(len(sorted)), r.IntN(len(sorted))
			sorted[i], sorted[j] = sorted[j], sorted[i]
		}
		shuffled := append([][]any(nil), sorted...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		for _, spill := range []int{1 << 20, 3} {
			withSpillAfter(t, spill, func() {
				diff := func(rows [][]any) *DiffResult {
					res, err := Diff(context.Background(), DiffInput{
						Sync: s, Rows: newRows(cols, rows...), Rules: ruleExcluder{},
						Snapshot: newMemSnapshot(fields, snap), Failures: failures, SpillDir: t.TempDir(),
					})
					if err != nil {
						t.Fatal(err)
					}
					return res
				}
				got, want := diff(sorted), diff(shuffled)
				if g, w := allChanges(t, got.Plan), allChanges(t, want.Plan); !reflect.DeepEqual(g, w) {
					t.Fatalf("seed %d: plans differ:\n sorted   %v\n shuffled %v", seed, summary(&SyncPlan{Changes: g}), summary(&SyncPlan{Changes: w}))
				}
				if !reflect.DeepEqual(got.ExcludedKeys, want.ExcludedKeys) || !reflect.DeepEqual(got.Plan.Excluded, want.Plan.Excluded) ||
					got.Plan.Unchanged != want.Plan.Unchanged || !reflect.DeepEqual(got.Plan.DropFailures, want.Plan.DropFailures) {
					t.Fatalf("seed %d: exclusions differ: %v %v %d %q / %v %v %d %q", seed, got.ExcludedKeys, got.Plan.Excluded, got.Plan.Unchanged, got.Plan.DropFailures, want.ExcludedKeys, want.Plan.Excluded, want.Plan.Unchanged, want.Plan.DropFailures)
				}
			})
		}
	}
}

// A synced key met twice is held back whole: neither of its rows counts
// as unchanged, whichever comes first.
func TestRepeatedSyncedKeyIsNotCountedUnchanged(t *testing.T) {
	snap := newMemSnapshot(fields, map[string]map[string]any{"1": vals("a@x", "A"), "2": vals("b@x", "B")})
	for _, rows := range [][][]any{
		{{int64(1), "a@x", "A"}, {int64(1), "a@x", "Changed"}, {int64(2), "b@x", "B"}},
		{{int64(1), "a@x", "Changed"}, {int64(1), "a@x", "A"}, {int64(2), "b@x", "B"}},
	} {
		res, err := Diff(context.Background(), DiffInput{Sync: testSync("upsert", "delete"), Rows: newRows(cols, rows...), Snapshot: snap, Failures: state.FailureIndex{}})
		if err != nil {
			t.Fatal(err)
		}
		if sp := res.Plan; sp.Unchanged != 1 || sp.Excluded[ReasonDuplicateKey] != 2 || sp.NumChanges() != 0 {
			t.Fatalf("rows %v: unchanged %d, excluded %v, %d changes; want 1 unchanged (key 2), 2 rows of key 1 held back, nothing sent", rows, sp.Unchanged, sp.Excluded, sp.NumChanges())
		}
	}
}
