package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/backflowhq/backflow/internal/crashpoint"
)

var errWriterDone = errors.New("state: sync writer used after Commit or Abort")

// SyncWriter records the outcome of one apply of one sync.
//
// A SyncWriter is safe for concurrent use. Its memory holds the part of
// the apply's journal not yet in the journal file: frames are appended to
// the file as they fill (made durable by the next Checkpoint), so memory is
// bounded by a few frames whatever the number of records. Commit reads the
// journal back from the file.
type SyncWriter struct {
	// flushMu is held while the journal file is written (taken before mu),
	// so that records can be added during an fsync and concurrent
	// Checkpoints share one write.
	flushMu sync.Mutex
	mu      sync.Mutex

	store *Store
	sync  string
	dir   string
	// changed and changedKeys count the accepts and forgets this writer
	// journaled and the bytes their keys take in a changes index: the
	// capacities commit gives the index it reads back, so that it is not
	// grown (and copied) as it is read.
	changed, changedKeys int
	base                 *Snapshot   // the snapshot file as it was at Begin, without the journal
	fields               *fieldTable // base's field table plus the fields defined since
	failures             FailureIndex
	inflight             flights // sent, no outcome recorded yet

	// log is the journal file's content from offset logOff on: sealed
	// frames not yet written, then the frame being filled (from open on;
	// -1 when none). Offsets below are offsets in the journal file.
	log     []byte
	logOff  int
	written int    // bytes in the journal file
	flushed int    // bytes in the journal file made durable
	sealed  int    // bytes in sealed frames
	ended   int    // bytes in sealed groups (up to the last frame sealed as last)
	open    int    // offset of the open frame's header, or -1
	seq     uint64 // sequence number of the last sealed frame
	group   uint64 // first frame of the group being sealed (0: none yet)
	journal *os.File
	// journalNew is set from the journal file's opening until this
	// writer's first fsync of its directory.
	journalNew bool
	err        error // sticky: the writer is unusable after an error
	done       bool

	names   []string // the sorted field names of the last Accept
	nameIDs []uint64 // and their ids
	// The names of the last AcceptValues as given, the order that sorts
	// them and their ids in that order.
	valNames []string
	valOrder []int
	valIDs   []uint64
}

// InFlightRecord is a record about to be sent: its key and operation.
type InFlightRecord struct {
	Key       string
	Operation string
}

// Begin starts recording a sync's results (serial +1). With reset, the
// snapshot and failure index start empty (reset-cdc) instead of from the
// current state.
//
// The caller holds the Lock. Begin checks the state it builds on (the
// snapshot's every value record, the failure index, the journal, the run
// history and state.json) so that damage stops a run before anything is
// sent. A journal left by an interrupted apply is carried over: its
// results are part of the starting state, records it shows in flight
// without an outcome become failure entries whose outcome is unknown, and
// this writer's records are appended to it, so a second crash loses
// neither.
func (s *Store) Begin(sync string, reset bool) (*SyncWriter, error) {
	if err := checkName(sync); err != nil {
		return nil, err
	}
	if err := s.checkSyncDirs(sync); err != nil {
		return nil, err
	}
	if _, err := s.Meta(); err != nil {
		return nil, err
	}
	if _, err := s.Runs(""); err != nil {
		return nil, err
	}
	dir := s.syncDir(sync)
	base, err := openSnapshot(filepath.Join(dir, snapshotFile))
	if err != nil {
		return nil, fmt.Errorf("begin sync %s: %w", sync, err)
	}
	if !reset { // a reset starts from nothing: base's values are never read
		if err := base.Verify(); err != nil {
			_ = base.Close()
			return nil, fmt.Errorf("begin sync %s: %w", sync, err)
		}
	}
	w := &SyncWriter{store: s, sync: sync, dir: dir, base: base, fields: newFieldTable(base.fields),
		inflight: newFlights(), open: -1}
	if err := w.start(reset); err != nil {
		_ = base.Close()
		return nil, fmt.Errorf("begin sync %s: %w", sync, err)
	}
	return w, nil
}

