package state

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/bits"
	"os"
	"slices"
	"strings"
	"time"
)

// The journal of an apply in progress is an append-only file: a magic
// header, then frames. A frame is a 32-byte header and a payload of
// records:
//
//	uint32 payload length
//	uint32 CRC-32C of the payload
//	uint64 sequence number (1, 2, 3, … in file order)
//	uint64 group: the sequence number of its group's first frame
//	uint32 flags (flagLast: the last frame of its group)
//	uint32 CRC-32C of the 28 bytes above
//
// and a record is uint32 length, kind byte, body (all little endian).
//
// Every Checkpoint seals what was recorded since the last one as a group
// of frames (usually one), appends it and fsyncs. The frames of a large
// group are appended as they fill, without an fsync, and its last frame by
// the Checkpoint (or Commit) that ends it. A group is all or nothing: its
// records count only when every frame of it is intact, last frame
// included, so a Commit (or a reset-cdc, which is one group) that a crash
// cut short counts not at all. Only the last group can be torn by a crash: a bad
// frame followed by any intact frame of a later group means the file was
// damaged after it was written (a later group is written only once the
// earlier one is durable), and the journal is refused, never cut.
//
// Records hold absolute results, not deltas, so replaying a journal onto a
// snapshot that already contains it (a crash between Commit's renames and
// the journal's removal) changes nothing.
const (
	journalMagicV1  = "BFJRNL\x00\x01"
	journalMagic    = "BFJRNL\x00\x02"
	frameHeader     = 32
	flagLast        = 1
	maxFramePayload = 8 << 20 // larger checkpoints are split into frames of one group
)

// Record kinds (a record's first byte).
const (
	recBase     byte = 'B' // uint64 generation of the snapshot the journal started from
	recReset    byte = 'R' // the apply started from an empty snapshot and failure index
	recField    byte = 'D' // uvarint id, name: a field table entry
	recAccept   byte = 'A' // uvarint len, key, uint64 hash, value body
	recForget   byte = 'F' // uvarint len, key
	recFail     byte = 'X' // key, operation, error, attempts, first and last failure times[, flags]
	recInFlight byte = 'I' // time, uvarint count, per record operation and key
	recUnsent   byte = 'U' // uvarint count, keys: records in flight the destination wrote none of
)

// failUnknown flags a failure entry whose outcome is unknown (recFail).
const failUnknown = 1

// unknownOutcome is the error of a failure entry for a record that was in
// flight when a run stopped.
const unknownOutcome = "outcome unknown: the run stopped while this record was in flight"

const maxRecord = 1 << 30

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func appendBytes(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = binary.AppendVarint(dst, t.Unix())
	return binary.AppendUvarint(dst, uint64(t.Nanosecond()))
}

// appendFailure encodes a fail record body (after its kind byte).
func appendFailure(dst []byte, f *Failure) []byte {
	dst = appendBytes(dst, f.Key)
	dst = appendBytes(dst, f.Operation)
	dst = appendBytes(dst, f.Error)
	dst = binary.AppendVarint(dst, int64(f.Attempts))
	dst = appendTime(dst, f.FirstFailed)
	dst = appendTime(dst, f.LastFailed)
	var flags uint64
	if f.Unknown {
		flags |= failUnknown
	}
	return binary.AppendUvarint(dst, flags)
}

// putFrameHeader fills the frame header at h (32 bytes) for payload p.
func putFrameHeader(h, p []byte, seq, group uint64, last bool) {
	binary.LittleEndian.PutUint32(h[0:], uint32(len(p)))
	binary.LittleEndian.PutUint32(h[4:], crc32.Checksum(p, castagnoli))
	binary.LittleEndian.PutUint64(h[8:], seq)
	binary.LittleEndian.PutUint64(h[16:], group)
	var flags uint32
	if last {
		flags = flagLast
	}
	binary.LittleEndian.PutUint32(h[24:], flags)
	binary.LittleEndian.PutUint32(h[28:], crc32.Checksum(h[:28], castagnoli))
}

// frame is a parsed frame header.
type frame struct {
	n          int // payload length
	sum        uint32
	seq, group uint64
	last       bool
}

