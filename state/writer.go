package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

var errWriterDone = errors.New("state: sync writer used after Commit or Abort")

// Begin starts recording a sync's results (serial +1). With reset, the
// snapshot and failure index start empty (reset-cdc) instead of from the
// current state.
//
// The caller holds the Lock. A journal left by an interrupted apply is
// carried over: its results are part of the starting state, and this
// writer's records are appended to it, so a second crash loses neither.
func (s *Store) Begin(sync string, reset bool) (*SyncWriter, error) {
	if err := checkName(sync); err != nil {
		return nil, err
	}
	dir := s.syncDir(sync)
	base, err := openSnapshot(filepath.Join(dir, snapshotFile))
	if err != nil {
		return nil, err
	}
	w := &SyncWriter{store: s, sync: sync, dir: dir, base: base, fields: newFieldTable(base.fields)}
	if err := w.start(reset); err != nil {
		_ = base.Close()
		return nil, fmt.Errorf("begin sync %s: %w", sync, err)
	}
	return w, nil
}

func (w *SyncWriter) start(reset bool) error {
	var err error
	if w.failures, err = readFailures(filepath.Join(w.dir, failuresFile)); err != nil {
		return err
	}
	path := filepath.Join(w.dir, journalFile)
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	valid, err := scanJournal(data, (&replayer{fields: w.fields, failures: w.failures}).apply)
	if err != nil {
		return err
	}
	if valid < len(data) {
		// Cut the torn tail so that appended records follow intact ones.
		if err := truncateDurably(path, int64(valid)); err != nil {
			return err
		}
	}
	if valid == 0 {
		w.log = append(w.log, journalMagic...)
	} else {
		w.log = data[:valid]
		w.flushed = valid
	}
	if reset {
		clear(w.failures)
		var start int
		w.log, start = beginRecord(w.log, recReset)
		w.log = endRecord(w.log, start)
	}
	return w.store.bumpSerial()
}

func truncateDurably(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// usable reports whether records may be added; w.mu is held.
func (w *SyncWriter) usable() bool {
	if w.done && w.err == nil {
		w.err = errWriterDone
	}
	return w.err == nil
}

// Accept records that key was written with these mapped values.
//
// Values of an unsupported type make the writer fail: Checkpoint and
// Commit return the error.
func (w *SyncWriter) Accept(key string, hash uint64, values map[string]any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.usable() {
		return
	}
	w.names = w.names[:0]
	for name := range values {
		w.names = append(w.names, name)
		if _, ok := w.fields.ids[name]; !ok {
			id := uint64(len(w.fields.names))
			_ = w.fields.define(id, name) // the next id: cannot fail
			var start int
			w.log, start = beginRecord(w.log, recField)
			w.log = binary.AppendUvarint(w.log, id)
			w.log = append(w.log, name...)
			w.log = endRecord(w.log, start)
		}
	}
	slices.Sort(w.names)
	log, start := beginRecord(w.log, recAccept)
	log = appendBytes(log, key)
	log = binary.LittleEndian.AppendUint64(log, hash)
	log = binary.AppendUvarint(log, uint64(len(w.names)))
	for _, name := range w.names {
		log = binary.AppendUvarint(log, w.fields.ids[name])
		var err error
		if log, err = appendValue(log, values[name]); err != nil {
			w.log = log[:start] // drop the partial record
			w.err = fmt.Errorf("sync %s: accept %q: field %s: %w", w.sync, key, name, err)
			return
		}
	}
	w.log = endRecord(log, start)
	delete(w.failures, key)
}

// Forget records that key left the destination (or is no longer tracked):
// it is dropped from the snapshot and the failure index.
func (w *SyncWriter) Forget(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.usable() {
		return
	}
	var start int
	w.log, start = beginRecord(w.log, recForget)
	w.log = appendBytes(w.log, key)
	w.log = endRecord(w.log, start)
	delete(w.failures, key)
}

// Fail records a rejection. Attempts and FirstFailed accumulate onto an
// existing entry for the key; f.Attempts is this run's count.
//
// The key's snapshot entry is untouched, so it stays pending.
func (w *SyncWriter) Fail(f Failure) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.usable() {
		return
	}
	entry := f
	if old, ok := w.failures[f.Key]; ok {
		entry.Attempts = old.Attempts + f.Attempts
		entry.FirstFailed = old.FirstFailed
	}
	w.failures[f.Key] = &entry
	var start int
	w.log, start = beginRecord(w.log, recFail)
	w.log = appendFailure(w.log, &entry)
	w.log = endRecord(w.log, start)
}

