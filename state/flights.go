package state

import (
	"hash/maphash"
	"slices"
	"time"
)

// flights is a writer's set of records in flight: what was announced of
// each key sent and not yet settled. Every record of an apply enters it
// when its request is announced and leaves it when its outcome is
// recorded, so it is on the path of every record, while it holds only the
// records of the requests in flight (thousands).
//
// It is a hash index of its own rather than a map[string]…: the index is
// a small array of positions and hash tags (8 bytes a slot), probed
// linearly and compacted on delete (no tombstones), and the entries lie in
// an array reused as they settle. On the apply-postgres benchmark (300,000
// adds, four requests in flight, the server on the same two cores) a Go
// map here took a tenth of the apply's CPU, most of it in cache misses on
// the map's groups and its keys' bytes; this index takes a fraction of it
// (BENCHMARKS.md, "the in-flight set").
type flights struct {
	index   []flightSlot // len a power of two; pos 0 is an empty slot
	entries []flightEntry
	free    []uint32 // positions in entries of settled entries
	n       int      // keys in the set
	ops     []string // the operations announced, by number
	seed    maphash.Seed
}

type flightSlot struct {
	pos uint32 // 1 + position in entries; 0: empty
	tag uint32 // the low bits of the key's hash
}

type flightEntry struct {
	key  string
	at   int64 // Unix nanoseconds (UTC)
	op   int32
	live bool
}

const minFlightSlots = 64

func newFlights() flights {
	return flights{index: make([]flightSlot, minFlightSlots), seed: maphash.MakeSeed()}
}

// tag is key's hash, as the index keeps it.
func (f *flights) tag(key string) uint32 { return uint32(maphash.String(f.seed, key)) }

// find is the slot of key, whose tag is tag (found), or the empty slot
// where it would go.
func (f *flights) find(key string, tag uint32) (slot int, found bool) {
	mask := len(f.index) - 1
	for i := int(tag) & mask; ; i = (i + 1) & mask {
		s := f.index[i]
		if s.pos == 0 {
			return i, false
		}
		if s.tag == tag && f.entries[s.pos-1].key == key {
			return i, true
		}
	}
}

// sent puts key in the set, announced with op at at, replacing what was.
func (f *flights) sent(key, op string, at time.Time) {
	i := slices.Index(f.ops, op)
	if i < 0 {
		i = len(f.ops)
		f.ops = append(f.ops, op)
	}
	e := flightEntry{key: key, at: at.UnixNano(), op: int32(i), live: true}
	tag := f.tag(key)
	slot, found := f.find(key, tag)
	if found {
		f.entries[f.index[slot].pos-1] = e
		return
	}
	if (f.n+1)*4 > len(f.index)*3 {
		f.grow()
		slot, _ = f.find(key, tag)
	}
	var pos uint32
	if k := len(f.free); k > 0 {
		pos = f.free[k-1]
		f.free = f.free[:k-1]
		f.entries[pos] = e
	} else {
		pos = uint32(len(f.entries))
		f.entries = append(f.entries, e)
	}
	f.index[slot] = flightSlot{pos: pos + 1, tag: tag}
	f.n++
}

// grow doubles the index.
func (f *flights) grow() {
	old := f.index
	f.index = make([]flightSlot, 2*len(old))
	mask := len(f.index) - 1
	for _, s := range old {
		if s.pos == 0 {
			continue
		}
		i := int(s.tag) & mask
		for f.index[i].pos != 0 {
			i = (i + 1) & mask
		}
		f.index[i] = s
	}
}

// settled takes key out of the set.
func (f *flights) settled(key string) {
	if f.n == 0 {
		return
	}
	slot, found := f.find(key, f.tag(key))
	if !found {
		return
	}
	pos := f.index[slot].pos - 1
	f.entries[pos] = flightEntry{} // the key's string is not kept alive
	f.free = append(f.free, pos)
	f.n--
	// Linear probing's deletion: the slots after it that would no longer
	// be reached from their home slot move back into the hole.
	mask := len(f.index) - 1
	hole := slot
	for j := (hole + 1) & mask; ; j = (j + 1) & mask {
		s := f.index[j]
		if s.pos == 0 {
			break
		}
		home := int(s.tag) & mask
		// The entry at j stays when its home lies cyclically in (hole, j].
		if (hole < j && hole < home && home <= j) || (hole > j && (home > hole || home <= j)) {
			continue
		}
		f.index[hole] = s
		hole = j
	}
	f.index[hole] = flightSlot{}
}

// get is what was announced of key, in the set.
func (f *flights) get(key string) inFlight {
	slot, found := f.find(key, f.tag(key))
	if !found {
		return inFlight{}
	}
	e := f.entries[f.index[slot].pos-1]
	return inFlight{op: f.ops[e.op], at: time.Unix(0, e.at).UTC()}
}

// keys is the keys in the set, sorted.
func (f *flights) keys() []string {
	out := make([]string, 0, f.n)
	for _, e := range f.entries {
		if e.live {
			out = append(out, e.key)
		}
	}
	slices.Sort(out)
	return out
}

// clear empties the set.
func (f *flights) clear() {
	clear(f.index)
	clear(f.entries) // no key kept alive
	f.entries, f.free, f.n = f.entries[:0], f.free[:0], 0
}