// parseFrameHeader reads the header at h; ok is false when its checksum
// fails.
func parseFrameHeader(h []byte) (f frame, ok bool) {
	if len(h) < frameHeader || crc32.Checksum(h[:28], castagnoli) != binary.LittleEndian.Uint32(h[28:]) {
		return f, false
	}
	n := binary.LittleEndian.Uint32(h[0:])
	flags := binary.LittleEndian.Uint32(h[24:])
	f = frame{n: int(n), sum: binary.LittleEndian.Uint32(h[4:]), seq: binary.LittleEndian.Uint64(h[8:]),
		group: binary.LittleEndian.Uint64(h[16:]), last: flags&flagLast != 0}
	return f, n <= maxRecord && flags&^flagLast == 0 && f.group <= f.seq && f.seq > 0
}

// journalScan is what scanJournal learnt of a journal.
type journalScan struct {
	version int    // 1 or 2; 0 for an empty (or torn at birth) journal
	valid   int    // length of the intact prefix (complete groups)
	seq     uint64 // sequence number of the last frame of that prefix
	base    uint64 // generation of the snapshot the journal started from (version 2)
	hasBase bool
}

// scanJournal calls fn with every record of every complete group of data
// (the journal at path), and the record's offset in data.
func scanJournal(path string, data []byte, fn func(off int, rec []byte) error) (journalScan, error) {
	if len(data) >= len(journalMagicV1) && string(data[:len(journalMagicV1)]) == journalMagicV1 {
		return scanJournalV1(path, data, fn)
	}
	read := func(at int64, n int) ([]byte, error) { return data[at : at+int64(n)], nil }
	return scanFrames(path, bytes.NewReader(data), int64(len(data)), read, fn)
}

// scanJournalAt is scanJournal for a journal of size bytes read from r
// (version 2 only), one frame in memory at a time: the frames of a group
// are checked, then read again to deliver their records, so that a group
// of any size is delivered all or not at all. The record fn is given lies
// in a buffer reused for the next frame.
func scanJournalAt(path string, r io.ReaderAt, size int64, fn func(off int, rec []byte) error) (journalScan, error) {
	var buf []byte
	read := func(at int64, n int) ([]byte, error) {
		buf = slices.Grow(buf[:0], n)[:n]
		if n == 0 {
			return buf, nil
		}
		_, err := r.ReadAt(buf, at)
		return buf, err
	}
	return scanFrames(path, r, size, read, fn)
}