func (w *SyncWriter) start(reset bool) error {
	fpath := filepath.Join(w.dir, failuresFile)
	failures, fh, err := readFailures(fpath)
	if err != nil {
		return err
	}
	w.failures = failures
	path := filepath.Join(w.dir, journalFile)
	j, err := openJournal(path)
	if err != nil {
		return err
	}
	r := &replayer{fields: w.fields, failures: w.failures, inflight: map[string]inFlight{}}
	js, err := j.scan(path, r.apply)
	_ = j.Close() // read only: its records are replayed (a version 1 journal's bytes kept in j.v1)
	if gerr := checkGenerations(w.dir, w.base.gens(), fh, j != nil, js); gerr != nil {
		return gerr
	}
	if err != nil {
		return err
	}
	size := 0
	if j != nil {
		size = int(j.size)
	}
	if js.hasBase && w.base.f != nil && js.base != w.base.gen {
		// checkGenerations allows only the snapshot's parent here: a commit
		// stopped after replacing the snapshot, so the journal's records
		// are in it already. Appending to that journal would tie this
		// apply's records to the parent, and a stop during this apply's own
		// commit would leave files of three generations.
		if err := w.finishCommit(path, r); err != nil {
			return err
		}
		size, js = 0, journalScan{}
	}
	switch {
	case js.version == 1:
		// Rewritten in the current format before anything is appended.
		if err := w.upgradeJournal(path, j.v1); err != nil {
			return err
		}
	case js.valid < size:
		// Cut the torn tail so that appended frames follow intact ones.
		if err := truncateDurably(path, int64(js.valid)); err != nil {
			return fileErr(err)
		}
		fallthrough
	default:
		// The intact journal stays in its file; frames are appended to it.
		w.logOff, w.written, w.flushed, w.sealed, w.ended, w.seq = js.valid, js.valid, js.valid, js.valid, js.valid, js.seq
	}
	if w.size() == 0 {
		w.log = append(w.log, journalMagic...)
	}
	if !js.hasBase && js.version != 1 {
		start := w.beginRecord(recBase)
		w.log = binary.LittleEndian.AppendUint64(w.log, w.base.gen)
		w.endRecord(start)
	}
	// Records a crashed apply sent without recording an outcome: the
	// destination may have them. They become failure entries, retried by
	// the next plan, and the journal says so too.
	for _, k := range slices.Sorted(mapKeys(r.inflight)) {
		f := unknownFailure(k, r.inflight[k], w.failures[k])
		w.failures[k] = f
		w.appendFail(f)
	}
	if reset {
		clear(w.failures)
		w.endRecord(w.beginRecord(recReset))
	}
	return w.store.bumpSerial()
}

