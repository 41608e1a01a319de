package reconcile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/flate"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/state"
)

// SpillAfter is how many changes a sync's plan holds in memory. Beyond it
// the diff spills them to a temporary file of chunks and every reader
// streams them (render, apply, saved plans), so that memory follows a
// bounded window rather than the number of changes. A spilled plan lists
// each action's changes in the order the model returned them (removals in
// snapshot order) instead of sorting them by key. Tests lower it.
var SpillAfter = 50_000

// A chunk holds at most spillChunkSize changes, and is closed once its
// encoded changes reach spillChunkBytes, so that a chunk of large rows
// stays small too.
const (
	spillChunkSize  = 1024
	spillChunkBytes = 1 << 20
)

// actionOrder is the order a plan lists and applies its actions in.
var actionOrder = [...]Action{ActionRemove, ActionRetry, ActionChange, ActionAdd}

func actionIndex(a Action) int {
	for i, x := range actionOrder {
		if x == a {
			return i
		}
	}
	return -1
}

// errStop ends an iteration early without an error.
var errStop = errors.New("stop")

// NumChanges is the number of changes in the plan, in memory or spilled.
func (sp *SyncPlan) NumChanges() int {
	if sp.spill != nil {
		return sp.spill.len()
	}
	return len(sp.Changes)
}

// Spilled reports whether the plan's changes are on disk rather than in
// Changes.
func (sp *SyncPlan) Spilled() bool { return sp.spill != nil }

// Each calls fn with every change in plan order (remove, retry, change,
// add), reading spilled changes a chunk at a time. fn may not keep c past
// the call. An error from fn ends the iteration and is returned.
func (sp *SyncPlan) Each(fn func(c *Change) error) error {
	for _, a := range actionOrder {
		if err := sp.EachOf(a, fn); err != nil {
			return err
		}
	}
	return nil
}

// EachOf is Each restricted to the changes of one action.
func (sp *SyncPlan) EachOf(a Action, fn func(c *Change) error) error {
	return sp.eachOf(a, true, fn)
}