// scanFrames reads a version 2 journal of size bytes: read returns n
// bytes at an offset (frame payloads, each only until the next call), r
// serves the rest.
func scanFrames(path string, r io.ReaderAt, size int64, read func(at int64, n int) ([]byte, error), fn func(off int, rec []byte) error) (journalScan, error) {
	var js journalScan
	head := make([]byte, min(size, int64(len(journalMagic))))
	if len(head) > 0 {
		if _, err := r.ReadAt(head, 0); err != nil {
			return js, fileErr(err)
		}
	}
	if len(head) < len(journalMagic) {
		if journalMagic[:len(head)] == string(head) {
			return js, nil // torn while being created
		}
		return js, corrupt(path, "not a backflow journal")
	}
	switch string(head) {
	case journalMagic:
	case journalMagicV1:
		return js, corrupt(path, "a version 1 journal read as version 2")
	default:
		if string(head[:6]) == journalMagic[:6] && head[6] == 0 && head[7] > journalMagic[7] {
			return js, &VersionError{Path: path, Version: int(head[7])}
		}
		return js, corrupt(path, "not a backflow journal")
	}
	js.version, js.valid = 2, len(journalMagic)
	pos := int64(len(journalMagic))
	type frameAt struct {
		at int64 // offset of the frame's header
		n  int   // payload length
	}
	var group []frameAt // the frames of the group being read
	groupStart := uint64(1)
	var hdr [frameHeader]byte
	var buf []byte // the payload of the frame read last
	bufAt := int64(-1)
	readPayload := func(at int64, n int) error {
		if bufAt == at {
			return nil
		}
		bufAt = -1
		var err error
		if buf, err = read(at+frameHeader, n); err != nil {
			return fileErr(err)
		}
		bufAt = at
		return nil
	}
	for {
		if pos == size {
			return js, nil // a trailing incomplete group was torn
		}
		h := hdr[:min(int64(frameHeader), size-pos)]
		if _, err := r.ReadAt(h, pos); err != nil {
			return js, fileErr(err)
		}
		f, ok := parseFrameHeader(h)
		ok = ok && f.seq == js.seq+uint64(len(group))+1 && int64(f.n) <= size-pos-frameHeader &&
			(len(group) == 0 && f.group == f.seq || len(group) > 0 && f.group == groupStart)
		if ok {
			if err := readPayload(pos, f.n); err != nil {
				return js, err
			}
			ok = crc32.Checksum(buf, castagnoli) == f.sum
		}
		if ok {
			if len(group) == 0 {
				groupStart = f.seq
			}
			group = append(group, frameAt{pos, f.n})
			pos += frameHeader + int64(f.n)
			if !f.last {
				continue
			}
			for _, g := range group {
				if err := readPayload(g.at, g.n); err != nil {
					return js, err
				}
				if err := scanFrame(path, buf, int(g.at)+frameHeader, &js, fn); err != nil {
					return js, err
				}
			}
			js.seq = f.seq
			js.valid = int(pos)
			group = group[:0]
			continue
		}
		// A bad frame: a torn tail, unless a later group follows it.
		cur := js.seq + 1
		if len(group) > 0 {
			cur = groupStart
		}
		if at, seq, err := laterFrame(r, pos+1, size, js.seq, cur); err != nil {
			return js, err
		} else if at >= 0 {
			return js, corrupt(path, "damaged at offset %d, before frame %d which was written after it; the records from there on cannot be trusted", pos, seq)
		}
		return js, nil
	}
}

// journalReader is an open journal file, scanned one frame at a time (a
// version 1 journal, legacy and small, is read whole). A nil
// *journalReader is a missing journal: it scans as empty.
type journalReader struct {
	io.ReaderAt
	f    *os.File
	size int64
	v1   []byte // the whole file, for a version 1 journal
}

// openJournal opens the journal at path; a missing file is (nil, nil).
func openJournal(path string) (*journalReader, error) {
	f, size, err := openSized(path)
	if f == nil || err != nil {
		return nil, err
	}
	j := &journalReader{ReaderAt: f, f: f, size: size}
	var head [len(journalMagicV1)]byte
	if n, _ := f.ReadAt(head[:], 0); n == len(head) && string(head[:]) == journalMagicV1 {
		if j.v1, err = io.ReadAll(io.NewSectionReader(f, 0, j.size)); err != nil {
			_ = f.Close()
			return nil, fileErr(err)
		}
		j.ReaderAt = bytes.NewReader(j.v1)
	}
	return j, nil
}

// scan is scanJournal of the file.
func (j *journalReader) scan(path string, fn func(off int, rec []byte) error) (journalScan, error) {
	switch {
	case j == nil:
		return journalScan{}, nil
	case j.v1 != nil:
		return scanJournalV1(path, j.v1, fn)
	}
	return scanJournalAt(path, j, j.size, fn)
}

// Close closes the file.
func (j *journalReader) Close() error {
	if j == nil {
		return nil
	}
	return j.f.Close()
}

// laterFrame searches r from offset from to size for a frame header of a
// frame after seq in a group after cur; at is -1 when there is none.
func laterFrame(r io.ReaderAt, from, size int64, seq, cur uint64) (at int64, frameSeq uint64, err error) {
	const chunk = 1 << 20
	buf := make([]byte, min(size-from, chunk+frameHeader))
	for q0 := from; q0+frameHeader <= size; q0 += chunk {
		b := buf[:min(size-q0, chunk+frameHeader)]
		if _, err := r.ReadAt(b, q0); err != nil {
			return -1, 0, fileErr(err)
		}
		for q := 0; q < chunk && q+frameHeader <= len(b); q++ {
			if g, ok := parseFrameHeader(b[q:]); ok && g.seq > seq && g.group > cur {
				return q0 + int64(q), g.seq, nil
			}
		}
	}
	return -1, 0, nil
}

