package reconcile

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/state"
)

// mapOnly is a Recorder without AcceptValues.
type mapOnly struct{ Recorder }

// keepingDest accepts everything and keeps what each record carried, as a
// map of the batch's fields (FieldsOf), and whether it came as Values.
type keepingDest struct {
	values bool
	got    map[string]map[string]any
	asVals int
}

func (d *keepingDest) Close() error      { return nil }
func (d *keepingDest) ReadsValues() bool { return d.values }

func (d *keepingDest) Write(_ context.Context, b *destination.Batch) destination.Outcome {
	for _, r := range b.Records {
		if r.Fields == nil && r.Values != nil {
			d.asVals++
			if len(r.Values) != len(b.Fields) {
				return destination.Outcome{Err: fmt.Errorf("record %s: %d values for %d fields", r.Key, len(r.Values), len(b.Fields))}
			}
		}
		d.got[r.Key] = r.FieldsOf(b)
	}
	return destination.AllAccepted(len(b.Records))
}

// A spilled plan applied to a destination that reads Record.Values (and
// recorded by a state writer taking values in order) sends and records
// exactly what it does by field name: every value type, NULLs, the key
// field mapped or not, adds and changes. The snapshots after the two
// applies hold the same values, which the next diff then finds unchanged.
func TestValuesInOrderAreWhatFieldsCarry(t *testing.T) {
	ts := time.Date(2024, 2, 29, 23, 59, 58, 123456789, time.UTC)
	cols := []string{"id", "email", "score", "ltv", "active", "seen", "blob", "note"}
	rows := func(version string) [][]any {
		var out [][]any
		for i := range 300 {
			var note any = fmt.Sprint("n", i, version)
			if i%7 == 0 {
				note = nil
			}
			out = append(out, []any{int64(i), fmt.Sprintf("u%d@x", i), int64(i * 3), float64(i) / 8, i%2 == 0, ts.Add(time.Duration(i) * time.Hour), []byte{byte(i), 0, '\\'}, note})
		}
		return out
	}
	for _, keyMapped := range []bool{false, true} {
		t.Run(fmt.Sprintf("key mapped %v", keyMapped), func(t *testing.T) {
			s := &config.Sync{
				Name: "s", Object: "people", Key: "external_id", Mode: config.ModeUpsert, DeleteBehavior: "delete",
				Model:       &config.Model{Name: "m", PrimaryKey: []string{"id"}},
				Destination: &config.Destination{Name: "d"},
			}
			if keyMapped {
				s.Mapping = append(s.Mapping, config.Field{Field: "external_id", Column: "id"})
			}
			for _, c := range cols[1:] {
				s.Mapping = append(s.Mapping, config.Field{Field: c, Column: c})
			}
			// by name; in order to the destination and the state writer; in
			// order to the destination, by name to a recorder that takes
			// maps only (as the database state backends do).
			variants := []string{"by name", "in order", "map recorder"}
			stores := map[string]*state.Store{}
			var want int
			dests := map[string]*keepingDest{}
			for _, version := range []string{"v1", "v2"} {
				for _, variant := range variants {
					values := variant != "by name"
					st := stores[variant]
					if st == nil {
						var err error
						if st, err = state.Open(t.TempDir()); err != nil {
							t.Fatal(err)
						}
						stores[variant] = st
					}
					snap, err := st.LoadSnapshot("s")
					if err != nil {
						t.Fatal(err)
					}
					var res *DiffResult
					withSpillAfter(t, 0, func() {
						res, err = Diff(context.Background(), DiffInput{Sync: s, Rows: newRows(cols, rows(version)...), Snapshot: snap, Failures: state.FailureIndex{}, SpillDir: t.TempDir()})
					})
					snap.Close()
					if err != nil || !res.Plan.Spilled() {
						t.Fatalf("%s: spilled plan: %v", version, err)
					}
					w, err := st.Begin("s", false)
					if err != nil {
						t.Fatal(err)
					}
					d := &keepingDest{values: values, got: map[string]map[string]any{}}
					dests[variant] = d
					var rec Recorder = w
					if variant == "map recorder" {
						rec = mapOnly{w}
					}
					want = res.Plan.Add + res.Plan.Change
					if want != map[string]int{"v1": 300, "v2": 257}[version] { // NULL notes stay NULL
						t.Fatalf("%s: %d changes", version, want)
					}
					r, err := ApplyPlan(context.Background(), res.Plan, d, rec, ApplyOptions{Policy: Policy{BatchSize: 64, MaxAttempts: 1}, Sleep: noSleep}, 0)
					if err != nil || r.Counts.Accepted != want {
						t.Fatalf("%s: %v, %+v", version, err, r)
					}
					if err := w.Commit(); err != nil {
						t.Fatal(err)
					}
					if values && d.asVals != want || !values && d.asVals != 0 {
						t.Fatalf("%s, %s: %d records as values", version, variant, d.asVals)
					}
				}
				for _, variant := range variants {
					if n := len(dests[variant].got); n != want {
						t.Fatalf("%s, %s: %d records sent, want %d", version, variant, n, want)
					}
					if !reflect.DeepEqual(dests[variant].got, dests["by name"].got) {
						t.Fatalf("%s: the records sent differ:\nby name %v\n%s %v", version, dests["by name"].got["7"], variant, dests[variant].got["7"])
					}
				}
				snapshots := map[string]map[string]map[string]any{}
				for variant, st := range stores {
					snap, err := st.LoadSnapshot("s")
					if err != nil {
						t.Fatal(err)
					}
					all := map[string]map[string]any{}
					for i := range snap.Len() {
						v, err := snap.Values(i)
						if err != nil {
							t.Fatal(err)
						}
						all[snap.Key(i)] = v
					}
					snap.Close()
					snapshots[variant] = all
				}
				for _, variant := range variants {
					if len(snapshots[variant]) != 300 || !reflect.DeepEqual(snapshots[variant], snapshots["by name"]) {
						t.Fatalf("%s: the snapshots differ (%d and %d records):\nby name %v\n%s %v", version, len(snapshots["by name"]), len(snapshots[variant]), snapshots["by name"]["7"], variant, snapshots[variant]["7"])
					}
				}
			}
			// Nothing changed since: the next diff finds every row as synced.
			snap, err := stores["in order"].LoadSnapshot("s")
			if err != nil {
				t.Fatal(err)
			}
			defer snap.Close()
			res, err := Diff(context.Background(), DiffInput{Sync: s, Rows: newRows(cols, rows("v2")...), Snapshot: snap, Failures: state.FailureIndex{}})
			if err != nil || res.Plan.Unchanged != 300 {
				t.Fatalf("after the applies: %v, %d unchanged, want 300", err, res.Plan.Unchanged)
			}
		})
	}
}
