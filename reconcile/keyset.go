package reconcile

import "hash/maphash"

// keySet is a set of strings held compactly: the keys' bytes in one arena,
// found through a map from a 64-bit hash to the key's place, so that the
// model keys a first sync meets (millions of them) cost about 30 bytes
// each instead of a Go string and a map entry. Keys whose hash collides
// with another's go to a plain map, so membership is exact.
type keySet struct {
	hash     func(string) uint64
	index    map[uint64]uint32 // hash → key number
	offsets  []uint32          // key number → end of its bytes in arena
	arena    []byte
	overflow map[string]struct{}
	n        int
}

func newKeySet() *keySet {
	seed := maphash.MakeSeed()
	return &keySet{hash: func(k string) uint64 { return maphash.String(seed, k) }, index: map[uint64]uint32{}}
}

func (s *keySet) key(i uint32) string {
	start := uint32(0)
	if i > 0 {
		start = s.offsets[i-1]
	}
	return string(s.arena[start:s.offsets[i]])
}

// add adds key, reporting whether it was there already.
func (s *keySet) add(key string) (had bool) {
	h := s.hash(key)
	i, ok := s.index[h]
	switch {
	case !ok:
		if uint64(len(s.arena))+uint64(len(key)) > 1<<32-1 {
			break // the arena is full: the overflow map takes the rest
		}
		s.arena = append(s.arena, key...)
		s.offsets = append(s.offsets, uint32(len(s.arena)))
		s.index[h] = uint32(len(s.offsets) - 1)
		s.n++
		return false
	case s.key(i) == key:
		return true
	}
	if s.overflow == nil {
		s.overflow = map[string]struct{}{}
	}
	if _, had := s.overflow[key]; had {
		return true
	}
	s.overflow[key] = struct{}{}
	s.n++
	return false
}

// has reports whether key is in the set.
func (s *keySet) has(key string) bool {
	if i, ok := s.index[s.hash(key)]; ok && s.key(i) == key {
		return true
	}
	_, ok := s.overflow[key]
	return ok
}