// scanFrame delivers the records of an intact frame's payload p, which
// starts at offset base of the journal.
func scanFrame(path string, p []byte, base int, js *journalScan, fn func(off int, rec []byte) error) error {
	pos := 0
	for pos < len(p) {
		if len(p)-pos < 4 {
			return corrupt(path, "malformed record at offset %d", base+pos)
		}
		l := int(binary.LittleEndian.Uint32(p[pos:]))
		if l == 0 || l > len(p)-pos-4 {
			return corrupt(path, "malformed record at offset %d", base+pos)
		}
		rec := p[pos+4 : pos+4+l]
		if rec[0] == recBase {
			if len(rec) != 9 {
				return corrupt(path, "malformed record at offset %d", base+pos)
			}
			if !js.hasBase {
				js.base, js.hasBase = binary.LittleEndian.Uint64(rec[1:]), true
			}
		} else if err := fn(base+pos+4, rec); err != nil {
			return corrupt(path, "record at offset %d: %v", base+pos, err)
		}
		pos += 4 + l
	}
	return nil
}

// scanJournalV1 reads a version 1 journal: records framed one by one
// (uint32 length, uint32 CRC-32C, payload), read up to the first that is
// short or fails its checksum.
func scanJournalV1(path string, data []byte, fn func(off int, rec []byte) error) (journalScan, error) {
	js := journalScan{version: 1}
	pos := len(journalMagicV1)
	for len(data)-pos >= 8 {
		n := binary.LittleEndian.Uint32(data[pos:])
		sum := binary.LittleEndian.Uint32(data[pos+4:])
		if n == 0 || n > maxRecord || uint64(n) > uint64(len(data)-pos-8) {
			break
		}
		p := data[pos+8 : pos+8+int(n)]
		if crc32.Checksum(p, castagnoli) != sum {
			break
		}
		if p[0] == recBase || p[0] == recInFlight || p[0] == recUnsent {
			return js, corrupt(path, "record at offset %d: unknown record kind %q", pos, p[0])
		}
		if err := fn(pos+8, p); err != nil {
			return js, corrupt(path, "record at offset %d: %v", pos, err)
		}
		pos += 8 + int(n)
	}
	js.valid = pos
	return js, nil
}

// decoder reads a record payload; the first malformed read sets bad.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad, d.b = true, nil
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) time() time.Time {
	sec := d.varint()
	nsec := d.uvarint()
	if nsec >= 1e9 {
		d.bad = true
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

var errBadRecord = errors.New("malformed record")

func decodeFailure(p []byte) (*Failure, error) {
	d := decoder{b: p}
	f := &Failure{
		Key:       string(d.bytes()),
		Operation: string(d.bytes()),
		Error:     string(d.bytes()),
	}
	attempts := d.varint()
	if attempts < math.MinInt32 || attempts > math.MaxInt32 {
		d.bad = true
	}
	f.Attempts = int(attempts)
	f.FirstFailed = d.time()
	f.LastFailed = d.time()
	if len(d.b) > 0 && !d.bad { // version 1 records end here
		flags := d.uvarint()
		if flags&^failUnknown != 0 {
			d.bad = true
		}
		f.Unknown = flags&failUnknown != 0
	}
	if d.bad || len(d.b) != 0 {
		return nil, errBadRecord
	}
	return f, nil
}

// inFlight is a record sent without an outcome recorded yet.
type inFlight struct {
	op string
	at time.Time
}

// decodeInFlight calls fn for each record of an in-flight record's body.
// key and op are slices of p: fn copies what it keeps.
func decodeInFlight(p []byte, fn func(key, op []byte, at time.Time)) error {
	d := decoder{b: p}
	at := d.time()
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		return errBadRecord
	}
	for range n {
		op := d.bytes()
		key := d.bytes()
		if d.bad {
			return errBadRecord
		}
		fn(key, op, at)
	}
	if len(d.b) != 0 {
		return errBadRecord
	}
	return nil
}

// appendKeys encodes keys as uvarint(count), then each key.
func appendKeys(dst []byte, keys []string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(keys)))
	for _, k := range keys {
		dst = appendBytes(dst, k)
	}
	return dst
}

