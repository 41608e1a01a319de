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
// header, then records framed as uint32 payload length, uint32 CRC-32C of
// the payload, payload (all little endian). Checkpoint appends and fsyncs,
// so only the last record can be torn by a crash; scanning stops at the first
// record that is short or fails its checksum, and what follows is ignored.
//
// Records hold absolute results, not deltas, so replaying a journal onto a
// snapshot that already contains it (a crash between Commit's rename and
// the journal's removal) changes nothing.
const journalMagic = "BFJRNL\x00\x01"

// Payload kinds (the payload's first byte).
const (
	recReset  byte = 'R' // the apply started from an empty snapshot and failure index
	recField  byte = 'D' // uvarint id, name: a field table entry
	recAccept byte = 'A' // uvarint len, key, uint64 hash, value body
	recForget byte = 'F' // uvarint len, key
	recFail   byte = 'X' // key, operation, error, attempts, first and last failure times
)

const maxRecord = 1 << 30

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// beginRecord reserves a frame header in log; endRecord fills it in.
func beginRecord(log []byte, kind byte) ([]byte, int) {
	start := len(log)
	return append(log, 0, 0, 0, 0, 0, 0, 0, 0, kind), start
}

func endRecord(log []byte, start int) []byte {
	p := log[start+8:]
	binary.LittleEndian.PutUint32(log[start:], uint32(len(p)))
	binary.LittleEndian.PutUint32(log[start+4:], crc32.Checksum(p, castagnoli))
	return log
}

func appendBytes(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = binary.AppendVarint(dst, t.Unix())
	return binary.AppendUvarint(dst, uint64(t.Nanosecond()))
}

// appendFailure encodes a fail record payload after its kind byte.
func appendFailure(dst []byte, f *Failure) []byte {
	dst = appendBytes(dst, f.Key)
	dst = appendBytes(dst, f.Operation)
	dst = appendBytes(dst, f.Error)
	dst = binary.AppendVarint(dst, int64(f.Attempts))
	dst = appendTime(dst, f.FirstFailed)
	return appendTime(dst, f.LastFailed)
}

// scanJournal calls fn with the payload of every intact record of data and
// the payload's offset, and returns the length of the intact prefix.
func scanJournal(data []byte, fn func(off int, payload []byte) error) (int, error) {
	if len(data) < len(journalMagic) {
		if journalMagic[:len(data)] == string(data) {
			return 0, nil // torn while being created
		}
		return 0, errors.New("journal: not a backflow journal")
	}
	if string(data[:len(journalMagic)]) != journalMagic {
		return 0, errors.New("journal: not a backflow journal (or an unsupported version)")
	}
	pos := len(journalMagic)
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
		if err := fn(pos+8, p); err != nil {
			return pos, fmt.Errorf("journal record at offset %d: %w", pos, err)
		}
		pos += 8 + int(n)
	}
	return pos, nil
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
	if d.bad || len(d.b) != 0 {
		return nil, errBadRecord
	}
	return f, nil
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
		}
	default:
		return fmt.Errorf("unknown record kind %q", p[0])
	}
	return nil
}
