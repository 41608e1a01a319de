package reconcile

import (
	"testing"

	"github.com/backflowhq/backflow/destination"
)

// Values decoded in order for an apply are the encoded ones, the key
// field's included, whether it equals the change's key value (which it
// then shares) or not (a hand-made plan), and are decoded into arrays
// that changes do not share.
func TestDecodeInOrderKeyValue(t *testing.T) {
	fields := []string{"email", "score"}
	fc := newFieldCodec(fields, "id")
	changes := []Change{
		{Action: ActionAdd, Key: "1", Op: destination.OpUpsert, KeyValue: int64(1001), After: map[string]any{"email": "a@x", "score": int64(3), "id": int64(1001)}},
		{Action: ActionAdd, Key: "2", Op: destination.OpUpsert, KeyValue: int64(1002), After: map[string]any{"email": "b@x", "score": int64(4), "id": int64(7)}},
		{Action: ActionAdd, Key: "k", Op: destination.OpUpsert, KeyValue: "k", After: map[string]any{"email": "c@x", "score": nil, "id": "k"}},
		{Action: ActionAdd, Key: "j", Op: destination.OpUpsert, KeyValue: "j", After: map[string]any{"email": "d@x", "score": int64(5), "id": int64(9)}},
	}
	var raw []byte
	for i := range changes {
		var err error
		if raw, err = appendChange(raw, &changes[i], true, fc); err != nil {
			t.Fatal(err)
		}
	}
	out, err := decodeChangesFor(raw, chunkHead{count: len(changes)}, nil, fc, fields, false, true)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range out {
		if c.vals == nil {
			t.Fatalf("change %d: not decoded in order", i)
		}
		want := changes[i].After
		for j, name := range fc.names {
			if c.vals[j] != want[name] {
				t.Errorf("change %d, %s: %#v, want %#v", i, name, c.vals[j], want[name])
			}
		}
		if c.KeyValue != changes[i].KeyValue {
			t.Errorf("change %d: key value %#v, want %#v", i, c.KeyValue, changes[i].KeyValue)
		}
	}
	out[0].vals[0] = "changed"
	if out[1].vals[0] != "b@x" {
		t.Error("changes share their values' array")
	}
}