// decodeKeys calls fn for each key appendKeys encoded in p.
func decodeKeys(p []byte, fn func(key string)) error {
	d := decoder{b: p}
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		return errBadRecord
	}
	for range n {
		key := d.bytes()
		if d.bad {
			return errBadRecord
		}
		fn(string(key))
	}
	if len(d.b) != 0 {
		return errBadRecord
	}
	return nil
}

// unknownFailure is the failure entry of a record whose outcome was never
// recorded: it accumulates onto the entry the key had, if any, and keeps
// that entry's rejection (see RejectedBefore).
func unknownFailure(key string, m inFlight, old *Failure) *Failure {
	f := &Failure{Key: key, Operation: m.op, Error: unknownOutcome, Attempts: 1, FirstFailed: m.at, LastFailed: m.at, Unknown: true}
	if old != nil {
		f.Attempts = old.Attempts + 1
		f.FirstFailed = old.FirstFailed
		if prior := RejectedBefore(old.Error); prior != "" {
			f.Error = unknownOutcome + rejectedBefore + prior
		}
	}
	return f
}

// rejectedBefore joins an unknown outcome to the rejection it replaced.
const rejectedBefore = "; rejected before: "

// RejectedBefore is the destination's last rejection of a record whose
// failure entry has msg as its error: msg itself, or, when a crash left
// the record's outcome unknown after it had been rejected, the rejection
// that entry carries; "" when the record was never rejected. A record
// rejected again as before a crash is still failing, not news.
func RejectedBefore(msg string) string {
	if msg == unknownOutcome {
		return ""
	}
	if rest, ok := strings.CutPrefix(msg, unknownOutcome+rejectedBefore); ok {
		return rest
	}
	return msg
}

// change is an accept or forget record of a journal.
type change struct {
	rec  uint64 // offset of the record (its kind byte) in the journal; forgetBit set for a forget
	key  uint32 // offset of the key in changes.keys, where uvarint(len) precedes it
	size uint32 // the record's length
}

// forgetBit marks a forget in change.rec: nothing is read for it.
const forgetBit = 1 << 63

// changes are the accepts and forgets since the last reset record of a
// journal, as a compact index: the keys in one arena and, per record, 16
// bytes. Accepted values stay in the journal, src, read when the merge
// reaches them.
type changes struct {
	src     io.ReaderAt
	reset   bool
	keys    []byte
	entries []change
	// order, once sortLatest ran, holds the indices of the entries it
	// kept, in key order (nil until it runs: entries in journal order).
	order  []uint64
	blocks [changeBlocks]recordBlock // blocks of src read last
	tick   uint64
}

// recordBlock is a block of a journal read for changes.record.
type recordBlock struct {
	at   int64  // offset of buf in the journal
	buf  []byte // nil: unused
	next int64  // where the last record read from it ended
	used uint64 // changes.tick when it was last read from
}

// Record reads in key order follow the journal in a few streams (keys of
// different lengths interleave: "1000009", "100001", "1000010"), each
// served by a block of changeBlock bytes; a record far from every stream
// is read with its neighbourhood (changeNear bytes), which starts a new
// stream if the records after it follow.
const (
	changeBlocks = 8
	changeBlock  = 128 << 10
	changeNear   = 4 << 10
)

// add records a forget of key, or an accept: the record of size bytes at
// rec in src.
func (c *changes) add(rec uint64, size int, key []byte, forget bool) error {
	if len(c.keys)+binary.MaxVarintLen32+len(key) > math.MaxUint32 {
		return errors.New("the keys of one apply exceed 4 GiB")
	}
	if forget {
		rec |= forgetBit
	}
	c.entries = append(c.entries, change{rec: rec, key: uint32(len(c.keys)), size: uint32(size)})
	c.keys = appendBytes(c.keys, string(key))
	return nil
}

