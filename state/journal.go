package state

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
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
// of frames (usually one), appends it in one write and fsyncs. A group is
// all or nothing: its records count only when every frame of it is intact,
// so a Commit (or a reset-cdc, which is one group) that a crash cut short
// counts not at all. Only the last group can be torn by a crash: a bad
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
	var js journalScan
	if len(data) < len(journalMagic) {
		if journalMagic[:len(data)] == string(data) {
			return js, nil // torn while being created
		}
		return js, corrupt(path, "not a backflow journal")
	}
	switch string(data[:len(journalMagic)]) {
	case journalMagic:
	case journalMagicV1:
		return scanJournalV1(path, data, fn)
	default:
		if string(data[:6]) == journalMagic[:6] && data[6] == 0 && data[7] > journalMagic[7] {
			return js, &VersionError{Path: path, Version: int(data[7])}
		}
		return js, corrupt(path, "not a backflow journal")
	}
	js.version, js.valid = 2, len(journalMagic)
	pos := len(journalMagic)
	var group []int // offsets of the frames of the group being read
	groupStart := uint64(1)
	for {
		if pos == len(data) {
			return js, nil // a trailing incomplete group was torn
		}
		f, ok := parseFrameHeader(data[pos:])
		if ok && f.seq == js.seq+uint64(len(group))+1 && f.n <= len(data)-pos-frameHeader &&
			(len(group) == 0 && f.group == f.seq || len(group) > 0 && f.group == groupStart) &&
			crc32.Checksum(data[pos+frameHeader:pos+frameHeader+f.n], castagnoli) == f.sum {
			if len(group) == 0 {
				groupStart = f.seq
			}
			group = append(group, pos)
			pos += frameHeader + f.n
			if !f.last {
				continue
			}
			for _, at := range group {
				if err := scanFrame(path, data, at, &js, fn); err != nil {
					return js, err
				}
			}
			js.seq = f.seq
			js.valid = pos
			group = group[:0]
			continue
		}
		// A bad frame: a torn tail, unless a later group follows it.
		cur := js.seq + 1
		if len(group) > 0 {
			cur = groupStart
		}
		for q := pos + 1; q+frameHeader <= len(data); q++ {
			if g, ok := parseFrameHeader(data[q:]); ok && g.seq > js.seq && g.group > cur {
				return js, corrupt(path, "damaged at offset %d, before frame %d which was written after it; the records from there on cannot be trusted", pos, g.seq)
			}
		}
		return js, nil
	}
}

// scanFrame delivers the records of the intact frame at pos.
func scanFrame(path string, data []byte, pos int, js *journalScan, fn func(off int, rec []byte) error) error {
	n := int(binary.LittleEndian.Uint32(data[pos:]))
	p := pos + frameHeader
	end := p + n
	for p < end {
		if end-p < 4 {
			return corrupt(path, "malformed record at offset %d", p)
		}
		l := int(binary.LittleEndian.Uint32(data[p:]))
		if l == 0 || l > end-p-4 {
			return corrupt(path, "malformed record at offset %d", p)
		}
		rec := data[p+4 : p+4+l]
		if rec[0] == recBase {
			if len(rec) != 9 {
				return corrupt(path, "malformed record at offset %d", p)
			}
			if !js.hasBase {
				js.base, js.hasBase = binary.LittleEndian.Uint64(rec[1:]), true
			}
		} else if err := fn(p+4, rec); err != nil {
			return corrupt(path, "record at offset %d: %v", p, err)
		}
		p += 4 + l
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
func decodeInFlight(p []byte, fn func(key, op string, at time.Time)) error {
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
		fn(string(key), string(op), at)
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
// recorded: it accumulates onto the entry the key had, if any.
func unknownFailure(key string, m inFlight, old *Failure) *Failure {
	f := &Failure{Key: key, Operation: m.op, Error: unknownOutcome, Attempts: 1, FirstFailed: m.at, LastFailed: m.at, Unknown: true}
	if old != nil {
		f.Attempts = old.Attempts + 1
		f.FirstFailed = old.FirstFailed
	}
	return f
}

// change is an accept or forget record of a journal held in memory.
type change struct {
	key  uint64 // offset of the key in the log
	klen uint32
	rest uint32 // bytes after the key: hash and body of an accept, 0 for a forget
}

// changes are the accepts and forgets since the last reset record.
type changes struct {
	log     []byte
	reset   bool
	entries []change
}

func (c *changes) keyOf(e change) []byte { return c.log[e.key : e.key+uint64(e.klen)] }

// accepted returns the hash and value body of an accept (ok false: forget).
func (c *changes) accepted(e change) (hash uint64, body []byte, ok bool) {
	if e.rest == 0 {
		return 0, nil, false
	}
	p := c.log[e.key+uint64(e.klen) : e.key+uint64(e.klen)+uint64(e.rest)]
	return binary.LittleEndian.Uint64(p), p[8:], true
}

// sortLatest orders the entries by key, keeping only the last of each key.
func (c *changes) sortLatest() {
	slices.SortFunc(c.entries, func(a, b change) int {
		if r := bytes.Compare(c.keyOf(a), c.keyOf(b)); r != 0 {
			return r
		}
		return cmp.Compare(a.key, b.key) // log order: later records win
	})
	out := c.entries[:0]
	for i, e := range c.entries {
		if i+1 < len(c.entries) && bytes.Equal(c.keyOf(e), c.keyOf(c.entries[i+1])) {
			continue
		}
		out = append(out, e)
	}
	c.entries = out
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
			r.changes.entries = r.changes.entries[:0]
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
			keyOff := off + len(p) - len(d.b) - len(key)
			r.changes.entries = append(r.changes.entries, change{key: uint64(keyOff), klen: uint32(len(key)), rest: uint32(len(d.b))})
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
		return decodeInFlight(p[1:], func(key, op string, at time.Time) {
			if r.inflight != nil {
				r.inflight[key] = inFlight{op: op, at: at}
			}
		})
	case recUnsent:
		return decodeKeys(p[1:], r.resolve)
	default:
		return fmt.Errorf("unknown record kind %q", p[0])
	}
	return nil
}
