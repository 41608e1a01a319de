package reconcile

import "testing"

// A hasher that remembers its fields' encoded names hashes other
// fields, or the same slice changed in place, as a fresh one does.
func TestHasherFollowsItsFields(t *testing.T) {
	fresh := func(fields []string, vals []any) uint64 {
		var h hasher
		return h.sum(fields, vals)
	}
	var h hasher
	fields := []string{"email", "name"}
	h.remember(fields)
	vals := []any{"a@x", int64(3)}
	if got, want := h.sum(fields, vals), fresh(fields, vals); got != want {
		t.Fatalf("first sum %x, want %x", got, want)
	}
	other := []string{"mail", "name", "n"}
	if got, want := h.sum(other, []any{"a@x", int64(3), nil}), fresh(other, []any{"a@x", int64(3), nil}); got != want {
		t.Fatalf("sum over other fields %x, want %x", got, want)
	}
	fields[0] = "e"
	if got, want := h.sum(fields, vals), fresh([]string{"e", "name"}, vals); got != want {
		t.Fatalf("sum after the fields changed in place %x, want %x", got, want)
	}
	if h.sum(fields, vals) == fresh([]string{"email", "name"}, vals) {
		t.Fatal("the field names do not count")
	}
}