func (c *changes) keyOf(e change) []byte {
	l, n := binary.Uvarint(c.keys[e.key:])
	return c.keys[int(e.key)+n : int(e.key)+n+int(l)]
}

// accepted returns the hash and value body of an accept (ok false: a
// forget). body is valid until the next call.
func (c *changes) accepted(e change) (hash uint64, body []byte, ok bool, err error) {
	if e.rec&forgetBit != 0 {
		return 0, nil, false, nil
	}
	rec, err := c.record(int64(e.rec), int(e.size))
	if err != nil {
		return 0, nil, false, err
	}
	d := decoder{b: rec[1:]}
	if key := d.bytes(); d.bad || rec[0] != recAccept || !bytes.Equal(key, c.keyOf(e)) || len(d.b) < 9 {
		return 0, nil, false, fmt.Errorf("journal record at offset %d: %w", e.rec, errBadRecord)
	}
	return binary.LittleEndian.Uint64(d.b), d.b[8:], true, nil
}

// record returns the size bytes at off in src, valid until the next call.
func (c *changes) record(off int64, size int) ([]byte, error) {
	c.tick++
	end := off + int64(size)
	var b *recordBlock
	for i := range c.blocks {
		if k := &c.blocks[i]; k.buf != nil && off >= k.at && end <= k.at+int64(len(k.buf)) {
			b = k
			break
		}
	}
	if b == nil {
		// A stream that this record continues, else the least recently
		// used block, is replaced.
		n := max(size, changeNear)
		b = &c.blocks[0]
		for i := range c.blocks {
			k := &c.blocks[i]
			if k.buf != nil && off >= k.next && off-k.next < changeNear {
				b, n = k, max(size, changeBlock)
				break
			}
			if k.used < b.used {
				b = k
			}
		}
		b.buf = slices.Grow(b.buf[:0], n)[:n]
		got, err := c.src.ReadAt(b.buf, off)
		b.at, b.buf = off, b.buf[:got]
		if got < size {
			b.buf = nil
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fileErr(err)
		}
	}
	b.next, b.used = end, c.tick
	return b.buf[off-b.at : end-b.at], nil
}

// prefixOf is the first 8 bytes of e's key as a big-endian integer, zero
// past the key's end: keys whose prefixes differ compare as their
// prefixes do. Most keys are shorter than 128 bytes (one byte of length)
// and lie 8 bytes or more before the arena's end: their prefix is one load
// and a mask.
func (c *changes) prefixOf(e change) uint64 {
	k := c.keys[e.key:]
	if n := k[0]; n < 0x80 && len(k) >= 9 {
		p := binary.BigEndian.Uint64(k[1:9])
		if n < 8 {
			p &^= math.MaxUint64 >> (8 * n)
		}
		return p
	}
	var b [8]byte
	copy(b[:], c.keyOf(e))
	return binary.BigEndian.Uint64(b[:])
}

// sortLatest orders the entries by key, keeping only the last of each
// key: sortedLen and sortedAt give them in that order.
//
// The entries are not sorted with a comparison of keys, which reads each
// from the arena at every step: the first bytes of a key and the entry's
// index make one integer (the index in as few low bits as the number of
// entries needs, the key's first 8 bytes cut to the rest), the integers
// are sorted, the runs sharing their key bits are sorted by whole key, and
// the indices in that order are kept (8 bytes per entry) rather than the
// entries moved: moving them in place follows the permutation's cycles, one
// cache miss waiting for the one before (two thirds of the sort's time
// for a million keys), and moving them to a new slice would take 16 bytes
// per entry more.
func (c *changes) sortLatest() {
	byKey := func(a, b change) int {
		if r := bytes.Compare(c.keyOf(a), c.keyOf(b)); r != 0 {
			return r
		}
		return cmp.Compare(a.rec&^forgetBit, b.rec&^forgetBit) // journal order: later records win
	}
	n := len(c.entries)
	var ord []uint64
	idx := ^uint64(0)
	if n > math.MaxUint32 {
		// Too many entries for an index and a key prefix in one integer:
		// the indices alone, sorted by whole key.
		ord = make([]uint64, n)
		for i := range ord {
			ord[i] = uint64(i)
		}
		slices.SortFunc(ord, func(a, b uint64) int { return byKey(c.entries[a], c.entries[b]) })
	} else {
		shift := uint(max(bits.Len(uint(n)), 1))
		idx = uint64(1)<<shift - 1
		ord = make([]uint64, n)
		for i, e := range c.entries {
			ord[i] = c.prefixOf(e)&^idx | uint64(i)
		}
		slices.Sort(ord)
		for i := 0; i < n; {
			j := i + 1
			for j < n && ord[j]>>shift == ord[i]>>shift {
				j++
			}
			if j-i > 1 {
				slices.SortFunc(ord[i:j], func(a, b uint64) int {
					return byKey(c.entries[a&idx], c.entries[b&idx])
				})
			}
			i = j
		}
	}
	out := ord[:0]
	for i := range ord {
		k := ord[i] & idx
		if i+1 < n && bytes.Equal(c.keyOf(c.entries[k]), c.keyOf(c.entries[ord[i+1]&idx])) {
			continue
		}
		out = append(out, k)
	}
	c.order = out
}

