package reconcile

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	config "github.com/backflowhq/backflow/hcl"

	"github.com/backflowhq/backflow/state"
)

// Changes spilled at once take their Before values from the snapshot's
// records without a map; read back, they equal those of a plan held in
// memory, for every kind of stored value.
func TestSpilledBeforeValuesFromTheSnapshot(t *testing.T) {
	st, w := beginSync(t)
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
	var rows [][]any
	for i := 0; i < n; i++ {
		rows = append(rows, []any{int64(i), fmt.Sprintf("new%d@x", i), "New"}) // every row changed
	}
	// As a local snapshot lends them (records copied as stored), and as
	// one that lends values one by one (a database state's).
	for _, lend := range []bool{true, false} {
		t.Run(fmt.Sprintf("records lent %v", lend), func(t *testing.T) {
			local, err := st.LoadSnapshot("s")
			if err != nil {
				t.Fatal(err)
			}
			var snap Snapshot = local
			if !lend {
				snap = visitOnly{local}
			}
			var saved *Plan
			diff := func(spill int) []Change {
				var res *DiffResult
				withSpillAfter(t, spill, func() {
					res, err = Diff(context.Background(), DiffInput{Sync: testSync("upsert", "delete"), Rows: newRows(cols, rows...), Snapshot: snap, Failures: state.FailureIndex{}, SpillDir: t.TempDir()})
				})
				if err != nil {
					t.Fatal(err)
				}
				if spill == 0 {
					if !res.Plan.Spilled() {
						t.Fatal("the plan was not spilled")
					}
					// Saved (the copied records decoded and written again)
					// and read back, the snapshot closed meanwhile.
					path := filepath.Join(t.TempDir(), "p.plan")
					p := &Plan{FormatVersion: FormatVersion, Syncs: []*SyncPlan{res.Plan}}
					if err := p.WriteFile(path); err != nil {
						t.Fatal(err)
					}
					withSpillAfter(t, 0, func() { saved, err = ReadFile(path) })
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { saved.Close() })
				}
				return allChanges(t, res.Plan)
			}
			spilled, whole := diff(0), diff(1000)
			local.Close()
			if back := allChanges(t, saved.Syncs[0]); !reflect.DeepEqual(back, whole) {
				t.Fatal("the saved plan, read back, differs from the plan held in memory")
			}
			if len(spilled) != n {
				t.Fatalf("%d changes, want %d", len(spilled), n)
			}
			for i := range spilled {
				if !reflect.DeepEqual(spilled[i].Before, whole[i].Before) {
					t.Fatalf("key %s: Before %#v spilled, %#v in memory", spilled[i].Key, spilled[i].Before, whole[i].Before)
				}
				// Against what was accepted, not another encoding: both
				// plans went through the encoder.
				if k := spilled[i].Key; !reflect.DeepEqual(spilled[i].Before, stored(atoi(t, k))) {
					t.Fatalf("key %s: Before %#v, accepted %#v", k, spilled[i].Before, stored(atoi(t, k)))
				}
			}
			if !reflect.DeepEqual(spilled, whole) {
				t.Fatal("spilled and in-memory plans differ")
			}
		})
	}
}

// visitOnly is a snapshot that lends values one by one but not records as
// stored.
type visitOnly struct{ sn *state.Snapshot }

func (v visitOnly) Len() int                                       { return v.sn.Len() }
func (v visitOnly) Lookup(key string) (int, uint64, bool)          { return v.sn.Lookup(key) }
func (v visitOnly) Key(i int) string                               { return v.sn.Key(i) }
func (v visitOnly) Values(i int) (map[string]any, error)           { return v.sn.Values(i) }
func (v visitOnly) VisitValues(i int, vv state.ValueVisitor) error { return v.sn.VisitValues(i, vv) }

func atoi(t *testing.T, s string) int {
	var i int
	if _, err := fmt.Sscan(s, &i); err != nil {
		t.Fatal(err)
	}
	return i
}

