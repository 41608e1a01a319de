package state

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"slices"
	"sync"

	"github.com/zeebo/xxh3"
)

// A snapshot file is, in order:
//
//	magic (8 bytes, the last one the format version)
//	values: per key in key order, a value record: uvarint(len), value body,
//	        and (version 2) the CRC-32C of the length and body (uint32)
//	index:  field table (uvarint count, per name uvarint(len) + bytes),
//	        key arena (the keys concatenated in order),
//	        key offsets (n+1 × uint32), hashes (n × uint64),
//	        value offsets (n × uint64, file offsets of the value records)
//	footer: n, index offset, arena length, xxh3 of the index (uint64 each);
//	        version 2 adds the snapshot's generation and its parent's
//	        (uint64 each), then the CRC-32C of the footer so far and four
//	        zero bytes; then the footer magic (8 bytes)
//
// Loading reads the index only, into four flat arrays; values are read on
// demand, each checked against its own checksum, and Verify checks them
// all. Integers are little endian.
//
// A generation is a random non-zero number naming one snapshot file; the
// parent is the generation of the snapshot it was merged from (0: none).
// The failure index and the journal name the generation they go with, so
// that files of different commits are never mixed unnoticed.
const (
	snapshotMagicV1 = "BFSNAP\x00\x01"
	snapshotMagic   = "BFSNAP\x00\x02"
	footerMagic     = "BFSNAPFT"
	footerSizeV1    = 4*8 + 8 // four uint64 and footerMagic
	footerSize      = 6*8 + 8 + 8
	recordCRCSize   = 4
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

func (b *indexBuilder) snapshot(f snapFile, fields []string, mem []byte, valuesEnd int64) *Snapshot {
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

// openSized opens path for reading and returns its size; a missing file
// is (nil, 0, nil).
func openSized(path string) (*os.File, int64, error) {
	f, err := openStateFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fileErr(err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, fileErr(err)
	}
	return f, st.Size(), nil
}

// openSnapshot loads the index of a snapshot file; a missing file is an
// empty snapshot (generation 0).
func openSnapshot(path string) (*Snapshot, error) {
	f, size, err := openSized(path)
	if err != nil {
		return nil, err
	}
	if f == nil {
		return &Snapshot{keyOff: []uint32{0}, path: path, version: FormatVersion}, nil // an empty sample too
	}
	sn, err := readIndex(path, f, size)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return sn, nil
}

var errCorruptSnapshot = errors.New("corrupt snapshot")

// snapFile is an open snapshot file.
type snapFile interface {
	io.ReaderAt
	io.Closer
}

// snapshotHead reads the magic and footer of a snapshot file of size
// bytes: its format version and the raw footer.
func snapshotHead(path string, f io.ReaderAt, size int64) (version int, foot []byte, err error) {
	var head [len(snapshotMagic)]byte
	if size < int64(len(head)) {
		return 0, nil, corrupt(path, "cut short (%d bytes)", size)
	}
	if _, err := f.ReadAt(head[:], 0); err != nil {
		return 0, nil, fileErr(err)
	}
	switch string(head[:]) {
	case snapshotMagicV1:
		version = 1
	case snapshotMagic:
		version = 2
	default:
		if string(head[:6]) == snapshotMagic[:6] && head[6] == 0 && head[7] > snapshotMagic[7] {
			return 0, nil, &VersionError{Path: path, Version: int(head[7])}
		}
		return 0, nil, corrupt(path, "not a backflow snapshot")
	}
	fs := footerSize
	if version == 1 {
		fs = footerSizeV1
	}
	if size < int64(len(head)+fs) {
		return 0, nil, corrupt(path, "cut short (%d bytes)", size)
	}
	foot = make([]byte, fs)
	if _, err := f.ReadAt(foot, size-int64(fs)); err != nil {
		return 0, nil, fileErr(err)
	}
	if string(foot[fs-8:]) != footerMagic {
		return 0, nil, corrupt(path, "cut short or damaged at its end (no footer)")
	}
	if version == 2 {
		if crc32.Checksum(foot[:48], castagnoli) != binary.LittleEndian.Uint32(foot[48:]) || binary.LittleEndian.Uint32(foot[52:]) != 0 {
			return 0, nil, corrupt(path, "footer checksum mismatch")
		}
	}
	return version, foot, nil
}

func readIndex(path string, f snapFile, size int64) (*Snapshot, error) {
	version, foot, err := snapshotHead(path, f, size)
	if err != nil {
		return nil, err
	}
	bad := func(what string) error { return corrupt(path, "%s", what) }
	n := binary.LittleEndian.Uint64(foot[0:])
	indexOff := binary.LittleEndian.Uint64(foot[8:])
	arenaLen := binary.LittleEndian.Uint64(foot[16:])
	sum := binary.LittleEndian.Uint64(foot[24:])
	var gen, parent uint64
	if version == 2 {
		gen, parent = binary.LittleEndian.Uint64(foot[32:]), binary.LittleEndian.Uint64(foot[40:])
		if gen == 0 {
			return nil, bad("footer names no generation")
		}
	}
	indexEnd := uint64(size) - uint64(len(foot))
	if indexOff < uint64(len(snapshotMagic)) || indexOff > indexEnd || n > indexEnd || arenaLen > math.MaxUint32 {
		return nil, bad("footer out of range")
	}
	// Sizes are bounded by the file's size before anything is allocated.
	fixed := arenaLen + 4*(n+1) + 16*n
	if fixed >= indexEnd-indexOff {
		return nil, bad("index sizes out of range")
	}
	h := xxh3.New()
	r := bufio.NewReaderSize(io.TeeReader(io.NewSectionReader(f, int64(indexOff), int64(indexEnd-indexOff)), h), 256<<10)
	fieldsLen := indexEnd - indexOff - fixed
	fieldBuf := make([]byte, fieldsLen)
	if _, err := io.ReadFull(r, fieldBuf); err != nil {
		return nil, fileErr(err)
	}
	sn := &Snapshot{
		f: f, n: int(n), valuesEnd: int64(indexOff), path: path, version: version, gen: gen, parent: parent,
		arena:  make([]byte, arenaLen),
		keyOff: make([]uint32, n+1),
		hashes: make([]uint64, n),
		valOff: make([]uint64, n),
	}
	if _, err := io.ReadFull(r, sn.arena); err != nil {
		return nil, fileErr(err)
	}
	if err := readUint32s(r, sn.keyOff); err != nil {
		return nil, fileErr(err)
	}
	if err := readUint64s(r, sn.hashes); err != nil {
		return nil, fileErr(err)
	}
	if err := readUint64s(r, sn.valOff); err != nil {
		return nil, fileErr(err)
	}
	if h.Sum64() != sum {
		return nil, bad("index checksum mismatch")
	}
	if sn.fields, err = decodeFieldTable(fieldBuf); err != nil {
		return nil, bad("malformed field table")
	}
	// The checksum vouches for what the writer produced; these checks keep a
	// buggy writer (or a forged file) from turning into out-of-range panics.
	if sn.keyOff[0] != 0 || uint64(sn.keyOff[n]) != arenaLen {
		return nil, bad("key offsets out of range")
	}
	prev := uint64(len(snapshotMagic))
	for i := range sn.n {
		if sn.keyOff[i] > sn.keyOff[i+1] || sn.valOff[i] < prev || sn.valOff[i] >= indexOff {
			return nil, bad("index entries out of order")
		}
		prev = sn.valOff[i] + 1
	}
	// Only now are all key offsets known to lie within the arena.
	for i := 1; i < sn.n; i++ {
		if compareBytes(sn.key(i-1), sn.key(i)) >= 0 {
			return nil, bad("keys out of order")
		}
	}
	sn.buildSample()
	return sn, nil
}

// Gen is the snapshot's generation (0: no snapshot file, or version 1).
func (sn *Snapshot) Gen() uint64 { return sn.gen }

// Verify reads every value record of the snapshot file and checks it
// against its checksum, so that damage is found before anything is sent
// rather than when the record is next needed.
func (sn *Snapshot) Verify() error {
	if sn.f == nil || sn.version < 2 {
		return nil
	}
	start := int64(len(snapshotMagic))
	r := bufio.NewReaderSize(io.NewSectionReader(sn.f, start, sn.valuesEnd-start), 1<<20)
	pos := start
	var buf []byte
	for i := range sn.n {
		if off := sn.valOff[i]; off&memBit != 0 {
			continue
		} else if int64(off) != pos {
			if int64(off) < pos {
				return corrupt(sn.path, "value records of %q and the one before overlap", sn.key(i))
			}
			if err := discard(r, int64(off)-pos); err != nil {
				return corrupt(sn.path, "value record of %q: %v", sn.key(i), err)
			}
			pos = int64(off)
		}
		var err error
		var size int
		if buf, size, err = readRecord(r, buf, sn.valuesEnd-pos); err != nil {
			return corrupt(sn.path, "value record of %q: %v", sn.key(i), err)
		}
		pos += int64(size)
	}
	return nil
}

// readRecord reads a version 2 value record from r (at most limit bytes)
// and checks it; buf is scratch space. It returns the body (in buf) and the
// record's size.
func readRecord(r *bufio.Reader, buf []byte, limit int64) ([]byte, int, error) {
	l, err := binary.ReadUvarint(r)
	if err != nil {
		return buf, 0, errCorruptValues
	}
	var lenBuf [binary.MaxVarintLen64]byte
	hdr := binary.PutUvarint(lenBuf[:], l)
	if l > uint64(limit) || int64(hdr)+int64(l)+recordCRCSize > limit {
		return buf, 0, errCorruptValues
	}
	total := hdr + int(l) + recordCRCSize
	buf = append(buf[:0], lenBuf[:hdr]...)
	buf = slices.Grow(buf, int(l)+recordCRCSize)[:total]
	if _, err := io.ReadFull(r, buf[hdr:]); err != nil {
		return buf, 0, errCorruptValues
	}
	if crc32.Checksum(buf[:hdr+int(l)], castagnoli) != binary.LittleEndian.Uint32(buf[hdr+int(l):]) {
		return buf, 0, fmt.Errorf("%w: checksum mismatch", errCorruptValues)
	}
	return buf, total, nil
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
	i, j, m := 0, 0, ch.sortedLen()
	for i < n || j < m {
		var c int
		switch {
		case i == n:
			c = 1
		case j == m:
			c = -1
		default:
			c = compareBytes(base.key(i), ch.keyOf(ch.sortedAt(j)))
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
		e := ch.sortedAt(j)
		j++
		hash, body, ok, err := ch.accepted(e)
		if err != nil {
			return err
		}
		if ok {
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
	arena += len(ch.keys) // an upper bound
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
	sn := b.snapshot(base.f, fields, mem, base.valuesEnd)
	sn.path, sn.version, sn.gen, sn.parent = base.path, base.version, base.gen, base.parent
	return sn, nil
}

// writeSnapshot writes base with ch applied to dir/snapshot atomically
// (keeping the snapshot it replaces as snapshot.prev), copying the value
// records of kept keys as they are, each checked on the way (field ids stay
// valid because fields extends base's field table). It returns the new
// snapshot's generation.
func writeSnapshot(dir string, base *Snapshot, ch *changes, fields []string) (uint64, error) {
	gen := newGen()
	err := writeKeepingPrev(dir, snapshotFile, func(w *bufio.Writer) error {
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
		arena += len(ch.keys) // an upper bound
		b := newIndexBuilder(base.n+len(ch.entries), arena)
		var rec []byte
		var lenBuf [binary.MaxVarintLen64]byte
		var sumBuf [recordCRCSize]byte
		put := func(key []byte, hash uint64, body []byte) error {
			hdr := binary.PutUvarint(lenBuf[:], uint64(len(body)))
			sum := crc32.Update(crc32.Checksum(lenBuf[:hdr], castagnoli), castagnoli, body)
			if _, err := w.Write(lenBuf[:hdr]); err != nil {
				return err
			}
			if _, err := w.Write(body); err != nil {
				return err
			}
			binary.LittleEndian.PutUint32(sumBuf[:], sum)
			if _, err := w.Write(sumBuf[:]); err != nil {
				return err
			}
			if err := b.add(key, hash, pos); err != nil {
				return err
			}
			pos += uint64(hdr) + uint64(len(body)) + recordCRCSize
			return nil
		}
		keep := func(i int) error {
			off := int64(base.valOff[i])
			if off < srcPos {
				return corrupt(base.path, "value records of %q and the one before overlap", base.key(i))
			}
			if err := discard(src, off-srcPos); err != nil {
				return corrupt(base.path, "value record of %q: %v", base.key(i), err)
			}
			if base.version >= 2 {
				var size int
				var err error
				if rec, size, err = readRecord(src, rec, base.valuesEnd-off); err != nil {
					return corrupt(base.path, "value record of %q: %v", base.key(i), err)
				}
				// Copied as it is: the checksum covers the length and body.
				if _, err := w.Write(rec); err != nil {
					return err
				}
				srcPos = off + int64(size)
				if err := b.add(base.key(i), base.hashes[i], pos); err != nil {
					return err
				}
				pos += uint64(size)
				return nil
			}
			// Version 1 records had no checksum: they gain one.
			l, err := binary.ReadUvarint(src)
			if err != nil || l > uint64(base.valuesEnd-off) {
				return corrupt(base.path, "value record of %q: %v", base.key(i), errCorruptValues)
			}
			rec = slices.Grow(rec[:0], int(l))[:l]
			if _, err := io.ReadFull(src, rec); err != nil {
				return corrupt(base.path, "value record of %q: %v", base.key(i), errCorruptValues)
			}
			srcPos = off + int64(binary.PutUvarint(lenBuf[:], l)) + int64(l)
			return put(base.key(i), base.hashes[i], rec)
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
		binary.LittleEndian.PutUint64(foot[32:], gen)
		binary.LittleEndian.PutUint64(foot[40:], base.gen)
		binary.LittleEndian.PutUint32(foot[48:], crc32.Checksum(foot[:48], castagnoli))
		copy(foot[56:], footerMagic)
		_, err := w.Write(foot[:])
		return err
	})
	return gen, err
}

// newGen returns a random non-zero generation.
func newGen() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:])
		if g := binary.LittleEndian.Uint64(b[:]); g != 0 {
			return g
		}
	}
}

// readValue returns the body of the value record at off.
func (sn *Snapshot) readValue(off uint64) ([]byte, error) {
	var body []byte
	err := sn.withValue(off, func(b []byte) error {
		body = bytes.Clone(b)
		return nil
	})
	return body, err
}

// withValue calls fn with the body of the value record at off, checked,
// valid only during the call (it may be the read-ahead block's).
func (sn *Snapshot) withValue(off uint64, fn func(body []byte) error) error {
	if off&memBit != 0 {
		d := decoder{b: sn.mem[off&^memBit:]}
		body := d.bytes()
		if d.bad {
			return errCorruptValues
		}
		return fn(body)
	}
	tail := uint64(0)
	if sn.version >= 2 {
		tail = recordCRCSize
	}
	if done, err := sn.ahead.with(sn.f, int64(off), sn.valuesEnd, int(tail), func(rec []byte) error {
		body, err := sn.checkRecord(off, rec, len(rec), tail)
		if err != nil {
			return err
		}
		return fn(body)
	}); done {
		return err
	}
	// Read alone: up to 256 bytes, then the rest if the record is longer.
	buf := make([]byte, 256)
	n, err := sn.f.ReadAt(buf, int64(off))
	if n == 0 {
		return fileErr(err)
	}
	body, err := sn.checkRecord(off, buf, n, tail)
	if err != nil {
		return err
	}
	return fn(body)
}

// checkRecord returns the body of the value record at off whose first n
// bytes are in buf, reading the rest from the file when buf holds less,
// once its length is known to lie within the values and its checksum (tail
// bytes after the body) matches.
func (sn *Snapshot) checkRecord(off uint64, buf []byte, n int, tail uint64) ([]byte, error) {
	l, hdr := binary.Uvarint(buf[:n])
	if hdr <= 0 || l > uint64(sn.valuesEnd)-off-uint64(hdr) || l+tail > uint64(sn.valuesEnd)-off-uint64(hdr) {
		return nil, corrupt(sn.path, "value record at offset %d out of range", off)
	}
	end := hdr + int(l) + int(tail)
	if end > n {
		buf = make([]byte, end)
		if _, err := sn.f.ReadAt(buf, int64(off)); err != nil {
			return nil, fileErr(err)
		}
	}
	if tail > 0 && crc32.Checksum(buf[:hdr+int(l)], castagnoli) != binary.LittleEndian.Uint32(buf[hdr+int(l):]) {
		return nil, corrupt(sn.path, "value record at offset %d fails its checksum", off)
	}
	return buf[hdr : hdr+int(l)], nil
}

// readAhead serves value records read in file order (a diff whose model
// returns rows in key order, as snapshots store them) from one block read
// of readAheadBlock bytes instead of a read per record; records read out
// of order are read alone, as before.
type readAhead struct {
	mu    sync.Mutex
	start int64  // file offset of block
	block []byte // the last block read
	next  int64  // where the last record read began, plus one
}

const readAheadBlock = 64 << 10

// with calls fn with the record at off, as the block holds it (its length
// is read from its uvarint header; tail is the size of what follows its
// body), and reports true, when the record lies in the block, reading the
// block from off first when the record follows the last one. fn runs with
// the block locked.
func (r *readAhead) with(f snapFile, off, end int64, tail int, fn func(rec []byte) error) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sequential := r.next > 0 && off >= r.next && off-r.next < 4096
	r.next = off + 1
	rec, ok := r.inBlock(off, tail)
	if !ok && sequential {
		if size := min(int64(readAheadBlock), end-off); size > 0 {
			if cap(r.block) < int(size) {
				r.block = make([]byte, size)
			}
			n, _ := f.ReadAt(r.block[:size], off)
			r.start, r.block = off, r.block[:n]
			rec, ok = r.inBlock(off, tail)
		}
	}
	if !ok {
		return false, nil
	}
	return true, fn(rec)
}

// inBlock returns the record at off when it lies whole in the block.
func (r *readAhead) inBlock(off int64, tail int) ([]byte, bool) {
	if off < r.start || off >= r.start+int64(len(r.block)) {
		return nil, false
	}
	b := r.block[off-r.start:]
	l, hdr := binary.Uvarint(b)
	if hdr <= 0 || l > uint64(len(b)) || uint64(hdr)+l+uint64(tail) > uint64(len(b)) {
		return nil, false
	}
	return b[:uint64(hdr)+l+uint64(tail)], true
}
