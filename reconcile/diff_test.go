package reconcile

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/state"
)

var cols = []string{"id", "email", "name"}

func testSync(mode, del string) *config.Sync {
	return &config.Sync{
		Name: "s", Object: "contacts", Key: "external_id", Mode: mode, DeleteBehavior: del,
		Model:       &config.Model{Name: "m", PrimaryKey: []string{"id"}},
		Destination: &config.Destination{Name: "d"},
		Mapping:     []config.Field{{Field: "email", Column: "email"}, {Field: "full_name", Column: "name"}},
	}
}

func vals(email, name string) map[string]any {
	return map[string]any{"email": email, "full_name": name}
}

var fields = []string{"email", "full_name"}

// ruleExcluder excludes rows whose email has no '@' under rule "missing_email".
type ruleExcluder struct{}

func (ruleExcluder) Exclude(row []any) (string, error) {
	if e, _ := row[1].(string); !strings.Contains(e, "@") {
		return "missing_email", nil
	}
	return "", nil
}

// summary renders a plan's changes compactly: "action key op".
func summary(sp *SyncPlan) []string {
	var out []string
	for _, c := range sp.Changes {
		out = append(out, fmt.Sprintf("%s %s %s", c.Action, c.Key, c.Op))
	}
	return out
}

func TestDiffModesAndDeleteBehaviours(t *testing.T) {
	// Snapshot: 1, 2, 3 synced. Model: 1 unchanged, 2 changed, 4 new; 3 left.
	snap := newMemSnapshot(fields, map[string]map[string]any{
		"1": vals("a@x", "A"), "2": vals("b@x", "B"), "3": vals("c@x", "C"),
	})
	rows := func() *sliceRows {
		return newRows(cols, []any{int64(1), "a@x", "A"}, []any{int64(2), "b@x", "Bee"}, []any{int64(4), "d@x", "D"})
	}
	removal := map[string]string{"delete": "remove 3 delete", "clear": "remove 3 clear", "nothing": "remove 3 forget"}
	for _, mode := range []string{"upsert", "update", "insert", "all"} {
		for _, del := range []string{"delete", "clear", "nothing"} {
			t.Run(mode+"/"+del, func(t *testing.T) {
				res, err := Diff(context.Background(), DiffInput{Sync: testSync(mode, del), Rows: rows(), Snapshot: snap, Failures: state.FailureIndex{}})
				if err != nil {
					t.Fatal(err)
				}
				var want []string
				want = append(want, removal[del])
				switch mode {
				case "upsert":
					want = append(want, "change 2 upsert", "add 4 upsert")
				case "update":
					want = append(want, "change 2 update", "add 4 update")
				case "insert":
					want = append(want, "add 4 insert")
				case "all":
					want = append(want, "change 1 upsert", "change 2 upsert", "add 4 upsert")
				}
				if got := summary(res.Plan); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("changes %v, want %v", got, want)
				}
			})
		}
	}
}

func TestDiffChangeCarriesBeforeAndAfterOfMappedFieldsOnly(t *testing.T) {
	snap := newMemSnapshot(fields, map[string]map[string]any{"2": vals("b@x", "B")})
	res, err := Diff(context.Background(), DiffInput{Sync: testSync("upsert", "nothing"),
		Rows: newRows([]string{"id", "email", "name", "unmapped"}, []any{int64(2), "b@x", "Bee", "ignored"}), Snapshot: snap})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Plan.Changes[0]
	if c.Before["full_name"] != "B" || c.After["full_name"] != "Bee" || c.After["external_id"] != int64(2) {
		t.Fatalf("before %v after %v", c.Before, c.After)
	}
	if _, ok := c.After["unmapped"]; ok {
		t.Fatal("unmapped column sent")
	}
	// A change in an unmapped column only is no change.
	snap = newMemSnapshot(fields, map[string]map[string]any{"2": vals("b@x", "Bee")})
	res, _ = Diff(context.Background(), DiffInput{Sync: testSync("upsert", "nothing"),
		Rows: newRows([]string{"unmapped", "name", "id", "email"}, []any{"other", "Bee", int64(2), "b@x"}), Snapshot: snap})
	if len(res.Plan.Changes) != 0 || res.Plan.Unchanged != 1 {
		t.Fatalf("changes %v, want none (column order and unmapped columns do not matter)", summary(res.Plan))
	}
}