// eachOf is EachOf; without before, spilled changes are read without
// their Before values.
func (sp *SyncPlan) eachOf(a Action, before bool, fn func(c *Change) error) error {
	visit := fn
	if sp.view != nil {
		visit = func(c *Change) error {
			v := sp.view(*c)
			return fn(&v)
		}
	}
	if sp.spill == nil {
		for i := range sp.Changes {
			if sp.Changes[i].Action == a {
				if err := visit(&sp.Changes[i]); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return sp.spill.each(actionIndex(a), before, visit)
}

// First returns up to n changes of action a, in plan order.
func (sp *SyncPlan) First(a Action, n int) ([]Change, error) {
	var out []Change
	if n <= 0 {
		return nil, nil
	}
	err := sp.EachOf(a, func(c *Change) error {
		out = append(out, *c)
		if len(out) == n {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return out, err
}

// Windows calls fn with the plan's changes in order, n at a time (the
// last window may be shorter). The slice is reused: fn may not keep it.
func (sp *SyncPlan) Windows(n int, fn func(start int, changes []Change) error) error {
	if sp.spill == nil && sp.view == nil {
		for i := 0; i < len(sp.Changes); i += n {
			if err := fn(i, sp.Changes[i:min(i+n, len(sp.Changes)):min(i+n, len(sp.Changes))]); err != nil {
				return err
			}
		}
		return nil
	}
	buf := make([]Change, 0, n)
	start := 0
	err := sp.Each(func(c *Change) error {
		buf = append(buf, *c)
		if len(buf) < n {
			return nil
		}
		err := fn(start, buf)
		start += len(buf)
		buf = buf[:0]
		return err
	})
	if err == nil && len(buf) > 0 {
		err = fn(start, buf)
	}
	return err
}

// Close releases the temporary file of a spilled plan (a saved plan read
// back keeps its file open). The plan's changes are gone afterwards.
func (p *Plan) Close() error {
	var first error
	closed := map[*os.File]bool{}
	for _, sp := range p.Syncs {
		if sp.spill != nil && sp.spill.f != nil {
			f := sp.spill.f
			if !closed[f] {
				closed[f] = true
				if err := sp.spill.close(); err != nil && first == nil {
					first = err
				}
			}
			sp.spill.f = nil
		}
	}
	return first
}

// spillFile holds a sync's changes in chunks of a file, one list of chunks
// per action (actionOrder), each list in the order its changes were added.
// The file of a fresh spill is unlinked as soon as it is created: a crash
// leaves nothing behind.
type spillFile struct {
	f       *os.File
	ownFile bool // the file is a temporary one, not a saved plan
	// inMem says the chunks are held in mem, not yet in a file: a diff
	// encodes its changes from the first one, and writes them to a file
	// only once they are more than SpillAfter (toFile).
	inMem   bool
	mem     memChunks
	fields  []string // the sync's fields, to recompute omitted hashes
	end     int64
	method  byte
	streams [len(actionOrder)]spillStream
	codec   *fieldCodec
}

type spillStream struct {
	chunks  []chunkRef
	n       int
	raw     []byte // encoded changes not yet in a chunk
	pending int    // how many
}

// chunkRef locates one chunk of a spill or a saved plan.
type chunkRef struct {
	off   int64 // of the chunk header
	count int
}

// chunk header: count, raw length, stored length, CRC-32C of the stored
// bytes (uint32 each, little endian), then a byte holding the storage
// method (low 4 bits) and the index of the chunk's action in actionOrder
// (high 4 bits): a chunk holds the changes of one action.
const chunkHeader = 17

const (
	methodRaw   byte = 0
	methodFlate byte = 1
	// flagNoHash marks a chunk whose changes omit their hash, recomputed
	// from their values when read (saved plans: a hash is 8 bytes that do
	// not compress).
	flagNoHash byte = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func newSpill(dir string, fields []string, keyField string) (*spillFile, error) {
	f, err := os.CreateTemp(dir, ".backflow-spill-*")
	if err != nil {
		return nil, fmt.Errorf("spilling the plan to disk: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("spilling the plan to disk: %w", err)
	}
	return &spillFile{f: f, ownFile: true, method: methodRaw, fields: fields, codec: newFieldCodec(fields, keyField)}, nil
}

// newMemSpill starts a spill held in memory.
func newMemSpill(fields []string, keyField string) *spillFile {
	return &spillFile{inMem: true, method: methodRaw, fields: fields, codec: newFieldCodec(fields, keyField)}
}

// fresh starts an empty spill held where s is, for the same sync.
func (s *spillFile) fresh(dir string) (*spillFile, error) {
	if s.inMem {
		return newMemSpill(s.fields, s.codec.keyField), nil
	}
	return newSpill(dir, s.fields, s.codec.keyField)
}

// toFile moves a spill held in memory to a temporary file in dir.
func (s *spillFile) toFile(dir string) error {
	f, err := newSpill(dir, s.fields, s.codec.keyField)
	if err != nil {
		return err
	}
	for i, c := range s.mem.chunks {
		if _, err := f.f.WriteAt(c, s.mem.offs[i]); err != nil {
			f.close()
			return fmt.Errorf("spilling the plan to disk: %w", err)
		}
	}
	s.f, s.ownFile, s.inMem, s.mem = f.f, true, false, memChunks{}
	return nil
}

// memChunks holds the chunks of a spill kept in memory, each at the
// offset it would have in a file.
type memChunks struct {
	chunks [][]byte
	offs   []int64
}

// ReadAt reads as from the file the chunks would make.
func (m *memChunks) ReadAt(p []byte, off int64) (int, error) {
	i, found := slices.BinarySearch(m.offs, off)
	if !found {
		i--
	}
	n := 0
	for ; i >= 0 && i < len(m.chunks) && n < len(p); i++ {
		at := off + int64(n) - m.offs[i]
		if at < int64(len(m.chunks[i])) {
			n += copy(p[n:], m.chunks[i][at:])
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// source is where the chunks are read from.
func (s *spillFile) source() io.ReaderAt {
	if s.inMem {
		return &s.mem
	}
	return s.f
}

// put adds c, moving a spill held in memory to a file in dir once it
// holds more than SpillAfter changes.
func (s *spillFile) put(c *Change, dir string) error {
	if err := s.add(c); err != nil {
		return err
	}
	if s.inMem && s.len() > SpillAfter {
		return s.toFile(dir)
	}
	return nil
}

func (s *spillFile) len() int {
	n := 0
	for i := range s.streams {
		n += s.streams[i].n
	}
	return n
}

func (s *spillFile) add(c *Change) error {
	a := actionIndex(c.Action)
	st := &s.streams[a]
	var err error
	if st.raw, err = appendChange(st.raw, c, true, s.codec); err != nil {
		return err
	}
	st.pending++
	st.n++
	if st.pending >= spillChunkSize || len(st.raw) >= spillChunkBytes {
		return s.flush(a)
	}
	return nil
}

// finish writes every pending change.
func (s *spillFile) finish() error {
	for i := range s.streams {
		if err := s.flush(i); err != nil {
			return err
		}
	}
	return nil
}

func (s *spillFile) flush(stream int) error {
	st := &s.streams[stream]
	if st.pending == 0 {
		return nil
	}
	chunk, err := encodeChunk(st.pending, st.raw, s.method, actionOrder[stream])
	if err != nil {
		return err
	}
	if s.inMem {
		s.mem.chunks = append(s.mem.chunks, chunk)
		s.mem.offs = append(s.mem.offs, s.end)
	} else if _, err := s.f.WriteAt(chunk, s.end); err != nil {
		return fmt.Errorf("spilling the plan to disk: %w", err)
	}
	st.chunks = append(st.chunks, chunkRef{off: s.end, count: st.pending})
	s.end += int64(len(chunk))
	st.raw, st.pending = st.raw[:0], 0
	return nil
}

// decodeEach decodes the chunks of stream in order, appending each one's
// changes to the slice dst returns and handing the result to got: the
// changes are decoded where the caller keeps them, not copied there.
// Changes not yet in a chunk are written first, so a spill being filled
// reads back whole.
func (s *spillFile) decodeEach(stream int, before, inOrder bool, dst func() []Change, got func([]Change) error) error {
	if err := s.flush(stream); err != nil {
		return err
	}
	st := &s.streams[stream]
	var buf []byte
	for _, ref := range st.chunks {
		raw, h, err := readChunk(s.source(), ref.off, &buf)
		if err != nil {
			return err
		}
		if h.count != ref.count || h.action != stream {
			// A saved plan's file changed since it was read.
			return fmt.Errorf("%w (not the chunk the plan listed)", errDamagedChunk)
		}
		d := dst()
		from := len(d)
		out, err := decodeChangesFor(raw, h, d, s.codec, s.fields, before, inOrder)
		if err != nil {
			return err
		}
		for i := from; i < len(out); i++ {
			if out[i].Action != actionOrder[stream] {
				return fmt.Errorf("%w (a change filed under another action)", errDamagedChunk)
			}
		}
		if err := got(out); err != nil {
			return err
		}
	}
	return nil
}

// each reads one stream's changes, a chunk at a time.
func (s *spillFile) each(stream int, before bool, fn func(*Change) error) error {
	var changes []Change
	return s.decodeEach(stream, before, false, func() []Change { return changes[:0] }, func(out []Change) error {
		changes = out
		for i := range out {
			if err := fn(&out[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *spillFile) close() error {
	s.mem = memChunks{}
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// encodeChunk frames count changes encoded in raw.
func encodeChunk(count int, raw []byte, method byte, a Action) ([]byte, error) {
	stored := raw
	if method&0x03 == methodFlate {
		var b bytes.Buffer
		w := flateWriters.Get().(*flate.Writer)
		defer flateWriters.Put(w)
		w.Reset(&b)
		if _, err := w.Write(raw); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		stored = b.Bytes()
	}
	return frameChunk(count, len(raw), stored, method, a)
}

// frameChunk is the chunk of count changes whose rawLen bytes are stored
// (compressed by method): its header, then stored.
func frameChunk(count, rawLen int, stored []byte, method byte, a Action) ([]byte, error) {
	if rawLen > math.MaxUint32 || len(stored) > math.MaxUint32 {
		return nil, errors.New("a chunk of the plan is too large")
	}
	out := make([]byte, chunkHeader, chunkHeader+len(stored))
	binary.LittleEndian.PutUint32(out[0:], uint32(count))
	binary.LittleEndian.PutUint32(out[4:], uint32(rawLen))
	binary.LittleEndian.PutUint32(out[8:], uint32(len(stored)))
	binary.LittleEndian.PutUint32(out[12:], crc32.Checksum(stored, castagnoli))
	out[16] = method | byte(max(actionIndex(a), 0))<<4
	return append(out, stored...), nil
}

// flateWriters are compressors for encodeChunk, reused (Reset): a new one
// allocates its tables, about a megabyte, for a chunk of 100 KB or so.
// Deflate of klauspost/compress, the format compress/flate reads (plans
// saved before it are read as they were): at level 7 it makes files of
// the size the standard library's level 6 made. On one core, at level 6,
// it saved a plan 2.4 times faster than the standard library's; with the
// chunks compressed in parallel (chunkWriter), at level 7, 3.8 times
// (BENCHMARKS.md, "Saving a plan").
const planFlateLevel = 7

var flateWriters = sync.Pool{New: func() any {
	w, err := flate.NewWriter(nil, planFlateLevel)
	if err != nil {
		panic(err) // only for a level out of range
	}
	return w
}}

// maxChunkRaw bounds a chunk's decoded size, so that a damaged header
// cannot make a reader allocate without bound.
const maxChunkRaw = 256 << 20

var errDamagedChunk = errors.New("a chunk of changes is damaged")

// chunkInfo reads the header of the chunk at off.
func chunkInfo(r io.ReaderAt, off int64) (h chunkHead, err error) {
	var b [chunkHeader]byte
	if _, err := r.ReadAt(b[:], off); err != nil {
		return h, fmt.Errorf("%w: %v", errDamagedChunk, err)
	}
	h = chunkHead{
		count:     int(binary.LittleEndian.Uint32(b[0:])),
		rawLen:    int(binary.LittleEndian.Uint32(b[4:])),
		storedLen: int(binary.LittleEndian.Uint32(b[8:])),
		crc:       binary.LittleEndian.Uint32(b[12:]),
		method:    b[16] & 0x03,
		noHash:    b[16]&flagNoHash != 0,
		action:    int(b[16] >> 4),
	}
	if h.rawLen > maxChunkRaw || h.storedLen > maxChunkRaw || h.method > methodFlate || b[16]&0x08 != 0 || (h.method == methodRaw && h.rawLen != h.storedLen) || h.count > h.rawLen || h.action >= len(actionOrder) {
		return h, errDamagedChunk
	}
	return h, nil
}

// chunkHead is a chunk's header, decoded.
type chunkHead struct {
	count, rawLen, storedLen int
	crc                      uint32
	method                   byte
	noHash                   bool
	action                   int
}

// readChunk reads and checks the chunk at off, returning its decoded bytes
// (which may live in *buf) and its header.
func readChunk(r io.ReaderAt, off int64, buf *[]byte) (raw []byte, h chunkHead, err error) {
	h, err = chunkInfo(r, off)
	if err != nil {
		return nil, h, err
	}
	raw, err = chunkBytes(r, off, h, buf)
	return raw, h, err
}

func chunkBytes(r io.ReaderAt, off int64, h chunkHead, buf *[]byte) ([]byte, error) {
	rawLen, storedLen, crc, method := h.rawLen, h.storedLen, h.crc, h.method
	if cap(*buf) < storedLen {
		*buf = make([]byte, storedLen)
	}
	stored := (*buf)[:storedLen]
	if _, err := r.ReadAt(stored, off+chunkHeader); err != nil {
		return nil, fmt.Errorf("%w: %v", errDamagedChunk, err)
	}
	if crc32.Checksum(stored, castagnoli) != crc {
		return nil, fmt.Errorf("%w (checksum mismatch)", errDamagedChunk)
	}
	if method == methodRaw {
		return stored, nil
	}
	// Deflate expands at most maxFlateRatio times: a header claiming more
	// than its stored bytes can hold is refused before anything is
	// allocated, and what it claims is then allocated once, exactly (a
	// buffer grown as the stream is read would reach twice that, and
	// leave the copies on its way as garbage).
	if rawLen > storedLen*maxFlateRatio+1024 {
		return nil, fmt.Errorf("%w (its length does not match)", errDamagedChunk)
	}
	fr := flate.NewReader(bytes.NewReader(stored))
	defer fr.Close()
	raw := make([]byte, rawLen)
	if _, err := io.ReadFull(fr, raw); err != nil {
		return nil, fmt.Errorf("%w (its length does not match)", errDamagedChunk)
	}
	if n, err := fr.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		return nil, fmt.Errorf("%w (its length does not match)", errDamagedChunk)
	}
	return raw, nil
}

// maxFlateRatio bounds how many times deflate can expand its input (a
// match of 258 bytes in two bits: 1032).
const maxFlateRatio = 1032

// The change encoding: action byte, key, operation, key value, hash
// (8 bytes), last error, attempts, before, after. Strings are a uvarint
// length and bytes; maps a uvarint (0 for nil, else 1 + entries) and per
// entry a name and a value; a value a tag and its payload.
const (
	valNil byte = iota
	valFalse
	valTrue
	valInt   // zigzag varint
	valUint  // uvarint, for values past MaxInt64
	valFloat // 8 bytes
	valString
	valBytes
	valTime // seconds (zigzag varint), nanoseconds (uvarint); UTC
)

// rawValues, in place of a map's count, says a snapshot's value record
// follows as a string, in the snapshot's encoding against the field table
// of the spill's codec (fieldCodec.snapFields). Only a diff's spill holds
// such values: saved plans are written from decoded changes.
const rawValues = 1 << 40

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendChange(dst []byte, c *Change, withHash bool, fc *fieldCodec) ([]byte, error) {
	dst = append(dst, byte(actionIndex(c.Action)))
	dst = appendString(dst, c.Key)
	dst = appendString(dst, string(c.Op))
	var err error
	if dst, err = appendPlanValue(dst, c.KeyValue); err != nil {
		return nil, fmt.Errorf("key %q: %w", c.Key, err)
	}
	if withHash {
		dst = binary.LittleEndian.AppendUint64(dst, c.Hash)
	}
	dst = appendString(dst, c.LastError)
	dst = binary.AppendUvarint(dst, uint64(max(c.Attempts, 0)))
	after := c.After
	if after == nil && c.vals != nil {
		// Decoded for an apply (valuesInOrder): by the codec's names.
		after = valuesMap(fc.names, c.vals)
	}
	for j, m := range []map[string]any{c.Before, after} {
		if j == 0 && m == nil && c.beforeAt > 0 {
			var err error
			if dst, err = fc.appendBefore(dst, c.beforeAt-1); err != nil {
				return nil, fmt.Errorf("key %q: reading its synced values: %w", c.Key, err)
			}
			continue
		}
		if j == 1 && m == nil && c.afterVals != nil {
			if dst, err = fc.appendVals(dst, c.afterVals, c.KeyValue); err != nil {
				return nil, fmt.Errorf("key %q: %w", c.Key, err)
			}
			continue
		}
		if m == nil {
			dst = append(dst, 0)
			continue
		}
		dst = binary.AppendUvarint(dst, uint64(len(m))+1)
		for k, v := range m {
			dst = fc.appendName(dst, k)
			if dst, err = appendPlanValue(dst, v); err != nil {
				return nil, fmt.Errorf("key %q, field %q: %w", c.Key, k, err)
			}
		}
	}
	return dst, nil
}

// planValues encodes a snapshot record's values as appendChange encodes a
// map of them, as the snapshot lends them (state.ValueVisitor).
type planValues struct {
	dst []byte
	fc  *fieldCodec
}

func (p *planValues) Count(n int) { p.dst = binary.AppendUvarint(p.dst, uint64(n)+1) }

func (p *planValues) name(field string) { p.dst = p.fc.appendName(p.dst, field) }

// Nil, Bool, Int, Float and String write what appendPlanValue writes for
// the value, without boxing it.

func (p *planValues) Nil(field string) {
	p.name(field)
	p.dst = append(p.dst, valNil)
}

func (p *planValues) Bool(field string, v bool) {
	p.name(field)
	if v {
		p.dst = append(p.dst, valTrue)
	} else {
		p.dst = append(p.dst, valFalse)
	}
}

func (p *planValues) Int(field string, v int64) {
	p.name(field)
	p.dst = binary.AppendVarint(append(p.dst, valInt), v)
}

func (p *planValues) Float(field string, v float64) {
	p.name(field)
	p.dst = binary.LittleEndian.AppendUint64(append(p.dst, valFloat), math.Float64bits(v))
}

func (p *planValues) String(field string, v []byte) {
	p.name(field)
	p.dst = binary.AppendUvarint(append(p.dst, valString), uint64(len(v)))
	p.dst = append(p.dst, v...)
}

func appendPlanValue(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, valNil), nil
	case bool:
		if x {
			return append(dst, valTrue), nil
		}
		return append(dst, valFalse), nil
	case int64:
		return binary.AppendVarint(append(dst, valInt), x), nil
	case int:
		return binary.AppendVarint(append(dst, valInt), int64(x)), nil
	case int32:
		return binary.AppendVarint(append(dst, valInt), int64(x)), nil
	case int16:
		return binary.AppendVarint(append(dst, valInt), int64(x)), nil
	case int8:
		return binary.AppendVarint(append(dst, valInt), int64(x)), nil
	case uint64:
		if x <= math.MaxInt64 {
			return binary.AppendVarint(append(dst, valInt), int64(x)), nil
		}
		return binary.AppendUvarint(append(dst, valUint), x), nil
	case uint32:
		return binary.AppendVarint(append(dst, valInt), int64(x)), nil
	case uint16:
		return binary.AppendVarint(append(dst, valInt), int64(x)), nil
	case uint8:
		return binary.AppendVarint(append(dst, valInt), int64(x)), nil
	case uint:
		return appendPlanValue(dst, uint64(x))
	case float64:
		return binary.LittleEndian.AppendUint64(append(dst, valFloat), math.Float64bits(x)), nil
	case float32:
		return binary.LittleEndian.AppendUint64(append(dst, valFloat), math.Float64bits(float64(x))), nil
	case string:
		return appendString(append(dst, valString), x), nil
	case []byte:
		return appendString(append(dst, valBytes), string(x)), nil
	case time.Time:
		dst = binary.AppendVarint(append(dst, valTime), x.Unix())
		return binary.AppendUvarint(dst, uint64(x.Nanosecond())), nil
	}
	return nil, fmt.Errorf("a value of type %T cannot be written to the plan", v)
}

// planDecoder reads the change encoding, failing on any malformed input.
type planDecoder struct {
	b   []byte
	err error
	fc  *fieldCodec
	// s is the chunk decoded, as one string: decoded strings are slices of
	// it rather than allocations of their own. n is its length.
	s string
	n int
	// slab is where valuesInOrder takes the values of the changes still
	// to decode from, up to slabChanges changes' worth at a time: an
	// allocation for many changes rather than one each. left is how many
	// changes of the chunk are still to decode.
	slab []any
	left int
	// keyValue is the key value of the change being decoded, which
	// valuesInOrder gives for the key field's value when equal, rather
	// than a copy of its own.
	keyValue any
}

// slabChanges is how many changes' values planDecoder.slab holds at most.
const slabChanges = 256

func newPlanDecoder(raw []byte, fc *fieldCodec) *planDecoder {
	return &planDecoder{b: raw, fc: fc, s: string(raw), n: len(raw)}
}

// fieldCodec writes a sync's field names (its fields and key field) as
// their number, and any other name in full.
type fieldCodec struct {
	names    []string
	keyField string
	index    map[string]int
	intern   map[string]string // names written in full, as decoded
	// direct says the fields are distinct, so that field i is written as
	// number i+1 and a change's values can be encoded from a slice in
	// their order (appendVals); keyAt is the key field's number, -1 when
	// it is one of the fields.
	direct bool
	nf     int
	keyAt  int
	// In a diff's spill, the snapshot Before values are read from
	// (Change.beforeAt): a local one lends its records as stored (lend),
	// copied as they are (rawValues) and decoded against its field table
	// (snapFields); another lends values one by one (visit), re-encoded.
	lend       recordLender
	visit      valueVisitor
	snapFields []string
	pv         planValues // appendBefore's, reused
	rc         recordCopy // appendBefore's, reused
}

// recordCopy appends the records a snapshot lends; fn, its add made once,
// is what WithRecord calls (a closure made per record would be allocated).
type recordCopy struct {
	dst []byte
	fn  func(body []byte) error
}

func (r *recordCopy) add(body []byte) error {
	r.dst = append(binary.AppendUvarint(r.dst, uint64(len(body))), body...)
	return nil
}

// from sets the snapshot the codec reads Before values from.
func (fc *fieldCodec) from(snap Snapshot) {
	if l, ok := snap.(recordLender); ok {
		fc.lend, fc.snapFields = l, l.Fields()
		fc.rc.fn = fc.rc.add
	} else {
		fc.visit, _ = snap.(valueVisitor)
	}
}

// readsSnapshot reports whether the codec reads Before values from a
// snapshot itself (from).
func (fc *fieldCodec) readsSnapshot() bool { return fc.lend != nil || fc.visit != nil }

// appendBefore writes the values of record i of the snapshot as
// appendChange writes a change's Before.
func (fc *fieldCodec) appendBefore(dst []byte, i int) ([]byte, error) {
	switch {
	case fc.lend != nil:
		// The record as the snapshot stores it, decoded when read.
		rc := &fc.rc
		rc.dst = binary.AppendUvarint(dst, rawValues)
		err := fc.lend.WithRecord(i, rc.fn)
		return rc.dst, err
	case fc.visit != nil:
		pv := &fc.pv
		pv.dst, pv.fc = dst, fc
		err := fc.visit.VisitValues(i, pv)
		return pv.dst, err
	}
	return nil, errors.New("no snapshot to read synced values from")
}

func newFieldCodec(fields []string, keyField string) *fieldCodec {
	fc := &fieldCodec{index: map[string]int{}, intern: map[string]string{}, nf: len(fields), keyAt: -1, keyField: keyField}
	for _, f := range append(slices.Clone(fields), keyField) {
		if _, dup := fc.index[f]; !dup {
			fc.index[f] = len(fc.names)
			fc.names = append(fc.names, f)
		}
	}
	fc.direct = true
	for i, f := range fields {
		if fc.index[f] != i {
			fc.direct = false
		}
	}
	if k := fc.index[keyField]; k >= len(fields) {
		fc.keyAt = k
	}
	return fc
}

// appendVals writes what appendChange writes for the map of vals (each
// canonical) by the codec's fields plus keyValue under the key field
// when it is not one of them. The codec must be direct.
func (fc *fieldCodec) appendVals(dst []byte, vals []any, keyValue any) ([]byte, error) {
	n := fc.nf
	if fc.keyAt >= 0 {
		n++
	}
	dst = binary.AppendUvarint(dst, uint64(n)+1)
	var err error
	for i, v := range vals[:fc.nf] {
		dst = binary.AppendUvarint(dst, uint64(i)+1)
		if dst, err = appendPlanValue(dst, v); err != nil {
			return nil, fmt.Errorf("field %q: %w", fc.names[i], err)
		}
	}
	if fc.keyAt >= 0 {
		dst = binary.AppendUvarint(dst, uint64(fc.keyAt)+1)
		if dst, err = appendPlanValue(dst, keyValue); err != nil {
			return nil, fmt.Errorf("field %q: %w", fc.names[fc.keyAt], err)
		}
	}
	return dst, nil
}

func (fc *fieldCodec) appendName(dst []byte, name string) []byte {
	if i, ok := fc.index[name]; ok {
		return binary.AppendUvarint(dst, uint64(i)+1)
	}
	return appendString(binary.AppendUvarint(dst, 0), name)
}

func (d *planDecoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w (malformed change)", errDamagedChunk)
	}
}

func (d *planDecoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *planDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *planDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *planDecoder) raw() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *planDecoder) string() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	off := d.n - len(d.b)
	d.b = d.b[n:]
	return d.s[off : off+int(n)]
}

// name returns a field name: one of the sync's, or one written in full
// (interned).
func (d *planDecoder) name() string {
	s, _ := d.nameCode()
	return s
}

// nameCode is name and the number it was written as (0: in full).
func (d *planDecoder) nameCode() (string, uint64) {
	i := d.uvarint()
	if d.err != nil {
		return "", 0
	}
	if i > 0 {
		if i > uint64(len(d.fc.names)) {
			d.fail()
			return "", 0
		}
		return d.fc.names[i-1], i
	}
	b := d.raw()
	if s, ok := d.fc.intern[string(b)]; ok {
		return s, 0
	}
	s := string(b) // its own copy: interned names outlive the chunk
	if len(d.fc.intern) < 4096 {
		d.fc.intern[s] = s
	}
	return s, 0
}

func (d *planDecoder) value() any {
	switch tag := d.byte(); tag {
	case valNil:
		return nil
	case valFalse:
		return false
	case valTrue:
		return true
	case valInt:
		return d.varint()
	case valUint:
		return d.uvarint()
	case valFloat:
		if d.err != nil || len(d.b) < 8 {
			d.fail()
			return nil
		}
		f := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
		d.b = d.b[8:]
		return f
	case valString:
		return d.string()
	case valBytes:
		return bytes.Clone(d.raw())
	case valTime:
		sec := d.varint()
		nsec := d.uvarint()
		if nsec >= 1e9 {
			d.fail()
			return nil
		}
		return time.Unix(sec, int64(nsec)).UTC()
	default:
		d.fail()
		return nil
	}
}

// valueAs is value, but when the value is an int64 or a string equal to
// have's, have itself: the value is not copied into an interface of its
// own.
func (d *planDecoder) valueAs(have any) any {
	if d.err != nil || len(d.b) == 0 {
		return d.value()
	}
	switch h := have.(type) {
	case int64:
		if d.b[0] == valInt {
			d.b = d.b[1:]
			if x := d.varint(); x != h {
				return x
			}
			return have
		}
	case string:
		if d.b[0] == valString {
			d.b = d.b[1:]
			if s := d.string(); s != h {
				return s
			}
			return have
		}
	}
	return d.value()
}

// skipValues passes over what values would decode.
func (d *planDecoder) skipValues() {
	n := d.uvarint()
	if n == rawValues {
		d.raw()
		return
	}
	for i := uint64(1); i < n && d.err == nil; i++ {
		d.name()
		d.value()
	}
}

func (d *planDecoder) values() map[string]any {
	m, _ := d.valuesExact()
	return m
}

// valuesExact is values, and whether their names are exactly the codec's
// fields, with or without the key field when it is not one of them: what
// a request's fields may be as they are (recordFields, holdsFields).
func (d *planDecoder) valuesExact() (map[string]any, bool) {
	n := d.uvarint()
	if n == 0 || d.err != nil {
		return nil, false
	}
	if n == rawValues {
		body := d.raw()
		if d.err != nil {
			return nil, false
		}
		if d.fc.snapFields == nil {
			d.fail()
			return nil, false
		}
		m, err := state.DecodeRecord(body, d.fc.snapFields)
		if err != nil {
			// Its checksum held when it was copied: the snapshot itself
			// holds a malformed record.
			d.err = fmt.Errorf("%w (synced values copied from the snapshot do not decode, although their checksum holds: %v)", errDamagedChunk, err)
			return nil, false
		}
		return m, false
	}
	if n-1 > uint64(len(d.b)) {
		d.fail()
		return nil, false
	}
	fc := d.fc
	// Exact: the names are numbers 1 to nf, and nf+1 for a key field
	// that is not a field, each once, in any order (a map's).
	want := uint64(fc.nf)
	if fc.keyAt >= 0 {
		want++
	}
	exact := fc.direct && want < 64 && (n-1 == uint64(fc.nf) || n-1 == want)
	var seen uint64
	m := make(map[string]any, n-1)
	for i := uint64(1); i < n && d.err == nil; i++ {
		k, code := d.nameCode()
		if exact {
			// Distinct numbers from 1 to the count: exactly those.
			if bit := uint64(1) << code; code == 0 || code > n-1 || seen&bit != 0 {
				exact = false
			} else {
				seen |= bit
			}
		}
		m[k] = d.value()
	}
	return m, exact && d.err == nil
}

// valuesMap is the map of names[i] to vals[i], as a change whose values
// were decoded in order (Change.vals) holds them.
func valuesMap(names []string, vals []any) map[string]any {
	m := make(map[string]any, len(names))
	for i, name := range names {
		m[name] = vals[i]
	}
	return m
}

// valuesInOrder is valuesExact for an apply: when the names are exactly
// the codec's (the fields, then the key field when it is not one), the
// values in that order, without a map; otherwise the map.
func (d *planDecoder) valuesInOrder() (map[string]any, []any, bool) {
	fc := d.fc
	want := uint64(len(fc.names))
	save := d.b
	n := d.uvarint()
	if d.err != nil || n != want+1 || !fc.direct || want >= 64 || n-1 > uint64(len(d.b)) {
		d.b = save
		m, exact := d.valuesExact()
		return m, nil, exact
	}
	if len(d.slab) < int(want) {
		d.slab = make([]any, int(want)*min(max(d.left, 1), slabChanges))
	}
	vals := d.slab[:want:want]
	d.slab = d.slab[want:]
	var seen uint64
	for i := uint64(1); i < n && d.err == nil; i++ {
		_, code := d.nameCode()
		if bit := uint64(1) << code; code == 0 || code > want || seen&bit != 0 {
			// Not the codec's names each once (a hand-made plan): read it
			// again as a map.
			d.b = save
			m, exact := d.valuesExact()
			return m, nil, exact
		}
		seen |= 1 << code
		if int(code-1) == fc.keyAt {
			vals[code-1] = d.valueAs(d.keyValue)
		} else {
			vals[code-1] = d.value()
		}
	}
	if d.err != nil {
		return nil, nil, false
	}
	return nil, vals, true
}

// decodeChanges decodes the changes of a chunk; for a chunk without hashes
// they are recomputed from the values of fields.
//
// Without before, Change.Before is left nil (apply sends After only).
func decodeChanges(raw []byte, h chunkHead, dst []Change, fc *fieldCodec, fields []string, before bool) ([]Change, error) {
	return decodeChangesFor(raw, h, dst, fc, fields, before, false)
}

// decodeChangesFor is decodeChanges; inOrder decodes After as
// Change.vals where it can (valuesInOrder), for an apply.
func decodeChangesFor(raw []byte, h chunkHead, dst []Change, fc *fieldCodec, fields []string, before, inOrder bool) ([]Change, error) {
	d := newPlanDecoder(raw, fc)
	for i := 0; i < h.count; i++ {
		d.left = h.count - i
		a := d.byte()
		if int(a) >= len(actionOrder) {
			d.fail()
		}
		// Decoded where it is kept, not copied there.
		dst = append(dst, Change{})
		c := &dst[len(dst)-1]
		if d.err == nil {
			c.Action = actionOrder[a]
		}
		c.Key = d.string()
		c.Op = operation(d.string())
		c.KeyValue = d.value()
		if d.err == nil && !h.noHash {
			if len(d.b) < 8 {
				d.fail()
			} else {
				c.Hash = binary.LittleEndian.Uint64(d.b)
				d.b = d.b[8:]
			}
		}
		c.LastError = d.string()
		c.Attempts = int(min(d.uvarint(), math.MaxInt32))
		if before {
			c.Before = d.values()
		} else {
			d.skipValues()
		}
		if inOrder && !h.noHash {
			d.keyValue = c.KeyValue
			c.After, c.vals, c.afterExact = d.valuesInOrder()
		} else {
			c.After, c.afterExact = d.valuesExact()
		}
		if d.err != nil {
			return nil, d.err
		}
		if h.noHash && c.After != nil {
			c.Hash = HashValues(fields, c.After)
		}
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w (trailing bytes)", errDamagedChunk)
	}
	return dst, nil
}

var knownOps = []destination.Operation{destination.OpUpsert, destination.OpInsert, destination.OpUpdate,
	destination.OpDelete, destination.OpClear, OpForget}

// operation is op as one of the operation constants, not a slice of the
// chunk it was decoded from: an operation outlives its chunk (failure
// entries, the row log), and would keep all of it in memory.
func operation(op string) destination.Operation {
	for _, o := range knownOps {
		if string(o) == op {
			return o
		}
	}
	return destination.Operation(strings.Clone(op))
}

// countOf is the number of changes of action a.
func (sp *SyncPlan) countOf(a Action) int {
	if sp.spill != nil {
		return sp.spill.streams[actionIndex(a)].n
	}
	n := 0
	for i := range sp.Changes {
		if sp.Changes[i].Action == a {
			n++
		}
	}
	return n
}