// Checkpoint makes everything recorded so far durable (journal append and
// fsync), so that a crash loses none of it.
//
// After a failed Checkpoint the writer is unusable (the journal's tail may
// be torn); checkpointed results survive in the journal.
func (w *SyncWriter) Checkpoint() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.usable() {
		return w.err
	}
	if err := w.checkpoint(); err != nil {
		w.err = fmt.Errorf("sync %s: checkpoint: %w", w.sync, err)
		return w.err
	}
	return nil
}

func (w *SyncWriter) checkpoint() error {
	if w.flushed == len(w.log) {
		return nil
	}
	created := false
	if w.journal == nil {
		if err := mkdirDurable(w.dir); err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(w.dir, journalFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, filePerm)
		if err != nil {
			return err
		}
		w.journal, created = f, w.flushed == 0
	}
	if _, err := w.journal.Write(w.log[w.flushed:]); err != nil {
		return err
	}
	if err := w.journal.Sync(); err != nil {
		return err
	}
	if created {
		if err := syncDir(w.dir); err != nil {
			return err
		}
	}
	w.flushed = len(w.log)
	return nil
}

// Commit writes the new snapshot and failure index atomically, removes the
// journal and increments the serial.
//
// The new snapshot is the old one merged, in key order, with the accepted
// and forgotten keys; kept keys' values are copied without decoding. The
// writer is finished afterwards, whatever the outcome; after a failed Commit
// the journal (as far as checkpointed) still holds the results.
func (w *SyncWriter) Commit() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.usable() {
		return w.err
	}
	err := w.commit()
	if cerr := w.close(); err == nil {
		err = cerr
	}
	if err != nil {
		w.err = fmt.Errorf("sync %s: commit: %w", w.sync, err)
		return w.err
	}
	return nil
}

func (w *SyncWriter) commit() error {
	// Journal everything first: the snapshot and the failure index are
	// replaced by two renames, and a crash between them must find the
	// journal that makes them agree again.
	if err := w.checkpoint(); err != nil {
		return err
	}
	ch := &changes{log: w.log}
	if _, err := scanJournal(w.log, (&replayer{changes: ch}).apply); err != nil {
		return err
	}
	// An unchanged snapshot is not rewritten, unless it has no file yet
	// (a sync applied once has state, even if empty).
	if ch.reset || len(ch.entries) > 0 || w.base.f == nil {
		ch.sortLatest()
		if err := writeSnapshot(w.dir, w.base, ch, w.fields.names); err != nil {
			return err
		}
	}
	if err := writeFailures(w.dir, w.failures); err != nil {
		return err
	}
	if err := removeDurably(filepath.Join(w.dir, journalFile)); err != nil {
		return err
	}
	return w.store.bumpSerial()
}

// Abort discards nothing durable: checkpointed results stay in the journal
// and are seen by the next load. It releases the writer's files.
func (w *SyncWriter) Abort() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil
	}
	return w.close()
}

// close releases the writer's files; w.mu is held.
func (w *SyncWriter) close() error {
	w.done = true
	err := w.base.Close()
	if w.journal != nil {
		if cerr := w.journal.Close(); err == nil {
			err = cerr
		}
		w.journal = nil
	}
	w.log = nil
	return err
}

// Failures returns a copy of the failure index as recorded so far.
func (w *SyncWriter) Failures() FailureIndex {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(FailureIndex, len(w.failures))
	for k, f := range w.failures {
		c := *f
		out[k] = &c
	}
	return out
}