func TestDiffHashIsStableAcrossTypeRepresentation(t *testing.T) {
	s := testSync("upsert", "nothing")
	s.Mapping = []config.Field{{Field: "n", Column: "n"}, {Field: "t", Column: "t"}}
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	snap := newMemSnapshot([]string{"n", "t"}, map[string]map[string]any{"1": {"n": int64(5), "t": ts.Format(time.RFC3339Nano)}})
	res, _ := Diff(context.Background(), DiffInput{Sync: s, Rows: newRows([]string{"id", "n", "t"}, []any{"1", 5.0, ts.In(time.FixedZone("x", 3600))}), Snapshot: snap})
	if len(res.Plan.Changes) != 0 {
		t.Fatalf("changes %v: 5.0 vs 5 and the same instant in another zone must hash alike", summary(res.Plan))
	}
}

func TestDiffNullAndDuplicateKeys(t *testing.T) {
	// Key 2 is synced and now duplicated: held, neither changed nor removed.
	// Key 5 is new and duplicated. One row has a null key.
	snap := newMemSnapshot(fields, map[string]map[string]any{"2": vals("b@x", "B")})
	rows := newRows(cols,
		[]any{nil, "n@x", "N"},
		[]any{int64(2), "b@x", "B1"}, []any{int64(2), "b@x", "B2"},
		[]any{int64(5), "e@x", "E"}, []any{int64(5), "e@x", "E"}, []any{int64(5), "e@x", "E"},
		[]any{int64(6), "f@x", "F"},
	)
	res, err := Diff(context.Background(), DiffInput{Sync: testSync("upsert", "delete"), Rows: rows, Snapshot: snap})
	if err != nil {
		t.Fatal(err)
	}
	if got := summary(res.Plan); fmt.Sprint(got) != "[add 6 upsert]" {
		t.Fatalf("changes %v, want only key 6 added", got)
	}
	if res.Plan.Excluded[ReasonNullKey] != 1 || res.Plan.Excluded[ReasonDuplicateKey] != 5 {
		t.Fatalf("excluded %v, want 1 null key and 5 duplicate rows", res.Plan.Excluded)
	}
}

func TestDiffCompositeKeys(t *testing.T) {
	s := testSync("upsert", "delete")
	s.Model.PrimaryKey = []string{"region", "id"}
	snap := newMemSnapshot(fields, map[string]map[string]any{`eu|1`: vals("a@x", "A")})
	rows := newRows([]string{"region", "id", "email", "name"},
		[]any{"eu", int64(1), "a@x", "A"}, []any{"us", int64(1), "u@x", "U"}, []any{"a|b", int64(1), "p@x", "P"}, []any{"us", nil, "z@x", "Z"})
	res, _ := Diff(context.Background(), DiffInput{Sync: s, Rows: rows, Snapshot: snap})
	if got := summary(res.Plan); fmt.Sprint(got) != `[add a\|b|1 upsert add us|1 upsert]` {
		t.Fatalf("changes %v", got)
	}
	if res.Plan.Excluded[ReasonNullKey] != 1 {
		t.Fatalf("a composite key with a null part is a null key: %v", res.Plan.Excluded)
	}
}

func TestDiffExcludedRowsAndTheFailureIndex(t *testing.T) {
	now := time.Now()
	snap := newMemSnapshot(fields, map[string]map[string]any{"1": vals("a@x", "A"), "2": vals("b@x", "B")})
	failures := state.FailureIndex{
		"2": {Key: "2", Operation: "upsert", Error: "locked", Attempts: 3, FirstFailed: now, LastFailed: now}, // unchanged, retried
		"3": {Key: "3", Operation: "upsert", Error: "CHECK failed", Attempts: 1},                              // now excluded: dropped
		"9": {Key: "9", Operation: "delete", Error: "timeout", Attempts: 2},                                   // failed delete, still gone
	}
	rows := newRows(cols,
		[]any{int64(1), "no-at-sign", "A"}, // synced, now excluded → removed
		[]any{int64(2), "b@x", "B"},
		[]any{int64(3), "bad", "C"},
	)
	res, err := Diff(context.Background(), DiffInput{Sync: testSync("upsert", "delete"), Rows: rows, Rules: ruleExcluder{}, Snapshot: snap, Failures: failures})
	if err != nil {
		t.Fatal(err)
	}
	if got := summary(res.Plan); fmt.Sprint(got) != "[remove 1 delete retry 2 upsert retry 9 delete]" {
		t.Fatalf("changes %v", got)
	}
	if fmt.Sprint(res.Plan.DropFailures) != "[3]" {
		t.Fatalf("drop failures %v, want [3]", res.Plan.DropFailures)
	}
	if res.ExcludedKeys["1"] != "missing_email" || res.Plan.Excluded["missing_email"] != 2 {
		t.Fatalf("excluded %v %v", res.ExcludedKeys, res.Plan.Excluded)
	}
	retry := res.Plan.Changes[1]
	if retry.LastError != "locked" || retry.Attempts != 3 || retry.After["email"] != "b@x" {
		t.Fatalf("retry %+v", retry)
	}
}

