package state

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/backflowhq/backflow/internal/crashpoint"
)

// sqlTx records one apply of one sync in a database. Outcomes are
// collected in memory, the last per key and table, and written into a
// transaction of the writer's own whenever they fill a batch (sqlBatchOps
// changes or sqlBatchBytes of values), in the background while recording
// goes on: memory holds two batches at most, whatever the number of
// changes between checkpoints (a reset-cdc is one). The next Checkpoint writes the rest into that transaction and commits it,
// so a checkpoint is still all or nothing and nothing of it is visible
// before its commit: an Abort, an error or a crash (the database ends the
// session's transaction) leaves the state of the previous checkpoint.
// InFlight commits before it returns. A sqlTx is safe for concurrent use.
//
// Records in flight are written one row per request (InFlight call): a
// row holds the records of the request still waiting for an outcome, is
// rewritten when some of them get one (a split retry), and deleted when
// all have.
type sqlTx struct {
	b    *sqlBackend
	sync string

	flushMu sync.Mutex // held while a transaction writes (taken before mu)
	syncID  int64      // 0 until the sync has a row committed; guarded by flushMu

	// The transaction batches were written into, not yet committed (nil
	// when none); guarded by flushMu.
	open       *sql.Tx
	openCancel context.CancelFunc
	openID     int64 // the sync's id in open (created there when it had none)
	batches    int   // batches written into open

	mu       sync.Mutex
	failures FailureIndex         // as recorded so far
	inflight map[string]flightRef // sent, no outcome recorded yet
	reqs     map[int64]*flightReq // requests with records in flight, or with a row to delete
	dirty    map[int64]bool       // requests whose row changes at the next checkpoint
	p        *pendingOps          // recorded since the last checkpoint
	err      error                // sticky: the writer is unusable after an error
	done     bool
}

// flightRef is a record in flight and the request it was sent in.
type flightRef struct {
	inFlight
	req int64
}

// flightReq is a request whose records were announced in flight.
type flightReq struct {
	id    int64
	at    time.Time
	recs  []InFlightRecord
	saved bool // it has a row
}

// pendingOps are changes not yet written, the last per key and table.
type pendingOps struct {
	reset   bool
	snapIdx map[string]int
	snap    []snapOp
	failIdx map[string]int
	fail    []failOp
	flight  []reqWrite
	size    int // bytes held, roughly (a replaced change still counts)
}

// A sqlTx writes its changes into its transaction once this many are
// held, or this many bytes (variables: tests lower them).
var (
	sqlBatchOps   = 5000
	sqlBatchBytes = 2 << 20
)

// opOverhead is what a change costs beside its key and values: the index
// entry and the slice element, roughly.
const opOverhead = 96

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

// reqWrite is a change to an in-flight request's row.
type reqWrite struct {
	id     int64
	at     time.Time
	recs   []byte // packed records; nil: delete the row
	update bool   // the row exists: replace its records
}

func newPending() *pendingOps {
	return &pendingOps{snapIdx: map[string]int{}, failIdx: map[string]int{}}
}

func (p *pendingOps) setSnap(op snapOp) {
	p.size += len(op.key) + len(op.vals) + opOverhead
	if i, ok := p.snapIdx[op.key]; ok {
		p.snap[i] = op
		return
	}
	p.snapIdx[op.key] = len(p.snap)
	p.snap = append(p.snap, op)
}

