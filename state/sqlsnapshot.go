package state

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// sqlSnapshot is a sync's snapshot in a database. Loading reads keys and
// hashes only, in key order and in one statement, into the same flat
// index the local snapshot uses; values are read on demand, each checked
// against the hash the index holds, so values always go with their hashes:
// if another runner changed the sync since the load, reading fails rather
// than mix two states. No connection or transaction is held in between.
//
// Values are fetched by windows of consecutive keys: a read that follows
// the last window doubles the next one (up to readAheadMax), any other
// reads one key. After spillAfter fetches — many reads in no key order, as
// a plan of many changes does — every value is streamed once into an
// unlinked temporary file (0600) and read from there, as the local
// snapshot reads its file.
type sqlSnapshot struct {
	// idx is the index: keys and hashes. It is a field, not embedded,
	// so that the local snapshot's methods that read values from its file
	// (VisitValues, WithRecord, Fields, Verify) are not this one's.
	idx *Snapshot

	b      *sqlBackend
	sync   string
	syncID int64

	mu       sync.Mutex
	winStart int
	win      [][]byte // values of keys winStart, winStart+1, …
	ahead    int
	fetches  int
	spill    *os.File
	spillOff []uint64 // value i is spill[spillOff[i]:spillOff[i+1]]
	err      error    // sticky
	closed   bool
}

const (
	readAheadMax = 4096
	spillAfter   = 1024
)

// LoadSnapshot implements Reader.
func (b *sqlBackend) LoadSnapshot(sync string) (SnapshotReader, error) {
	if err := checkName(sync); err != nil {
		return nil, err
	}
	empty := &sqlSnapshot{idx: &Snapshot{keyOff: []uint32{0}}, b: b, sync: sync}
	ctx, cancel := b.opCtx()
	defer cancel()
	if ok, err := b.present(ctx); err != nil || !ok {
		return empty, err
	}
	sn := &sqlSnapshot{b: b, sync: sync}
	if err := sn.readIndex(ctx); err != nil {
		return nil, b.fail("read the snapshot of sync "+sync, err)
	}
	if sn.syncID == 0 {
		return empty, nil
	}
	return sn, nil
}

func (sn *sqlSnapshot) readIndex(ctx context.Context) error {
	b := sn.b
	id, err := b.syncID(ctx, b.db, sn.sync)
	if err != nil || id == 0 {
		return err
	}
	sn.syncID = id
	var n int
	// A capacity hint only: the index is what the next statement reads.
	if err := b.db.QueryRowContext(ctx, b.q(`SELECT COUNT(*) FROM {snapshot} WHERE sync_id = ?`), id).Scan(&n); err != nil {
		return err
	}
	rows, err := b.db.QueryContext(ctx, b.q(`SELECT k, hash FROM {snapshot} WHERE sync_id = ? ORDER BY k`), id)
	if err != nil {
		return err
	}
	defer rows.Close()
	ib := newIndexBuilder(n, 0)
	var k sql.RawBytes
	var h int64
	var prev []byte
	for rows.Next() {
		if err := rows.Scan(&k, &h); err != nil {
			return err
		}
		if len(ib.hashes) > 0 && bytes.Compare(prev, k) >= 0 {
			return fmt.Errorf("keys not in byte order (%q after %q)", k, prev)
		}
		if err := ib.add(k, uint64(h), 0); err != nil {
			return err
		}
		prev = ib.arena[ib.keyOff[len(ib.keyOff)-2]:]
	}
	if err := rows.Err(); err != nil {
		return err
	}
	sn.idx = ib.snapshot(nil, nil, nil, 0)
	return nil
}

// Len implements SnapshotReader.
func (sn *sqlSnapshot) Len() int { return sn.idx.Len() }

// Lookup implements SnapshotReader.
func (sn *sqlSnapshot) Lookup(key string) (int, uint64, bool) { return sn.idx.Lookup(key) }

// Key implements SnapshotReader.
func (sn *sqlSnapshot) Key(i int) string { return sn.idx.Key(i) }

// Hash is the hash of key i.
func (sn *sqlSnapshot) Hash(i int) uint64 { return sn.idx.Hash(i) }

// Values implements SnapshotReader. It is safe for concurrent use.
func (sn *sqlSnapshot) Values(i int) (map[string]any, error) {
	var mv mapVisitor
	if err := sn.VisitValues(i, &mv); err != nil {
		return nil, err
	}
	return mv.m, nil
}

// VisitValues lends Values' values one by one, without a map. It is safe
// for concurrent use.
func (sn *sqlSnapshot) VisitValues(i int, vv ValueVisitor) error {
	if i < 0 || i >= sn.idx.n {
		return fmt.Errorf("snapshot index %d out of range [0,%d)", i, sn.idx.n)
	}
	sn.mu.Lock()
	defer sn.mu.Unlock()
	body, err := sn.value(i)
	if err != nil {
		return fmt.Errorf("values of %q in %s: %w", sn.idx.key(i), sn.b.where, err)
	}
	if err := visitNamedValues(body, vv); err != nil {
		return fmt.Errorf("values of %q of sync %s in %s: %w", sn.idx.key(i), sn.sync, sn.b.where, err)
	}
	return nil
}

