package state

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"

	"github.com/zeebo/xxh3"
)

// A snapshot file is, in order:
//
//	magic (8 bytes)
//	values: per key in key order, uvarint(len) + value body
//	index:  field table (uvarint count, per name uvarint(len) + bytes),
//	        key arena (the keys concatenated in order),
//	        key offsets (n+1 × uint32), hashes (n × uint64),
//	        value offsets (n × uint64, file offsets of the value records)
//	footer: n, index offset, arena length, xxh3 of the index (uint64 each),
//	        footer magic (8 bytes)
//
// Loading reads the index only, into four flat arrays; values are read on
// demand. Integers are little endian.
const (
	snapshotMagic = "BFSNAP\x00\x01"
	footerMagic   = "BFSNAPFT"
	footerSize    = 4*8 + 8 // four uint64 and footerMagic
)

// memBit marks a value offset into Snapshot.mem (journal overlay) instead
// of the file.
const memBit = 1 << 63

// indexBuilder accumulates a snapshot index in key order.
type indexBuilder struct {
	arena  []byte
	keyOff []uint32
	hashes []uint64
	valOff []uint64
}

func newIndexBuilder(keys, arena int) *indexBuilder {
	b := &indexBuilder{
		arena:  make([]byte, 0, arena),
		keyOff: make([]uint32, 1, keys+1),
		hashes: make([]uint64, 0, keys),
		valOff: make([]uint64, 0, keys),
	}
	return b
}

func (b *indexBuilder) add(key []byte, hash, valOff uint64) error {
	if len(b.arena)+len(key) > math.MaxUint32 {
		return errors.New("snapshot keys exceed 4 GiB")
	}
	b.arena = append(b.arena, key...)
	b.keyOff = append(b.keyOff, uint32(len(b.arena)))
	b.hashes = append(b.hashes, hash)
	b.valOff = append(b.valOff, valOff)
	return nil
}

func (b *indexBuilder) snapshot(f *os.File, fields []string, mem []byte, valuesEnd int64) *Snapshot {
	sn := &Snapshot{
		f: f, n: len(b.hashes), fields: fields, mem: mem, valuesEnd: valuesEnd,
		arena: b.arena, keyOff: b.keyOff, hashes: b.hashes, valOff: b.valOff,
	}
	sn.buildSample()
	return sn
}

// sampleEvery is the spacing of the keys whose prefixes Lookup searches
// first: a small array that stays in cache, narrowing the search of the
// arena to a few probes.
const sampleEvery = 32

// prefix is the first 8 bytes of key, big endian, zero padded: prefix(a) <
// prefix(b) implies a < b.
func prefix(key []byte) uint64 {
	var b [8]byte
	copy(b[:], key)
	return binary.BigEndian.Uint64(b[:])
}

func (sn *Snapshot) buildSample() {
	sn.sample = make([]uint64, (sn.n+sampleEvery-1)/sampleEvery)
	for j := range sn.sample {
		sn.sample[j] = prefix(sn.key(j * sampleEvery))
	}
}

// searchRange returns bounds [lo, hi) that hold key's insertion point.
func (sn *Snapshot) searchRange(key []byte) (lo, hi int) {
	p := prefix(key)
	// Sampled keys with a smaller prefix are smaller than key, and those
	// with a larger one are larger.
	below, _ := slices.BinarySearch(sn.sample, p) // first sample >= p
	above := below
	for above < len(sn.sample) && sn.sample[above] == p {
		above++
	}
	if below > 0 {
		lo = (below-1)*sampleEvery + 1
	}
	hi = min(above*sampleEvery, sn.n)
	return lo, hi
}

func (sn *Snapshot) key(i int) []byte { return sn.arena[sn.keyOff[i]:sn.keyOff[i+1]] }

// openSnapshot loads the index of a snapshot file; a missing file is an
// empty snapshot.
func openSnapshot(path string) (*Snapshot, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Snapshot{keyOff: []uint32{0}}, nil // an empty sample too
	}
	if err != nil {
		return nil, err
	}
	sn, err := readIndex(f)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("read snapshot %s: %w", path, err)
	}
	return sn, nil
}