// finishCommit ends a commit that stopped after its snapshot rename, as it
// would have ended: the failure index with the journal's outcomes (r's
// replay, records left in flight becoming unknown outcomes), then the
// journal moved to journal.prev.
func (w *SyncWriter) finishCommit(path string, r *replayer) error {
	for k, m := range r.inflight {
		w.failures[k] = unknownFailure(k, m, w.failures[k])
	}
	clear(r.inflight)
	if err := writeFailures(w.dir, w.failures, w.base.gen); err != nil {
		return fileErr(err)
	}
	if err := os.Rename(path, filepath.Join(w.dir, journalFile+prevSuffix)); err != nil {
		return fileErr(err)
	}
	return syncDir(w.dir)
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// upgradeJournal rewrites a version 1 journal (its intact records) as one
// group of the current format, atomically.
func (w *SyncWriter) upgradeJournal(path string, data []byte) error {
	w.log = append(w.log[:0], journalMagic...)
	start := w.beginRecord(recBase)
	w.log = binary.LittleEndian.AppendUint64(w.log, w.base.gen)
	w.endRecord(start)
	if _, err := scanJournalV1(path, data, func(_ int, rec []byte) error {
		start := w.beginRecord(rec[0])
		w.log = append(w.log, rec[1:]...)
		w.endRecord(start)
		return nil
	}); err != nil {
		return err
	}
	w.sealFrame(true)
	if err := writeFileAtomic(w.dir, journalFile, w.log); err != nil {
		return fileErr(err)
	}
	w.written, w.flushed, w.ended = len(w.log), len(w.log), len(w.log)
	return nil
}

func truncateDurably(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if serr := fsync(f); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// beginRecord starts a record of kind in the open frame (opening one, and
// sealing a full one as part of the group); endRecord finishes it.
func (w *SyncWriter) beginRecord(kind byte) int {
	if w.open >= 0 && w.size()-w.open-frameHeader >= maxFramePayload {
		w.sealFrame(false)
	}
	if w.open < 0 {
		w.open = w.size()
		w.log = append(w.log, make([]byte, frameHeader)...)
	}
	start := w.size()
	w.log = append(w.log, 0, 0, 0, 0, kind)
	return start
}

func (w *SyncWriter) endRecord(start int) {
	binary.LittleEndian.PutUint32(w.log[start-w.logOff:], uint32(w.size()-start-4))
}

// size is the journal's size with everything recorded so far.
func (w *SyncWriter) size() int { return w.logOff + len(w.log) }

// sealFrame fills in the open frame's header; last ends the group.
func (w *SyncWriter) sealFrame(last bool) {
	if w.open < 0 {
		return
	}
	open := w.open - w.logOff
	if last && w.group == 0 && len(w.log) == open+frameHeader {
		w.log, w.open = w.log[:open], -1 // an empty group: nothing to write
		return
	}
	w.seq++
	if w.group == 0 {
		w.group = w.seq
	}
	putFrameHeader(w.log[open:open+frameHeader], w.log[open+frameHeader:], w.seq, w.group, last)
	w.open, w.sealed = -1, w.size()
	if last {
		w.group, w.ended = 0, w.sealed
	}
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
	// The records of a sync mostly have the same fields: the sorted names
	// and their ids of the last record are used again when they fit.
	if !sameNames(values, w.names) {
		w.names = w.names[:0]
		for name := range values {
			w.names = append(w.names, name)
		}
		slices.Sort(w.names)
		w.nameIDs = w.nameIDs[:0]
		for _, name := range w.names {
			w.nameIDs = append(w.nameIDs, w.fieldID(name))
		}
	}
	w.appendAccept(key, hash, w.nameIDs, func(j int) (string, any) { return w.names[j], values[w.names[j]] })
}

// fieldID is the id of the field name, defined (and journaled) if new.
func (w *SyncWriter) fieldID(name string) uint64 {
	if id, ok := w.fields.ids[name]; ok {
		return id
	}
	id := uint64(len(w.fields.names))
	_ = w.fields.define(id, name) // the next id: cannot fail
	start := w.beginRecord(recField)
	w.log = binary.AppendUvarint(w.log, id)
	w.log = append(w.log, name...)
	w.endRecord(start)
	return id
}

// appendAccept journals that key was accepted with len(ids) values, the
// j-th of field ids[j] and given, with its name, by value(j).
func (w *SyncWriter) appendAccept(key string, hash uint64, ids []uint64, value func(j int) (string, any)) {
	start := w.beginRecord(recAccept)
	log := appendBytes(w.log, key)
	log = binary.LittleEndian.AppendUint64(log, hash)
	log = binary.AppendUvarint(log, uint64(len(ids)))
	for j, id := range ids {
		log = binary.AppendUvarint(log, id)
		name, v := value(j)
		var err error
		if log, err = appendValue(log, v); err != nil {
			w.log = log[:start-w.logOff] // drop the partial record
			w.err = fmt.Errorf("sync %s: accept %q: field %s: %w", w.sync, key, name, err)
			return
		}
	}
	w.log = log
	w.endRecord(start)
	w.counted(key)
	delete(w.failures, key)
	w.inflight.settled(key)
	w.spill()
}

// AcceptValues is Accept of the values vals of the fields names (the same
// length, distinct names): what it records is what Accept records of the
// map of them. A caller giving the same names slice every time (and never
// changing it) saves sorting them.
func (w *SyncWriter) AcceptValues(key string, hash uint64, names []string, vals []any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.usable() {
		return
	}
	if len(names) != len(vals) {
		w.err = fmt.Errorf("sync %s: accept %q: %d values for %d fields", w.sync, key, len(vals), len(names))
		return
	}
	if len(names) != len(w.valNames) || (len(names) > 0 && &names[0] != &w.valNames[0]) {
		w.valNames = names
		w.valOrder = w.valOrder[:0]
		for i := range names {
			w.valOrder = append(w.valOrder, i)
		}
		slices.SortFunc(w.valOrder, func(a, b int) int { return strings.Compare(names[a], names[b]) })
		w.valIDs = w.valIDs[:0]
		for _, i := range w.valOrder {
			w.valIDs = append(w.valIDs, w.fieldID(names[i]))
		}
	}
	order := w.valOrder
	w.appendAccept(key, hash, w.valIDs, func(j int) (string, any) { return names[order[j]], vals[order[j]] })
}

// counted counts a change of key journaled (changed, changedKeys).
func (w *SyncWriter) counted(key string) {
	w.changed++
	w.changedKeys += len(key) + 1
	for n := len(key); n >= 0x80; n >>= 7 {
		w.changedKeys++ // the length takes another byte
	}
}

// Forget records that key left the destination (or is no longer tracked):
// it is dropped from the snapshot and the failure index.
func (w *SyncWriter) Forget(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.usable() {
		return
	}
	start := w.beginRecord(recForget)
	w.log = appendBytes(w.log, key)
	w.endRecord(start)
	w.counted(key)
	delete(w.failures, key)
	w.inflight.settled(key)
	w.spill()
}

// Fail records a rejection. Attempts and FirstFailed accumulate onto an
// existing entry for the key, which stays Unknown if it was; f.Attempts is
// this run's count.
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
		// A send whose outcome is unknown may have written the record;
		// a refused attempt since leaves it there.
		entry.Unknown = entry.Unknown || old.Unknown
	}
	w.failures[f.Key] = &entry
	w.appendFail(&entry)
	w.inflight.settled(f.Key)
	w.spill()
}