func (p *pendingOps) setFail(op failOp) {
	p.size += len(op.key) + len(op.f.Operation) + len(op.f.Error) + opOverhead
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

// full reports whether p holds a batch.
func (p *pendingOps) full() bool {
	return len(p.snap)+len(p.fail) >= sqlBatchOps || p.size >= sqlBatchBytes
}

// packRecords encodes records in flight: uvarint(count), then per record
// its operation and key, each uvarint(len) and bytes.
func packRecords(recs []InFlightRecord) []byte {
	out := binary.AppendUvarint(nil, uint64(len(recs)))
	for _, r := range recs {
		out = appendBytes(out, r.Operation)
		out = appendBytes(out, r.Key)
	}
	return out
}

func unpackRecords(b []byte) ([]InFlightRecord, error) {
	d := decoder{b: b}
	n := d.uvarint()
	if d.bad || n > uint64(len(b)) {
		return nil, errBadRecord
	}
	out := make([]InFlightRecord, 0, n)
	for range n {
		op := d.bytes()
		key := d.bytes()
		if d.bad {
			return nil, errBadRecord
		}
		out = append(out, InFlightRecord{Key: string(key), Operation: string(op)})
	}
	if len(d.b) != 0 {
		return nil, errBadRecord
	}
	return out, nil
}

// settleRequests turns the requests changed since the last checkpoint into
// row writes; w.mu is held.
func (w *sqlTx) settleRequests(p *pendingOps) {
	for id := range w.dirty {
		r := w.reqs[id]
		var live []InFlightRecord
		for _, rec := range r.recs {
			if ref, ok := w.inflight[rec.Key]; ok && ref.req == id {
				live = append(live, rec)
			}
		}
		switch {
		case len(live) == 0:
			if r.saved {
				p.flight = append(p.flight, reqWrite{id: id})
			}
			delete(w.reqs, id)
		default:
			p.flight = append(p.flight, reqWrite{id: id, at: r.at, recs: packRecords(live), update: r.saved})
			r.recs, r.saved = live, true
		}
	}
	clear(w.dirty)
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
	w := &sqlTx{b: b, sync: sync, failures: FailureIndex{}, inflight: map[string]flightRef{}, reqs: map[int64]*flightReq{},
		dirty: map[int64]bool{}, p: newPending()}
	var carried []*flightReq
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
		carried, err = b.readRequests(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	// Records a crashed apply left in flight: failure entries now, and
	// their rows go at the first checkpoint.
	unknown := map[string]inFlight{}
	for _, r := range carried {
		w.reqs[r.id], w.dirty[r.id] = r, true
		for _, rec := range r.recs {
			if old, ok := unknown[rec.Key]; !ok || r.at.After(old.at) {
				unknown[rec.Key] = inFlight{op: rec.Operation, at: r.at}
			}
		}
	}
	for _, k := range slices.Sorted(mapKeys(unknown)) {
		f := unknownFailure(k, unknown[k], w.failures[k])
		w.failures[k] = f
		w.p.setFail(failOp{key: k, f: *f})
	}
	if reset {
		clear(w.failures)
		w.p = newPending()
		w.p.reset = true // deletes the in-flight rows too
		clear(w.reqs)
		clear(w.dirty)
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
	if ref, ok := w.inflight[key]; ok {
		delete(w.inflight, key)
		w.dirty[ref.req] = true
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
	if !w.usable() || !w.checkKey(key) {
		w.mu.Unlock()
		return
	}
	vals, err := appendNamedValues(nil, values)
	if err != nil {
		w.err = fmt.Errorf("sync %s: accept %q: %w", w.sync, key, err)
		w.mu.Unlock()
		return
	}
	w.p.setSnap(snapOp{key: key, hash: hash, vals: vals})
	w.dropFailure(key)
	w.resolve(key)
	w.unlockAndSpill()
}

// Forget implements Tx.
func (w *sqlTx) Forget(key string) {
	w.mu.Lock()
	if !w.usable() || !w.checkKey(key) {
		w.mu.Unlock()
		return
	}
	w.p.setSnap(snapOp{key: key, del: true})
	w.dropFailure(key)
	w.resolve(key)
	w.unlockAndSpill()
}

// Fail implements Tx: attempts and the first failure time accumulate onto
// the key's entry; its snapshot entry is untouched.
func (w *sqlTx) Fail(f Failure) {
	w.mu.Lock()
	if !w.usable() || !w.checkKey(f.Key) {
		w.mu.Unlock()
		return
	}
	entry := f
	if old, ok := w.failures[f.Key]; ok {
		entry.Attempts = old.Attempts + f.Attempts
		entry.FirstFailed = old.FirstFailed
		// A send whose outcome is unknown may have written the record;
		// a refused attempt since leaves it there.
		entry.Unknown = entry.Unknown || old.Unknown
	}
	w.failures[f.Key] = &entry
	w.p.setFail(failOp{key: f.Key, f: entry})
	w.resolve(f.Key)
	w.unlockAndSpill()
}

// unlockAndSpill releases w.mu (held) and, when the changes held fill a
// batch, writes them into the writer's transaction in the background:
// recording goes on meanwhile, and waits only when a second batch fills
// before the first is written, so memory holds two batches at most.
// Checkpoint, Commit and Abort wait for a batch being written (they take
// flushMu, which the write holds).
func (w *sqlTx) unlockAndSpill() {
	full := w.p.full()
	w.mu.Unlock()
	if !full {
		return
	}
	w.flushMu.Lock() // waits for the batch or checkpoint being written
	w.mu.Lock()
	if w.err != nil || w.done || !w.p.full() { // written meanwhile
		w.mu.Unlock()
		w.flushMu.Unlock()
		return
	}
	p := w.p
	w.p = newPending()
	w.mu.Unlock()
	go func() {
		defer w.flushMu.Unlock()
		if err := w.writeBatch(p); err != nil {
			w.mu.Lock()
			if w.err == nil {
				w.err = fmt.Errorf("sync %s: save changes: %w", w.sync, err)
			}
			w.mu.Unlock()
		}
	}()
}

// Unsent implements Tx: the records leave their requests' rows at the
// next checkpoint, with no outcome recorded.
func (w *sqlTx) Unsent(keys []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.usable() {
		return
	}
	for _, k := range keys {
		w.resolve(k)
	}
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
	for _, r := range recs {
		if !w.checkKey(r.Key) {
			err := w.err
			w.mu.Unlock()
			return err
		}
	}
	req := &flightReq{id: rand.Int64(), at: time.Now().UTC(), recs: slices.Clone(recs)}
	for w.reqs[req.id] != nil {
		req.id = rand.Int64()
	}
	w.reqs[req.id], w.dirty[req.id] = req, true
	for _, r := range recs {
		if old, ok := w.inflight[r.Key]; ok {
			w.dirty[old.req] = true // sent again: it leaves its earlier request
		}
		w.inflight[r.Key] = flightRef{inFlight: inFlight{op: r.Operation, at: req.at}, req: req.id}
	}
	w.mu.Unlock()
	return w.Checkpoint()
}

// Checkpoint implements Tx: everything recorded since the last one, in
// one transaction (the batches already written into it, then the rest).
// After a failed Checkpoint the writer is unusable; what earlier
// checkpoints wrote stays.
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
	w.settleRequests(p)
	if p.empty() && w.syncID != 0 && w.open == nil {
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
		w.rollback()
		return w.err
	}
	for _, k := range slices.Sorted(mapKeys(w.inflight)) {
		ref := w.inflight[k]
		f := unknownFailure(k, ref.inFlight, w.failures[k])
		w.failures[k] = f
		w.p.setFail(failOp{key: k, f: *f})
		w.dirty[ref.req] = true
	}
	clear(w.inflight)
	w.settleRequests(w.p)
	p := w.p
	w.p, w.done = newPending(), true
	if err := w.flush(p, true); err != nil {
		w.err = fmt.Errorf("sync %s: commit: %w", w.sync, err)
		return w.err
	}
	return nil
}

// Abort implements Tx: what was checkpointed stays; the rest is dropped
// (batches written since the last checkpoint are rolled back).
func (w *sqlTx) Abort() error {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.mu.Lock()
	w.done, w.p = true, newPending()
	w.mu.Unlock()
	w.rollback()
	return nil
}

// StillHeld implements LockChecker.
func (w *sqlTx) StillHeld(ctx context.Context, maxAge time.Duration) error {
	return w.b.stillHeld(ctx, w.sync, maxAge)
}

// begin opens the writer's transaction, checking that the sync's lock is
// still held and giving the sync a row when it has none; w.flushMu is
// held.
func (w *sqlTx) begin() error {
	b := w.b
	// The transaction lives until its commit or rollback; each statement
	// has its own bound (opCtx).
	tctx, cancel := context.WithCancel(context.Background())
	var opts *sql.TxOptions
	if !b.pg {
		opts = &sql.TxOptions{Isolation: sql.LevelReadCommitted} // see writeTx
	}
	tx, err := b.db.BeginTx(tctx, opts)
	if err != nil {
		cancel()
		return err
	}
	ctx, done := b.opCtx()
	defer done()
	id := w.syncID
	err = b.checkHeld(ctx, tx, w.sync)
	if err == nil && id == 0 {
		id, err = b.createSync(ctx, tx, w.sync)
	}
	if err != nil {
		tx.Rollback()
		cancel()
		return err
	}
	w.open, w.openCancel, w.openID, w.batches = tx, cancel, id, 0
	return nil
}

// rollback ends the writer's transaction, if open, writing nothing;
// w.flushMu is held.
func (w *sqlTx) rollback() {
	if w.open != nil {
		w.open.Rollback()
		w.openCancel()
		w.open, w.openCancel = nil, nil
	}
}

// writeBatch writes p into the writer's transaction, opening it, without
// committing; w.flushMu is held. After an error the transaction is rolled
// back.
func (w *sqlTx) writeBatch(p *pendingOps) error {
	if err := w.write(p); err != nil {
		return w.b.fail("save the state of sync "+w.sync, err)
	}
	crashpoint.Hit("sql.batch") // a batch written, its checkpoint not committed
	return nil
}

// write writes p into the writer's transaction, opening it; w.flushMu is
// held. After an error the transaction is rolled back.
func (w *sqlTx) write(p *pendingOps) error {
	if w.open == nil {
		if err := w.begin(); err != nil {
			return err
		}
	}
	ctx, cancel := w.b.opCtx()
	defer cancel()
	err := w.writeOps(ctx, w.open, w.openID, p)
	if err != nil {
		w.rollback()
		return err
	}
	w.batches++
	return nil
}

// flush writes p into the writer's transaction (and, for a commit,
// increments the serial) and commits it; w.flushMu is held.
func (w *sqlTx) flush(p *pendingOps, commit bool) error {
	b := w.b
	what := "save the state of sync " + w.sync
	if err := w.write(p); err != nil {
		return b.fail(what, err)
	}
	ctx, cancel := b.opCtx()
	defer cancel()
	tx := w.open
	err := func() error {
		if w.batches > 1 {
			// Batches were written before: the lock, checked when the
			// transaction began, must still be held as it commits.
			if err := b.checkHeld(ctx, tx, w.sync); err != nil {
				return err
			}
		}
		if commit {
			return b.bumpSerial(ctx, tx)
		}
		return nil
	}()
	if err != nil {
		w.rollback()
		return b.fail(what, err)
	}
	crashpoint.Hit("sql.open") // everything written, the transaction open
	err = tx.Commit()
	crashpoint.Hit("sql.committed")
	w.openCancel()
	w.open, w.openCancel = nil, nil
	if err != nil {
		return b.fail(what, err)
	}
	w.syncID = w.openID
	return nil
}

// writeOps writes p in tx, for the sync of id.
func (w *sqlTx) writeOps(ctx context.Context, tx *sql.Tx, id int64, p *pendingOps) error {
	if p.reset {
		for _, t := range []string{"snapshot", "failures", "inflight"} {
			if _, err := tx.ExecContext(ctx, w.b.q(`DELETE FROM {`+t+`} WHERE sync_id = ?`), id); err != nil {
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
	return w.writeFailures(ctx, tx, id, p)
}

func (w *sqlTx) writeFlight(ctx context.Context, tx *sql.Tx, id int64, p *pendingOps) error {
	b := w.b
	var add []reqWrite
	for _, r := range p.flight {
		var err error
		switch {
		case r.recs == nil:
			_, err = tx.ExecContext(ctx, b.q(`DELETE FROM {inflight} WHERE sync_id = ? AND req = ?`), id, r.id)
		case r.update:
			_, err = tx.ExecContext(ctx, b.q(`UPDATE {inflight} SET recs = ? WHERE sync_id = ? AND req = ?`), r.recs, id, r.id)
		default:
			add = append(add, r)
		}
		if err != nil {
			return err
		}
	}
	return b.insert(ctx, tx, bulkInsert{table: "inflight", cols: []string{"sync_id", "req", "sent_at", "recs"},
		kinds: []colKind{colInt, colInt, colTime, colBytes}}, len(add), func(i int, dst []any) {
		dst[0], dst[1], dst[2], dst[3] = id, add[i].id, dbTime(add[i].at), add[i].recs
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
