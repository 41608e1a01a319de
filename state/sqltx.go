package state

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync"
	"time"
)

// sqlTx records one apply of one sync in a database. Outcomes are kept in
// memory until the next Checkpoint, which writes them in one transaction;
// InFlight commits before it returns. A sqlTx is safe for concurrent use.
type sqlTx struct {
	b    *sqlBackend
	sync string

	flushMu sync.Mutex // held while a transaction writes (taken before mu)
	syncID  int64      // 0 until the sync has a row; guarded by flushMu

	mu       sync.Mutex
	failures FailureIndex        // as recorded so far
	inflight map[string]inFlight // sent, no outcome recorded yet
	p        *pendingOps         // recorded since the last checkpoint
	err      error               // sticky: the writer is unusable after an error
	done     bool
}

// pendingOps are the changes of one checkpoint, the last per key and table.
type pendingOps struct {
	reset   bool
	snapIdx map[string]int
	snap    []snapOp
	failIdx map[string]int
	fail    []failOp
	flight  map[string]flightOp
}

type snapOp struct {
	key  string
	del  bool
	hash uint64
	vals []byte
}

type failOp struct {
	key string
	del bool
	f   Failure
}

type flightOp struct {
	del bool
	m   inFlight
}

func newPending() *pendingOps {
	return &pendingOps{snapIdx: map[string]int{}, failIdx: map[string]int{}, flight: map[string]flightOp{}}
}

func (p *pendingOps) setSnap(op snapOp) {
	if i, ok := p.snapIdx[op.key]; ok {
		p.snap[i] = op
		return
	}
	p.snapIdx[op.key] = len(p.snap)
	p.snap = append(p.snap, op)
}

func (p *pendingOps) setFail(op failOp) {
	if i, ok := p.failIdx[op.key]; ok {
		p.fail[i] = op
		return
	}
	p.failIdx[op.key] = len(p.fail)
	p.fail = append(p.fail, op)
}

func (p *pendingOps) empty() bool {
	return !p.reset && len(p.snap) == 0 && len(p.fail) == 0 && len(p.flight) == 0
}