func (w *SyncWriter) appendFail(f *Failure) {
	start := w.beginRecord(recFail)
	w.log = appendFailure(w.log, f)
	w.endRecord(start)
}

// InFlight records, durably, that these records are about to be sent: a
// crash before their outcomes are recorded leaves them as failure entries
// whose outcome is unknown (Failure.Unknown), so the next plan sends them
// again rather than forgetting them. It returns once the journal is
// fsynced; nothing may be sent if it fails.
func (w *SyncWriter) InFlight(recs []InFlightRecord) error {
	w.mu.Lock()
	if !w.usable() {
		err := w.err
		w.mu.Unlock()
		return err
	}
	now := time.Now().UTC()
	start := w.beginRecord(recInFlight)
	w.log = appendTime(w.log, now)
	w.log = binary.AppendUvarint(w.log, uint64(len(recs)))
	for _, r := range recs {
		w.log = appendBytes(w.log, r.Operation)
		w.log = appendBytes(w.log, r.Key)
		w.inflight.sent(r.Key, r.Operation, now)
	}
	w.endRecord(start)
	w.mu.Unlock()
	return w.Checkpoint()
}

// Unsent records that the destination wrote none of these records in
// flight and said nothing about them (a fatal answer: credentials refused,
// a table missing). They leave the in-flight set without an outcome: they
// stay pending, planned again as they were, rather than becoming failure
// entries whose outcome is unknown. Checkpoint makes it durable.
func (w *SyncWriter) Unsent(keys []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.usable() || len(keys) == 0 {
		return
	}
	start := w.beginRecord(recUnsent)
	w.log = appendKeys(w.log, keys)
	w.endRecord(start)
	for _, k := range keys {
		w.inflight.settled(k)
	}
	w.spill()
}