func TestDiffSkipRemovalsForgetsWithoutSending(t *testing.T) {
	snap := newMemSnapshot(fields, map[string]map[string]any{"1": vals("a@x", "A")})
	res, _ := Diff(context.Background(), DiffInput{Sync: testSync("upsert", "delete"), Rows: newRows(cols), Snapshot: snap, SkipRemovals: true})
	if got := summary(res.Plan); fmt.Sprint(got) != "[remove 1 forget]" {
		t.Fatalf("changes %v", got)
	}
}

type failingRule struct{}

func (failingRule) Exclude([]any) (string, error) {
	return "", errors.New(`rule "missing_email": no such overload (column "email" is null)`)
}

func TestDiffRuleErrorFailsThePlanNamingTheKey(t *testing.T) {
	_, err := Diff(context.Background(), DiffInput{Sync: testSync("upsert", "delete"), Rows: newRows(cols, []any{int64(7), nil, "x"}), Rules: failingRule{}, Snapshot: newMemSnapshot(fields, nil)})
	if err == nil || !strings.Contains(err.Error(), `key "7"`) || !strings.Contains(err.Error(), "missing_email") {
		t.Fatalf("error %v, want it to name the rule and the key", err)
	}
}

func TestPlanRoundTripsThroughJSON(t *testing.T) {
	res, _ := Diff(context.Background(), DiffInput{Sync: testSync("upsert", "delete"), Rows: newRows(cols, []any{int64(7), "a@x", "A"}), Snapshot: newMemSnapshot(fields, nil)})
	p := &Plan{FormatVersion: FormatVersion, Syncs: []*SyncPlan{res.Plan}}
	path := t.TempDir() + "/p.plan"
	if err := p.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	q, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	first, err := q.Syncs[0].First(ActionAdd, 1)
	if err != nil || len(first) != 1 {
		t.Fatal(first, err)
	}
	c := first[0]
	if c.KeyValue != int64(7) || c.Hash != res.Plan.Changes[0].Hash || HashValues(fields, c.After) != c.Hash {
		t.Fatalf("round trip changed the change: %+v", c)
	}
}

func TestApplyRecordsRemovalsAndForgets(t *testing.T) {
	snap := newMemSnapshot(fields, map[string]map[string]any{"1": vals("a@x", "A"), "2": vals("b@x", "B")})
	for _, del := range []string{"delete", "clear", "nothing"} {
		res, _ := Diff(context.Background(), DiffInput{Sync: testSync("upsert", del), Rows: newRows(cols, []any{int64(2), "b@x", "B"}), Snapshot: snap})
		dest := newPoisonDest()
		rec := newRecorder()
		if _, err := ApplySync(context.Background(), res.Plan, dest, rec, ApplyOptions{Policy: Policy{BatchSize: 10, MaxAttempts: 1}, Sleep: noSleep}); err != nil {
			t.Fatal(err)
		}
		wantRequests := 1
		if del == "nothing" {
			wantRequests = 0
		}
		if !rec.forgot["1"] || dest.requests != wantRequests {
			t.Fatalf("%s: forgot %v, requests %d (want %d)", del, rec.forgot, dest.requests, wantRequests)
		}
	}
}

var _ destination.Destination = (*poisonDest)(nil)

// errRows fails after n rows.
type errRows struct {
	*sliceRows
	n int
}

