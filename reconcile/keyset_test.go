package reconcile

import (
	"fmt"
	"testing"
)

func TestKeySet(t *testing.T) {
	s := newKeySet()
	for i := 0; i < 10000; i++ {
		if s.add(fmt.Sprint(i)) {
			t.Fatalf("%d: reported as present before it was added", i)
		}
	}
	for i := 0; i < 10000; i++ {
		if !s.add(fmt.Sprint(i)) || !s.has(fmt.Sprint(i)) {
			t.Fatalf("%d: not found", i)
		}
	}
	if s.has("10000") || s.has("") {
		t.Fatal("a key never added was found")
	}
	// Every key on one hash: the overflow keeps membership exact.
	c := newKeySet()
	c.hash = func(string) uint64 { return 1 }
	had := []bool{false, false, true, false, true, true}
	for i, k := range []string{"a", "b", "a", "c", "b", "c"} {
		if got, want := c.add(k), had[i]; got != want {
			t.Fatalf("add(%q) = %v, want %v", k, got, want)
		}
	}
	if !c.has("a") || !c.has("b") || !c.has("c") || c.has("d") || c.n != 3 {
		t.Fatalf("membership through the overflow is wrong (%d keys)", c.n)
	}
}