var errCorruptSnapshot = errors.New("corrupt snapshot")

func readIndex(f *os.File) (*Snapshot, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < int64(len(snapshotMagic)+footerSize) {
		return nil, errCorruptSnapshot
	}
	var head [len(snapshotMagic)]byte
	var foot [footerSize]byte
	if _, err := f.ReadAt(head[:], 0); err != nil {
		return nil, err
	}
	if _, err := f.ReadAt(foot[:], size-footerSize); err != nil {
		return nil, err
	}
	if string(head[:]) != snapshotMagic || string(foot[32:]) != footerMagic {
		return nil, errors.New("not a backflow snapshot (or an unsupported version)")
	}
	n := binary.LittleEndian.Uint64(foot[0:])
	indexOff := binary.LittleEndian.Uint64(foot[8:])
	arenaLen := binary.LittleEndian.Uint64(foot[16:])
	sum := binary.LittleEndian.Uint64(foot[24:])
	indexEnd := uint64(size - footerSize)
	if indexOff < uint64(len(snapshotMagic)) || indexOff > indexEnd || n > indexEnd || arenaLen > math.MaxUint32 {
		return nil, errCorruptSnapshot
	}
	fixed := arenaLen + 4*(n+1) + 16*n
	if fixed >= indexEnd-indexOff {
		return nil, errCorruptSnapshot
	}
	h := xxh3.New()
	r := bufio.NewReaderSize(io.TeeReader(io.NewSectionReader(f, int64(indexOff), int64(indexEnd-indexOff)), h), 256<<10)
	fieldsLen := indexEnd - indexOff - fixed
	fieldBuf := make([]byte, fieldsLen)
	if _, err := io.ReadFull(r, fieldBuf); err != nil {
		return nil, err
	}
	fields, err := decodeFieldTable(fieldBuf)
	if err != nil {
		return nil, err
	}
	sn := &Snapshot{
		f: f, n: int(n), fields: fields, valuesEnd: int64(indexOff),
		arena:  make([]byte, arenaLen),
		keyOff: make([]uint32, n+1),
		hashes: make([]uint64, n),
		valOff: make([]uint64, n),
	}
	if _, err := io.ReadFull(r, sn.arena); err != nil {
		return nil, err
	}
	if err := readUint32s(r, sn.keyOff); err != nil {
		return nil, err
	}
	if err := readUint64s(r, sn.hashes); err != nil {
		return nil, err
	}
	if err := readUint64s(r, sn.valOff); err != nil {
		return nil, err
	}
	if h.Sum64() != sum {
		return nil, fmt.Errorf("%w: index checksum mismatch", errCorruptSnapshot)
	}
	defer sn.buildSample()
	// The checksum vouches for what the writer produced; these checks keep a
	// buggy writer from turning into out-of-range panics.
	if sn.keyOff[0] != 0 || uint64(sn.keyOff[n]) != arenaLen {
		return nil, errCorruptSnapshot
	}
	prev := uint64(len(snapshotMagic))
	for i := range sn.n {
		if sn.keyOff[i] > sn.keyOff[i+1] || sn.valOff[i] < prev || sn.valOff[i] >= indexOff {
			return nil, errCorruptSnapshot
		}
		prev = sn.valOff[i] + 1
	}
	return sn, nil
}

func decodeFieldTable(b []byte) ([]string, error) {
	d := decoder{b: b}
	count := d.uvarint()
	if count > uint64(len(b)) {
		return nil, errCorruptSnapshot
	}
	names := make([]string, 0, count)
	for range count {
		names = append(names, string(d.bytes()))
	}
	if d.bad || len(d.b) != 0 {
		return nil, errCorruptSnapshot
	}
	return names, nil
}

func readUint32s(r io.Reader, dst []uint32) error {
	var buf [8192]byte
	for len(dst) > 0 {
		k := min(len(dst), len(buf)/4)
		if _, err := io.ReadFull(r, buf[:4*k]); err != nil {
			return err
		}
		for i := range k {
			dst[i] = binary.LittleEndian.Uint32(buf[4*i:])
		}
		dst = dst[k:]
	}
	return nil
}

