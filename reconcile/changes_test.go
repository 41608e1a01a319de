package reconcile

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/backflowhq/backflow/destination"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/state"
)

// withSpillAfter runs f with SpillAfter set to n.
func withSpillAfter(t *testing.T, n int, f func()) {
	t.Helper()
	old := SpillAfter
	SpillAfter = n
	defer func() { SpillAfter = old }()
	f()
}

// allChanges lists a plan's changes through Each, sorted by action then
// key, so that a spilled plan (model order) and one held in memory (key
// order) compare.
func allChanges(t *testing.T, sp *SyncPlan) []Change {
	t.Helper()
	var out []Change
	if err := sp.Each(func(c *Change) error {
		cc := *c
		cc.afterExact = false // how a decoded After may be sent, not the plan
		out = append(out, cc)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(out) != sp.NumChanges() {
		t.Fatalf("Each gave %d changes, NumChanges says %d", len(out), sp.NumChanges())
	}
	sortChanges(out)
	return out
}

// randomCase builds a snapshot, a failure index and model rows over a small
// key space, so that adds, changes, removals, retries, duplicates, null
// keys and excluded rows all occur.
func randomCase(r *rand.Rand) (*memSnapshot, state.FailureIndex, func() *sliceRows) {
	recs := map[string]map[string]any{}
	failures := state.FailureIndex{}
	var rows [][]any
	for k := 0; k < 400; k++ {
		key := fmt.Sprint(k)
		email := fmt.Sprintf("u%d@x", k)
		if r.IntN(3) > 0 {
			recs[key] = vals(email, fmt.Sprint("N", k))
		}
		if r.IntN(8) == 0 {
			op := "upsert"
			if r.IntN(3) == 0 {
				op = "delete"
			}
			failures[key] = &state.Failure{Key: key, Operation: op, Error: "boom", Attempts: 1 + r.IntN(3), Unknown: r.IntN(10) == 0}
		}
		switch r.IntN(10) {
		case 0: // left the model
		case 1:
			rows = append(rows, []any{int64(k), "no-at-sign", "X"}) // excluded by the rule
		case 2:
			rows = append(rows, []any{int64(k), email, "changed"}, []any{int64(k), email, "dup"})
		default:
			name := fmt.Sprint("N", k)
			if r.IntN(4) == 0 {
				name = "changed"
			}
			rows = append(rows, []any{int64(k), email, name})
		}
	}
	rows = append(rows, []any{nil, "n@x", "null key"})
	r.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	return newMemSnapshot(fields, recs), failures, func() *sliceRows { return newRows(cols, rows...) }
}

// A plan spilled to disk holds the same changes, counts and verdicts as
// the same plan held in memory, in every mode and delete behaviour, and
// survives a saved plan both ways.
func TestSpilledPlanEqualsInMemoryPlan(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		for _, mode := range []string{config.ModeUpsert, config.ModeInsert, config.ModeUpdate, config.ModeAll} {
			for _, del := range []string{"delete", "clear", "nothing"} {
				r := rand.New(rand.NewPCG(seed, 7))
				snap, failures, rows := randomCase(r)
				s := testSync(mode, del)
				in := func() DiffInput {
					return DiffInput{Sync: s, Rows: rows(), Rules: ruleExcluder{}, Snapshot: snap, Failures: failures, SpillDir: t.TempDir()}
				}
				// The reference: changes kept as maps, never encoded.
				memIn := in()
				memIn.InMemory = true
				mem, err := Diff(context.Background(), memIn)
				if err != nil {
					t.Fatal(err)
				}
				if mem.Plan.Spilled() {
					t.Fatal("a small plan was spilled")
				}
				for _, after := range []int{0, 3, 50} {
					var spilled *DiffResult
					withSpillAfter(t, after, func() { spilled, err = Diff(context.Background(), in()) })
					if err != nil {
						t.Fatal(err)
					}
					name := fmt.Sprintf("seed %d, %s/%s, spill after %d", seed, mode, del, after)
					if mem.Plan.NumChanges() > after && !spilled.Plan.Spilled() {
						t.Fatalf("%s: %d changes were not spilled", name, mem.Plan.NumChanges())
					}
					comparePlans(t, name, mem.Plan, spilled.Plan)
					if !reflect.DeepEqual(mem.ExcludedKeys, spilled.ExcludedKeys) {
						t.Fatalf("%s: excluded keys differ", name)
					}
					// Saved and read back, held in memory and streamed from the file.
					path := filepath.Join(t.TempDir(), "p.plan")
					p := &Plan{FormatVersion: FormatVersion, Syncs: []*SyncPlan{spilled.Plan}}
					if err := p.WriteFile(path); err != nil {
						t.Fatal(err)
					}
					for _, readAfter := range []int{0, 1 << 20} {
						var back *Plan
						withSpillAfter(t, readAfter, func() { back, err = ReadFile(path) })
						if err != nil {
							t.Fatal(err)
						}
						comparePlans(t, name+fmt.Sprintf(", saved and read with spill after %d", readAfter), mem.Plan, back.Syncs[0])
						back.Close()
					}
					p.Close()
				}
			}
		}
	}
}

func comparePlans(t *testing.T, name string, want, got *SyncPlan) {
	t.Helper()
	if want.Add != got.Add || want.Change != got.Change || want.Remove != got.Remove || want.Retry != got.Retry ||
		want.Unchanged != got.Unchanged || want.Rows != got.Rows || !reflect.DeepEqual(want.Excluded, got.Excluded) ||
		!reflect.DeepEqual(want.MassRemoval, got.MassRemoval) || !reflect.DeepEqual(want.DropFailures, got.DropFailures) {
		t.Fatalf("%s: counts differ:\nwant %+v\n got %+v", name, *want, *got)
	}
	w, g := allChanges(t, want), allChanges(t, got)
	if !reflect.DeepEqual(w, g) {
		for i := range min(len(w), len(g)) {
			if !reflect.DeepEqual(w[i], g[i]) {
				t.Fatalf("%s: change %d differs:\nwant %#v\n got %#v", name, i, w[i], g[i])
			}
		}
		t.Fatalf("%s: %d changes, want %d", name, len(g), len(w))
	}
}

// Every value type a model returns survives the spill exactly.
func TestSpillKeepsEveryValueType(t *testing.T) {
	p := samplePlan()
	sf, err := newSpill(t.TempDir(), []string{"email"}, "id")
	if err != nil {
		t.Fatal(err)
	}
	var want []Change
	for _, sp := range p.Syncs {
		for i := range sp.Changes {
			if err := sf.add(&sp.Changes[i]); err != nil {
				t.Fatal(err)
			}
			want = append(want, sp.Changes[i])
		}
	}
	if err := sf.finish(); err != nil {
		t.Fatal(err)
	}
	sp := &SyncPlan{spill: sf}
	got := allChanges(t, sp)
	sortChanges(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("spilled changes differ:\nwant %#v\n got %#v", want, got)
	}
	if _, err := appendPlanValue(nil, struct{}{}); err == nil {
		t.Fatal("a value of an unknown type was written")
	}
}

// Applying a spilled plan window by window ends where applying it whole
// does: the same records written, accepted, rejected and counted.
func TestApplyPlanStreamsASpilledPlan(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	snap, failures, rows := randomCase(r)
	s := testSync(config.ModeUpsert, "delete")
	in := func() DiffInput {
		return DiffInput{Sync: s, Rows: rows(), Rules: ruleExcluder{}, Snapshot: snap, Failures: failures, SpillDir: t.TempDir()}
	}
	memIn := in()
	memIn.InMemory = true // kept as maps, never encoded
	mem, err := Diff(context.Background(), memIn)
	if err != nil {
		t.Fatal(err)
	}
	var spilled *DiffResult
	withSpillAfter(t, 0, func() { spilled, err = Diff(context.Background(), in()) })
	if err != nil {
		t.Fatal(err)
	}
	poison := []string{"5", "17", "230"}
	oldW := maxWindow
	maxWindow = 7 // windows of 7 changes at batch size 1
	defer func() { maxWindow = oldW }()
	if n := spilled.Plan.NumChanges(); n < 20*maxWindow {
		t.Fatalf("only %d changes: too few windows", n)
	}
	opts := ApplyOptions{Policy: Policy{BatchSize: 1, MaxAttempts: 2, SplitRetries: true}, Threshold: 1, Sleep: noSleep}
	// One request at a time in batches of one; then 4 in flight in
	// batches of 3 (windows of 6), with split retries and records locked
	// once (retried): requests of one window go out while those of the
	// window before are answered.
	for _, v := range []struct {
		batch, inFlight int
		locked          []string
	}{{1, 1, nil}, {3, 4, []string{"3", "40", "41", "120"}}} {
		o := opts
		o.Policy.BatchSize, o.Policy.MaxInFlight, o.Policy.MaxAttempts = v.batch, v.inFlight, 3
		apply := func(sp *SyncPlan) (*SyncResult, *poisonDest, *memRecorder) {
			d, rec := newPoisonDest(poison...), newRecorder()
			for _, k := range v.locked {
				d.locked[k] = 1
			}
			var dest destination.Destination = d
			if v.inFlight > 1 {
				dest = concurrentPoison{d}
			}
			res, err := ApplyPlan(context.Background(), sp, dest, rec, o, -1)
			if err != nil {
				t.Fatal(err)
			}
			return res, d, rec
		}
		want, wantDest, wantRec := apply(mem.Plan)
		got, gotDest, gotRec := apply(spilled.Plan)
		if want.Counts != got.Counts || !reflect.DeepEqual(want.ByAction, got.ByAction) {
			t.Fatalf("batch %d, %d in flight: counts differ:\nwant %+v %v\n got %+v %v", v.batch, v.inFlight, want.Counts, want.ByAction, got.Counts, got.ByAction)
		}
		if !reflect.DeepEqual(wantDest.written, gotDest.written) || !reflect.DeepEqual(wantRec.accepted, gotRec.accepted) ||
			!reflect.DeepEqual(wantRec.forgot, gotRec.forgot) || !reflect.DeepEqual(keysOf(wantRec.failed), keysOf(gotRec.failed)) {
			t.Fatalf("batch %d, %d in flight: the destination or the recorded outcomes differ", v.batch, v.inFlight)
		}
		if len(got.Records) != len(want.Records) || want.Counts.Rejected == 0 || got.Unsettled() != 0 {
			t.Fatalf("batch %d, %d in flight: %d records, want %d (rejected %d); %d unsettled", v.batch, v.inFlight, len(got.Records), len(want.Records), want.Counts.Rejected, got.Unsettled())
		}
		retried := 0
		for _, k := range v.locked {
			if gotDest.sent[k] < 2 && gotDest.written[k] != nil {
				t.Fatalf("%s was locked once, written after %d sends", k, gotDest.sent[k])
			}
			if gotDest.sent[k] >= 2 {
				retried++
			}
		}
		if len(v.locked) > 0 && retried == 0 {
			t.Fatal("no locked record was in the plan: the retries went untested")
		}
	}
	// With a bound on kept accepted records, rejected ones are all kept.
	d, rec := newPoisonDest(poison...), newRecorder()
	res, err := ApplyPlan(context.Background(), spilled.Plan, d, rec, opts, 5)
	if err != nil {
		t.Fatal(err)
	}
	accepted := 0
	for _, r := range res.Records {
		if r.Status == state.RowAccepted {
			accepted++
		}
	}
	if accepted != 5 || len(res.Records) != 5+res.Counts.Rejected {
		t.Fatalf("kept %d accepted of %d records (%d rejected); want 5 and every rejection", accepted, len(res.Records), res.Counts.Rejected)
	}
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// fatalAfter accepts n requests, then answers every one as fatal.
type fatalAfter struct {
	n, requests int
}

func (d *fatalAfter) Close() error { return nil }

func (d *fatalAfter) Write(_ context.Context, b *destination.Batch) destination.Outcome {
	d.requests++
	if d.requests > d.n {
		return destination.Fatal(fmt.Errorf("permission denied for table %s", b.Object))
	}
	res := make([]destination.Result, len(b.Records))
	return destination.Outcome{Results: res}
}

// A fatal answer in a later window of a streamed apply stops it there:
// nothing more is sent, nothing is rejected, and the records not settled
// are counted as planned again next run. The batch announced while the
// fatal request was out (one request in flight: the next is announced
// ahead) is released as unsent.
func TestApplyPlanStopsAtAFatalAnswerInALaterWindow(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	snap, _, rows := randomCase(r)
	s := testSync(config.ModeUpsert, "delete")
	var res *DiffResult
	var err error
	withSpillAfter(t, 0, func() {
		res, err = Diff(context.Background(), DiffInput{Sync: s, Rows: rows(), Rules: ruleExcluder{}, Snapshot: snap, SpillDir: t.TempDir()})
	})
	if err != nil {
		t.Fatal(err)
	}
	oldW := maxWindow
	maxWindow = 10 // windows of 10 changes
	defer func() { maxWindow = oldW }()
	d, rec := &fatalAfter{n: 3}, newRecorder()
	opts := ApplyOptions{Policy: Policy{BatchSize: 5, MaxAttempts: 2}, Threshold: 1, Sleep: noSleep}
	got, err := ApplyPlan(context.Background(), res.Plan, d, rec, opts, -1)
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	for _, n := range rec.inFlight {
		sent += n
	}
	total := res.Plan.NumChanges()
	if got.Halted == nil || got.Halted.Reason != HaltFatal || d.requests != 4 {
		t.Fatalf("halted %+v after %d requests; want a fatal halt at the 4th", got.Halted, d.requests)
	}
	if got.Counts.Rejected != 0 || len(rec.failed) != 0 || got.Counts.Accepted != 15 {
		t.Fatalf("accepted %d, rejected %d, failure index %d; want 15, 0, 0", got.Counts.Accepted, got.Counts.Rejected, len(rec.failed))
	}
	unsent := 0
	for k, n := range rec.unsent {
		if _, ok := rec.accepted[k]; ok {
			t.Fatalf("%s accepted and released as unsent", k)
		}
		unsent += n
	}
	if got.Unsettled() != total-15 || sent != 25 || unsent != 10 || !got.Failed() {
		t.Fatalf("unsettled %d of %d (announced %d, released %d), failed %v; want %d, 25, 10 (the fatal batch and the one announced after it)",
			got.Unsettled(), total, sent, unsent, got.Failed(), total-15)
	}
}