// value returns the encoded values of key i; sn.mu is held.
func (sn *sqlSnapshot) value(i int) ([]byte, error) {
	if sn.err != nil {
		return nil, sn.err
	}
	if sn.closed {
		return nil, errors.New("snapshot used after Close")
	}
	if sn.spill != nil {
		return sn.readSpill(i)
	}
	if i >= sn.winStart && i < sn.winStart+len(sn.win) {
		return sn.win[i-sn.winStart], nil
	}
	sn.fetches++
	if sn.fetches > spillAfter {
		if err := sn.spillAll(); err != nil {
			sn.err = err
			return nil, err
		}
		return sn.readSpill(i)
	}
	if i == sn.winStart+len(sn.win) {
		sn.ahead = min(max(sn.ahead*2, 16), readAheadMax)
	} else {
		sn.ahead = 1
	}
	if err := sn.fetch(i, min(sn.ahead, sn.idx.n-i)); err != nil {
		sn.err = err
		return nil, err
	}
	return sn.win[0], nil
}

// changed is the error of a snapshot another runner changed since it was
// loaded.
func (sn *sqlSnapshot) changed() error {
	return fmt.Errorf("the state of sync %s changed while it was read (another runner applied it meanwhile): run the command again", sn.sync)
}

// fetch reads the values of keys i to i+count-1 into the window.
func (sn *sqlSnapshot) fetch(i, count int) error {
	ctx, cancel := sn.b.opCtx()
	defer cancel()
	var rows *sql.Rows
	var err error
	if count == 1 {
		rows, err = sn.b.db.QueryContext(ctx, sn.b.q(`SELECT k, hash, vals FROM {snapshot} WHERE sync_id = ? AND k = ?`), sn.syncID, sn.idx.key(i))
	} else {
		rows, err = sn.b.db.QueryContext(ctx, sn.b.q(`SELECT k, hash, vals FROM {snapshot} WHERE sync_id = ? AND k >= ? ORDER BY k LIMIT ?`), sn.syncID, sn.idx.key(i), count)
	}
	if err != nil {
		return err
	}
	defer rows.Close()
	sn.winStart, sn.win = i, sn.win[:0]
	j := i
	for rows.Next() {
		var k, v []byte
		var h int64
		if err := rows.Scan(&k, &h, &v); err != nil {
			return err
		}
		if j >= sn.idx.n || !bytes.Equal(k, sn.idx.key(j)) || uint64(h) != sn.idx.hashes[j] {
			return sn.changed()
		}
		sn.win = append(sn.win, v)
		j++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if j != i+count {
		return sn.changed()
	}
	return nil
}

// spillAll streams every value into an unlinked temporary file.
func (sn *sqlSnapshot) spillAll() error {
	f, err := os.CreateTemp("", "backflow-state-*")
	if err != nil {
		return err
	}
	_ = os.Remove(f.Name()) // unlinked: gone with the process, however it ends
	sn.spill = f
	sn.win = nil
	ctx, cancel := context.WithTimeout(context.Background(), sn.b.timeout)
	defer cancel()
	rows, err := sn.b.db.QueryContext(ctx, sn.b.q(`SELECT k, hash, vals FROM {snapshot} WHERE sync_id = ? ORDER BY k`), sn.syncID)
	if err != nil {
		return err
	}
	defer rows.Close()
	w := &countingWriter{w: f}
	buf := make([]byte, 0, 1<<20)
	sn.spillOff = make([]uint64, 1, sn.idx.n+1)
	var k, v sql.RawBytes
	var h int64
	j := 0
	for rows.Next() {
		if err := rows.Scan(&k, &h, &v); err != nil {
			return err
		}
		if j >= sn.idx.n || !bytes.Equal(k, sn.idx.key(j)) || uint64(h) != sn.idx.hashes[j] {
			return sn.changed()
		}
		buf = append(buf, v...)
		if len(buf) >= 1<<20 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
		sn.spillOff = append(sn.spillOff, w.n+uint64(len(buf)))
		j++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if j != sn.idx.n {
		return sn.changed()
	}
	_, err = w.Write(buf)
	return err
}

type countingWriter struct {
	w io.Writer
	n uint64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += uint64(n)
	return n, err
}

func (sn *sqlSnapshot) readSpill(i int) ([]byte, error) {
	off, end := sn.spillOff[i], sn.spillOff[i+1]
	buf := make([]byte, end-off)
	if _, err := sn.spill.ReadAt(buf, int64(off)); err != nil {
		return nil, err
	}
	return buf, nil
}

// Close implements SnapshotReader: it drops the values read.
func (sn *sqlSnapshot) Close() error {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	sn.closed, sn.win = true, nil
	if sn.spill != nil {
		sn.spill.Close()
		sn.spill = nil
	}
	return nil
}

// hashOf returns the hash of key i of any snapshot reader.
func hashOf(sn SnapshotReader, i int) uint64 {
	if h, ok := sn.(interface{ Hash(int) uint64 }); ok {
		return h.Hash(i)
	}
	_, hash, _ := sn.Lookup(sn.Key(i))
	return hash
}