func (r *errRows) Next() bool { return r.sliceRows.Next() && r.i < r.n }
func (r *errRows) Err() error {
	if r.i >= r.n {
		return errors.New("connection reset")
	}
	return nil
}

func manyRows(n int) *sliceRows {
	rows := make([][]any, n)
	for i := range rows {
		rows[i] = []any{int64(i), fmt.Sprintf("u%d@x", i), "N"}
	}
	return newRows(cols, rows...)
}

func TestDiffReadsLargeResultsAndReportsSourceErrors(t *testing.T) {
	res, err := Diff(context.Background(), DiffInput{Sync: testSync("upsert", "delete"), Rows: manyRows(5000), Snapshot: newMemSnapshot(fields, nil)})
	if err != nil || res.Plan.Rows != 5000 || res.Plan.Add != 5000 || res.Plan.Changes[4999].Key != "4999" || res.Plan.Changes[4999].After["email"] != "u4999@x" {
		t.Fatalf("diff of 5000 rows: %v", err)
	}
	_, err = Diff(context.Background(), DiffInput{Sync: testSync("upsert", "delete"), Rows: &errRows{sliceRows: manyRows(5000), n: 3000}, Snapshot: newMemSnapshot(fields, nil)})
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("error %v, want the source's error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Diff(ctx, DiffInput{Sync: testSync("upsert", "delete"), Rows: manyRows(5000), Snapshot: newMemSnapshot(fields, nil)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

func TestInsertModeDropsFailuresItCanNeverRetry(t *testing.T) {
	// Key 1 is synced; its removal failed, then the row came back. Mode
	// insert sends nothing for a synced key, so the entry must leave the index.
	snap := newMemSnapshot(fields, map[string]map[string]any{"1": vals("a@x", "A")})
	failures := state.FailureIndex{"1": {Key: "1", Operation: "delete", Error: "refused", Attempts: 1}}
	res, err := Diff(context.Background(), DiffInput{Sync: testSync("insert", "delete"), Rows: newRows(cols, []any{int64(1), "a@x", "A"}), Snapshot: snap, Failures: failures})
	if err != nil {
		t.Fatal(err)
	}
	keep := res.Plan.KeepSynced
	if len(res.Plan.Changes) != 0 || len(res.Plan.DropFailures) != 0 || len(keep) != 1 || keep[0].Key != "1" {
		t.Fatalf("changes %v, drop %v, keep %v; want the failure dropped, the key kept synced", summary(res.Plan), res.Plan.DropFailures, keep)
	}
	// Applying it drops the entry and keeps the snapshot's record: the
	// destination holds it (forgetting it would make it an orphan, and
	// its insert a duplicate forever).
	rec := newRecorder()
	rec.failed["1"] = *failures["1"]
	if _, err := ApplySync(context.Background(), res.Plan, newPoisonDest(), rec, ApplyOptions{Policy: Policy{BatchSize: 10, MaxAttempts: 1}, Threshold: 1}); err != nil {
		t.Fatal(err)
	}
	if len(rec.forgot) != 0 || len(rec.failed) != 0 || fmt.Sprint(rec.accepted) != fmt.Sprint(map[string]map[string]any{"1": vals("a@x", "A")}) {
		t.Fatalf("recorded accepts %v, forgets %v, failures %v; want key 1 kept with its snapshot values, its failure gone", rec.accepted, rec.forgot, rec.failed)
	}
	if _, hash, _ := snap.Lookup("1"); keep[0].Hash != hash {
		t.Fatalf("kept hash %x, snapshot %x", keep[0].Hash, hash)
	}
}

func TestFailedSendOfARowThatLeftIsARemovalNotARetry(t *testing.T) {
	snap := newMemSnapshot(fields, map[string]map[string]any{"1": vals("a@x", "A"), "2": vals("b@x", "B")})
	failures := state.FailureIndex{
		"1": {Key: "1", Operation: "upsert", Error: "CHECK failed", Attempts: 2},
		"2": {Key: "2", Operation: "delete", Error: "locked", Attempts: 1},
	}
	res, _ := Diff(context.Background(), DiffInput{Sync: testSync("upsert", "delete"), Rows: newRows(cols), Snapshot: snap, Failures: failures})
	if got := summary(res.Plan); fmt.Sprint(got) != "[remove 1 delete retry 2 delete]" {
		t.Fatalf("changes %v", got)
	}
}

func TestUnknownOutcomesAreRetriedSoNothingIsOrphaned(t *testing.T) {
	// A crash left keys 4 (an add), 5 (an add whose row has since left the
	// model), 6 (an add now excluded by a rule) and 1 (a removal, whose row
	// came back) in flight with no outcome recorded.
	snap := newMemSnapshot(fields, map[string]map[string]any{"1": vals("a@x", "A")})
	unknown := func(key, op string) *state.Failure {
		return &state.Failure{Key: key, Operation: op, Error: "outcome unknown", Attempts: 1, Unknown: true}
	}
	failures := state.FailureIndex{"1": unknown("1", "delete"), "4": unknown("4", "insert"), "5": unknown("5", "insert"), "6": unknown("6", "insert")}
	rows := func() *sliceRows {
		return newRows(cols, []any{int64(1), "a@x", "A"}, []any{int64(4), "d@x", "D"}, []any{int64(6), "no-at-sign", "F"})
	}
	for mode, want := range map[string]string{
		// insert mode would refuse a record the destination may hold already.
		"insert": "[retry 1 upsert retry 4 upsert retry 5 delete retry 6 delete]",
		"upsert": "[retry 1 upsert retry 4 upsert retry 5 delete retry 6 delete]",
	} {
		res, err := Diff(context.Background(), DiffInput{Sync: testSync(mode, "delete"), Rows: rows(), Rules: ruleExcluder{}, Snapshot: snap, Failures: failures})
		if err != nil {
			t.Fatal(err)
		}
		if got := summary(res.Plan); fmt.Sprint(got) != want {
			t.Errorf("mode %s: changes %v, want %s", mode, got, want)
		}
		if len(res.Plan.DropFailures) != 0 {
			t.Errorf("mode %s: dropped %v; an unknown outcome must be retried", mode, res.Plan.DropFailures)
		}
	}
}

// TestMassRemovalCountsRecordsInFlight: after a crash during a first apply
// the snapshot holds few records and many are in flight with an unknown
// outcome; removals of the unknown ones that left the model are measured
// against every record that may be in the destination, not the few the
// snapshot holds.
func TestMassRemovalCountsRecordsInFlight(t *testing.T) {
	snap := newMemSnapshot(fields, map[string]map[string]any{"1": vals("a@x", "A")})
	failures := state.FailureIndex{}
	var rows [][]any
	rows = append(rows, []any{int64(1), "a@x", "A"})
	for i := 2; i <= 10; i++ {
		k := fmt.Sprint(i)
		failures[k] = &state.Failure{Key: k, Operation: "upsert", Error: "outcome unknown", Attempts: 1, Unknown: true}
		if i <= 7 {
			rows = append(rows, []any{int64(i), k + "@x", k})
		}
	}
	s := testSync("upsert", "delete")
	s.MaxRemovals = config.Limit{Percent: true, Fraction: 0.5}
	res, err := Diff(context.Background(), DiffInput{Sync: s, Rows: newRows(cols, rows...), Snapshot: snap, Failures: failures})
	if err != nil {
		t.Fatal(err)
	}
	if got := summary(res.Plan); len(got) != 9 || res.Plan.Remove+res.Plan.Retry != 9 {
		t.Fatalf("changes %v: want 6 retried sends and 3 retried removals", got)
	}
	if res.Plan.MassRemoval != nil {
		t.Fatalf("3 removals of 10 records that may be synced refused: %s", res.Plan.MassRemoval.Reason())
	}
	// Half of them and more is still a mass removal.
	s.MaxRemovals = config.Limit{Count: 2}
	res, err = Diff(context.Background(), DiffInput{Sync: s, Rows: newRows(cols, rows...), Snapshot: snap, Failures: failures})
	if err != nil {
		t.Fatal(err)
	}
	if m := res.Plan.MassRemoval; m == nil || m.Removals != 3 || m.Synced != 10 {
		t.Fatalf("mass removal %+v, want 3 of 10 refused above a limit of 2", m)
	}
}

// TestKeepSyncedSurvivesASavedPlan: the snapshot values a saved plan
// carries for KeepSynced come back with their types (integers as int64)
// and hash, so applying the saved plan records what the snapshot had.
func TestKeepSyncedSurvivesASavedPlan(t *testing.T) {
	p := &Plan{FormatVersion: FormatVersion, Syncs: []*SyncPlan{{Name: "s", Object: "o", KeyField: "id", Fields: []string{"n", "v"}, Mode: "insert",
		KeepSynced: []Change{{Key: "7", Hash: 1<<63 + 5, Before: map[string]any{"id": int64(7), "n": int64(-3), "v": "x"}, LastError: "refused", Attempts: 2}}}}}
	path := filepath.Join(t.TempDir(), "p.plan")
	if err := p.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k := got.Syncs[0].KeepSynced
	if len(k) != 1 || k[0].Key != "7" || k[0].Hash != 1<<63+5 || !reflect.DeepEqual(k[0].Before, p.Syncs[0].KeepSynced[0].Before) {
		t.Fatalf("read back %+v", k)
	}
}

// TestKeepSyncedOfNonFiniteFloatsIsSaved: a snapshot value in KeepSynced
// can be a NaN or infinite float, which encoding/json refuses, or a float
// with an integral value, which JSON cannot tell from an integer; the plan
// is saved, and each comes back as the float it was, so that applying the
// plan writes into the snapshot what it held.
func TestKeepSyncedOfNonFiniteFloatsIsSaved(t *testing.T) {
	before := map[string]any{"id": int64(7), "n": math.NaN(), "v": math.Inf(-1), "w": math.Inf(1), "f": 3.0, "g": -0.5, "i": int64(3), "s": "NaN", "z": nil, "b": true}
	p := &Plan{FormatVersion: FormatVersion, Syncs: []*SyncPlan{{Name: "s", Object: "o", KeyField: "id", Fields: []string{"b", "f", "g", "i", "n", "s", "v", "w", "z"}, Mode: "insert",
		KeepSynced: []Change{{Key: "7", Hash: 5, Before: before}}}}}
	path := filepath.Join(t.TempDir(), "p.plan")
	if err := p.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(before["n"].(float64)) {
		t.Fatal("saving the plan changed its KeepSynced values")
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k := got.Syncs[0].KeepSynced
	if len(k) != 1 || k[0].Key != "7" || k[0].Hash != 5 {
		t.Fatalf("read back %+v", k)
	}
	b := k[0].Before
	if n, ok := b["n"].(float64); !ok || !math.IsNaN(n) {
		t.Fatalf("NaN read back as %#v", b["n"])
	}
	delete(b, "n")
	want := maps.Clone(before)
	delete(want, "n")
	if !reflect.DeepEqual(b, want) {
		t.Fatalf("read back %#v, want %#v", b, want)
	}
}

// A negative zero is a value of its own (written as 0 it would lose its
// sign) but the same key as 0.
func TestDiffNegativeZero(t *testing.T) {
	negZero := math.Copysign(0, -1)
	if v, ok := Canonical(negZero).(float64); !ok || !math.Signbit(v) {
		t.Fatalf("Canonical(-0.0) = %#v, want the float -0", Canonical(negZero))
	}
	if k, _ := keyString(Canonical(negZero)); k != "0" {
		t.Fatalf("key of -0.0 = %q, want \"0\" (the key of 0)", k)
	}
	s := testSync("upsert", "delete")
	s.Mapping = []config.Field{{Field: "f", Column: "f"}}
	snap := newMemSnapshot([]string{"f"}, map[string]map[string]any{"1": {"f": int64(0)}, "0": {"f": int64(1)}})
	rows := newRows([]string{"id", "f"}, []any{int64(1), negZero}, []any{negZero, int64(1)})
	res, err := Diff(context.Background(), DiffInput{Sync: s, Rows: rows, Snapshot: snap})
	if err != nil {
		t.Fatal(err)
	}
	if got := summary(res.Plan); fmt.Sprint(got) != "[change 1 upsert]" {
		t.Fatalf("changes %v, want key 1 changed (0 to -0) and key -0 the synced key 0", got)
	}
	if f, ok := res.Plan.Changes[0].After["f"].(float64); !ok || !math.Signbit(f) {
		t.Fatalf("the change sends %#v, want the float -0", res.Plan.Changes[0].After["f"])
	}
}