// Checkpoint makes everything recorded so far durable (journal append and
// fsync), so that a crash loses none of it. The records since the last
// Checkpoint form one group, replayed all or not at all. Concurrent
// Checkpoints share a write; none returns before its records are durable.
//
// After a failed Checkpoint the writer is unusable (the journal's tail may
// be torn); checkpointed results survive in the journal.
func (w *SyncWriter) Checkpoint() error {
	w.mu.Lock()
	if !w.usable() {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.sealFrame(true)
	target := w.sealed
	w.mu.Unlock()

	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil || w.flushed >= target {
		return w.err
	}
	// Every group sealed by now joins this write; records are added to the
	// log while the file is written.
	if err := w.writeOut(w.ended, true); err != nil {
		w.err = fmt.Errorf("sync %s: checkpoint: %w", w.sync, fileErr(err))
		return w.err
	}
	return nil
}

// spillAt is how many bytes of sealed frames the log holds before they
// are appended to the journal file without waiting for a Checkpoint.
const spillAt = 4 << 20

// reuseAt is how many bytes written to the journal file the log's buffer
// holds before they are dropped and the buffer used again (writeOut).
// Checkpoints write tens of kilobytes each during an apply: had the
// buffer grown to spillAt before it was reused, an apply of 50,000
// records would have allocated 15 MB of buffers growing for a journal
// of 7 MB.
const reuseAt = 256 << 10

// spill appends sealed frames to the journal file, without an fsync, once
// they reach spillAt bytes, so that memory holds a window of the journal
// rather than all of it; w.mu is held. The frames' group is not complete
// until a Checkpoint or Commit writes its last frame and fsyncs: a crash
// before that leaves a torn tail, which counts for nothing, as it would
// have had the frames stayed in memory. A group sealed by a Checkpoint
// still waiting to write is written first, and fsynced: no frame of a
// later group reaches the file before an earlier group is durable, so
// that a torn tail is never taken for damage. If a Checkpoint is writing,
// it takes the frames instead.
func (w *SyncWriter) spill() {
	if w.sealed-w.written < spillAt || !w.flushMu.TryLock() {
		return
	}
	defer w.flushMu.Unlock()
	var err error
	for err == nil && w.ended > w.flushed {
		err = w.writeOut(w.ended, true)
	}
	if err == nil && w.sealed-w.written >= spillAt {
		err = w.writeOut(w.sealed, false) // frames of the open group only
	}
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("sync %s: writing the journal: %w", w.sync, fileErr(err))
	}
}

// writeOut appends the sealed frames up to end not yet in the journal file
// to it, and fsyncs it when durable, then drops what the file holds from
// memory. w.flushMu and w.mu are held; w.mu is released during the write,
// so that records can be added meanwhile.
func (w *SyncWriter) writeOut(end int, durable bool) error {
	end = max(end, w.written)
	chunk := w.log[w.written-w.logOff : end-w.logOff]
	w.mu.Unlock()
	err := w.write(chunk, durable)
	w.mu.Lock()
	if err != nil {
		return err
	}
	w.written = end
	if durable {
		w.flushed = end
	}
	// Once reuseAt bytes are written, or half the buffer, the unwritten
	// rest moves to the front of the buffer, which is used again: nothing
	// else refers to it (w.flushMu is held, so no other write has a chunk
	// of it), and fresh memory costs a page fault per 4 KiB. (Half the
	// buffer: a journal checkpointed at every batch stays within a few
	// batches' records rather than growing, copied at each doubling; the
	// rest moved is at most what was written.) A buffer that grew past
	// four windows is let go.
	if n := w.written - w.logOff; n >= reuseAt || (n > 0 && 2*n >= cap(w.log)) {
		if cap(w.log) > 4*spillAt {
			w.log = append(make([]byte, 0, len(w.log)-n+spillAt), w.log[n:]...)
		} else {
			w.log = w.log[:copy(w.log, w.log[n:])]
		}
		w.logOff = w.written
	}
	return nil
}