// Begin implements Writer: serial +1; with reset, the snapshot and failure
// index start empty (from the first checkpoint on). Records a crashed
// apply left in flight become failure entries whose outcome is unknown.
func (b *sqlBackend) Begin(sync string, reset bool) (Tx, error) {
	if err := checkName(sync); err != nil {
		return nil, err
	}
	if err := b.ensure(); err != nil {
		return nil, err
	}
	ctx, cancel := b.opCtx()
	defer cancel()
	w := &sqlTx{b: b, sync: sync, failures: FailureIndex{}, inflight: map[string]inFlight{}, p: newPending()}
	var carried map[string]inFlight
	what := "begin sync " + sync
	err := b.readTx(ctx, what, func(tx *sql.Tx) error {
		id, err := b.syncID(ctx, tx, sync)
		if err != nil || id == 0 {
			return err
		}
		w.syncID = id
		if err := b.readFailures(ctx, tx, id, w.failures); err != nil {
			return err
		}
		carried, err = b.readInFlight(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, k := range slices.Sorted(mapKeys(carried)) {
		f := unknownFailure(k, carried[k], w.failures[k])
		w.failures[k] = f
		w.p.setFail(failOp{key: k, f: *f})
		w.p.flight[k] = flightOp{del: true}
	}
	if reset {
		clear(w.failures)
		w.p = newPending()
		w.p.reset = true
	}
	err = b.writeTx(ctx, what, func(tx *sql.Tx) error {
		if err := b.checkHeld(ctx, tx, sync); err != nil {
			return err
		}
		return b.bumpSerial(ctx, tx)
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

// usable reports whether records may be added; w.mu is held.
func (w *sqlTx) usable() bool {
	if w.done && w.err == nil {
		w.err = errWriterDone
	}
	return w.err == nil
}

// checkKey refuses a key the database cannot index; w.mu is held.
func (w *sqlTx) checkKey(key string) bool {
	if len(key) > MaxSQLKeyBytes {
		w.err = fmt.Errorf("sync %s: key %.40q… is %d bytes long; the database state backends store keys of up to %d bytes (the local folder has no limit)",
			w.sync, key, len(key), MaxSQLKeyBytes)
		return false
	}
	return true
}

// resolve records that key has an outcome; w.mu is held.
func (w *sqlTx) resolve(key string) {
	if _, ok := w.inflight[key]; ok {
		delete(w.inflight, key)
		w.p.flight[key] = flightOp{del: true}
	}
}

// dropFailure removes key from the failure index; w.mu is held.
func (w *sqlTx) dropFailure(key string) {
	if _, ok := w.failures[key]; ok {
		delete(w.failures, key)
		w.p.setFail(failOp{key: key, del: true})
	}
}

// Accept implements Tx.
func (w *sqlTx) Accept(key string, hash uint64, values map[string]any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.usable() || !w.checkKey(key) {
		return
	}
	vals, err := appendNamedValues(nil, values)
	if err != nil {
		w.err = fmt.Errorf("sync %s: accept %q: %w", w.sync, key, err)
		return
	}
	w.p.setSnap(snapOp{key: key, hash: hash, vals: vals})
	w.dropFailure(key)
	w.resolve(key)
}

// Forget implements Tx.
func (w *sqlTx) Forget(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.usable() || !w.checkKey(key) {
		return
	}
	w.p.setSnap(snapOp{key: key, del: true})
	w.dropFailure(key)
	w.resolve(key)
}

// Fail implements Tx: attempts and the first failure time accumulate onto
// the key's entry; its snapshot entry is untouched.
func (w *sqlTx) Fail(f Failure) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.usable() || !w.checkKey(f.Key) {
		return
	}
	entry := f
	if old, ok := w.failures[f.Key]; ok {
		entry.Attempts = old.Attempts + f.Attempts
		entry.FirstFailed = old.FirstFailed
	}
	w.failures[f.Key] = &entry
	w.p.setFail(failOp{key: f.Key, f: entry})
	w.resolve(f.Key)
}

// InFlight implements Tx: the records, and everything recorded before
// them, are committed before it returns.
func (w *sqlTx) InFlight(recs []InFlightRecord) error {
	w.mu.Lock()
	if !w.usable() {
		err := w.err
		w.mu.Unlock()
		return err
	}
	at := time.Now().UTC()
	for _, r := range recs {
		if !w.checkKey(r.Key) {
			err := w.err
			w.mu.Unlock()
			return err
		}
		m := inFlight{op: r.Operation, at: at}
		w.inflight[r.Key] = m
		w.p.flight[r.Key] = flightOp{m: m}
	}
	w.mu.Unlock()
	return w.Checkpoint()
}

// Checkpoint implements Tx: one transaction with everything recorded since
// the last one. After a failed Checkpoint the writer is unusable; what
// earlier checkpoints wrote stays.
func (w *sqlTx) Checkpoint() error {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.mu.Lock()
	if !w.usable() {
		err := w.err
		w.mu.Unlock()
		return err
	}
	p := w.p
	if p.empty() && w.syncID != 0 {
		w.mu.Unlock()
		return nil
	}
	w.p = newPending()
	w.mu.Unlock()
	if err := w.flush(p, false); err != nil {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.err == nil {
			w.err = fmt.Errorf("sync %s: checkpoint: %w", w.sync, err)
		}
		return w.err
	}
	return nil
}

// Commit implements Tx: records still in flight become failure entries
// whose outcome is unknown, the last changes are written and the serial
// incremented, in one transaction. The writer is finished afterwards.
func (w *sqlTx) Commit() error {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.usable() {
		return w.err
	}
	for _, k := range slices.Sorted(mapKeys(w.inflight)) {
		f := unknownFailure(k, w.inflight[k], w.failures[k])
		w.failures[k] = f
		w.p.setFail(failOp{key: k, f: *f})
		w.p.flight[k] = flightOp{del: true}
	}
	clear(w.inflight)
	p := w.p
	w.p, w.done = newPending(), true
	if err := w.flush(p, true); err != nil {
		w.err = fmt.Errorf("sync %s: commit: %w", w.sync, err)
		return w.err
	}
	return nil
}

// Abort implements Tx: what was checkpointed stays; the rest is dropped.
func (w *sqlTx) Abort() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	return nil
}

// flush writes p in one transaction (and, for a commit, increments the
// serial); w.flushMu is held.
func (w *sqlTx) flush(p *pendingOps, commit bool) error {
	b := w.b
	ctx, cancel := b.opCtx()
	defer cancel()
	id := w.syncID
	err := b.writeTx(ctx, "save the state of sync "+w.sync, func(tx *sql.Tx) error {
		if err := b.checkHeld(ctx, tx, w.sync); err != nil {
			return err
		}
		if id == 0 {
			var err error
			if id, err = b.createSync(ctx, tx, w.sync); err != nil {
				return err
			}
		}
		if p.reset {
			for _, t := range []string{"snapshot", "failures", "inflight"} {
				if _, err := tx.ExecContext(ctx, b.q(`DELETE FROM {`+t+`} WHERE sync_id = ?`), id); err != nil {
					return err
				}
			}
		}
		if err := w.writeFlight(ctx, tx, id, p); err != nil {
			return err
		}
		if err := w.writeSnapshot(ctx, tx, id, p); err != nil {
			return err
		}
		if err := w.writeFailures(ctx, tx, id, p); err != nil {
			return err
		}
		if commit {
			return b.bumpSerial(ctx, tx)
		}
		return nil
	})
	if err == nil {
		w.syncID = id
	}
	return err
}

func (w *sqlTx) writeFlight(ctx context.Context, tx *sql.Tx, id int64, p *pendingOps) error {
	var del, add []string
	for k, op := range p.flight {
		if op.del {
			del = append(del, k)
		} else {
			add = append(add, k)
		}
	}
	if err := w.b.deleteKeys(ctx, tx, "inflight", id, del); err != nil {
		return err
	}
	return w.b.insert(ctx, tx, bulkInsert{table: "inflight", cols: []string{"sync_id", "k", "operation", "sent_at"},
		kinds: []colKind{colInt, colBytes, colText, colTime}, key: []string{"sync_id", "k"}, update: []string{"operation", "sent_at"}},
		len(add), func(i int, dst []any) {
			m := p.flight[add[i]].m
			dst[0], dst[1], dst[2], dst[3] = id, []byte(add[i]), sanitizeText(m.op), dbTime(m.at)
		})
}

func (w *sqlTx) writeSnapshot(ctx context.Context, tx *sql.Tx, id int64, p *pendingOps) error {
	var del []string
	var put []*snapOp
	for i := range p.snap {
		if op := &p.snap[i]; op.del {
			del = append(del, op.key)
		} else {
			put = append(put, op)
		}
	}
	if err := w.b.deleteKeys(ctx, tx, "snapshot", id, del); err != nil {
		return err
	}
	return w.b.insert(ctx, tx, bulkInsert{table: "snapshot", cols: []string{"sync_id", "k", "hash", "vals"},
		kinds: []colKind{colInt, colBytes, colInt, colBytes}, key: []string{"sync_id", "k"}, update: []string{"hash", "vals"}},
		len(put), func(i int, dst []any) {
			op := put[i]
			dst[0], dst[1], dst[2], dst[3] = id, []byte(op.key), int64(op.hash), op.vals
		})
}

func (w *sqlTx) writeFailures(ctx context.Context, tx *sql.Tx, id int64, p *pendingOps) error {
	var del []string
	var put []*Failure
	for i := range p.fail {
		if op := &p.fail[i]; op.del {
			del = append(del, op.key)
		} else {
			put = append(put, &op.f)
		}
	}
	if err := w.b.deleteKeys(ctx, tx, "failures", id, del); err != nil {
		return err
	}
	return w.b.insertFailures(ctx, tx, id, put, true)
}

var failureCols = bulkInsert{table: "failures", cols: []string{"sync_id", "k", "operation", "error", "attempts", "first_failed", "last_failed", "unknown"},
	kinds: []colKind{colInt, colBytes, colText, colText, colInt, colTime, colTime, colBool}}

// insertFailures writes failure entries (upsert: replacing those of the
// same keys).
func (b *sqlBackend) insertFailures(ctx context.Context, tx *sql.Tx, id int64, fs []*Failure, upsert bool) error {
	bi := failureCols
	if upsert {
		bi.key = []string{"sync_id", "k"}
		bi.update = []string{"operation", "error", "attempts", "first_failed", "last_failed", "unknown"}
	}
	return b.insert(ctx, tx, bi, len(fs), func(i int, dst []any) {
		f := fs[i]
		dst[0], dst[1], dst[2], dst[3] = id, []byte(f.Key), sanitizeText(f.Operation), sanitizeText(f.Error)
		dst[4], dst[5], dst[6], dst[7] = int64(f.Attempts), dbTime(f.FirstFailed), dbTime(f.LastFailed), f.Unknown
	})
}

// dbTime is t as the database keeps it: UTC, to the microsecond.
func dbTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
