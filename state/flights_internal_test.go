package state

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// The in-flight set answers as a map would, whatever the order of
// announcements, re-announcements and settlements, through growth and
// deletions that move entries back along their probe sequences.
func TestFlightsActLikeAMap(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewPCG(seed, seed))
		f := newFlights()
		ref := map[string]inFlight{}
		keySpace := 50 + r.IntN(3000)
		ops := []string{"upsert", "insert", "delete"}
		for step := range 20_000 {
			k := "k" + strconv.Itoa(r.IntN(keySpace))
			switch r.IntN(10) {
			case 0, 1, 2, 3, 4:
				op := ops[r.IntN(len(ops))]
				at := time.Unix(0, int64(step)*1000).UTC()
				f.sent(k, op, at)
				ref[k] = inFlight{op: op, at: at}
			case 5, 6, 7, 8:
				f.settled(k)
				delete(ref, k)
			default:
				if r.IntN(200) == 0 {
					f.clear()
					clear(ref)
				}
			}
			if f.n != len(ref) {
				t.Fatalf("seed %d step %d: %d keys, want %d", seed, step, f.n, len(ref))
			}
		}
		keys := f.keys()
		if len(keys) != len(ref) {
			t.Fatalf("seed %d: keys() has %d, want %d", seed, len(keys), len(ref))
		}
		for i, k := range keys {
			if i > 0 && keys[i-1] >= k {
				t.Fatalf("seed %d: keys not sorted and distinct: %q then %q", seed, keys[i-1], k)
			}
			want, ok := ref[k]
			if !ok {
				t.Fatalf("seed %d: %q in the set, not in the map", seed, k)
			}
			if got := f.get(k); got != want {
				t.Fatalf("seed %d: %q is %+v, want %+v", seed, k, got, want)
			}
		}
		for k := range ref {
			if _, found := f.find(k, f.tag(k)); !found {
				t.Fatalf("seed %d: %q not found", seed, k)
			}
		}
		// Every key absent from the map is absent from the set.
		for i := range keySpace {
			k := "k" + strconv.Itoa(i)
			if _, ok := ref[k]; ok {
				continue
			}
			if _, found := f.find(k, f.tag(k)); found {
				t.Fatalf("seed %d: settled %q still found", seed, k)
			}
		}
	}
}

// Settled entries do not keep their keys' strings alive.
func TestFlightsDropSettledKeys(t *testing.T) {
	f := newFlights()
	for i := range 100 {
		f.sent("key"+strconv.Itoa(i), "upsert", time.Unix(0, 0))
	}
	for i := range 100 {
		f.settled("key" + strconv.Itoa(i))
	}
	for i, e := range f.entries {
		if e.key != "" || e.live {
			t.Fatalf("entry %d still holds %q", i, e.key)
		}
	}
}