// write appends chunk to the journal file and fsyncs it when durable;
// w.flushMu is held.
//
// The journal's directory is fsynced after its content, at this writer's
// first durable write (the journal may have been created, or left by a
// process killed before it synced the directory): until both are durable
// the journal may be lost in a crash, which is what a crash before that
// write would leave (no record of it was acknowledged or sent). Content
// first, because file systems that commit a file's creation with its
// first fsync (ext4, XFS) then have nothing left to commit for the
// directory: the journal's creation and the first announcement cost one
// commit rather than two.
func (w *SyncWriter) write(chunk []byte, durable bool) error {
	if w.journal == nil {
		if err := mkdirDurable(w.dir); err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(w.dir, journalFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, filePerm)
		if err != nil {
			return err
		}
		w.journal, w.journalNew = f, true
	}
	if crashpoint.Armed() && len(chunk) > 1 {
		// Half of the chunk made durable, then the crash: a torn tail.
		if _, err := w.journal.Write(chunk[:len(chunk)/2]); err != nil {
			return err
		}
		if err := w.syncJournal(); err != nil {
			return err
		}
		crashpoint.Hit("journal.torn")
		chunk = chunk[len(chunk)/2:]
	}
	if _, err := w.journal.Write(chunk); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	return w.syncJournal()
}

// syncJournal fsyncs the journal file, then, the first time, its
// directory.
func (w *SyncWriter) syncJournal() error {
	if err := fsync(w.journal); err != nil {
		return err
	}
	if !w.journalNew {
		return nil
	}
	if err := syncDir(w.dir); err != nil {
		return err
	}
	w.journalNew = false
	return nil
}

// Commit writes the new snapshot and failure index atomically, keeping the
// files they replace as their .prev generation, moves the journal to
// journal.prev and increments the serial. Records still in flight become
// failure entries whose outcome is unknown.
//
// The new snapshot is the old one merged, in key order, with the accepted
// and forgotten keys; kept keys' values are copied without decoding. The
// writer is finished afterwards, whatever the outcome; after a failed Commit
// the journal (as far as checkpointed) still holds the results.
func (w *SyncWriter) Commit() error {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
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
	for _, k := range w.inflight.keys() {
		f := unknownFailure(k, w.inflight.get(k), w.failures[k])
		w.failures[k] = f
		w.appendFail(f)
	}
	w.inflight.clear()
	// Journal everything first, as one group: the snapshot and the failure
	// index are replaced by two renames, and a crash between them must find
	// the journal that makes them agree again.
	w.sealFrame(true)
	if w.flushed < w.sealed {
		// Written with w.mu held: nothing may be recorded after this.
		if err := w.write(w.log[w.written-w.logOff:w.sealed-w.logOff], true); err != nil {
			return fileErr(err)
		}
		w.written, w.flushed = w.sealed, w.sealed
	}
	// The journal is read back from its file: the changes index holds the
	// keys and where their records lie, and the merge reads the values
	// from the file as it reaches them.
	jpath := filepath.Join(w.dir, journalFile)
	jf, err := openStateFile(jpath)
	if err != nil {
		return fileErr(err)
	}
	defer jf.Close()
	ch := &changes{src: jf, entries: make([]change, 0, w.changed), keys: make([]byte, 0, w.changedKeys)}
	if _, err := scanJournalAt(jpath, jf, int64(w.flushed), (&replayer{changes: ch}).apply); err != nil {
		return err
	}
	prevPath := filepath.Join(w.dir, journalFile+prevSuffix)
	// An unchanged snapshot is not rewritten, unless it has no file yet (a
	// sync applied once has state, even if empty), is of an older format,
	// or journal.prev could not go on leading from snapshot.prev to it.
	rewrite := ch.reset || len(ch.entries) > 0 || w.base.f == nil || w.base.version < FormatVersion
	var prev, cur []byte
	if !rewrite {
		var combinable bool
		prev, cur, combinable = w.previousJournal(prevPath, jf)
		rewrite = !combinable
	}
	gen := w.base.gen
	if rewrite {
		ch.sortLatest()
		var err error
		if gen, err = writeSnapshot(w.dir, w.base, ch, w.fields.names); err != nil {
			return fileErr(err)
		}
	}
	crashpoint.Hit("commit.snapshot") // the new snapshot beside the old failure index
	if err := writeFailures(w.dir, w.failures, gen); err != nil {
		return fileErr(err)
	}
	crashpoint.Hit("commit.failures") // both replaced, the journal still in place
	if rewrite {
		if err := os.Rename(jpath, prevPath); err != nil {
			return fileErr(err)
		}
		if err := syncDir(w.dir); err != nil {
			return err
		}
	} else {
		if err := writeFileAtomic(w.dir, journalFile+prevSuffix, joinJournals(prev, cur)); err != nil {
			return fileErr(err)
		}
		if err := removeDurably(jpath); err != nil {
			return fileErr(err)
		}
	}
	crashpoint.Hit("commit.journal") // committed, the serial not yet bumped
	return w.store.bumpSerial()
}