// sortedLen is the number of entries sortLatest kept.
func (c *changes) sortedLen() int {
	if c.order != nil {
		return len(c.order)
	}
	return len(c.entries)
}

// sortedAt is the entry at position j of sortLatest's order.
func (c *changes) sortedAt(j int) change {
	if c.order != nil {
		return c.entries[c.order[j]]
	}
	return c.entries[j]
}

// replayer applies journal records to whichever of its parts are set.
type replayer struct {
	fields   *fieldTable
	failures FailureIndex
	changes  *changes
	// inflight tracks records sent without an outcome (with failures).
	inflight map[string]inFlight
}

// settle turns the records still in flight at the end of a replay into
// failure entries whose outcome is unknown, so the next plan retries them.
func (r *replayer) settle() {
	keys := make([]string, 0, len(r.inflight))
	for k := range r.inflight {
		keys = append(keys, k)
	}
	for _, k := range keys {
		r.failures[k] = unknownFailure(k, r.inflight[k], r.failures[k])
	}
	clear(r.inflight)
}

func (r *replayer) resolve(key string) {
	if r.inflight != nil {
		delete(r.inflight, key)
	}
}

func (r *replayer) apply(off int, p []byte) error {
	d := decoder{b: p[1:]}
	switch p[0] {
	case recReset:
		if len(p) != 1 {
			return errBadRecord
		}
		if r.failures != nil {
			clear(r.failures)
		}
		if r.inflight != nil {
			clear(r.inflight)
		}
		if r.changes != nil {
			r.changes.reset = true
			r.changes.entries, r.changes.keys, r.changes.order = r.changes.entries[:0], r.changes.keys[:0], nil
		}
	case recField:
		id := d.uvarint()
		if d.bad || len(d.b) == 0 {
			return errBadRecord
		}
		if r.fields != nil {
			return r.fields.define(id, string(d.b))
		}
	case recAccept, recForget:
		key := d.bytes()
		if d.bad || (p[0] == recAccept && len(d.b) < 9) || (p[0] == recForget && len(d.b) != 0) {
			return errBadRecord
		}
		if r.failures != nil {
			delete(r.failures, string(key))
			r.resolve(string(key))
		}
		if r.changes != nil {
			return r.changes.add(uint64(off), len(p), key, p[0] == recForget)
		}
	case recFail:
		f, err := decodeFailure(p[1:])
		if err != nil {
			return err
		}
		if r.failures != nil {
			r.failures[f.Key] = f
			r.resolve(f.Key)
		}
	case recInFlight:
		return decodeInFlight(p[1:], func(key, op []byte, at time.Time) {
			if r.inflight != nil {
				r.inflight[string(key)] = inFlight{op: string(op), at: at}
			}
		})
	case recUnsent:
		return decodeKeys(p[1:], r.resolve)
	default:
		return fmt.Errorf("unknown record kind %q", p[0])
	}
	return nil
}