func readUint64s(r io.Reader, dst []uint64) error {
	var buf [8192]byte
	for len(dst) > 0 {
		k := min(len(dst), len(buf)/8)
		if _, err := io.ReadFull(r, buf[:8*k]); err != nil {
			return err
		}
		for i := range k {
			dst[i] = binary.LittleEndian.Uint64(buf[8*i:])
		}
		dst = dst[k:]
	}
	return nil
}

func writeUint32s(w io.Writer, src []uint32) error {
	var buf [8192]byte
	for len(src) > 0 {
		k := min(len(src), len(buf)/4)
		for i := range k {
			binary.LittleEndian.PutUint32(buf[4*i:], src[i])
		}
		if _, err := w.Write(buf[:4*k]); err != nil {
			return err
		}
		src = src[k:]
	}
	return nil
}

func writeUint64s(w io.Writer, src []uint64) error {
	var buf [8192]byte
	for len(src) > 0 {
		k := min(len(src), len(buf)/8)
		for i := range k {
			binary.LittleEndian.PutUint64(buf[8*i:], src[i])
		}
		if _, err := w.Write(buf[:8*k]); err != nil {
			return err
		}
		src = src[k:]
	}
	return nil
}

// merge walks base (unless ch.reset) and ch's sorted, deduplicated entries
// in key order: keep is called for each base key that no entry replaces or
// forgets, put for each accepted entry.
func merge(base *Snapshot, ch *changes, keep func(i int) error, put func(key []byte, hash uint64, body []byte) error) error {
	n := base.n
	if ch.reset {
		n = 0
	}
	i, j := 0, 0
	for i < n || j < len(ch.entries) {
		var c int
		switch {
		case i == n:
			c = 1
		case j == len(ch.entries):
			c = -1
		default:
			c = compareBytes(base.key(i), ch.keyOf(ch.entries[j]))
		}
		if c < 0 {
			if err := keep(i); err != nil {
				return err
			}
			i++
			continue
		}
		if c == 0 {
			i++
		}
		e := ch.entries[j]
		j++
		if hash, body, ok := ch.accepted(e); ok {
			if err := put(ch.keyOf(e), hash, body); err != nil {
				return err
			}
		}
	}
	return nil
}

func compareBytes(a, b []byte) int {
	switch {
	case string(a) < string(b):
		return -1
	case string(a) > string(b):
		return 1
	}
	return 0
}

// overlay returns base with ch applied, values of accepted entries held in
// memory; base's file stays open for the rest.
func overlay(base *Snapshot, ch *changes, fields []string) (*Snapshot, error) {
	arena := len(base.arena)
	if ch.reset {
		arena = 0
	}
	for _, e := range ch.entries {
		arena += int(e.klen)
	}
	b := newIndexBuilder(base.n+len(ch.entries), arena)
	var mem []byte
	err := merge(base, ch,
		func(i int) error { return b.add(base.key(i), base.hashes[i], base.valOff[i]) },
		func(key []byte, hash uint64, body []byte) error {
			off := uint64(len(mem)) | memBit
			mem = binary.AppendUvarint(mem, uint64(len(body)))
			mem = append(mem, body...)
			return b.add(key, hash, off)
		})
	if err != nil {
		return nil, err
	}
	return b.snapshot(base.f, fields, mem, base.valuesEnd), nil
}