// previousJournal reads journal.prev when this commit may append to it:
// an intact journal of the current format, not larger with the journal
// (journal, in full in its file) than the snapshot values it saves
// rewriting (a quarter of them, or 4 MiB). It returns both.
func (w *SyncWriter) previousJournal(path string, journal io.ReaderAt) (prev, cur []byte, ok bool) {
	st, err := os.Stat(path)
	if err != nil || st.Size()+int64(w.flushed) > max(4<<20, w.base.valuesEnd/4) {
		return nil, nil, false
	}
	prev, err = readStateFile(path)
	if err != nil {
		return nil, nil, false
	}
	js, err := scanJournal(path, prev, func(int, []byte) error { return nil })
	if err != nil || js.version != 2 || !js.hasBase || js.valid != len(prev) {
		return nil, nil, false
	}
	cur = make([]byte, w.flushed)
	if _, err := journal.ReadAt(cur, 0); err != nil {
		return nil, nil, false
	}
	return prev, cur, true
}

// joinJournals returns one journal holding a's records then b's, as one
// group, with a's base.
func joinJournals(a, b []byte) []byte {
	j := &SyncWriter{log: append([]byte(nil), journalMagic...), open: -1}
	add := func(_ int, rec []byte) error {
		start := j.beginRecord(rec[0])
		j.log = append(j.log, rec[1:]...)
		j.endRecord(start)
		return nil
	}
	js, _ := scanJournal("", a, func(int, []byte) error { return nil })
	start := j.beginRecord(recBase)
	j.log = binary.LittleEndian.AppendUint64(j.log, js.base)
	j.endRecord(start)
	_, _ = scanJournal("", a, add)
	_, _ = scanJournal("", b, add)
	j.sealFrame(true)
	return j.log
}

// Abort discards nothing durable: checkpointed results stay in the journal
// and are seen by the next load. It releases the writer's files.
func (w *SyncWriter) Abort() error {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil
	}
	return w.close()
}

// close releases the writer's files; w.flushMu and w.mu are held.
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

// sameNames reports whether values' keys are names (distinct, as map keys
// are).
func sameNames(values map[string]any, names []string) bool {
	if len(values) != len(names) {
		return false
	}
	for _, n := range names {
		if _, ok := values[n]; !ok {
			return false
		}
	}
	return true
}