// Changes spilled at once are encoded from the row's values without a map;
// read back, they equal those of a plan held in memory: every value type
// the engines return, made canonical, with the key field mapped or not,
// with single and composite keys.
func TestSpilledAfterValuesFromTheRow(t *testing.T) {
	when := time.Date(2026, 11, 29, 7, 0, 0, 123456789, time.FixedZone("x", 3600))
	values := []any{nil, true, false, int64(-7), int32(5), int(12), uint64(1) << 63, float64(3), 2.5, float32(0.25), "s", []byte{0, 1, 2}, when}
	for _, tc := range []struct {
		name    string
		key     []string
		mapping []config.Field
	}{
		{"key field not mapped", []string{"id"}, []config.Field{{Field: "a", Column: "a"}, {Field: "b", Column: "b"}}},
		{"key field mapped", []string{"id"}, []config.Field{{Field: "a", Column: "a"}, {Field: "external_id", Column: "id"}, {Field: "b", Column: "b"}}},
		{"composite key", []string{"id", "b"}, []config.Field{{Field: "a", Column: "a"}, {Field: "b", Column: "b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testSync("upsert", "delete")
			s.Model.PrimaryKey, s.Mapping = tc.key, tc.mapping
			var rows [][]any
			for i := range 3 * len(values) {
				rows = append(rows, []any{int64(i), values[i%len(values)], fmt.Sprint("b", i%len(values))})
			}
			diff := func(spill int, inMemory bool) *SyncPlan {
				var res *DiffResult
				var err error
				withSpillAfter(t, spill, func() {
					res, err = Diff(context.Background(), DiffInput{Sync: s, Rows: newRows([]string{"id", "a", "b"}, rows...), Snapshot: EmptySnapshot{}, Failures: state.FailureIndex{}, SpillDir: t.TempDir(), InMemory: inMemory})
				})
				if err != nil {
					t.Fatal(err)
				}
				if spill == 0 && !res.Plan.Spilled() {
					t.Fatal("the plan was not spilled")
				}
				return res.Plan
			}
			// The reference keeps its changes as maps, never encoded.
			spilled, whole := allChanges(t, diff(0, false)), allChanges(t, diff(1000, true))
			if len(spilled) != len(rows) {
				t.Fatalf("%d changes, want %d", len(spilled), len(rows))
			}
			for i := range spilled {
				if !reflect.DeepEqual(spilled[i], whole[i]) {
					t.Fatalf("change %d spilled:\n%#v\nin memory:\n%#v", i, spilled[i], whole[i])
				}
				if _, ok := spilled[i].After["external_id"]; !ok {
					t.Fatalf("change %d: no key field in %v", i, spilled[i].After)
				}
			}
		})
	}
}

// A snapshot record copied into a spill decodes only against the field
// table of the snapshot it came from: a saved plan, whose codec has none,
// refuses one as damaged.
func TestRawValuesNeedTheSnapshotsFields(t *testing.T) {
	c := Change{Action: ActionChange, Key: "1", Op: "upsert", KeyValue: int64(1), After: map[string]any{"email": "a@x"}}
	raw, err := appendChange(nil, &c, true, newFieldCodec(fields, "external_id"))
	if err != nil {
		t.Fatal(err)
	}
	// Before, written as a map count of 0 (nil), becomes a raw record.
	at := len(raw) - len(mustAppendValues(t, c.After)) - 1
	if raw[at] != 0 {
		t.Fatalf("byte %d is %d, not Before's nil", at, raw[at])
	}
	rec := append(binary.AppendUvarint(nil, rawValues), 4, 1, 0, 3, 2) // 4 bytes: one field, id 0, an int (tag 3), 1
	damaged := append(append(append([]byte(nil), raw[:at]...), rec...), raw[at+1:]...)
	if _, err := decodeChanges(damaged, chunkHead{count: 1}, nil, newFieldCodec(fields, "external_id"), fields, true); !errors.Is(err, errDamagedChunk) {
		t.Fatalf("decoded without a field table: %v", err)
	}
	fc := newFieldCodec(fields, "external_id")
	fc.snapFields = []string{"email"}
	got, err := decodeChanges(damaged, chunkHead{count: 1}, nil, fc, fields, true)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got[0].Before, map[string]any{"email": int64(1)}) {
		t.Fatalf("Before = %#v", got[0].Before)
	}
	// A record that names a field past the table is refused, saying so.
	fc.snapFields = []string{}
	if _, err := decodeChanges(damaged, chunkHead{count: 1}, nil, fc, fields, true); !errors.Is(err, errDamagedChunk) || !strings.Contains(err.Error(), "copied from the snapshot") {
		t.Fatalf("decoded a record naming field 0 of none: %v", err)
	}
}

func mustAppendValues(t *testing.T, m map[string]any) []byte {
	t.Helper()
	c := Change{After: m}
	full, err := appendChange(nil, &c, true, newFieldCodec(fields, "external_id"))
	if err != nil {
		t.Fatal(err)
	}
	empty, err := appendChange(nil, &Change{}, true, newFieldCodec(fields, "external_id"))
	if err != nil {
		t.Fatal(err)
	}
	return full[len(empty)-1:]
}

// A decoded After may go to the destination as it is only when its names
// are exactly the sync's fields, with or without the key field: as
// holdsFields decides for a map built in memory.
func TestDecodedAfterExactlyTheFields(t *testing.T) {
	fc := newFieldCodec(fields, "external_id") // email, full_name; the key field apart
	for _, after := range []map[string]any{
		{"email": "a", "full_name": "b"},
		{"email": "a", "full_name": "b", "external_id": int64(1)},
		{"email": "a", "external_id": int64(1)},
		{"email": "a"},
		{"email": "a", "full_name": "b", "other": 1.5},
		{"email": "a", "other": 1.5},
		{"email": "a", "full_name": "b", "external_id": int64(1), "other": true},
		{},
	} {
		raw, err := appendChange(nil, &Change{Action: ActionAdd, Key: "1", Op: "upsert", After: after}, true, fc)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeChanges(raw, chunkHead{count: 1}, nil, fc, fields, false)
		if err != nil {
			t.Fatal(err)
		}
		if want := holdsFields(after, fields, "external_id"); got[0].afterExact != want {
			t.Errorf("After %v: exact %v, holdsFields %v", after, got[0].afterExact, want)
		}
	}
}