// writeSnapshot writes base with ch applied to dir/snapshot atomically,
// copying the value records of kept keys as they are (field ids stay valid
// because fields extends base's field table).
func writeSnapshot(dir string, base *Snapshot, ch *changes, fields []string) error {
	return writeAtomic(dir, snapshotFile, func(w *bufio.Writer) error {
		var src *bufio.Reader
		srcPos := int64(len(snapshotMagic))
		if base.f != nil && !ch.reset {
			src = bufio.NewReaderSize(io.NewSectionReader(base.f, srcPos, base.valuesEnd-srcPos), 1<<20)
		}
		pos := uint64(len(snapshotMagic))
		if _, err := w.WriteString(snapshotMagic); err != nil {
			return err
		}
		arena := len(base.arena)
		for _, e := range ch.entries {
			arena += int(e.klen)
		}
		b := newIndexBuilder(base.n+len(ch.entries), arena)
		var lenBuf [binary.MaxVarintLen64]byte
		keep := func(i int) error {
			off := int64(base.valOff[i])
			if err := discard(src, off-srcPos); err != nil {
				return err
			}
			l, err := binary.ReadUvarint(src)
			if err == nil && l > uint64(base.valuesEnd-off) {
				err = errCorruptValues
			}
			if err != nil {
				return fmt.Errorf("%w: value record of %q: %v", errCorruptSnapshot, base.key(i), err)
			}
			hdr := binary.PutUvarint(lenBuf[:], l)
			if _, err := w.Write(lenBuf[:hdr]); err != nil {
				return err
			}
			for rest := int(l); rest > 0; {
				p, err := src.Peek(min(rest, src.Size()))
				if err != nil {
					return fmt.Errorf("%w: value record of %q: %v", errCorruptSnapshot, base.key(i), err)
				}
				if _, err := w.Write(p); err != nil {
					return err
				}
				_, _ = src.Discard(len(p)) // peeked, cannot fail
				rest -= len(p)
			}
			srcPos = off + int64(hdr) + int64(l)
			if err := b.add(base.key(i), base.hashes[i], pos); err != nil {
				return err
			}
			pos += uint64(hdr) + l
			return nil
		}
		put := func(key []byte, hash uint64, body []byte) error {
			hdr := binary.PutUvarint(lenBuf[:], uint64(len(body)))
			if _, err := w.Write(lenBuf[:hdr]); err != nil {
				return err
			}
			if _, err := w.Write(body); err != nil {
				return err
			}
			if err := b.add(key, hash, pos); err != nil {
				return err
			}
			pos += uint64(hdr) + uint64(len(body))
			return nil
		}
		if err := merge(base, ch, keep, put); err != nil {
			return err
		}
		indexOff := pos
		h := xxh3.New()
		iw := io.MultiWriter(w, h)
		table := binary.AppendUvarint(nil, uint64(len(fields)))
		for _, name := range fields {
			table = appendBytes(table, name)
		}
		if _, err := iw.Write(table); err != nil {
			return err
		}
		if _, err := iw.Write(b.arena); err != nil {
			return err
		}
		if err := writeUint32s(iw, b.keyOff); err != nil {
			return err
		}
		if err := writeUint64s(iw, b.hashes); err != nil {
			return err
		}
		if err := writeUint64s(iw, b.valOff); err != nil {
			return err
		}
		var foot [footerSize]byte
		binary.LittleEndian.PutUint64(foot[0:], uint64(len(b.hashes)))
		binary.LittleEndian.PutUint64(foot[8:], indexOff)
		binary.LittleEndian.PutUint64(foot[16:], uint64(len(b.arena)))
		binary.LittleEndian.PutUint64(foot[24:], h.Sum64())
		copy(foot[32:], footerMagic)
		_, err := w.Write(foot[:])
		return err
	})
}

// readValue returns the body of the value record at off.
func (sn *Snapshot) readValue(off uint64) ([]byte, error) {
	if off&memBit != 0 {
		d := decoder{b: sn.mem[off&^memBit:]}
		body := d.bytes()
		if d.bad {
			return nil, errCorruptValues
		}
		return body, nil
	}
	buf := make([]byte, 256)
	n, err := sn.f.ReadAt(buf, int64(off))
	if n == 0 {
		return nil, err
	}
	l, hdr := binary.Uvarint(buf[:n])
	if hdr <= 0 || l > uint64(sn.valuesEnd)-off-uint64(hdr) {
		return nil, errCorruptValues
	}
	if end := hdr + int(l); end <= n {
		return buf[hdr:end], nil
	}
	body := make([]byte, l)
	if _, err := sn.f.ReadAt(body, int64(off)+int64(hdr)); err != nil {
		return nil, err
	}
	return body, nil
}
