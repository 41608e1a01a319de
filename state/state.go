package state

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/gofrs/flock"
)

// FormatVersion is the version of the state directory layout this build
// writes. Version 2 added checksums to every file (value records of the
// snapshot, journal frames, the failure index, state.json and the run
// history), snapshot generations and the in-flight journal records.
// Version 1 state is read as it is and upgraded file by file as it is
// rewritten; state of a newer version is refused.
const FormatVersion = 2

// File and directory names inside the state directory.
const (
	metaFile     = "state.json"
	syncsDir     = "syncs"
	snapshotFile = "snapshot"
	failuresFile = "failures.json"
	journalFile  = "journal"
	runsFile     = "runs.jsonl"
	logsDir      = "logs"
	lockInfoFile = "lock"       // JSON LockInfo of the holder
	lockFile     = "lock.flock" // flock target; never removed
)

// Meta identifies a state directory and how many writes it has seen.
type Meta struct {
	Version int    `json:"version"`
	Lineage string `json:"lineage"` // random, set once when the directory is created
	Serial  uint64 `json:"serial"`  // +1 on every write (Begin, Commit, AppendRun, reset)
}

// metaJSON is state.json: Meta and, from version 2, the CRC-32C of its
// fields (see metaChecksum).
type metaJSON struct {
	Version  int    `json:"version"`
	Lineage  string `json:"lineage"`
	Serial   uint64 `json:"serial"`
	Checksum string `json:"checksum,omitempty"`
}

func metaChecksum(m Meta) string {
	return fmt.Sprintf("crc32c:%08x", crc32.Checksum(fmt.Appendf(nil, "%d\n%s\n%d\n", m.Version, m.Lineage, m.Serial), castagnoli))
}

// Store is a state directory. Reads need no lock; writers must hold the
// Lock (callers take it once per command).
type Store struct {
	dir string
	mu  sync.Mutex // serialises this Store's read-modify-writes (meta, runs)
}

// Open opens (without creating) the state directory dir. The directory and
// its files are created on the first write. A directory written by a newer
// format version is refused (*VersionError), and so is a damaged
// state.json (*CorruptError; see OpenForRecovery).
func Open(dir string) (*Store, error) {
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	s := &Store{dir: dir}
	if _, err := s.Meta(); err != nil {
		return nil, err
	}
	return s, nil
}

// OpenForRecovery opens dir like Open but accepts damaged state, for
// PlanRecovery and Recover. State of a newer format version is still
// refused.
func OpenForRecovery(dir string) (*Store, error) {
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	s := &Store{dir: dir}
	var ve *VersionError
	if _, err := s.Meta(); errors.As(err, &ve) {
		return nil, err
	}
	return s, nil
}

// checkDir fails when dir exists and is not a folder, or cannot become one
// because part of its path is a file; a folder not created yet is fine.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("the state folder %s is a file, not a folder: point --state-dir at a folder (it is created on the first apply)", dir)
	case err == nil, errors.Is(err, fs.ErrNotExist):
		return nil
	case errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("the state folder %s cannot be created: part of its path is a file, not a folder; point --state-dir at a folder backflow may create", dir)
	default:
		return fmt.Errorf("the state folder %s cannot be used: %w", dir, err)
	}
}

// Dir returns the directory.
func (s *Store) Dir() string { return s.dir }

// Meta returns the metadata; a directory never written has Version
// FormatVersion, an empty Lineage and Serial 0.
func (s *Store) Meta() (Meta, error) {
	path := filepath.Join(s.dir, metaFile)
	data, err := readFile(path)
	if err != nil {
		return Meta{Version: FormatVersion}, err
	}
	if data == nil {
		if what := s.heldState(); what != "" {
			return Meta{Version: FormatVersion}, corrupt(path, "missing, but the state folder holds %s", what)
		}
		return Meta{Version: FormatVersion}, nil
	}
	return decodeMeta(path, data)
}

// heldState names something the directory holds besides state.json, which
// every write updates ("": nothing).
func (s *Store) heldState() string {
	for _, name := range []string{syncsDir, runsFile, metaFile + prevSuffix, runsFile + prevSuffix} {
		if exists(filepath.Join(s.dir, name)) {
			return name
		}
	}
	return ""
}

func decodeMeta(path string, data []byte) (Meta, error) {
	var probe struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return Meta{}, corrupt(path, "unreadable (%v)", err)
	}
	if probe.Version > FormatVersion {
		return Meta{}, &VersionError{Path: path, Version: probe.Version}
	}
	var mj metaJSON
	if err := strictUnmarshal(data, &mj); err != nil {
		return Meta{}, corrupt(path, "unreadable (%v)", err)
	}
	m := Meta{Version: mj.Version, Lineage: mj.Lineage, Serial: mj.Serial}
	switch {
	case m.Version < 1:
		return m, corrupt(path, "format version %d is not one backflow ever wrote", m.Version)
	case m.Version == 1 && mj.Checksum != "":
		return m, corrupt(path, "a version 1 state.json has no checksum")
	case m.Version >= 2 && mj.Checksum != metaChecksum(m):
		return m, corrupt(path, "checksum mismatch")
	case m.Lineage == "" || m.Serial == 0:
		return m, corrupt(path, "no lineage or serial")
	}
	return m, nil
}

// bumpSerial records a write: serial +1, and a lineage on the first one.
// The state.json it replaces is kept as state.json.prev.
func (s *Store) bumpSerial() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.Meta()
	if err != nil {
		return err
	}
	if m.Lineage == "" {
		m.Lineage = randomHex(16)
	}
	m.Version = FormatVersion
	m.Serial++
	return s.writeMeta(m)
}

func (s *Store) writeMeta(m Meta) error {
	data, err := json.MarshalIndent(metaJSON{Version: m.Version, Lineage: m.Lineage, Serial: m.Serial, Checksum: metaChecksum(m)}, "", "  ")
	if err != nil {
		return err
	}
	return writeKeepingPrev(s.dir, metaFile, func(w *bufio.Writer) error {
		_, err := w.Write(append(data, '\n'))
		return err
	})
}

func (s *Store) syncDir(sync string) string { return filepath.Join(s.dir, syncsDir, sync) }

// Syncs lists the syncs that have state, sorted.
func (s *Store) Syncs() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, syncsDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fileErr(err)
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() || !validName(e.Name()) {
			continue
		}
		for _, f := range syncFiles {
			if exists(filepath.Join(s.syncDir(e.Name()), f)) {
				out = append(out, e.Name())
				break
			}
		}
	}
	return out, nil // ReadDir sorts by name
}

// syncFiles are the files of a sync's directory, earlier generations too.
var syncFiles = []string{snapshotFile, failuresFile, journalFile,
	snapshotFile + prevSuffix, failuresFile + prevSuffix, journalFile + prevSuffix}

// LockInfo describes the holder of the lock.
type LockInfo struct {
	ID        string    `json:"id"`
	Operation string    `json:"operation"`
	Who       string    `json:"who"` // user@host
	PID       int       `json:"pid"`
	Created   time.Time `json:"created"`
}

// LockedError is returned by Lock when another process holds it.
type LockedError struct {
	Holder LockInfo
	Waited bool // LockContext waited until its context was done
	// Sync names the sync whose lock is held, for backends that lock each
	// sync on its own ("": the whole state).
	Sync string
	// Orphaned: the lock's file was free, but the holder still runs (its
	// lock file was removed while it held it).
	Orphaned bool
}

func (e *LockedError) Error() string {
	what := "state"
	if e.Sync != "" {
		what = fmt.Sprintf("the state of sync %q", e.Sync)
	}
	msg := fmt.Sprintf("%s is locked by %s (pid %d) for %q since %s (lock ID %s)",
		what, e.Holder.Who, e.Holder.PID, e.Holder.Operation, e.Holder.Created.Format(time.RFC3339), e.Holder.ID)
	if e.Orphaned {
		msg += fmt.Sprintf("; its lock file %s was removed while it held it, and that process still runs and may still write: let it end (or stop it), then run again. If pid %d is not that backflow, clear its lock with `backflow state unlock %s`",
			lockFile, e.Holder.PID, e.Holder.ID)
	} else if e.Holder.ID != "" && e.Holder.gone() {
		msg += "; that process is gone, so another one holds the lock now"
	}
	if e.Waited {
		msg += "; gave up waiting for it"
	}
	return msg
}

// Lock is a held exclusive lock.
type Lock struct {
	Info LockInfo
	// TookOver is the holder info left by a process that died holding the
	// lock, which this Lock replaced (nil: none). Callers tell the user.
	TookOver *LockInfo

	store *Store
	fl    *flock.Flock
}

// Snapshot is what the destination last accepted for one sync, sorted by
// key. Only keys and hashes are held in memory; values are read on demand.
type Snapshot struct {
	path      string
	version   int
	gen       uint64   // see snapshot.go; 0: no file, or version 1
	parent    uint64   // generation this one was merged from
	f         snapFile // nil: no snapshot file
	valuesEnd int64    // end of the file's values section
	n         int
	arena     []byte   // keys, concatenated in order
	keyOff    []uint32 // key i is arena[keyOff[i]:keyOff[i+1]]
	hashes    []uint64
	valOff    []uint64 // value record offset in f, or in mem when memBit is set
	fields    []string // field table of the value records
	mem       []byte   // value records replayed from a journal
	sample    []uint64 // prefix of every sampleEvery-th key (see searchRange)
	ahead     readAhead
}

// LoadSnapshot reads a sync's snapshot, including the journal of an
// interrupted apply. A sync never applied has an empty snapshot.
//
// Only the index (keys and hashes, about 24 bytes per key plus the key) is
// held in memory; Close releases the file the values are read from. Reads
// take no lock: a load racing a Commit sees the state before or after it.
//
// Damaged state is refused with a *CorruptError (value records are checked
// as they are read; Verify checks them all), state of a newer format
// version with a *VersionError.
func (s *Store) LoadSnapshot(sync string) (*Snapshot, error) {
	if err := checkName(sync); err != nil {
		return nil, err
	}
	if err := s.checkSyncDirs(sync); err != nil {
		return nil, err
	}
	dir := s.syncDir(sync)
	return retryMixed(func() (*Snapshot, error) {
		base, err := openSnapshot(filepath.Join(dir, snapshotFile))
		if err != nil {
			return nil, err
		}
		sn, err := overlayJournal(dir, base)
		if err != nil {
			_ = base.Close()
			return nil, fmt.Errorf("sync %s: %w", sync, err)
		}
		return sn, nil
	})
}

func overlayJournal(dir string, base *Snapshot) (*Snapshot, error) {
	fh, err := failuresHeader(filepath.Join(dir, failuresFile))
	if err != nil {
		return nil, err
	}
	jpath := filepath.Join(dir, journalFile)
	j, err := openJournal(jpath)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	fields := newFieldTable(base.fields)
	ch := &changes{src: j}
	js, err := j.scan(jpath, (&replayer{fields: fields, changes: ch}).apply)
	// Files of different commits explain a journal that does not replay.
	if gerr := checkGenerations(dir, base.gens(), fh, j != nil, js); gerr != nil {
		return nil, gerr
	}
	if err != nil {
		return nil, err
	}
	if !ch.reset && len(ch.entries) == 0 {
		return base, nil
	}
	ch.sortLatest()
	return overlay(base, ch, fields.names)
}

// Len is the number of keys.
func (sn *Snapshot) Len() int { return sn.n }

// Lookup finds a key. When the key is absent, i is -1.
func (sn *Snapshot) Lookup(key string) (i int, hash uint64, ok bool) {
	lo, hi := sn.searchRange([]byte(key))
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if string(sn.key(m)) < key {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < sn.n && string(sn.key(lo)) == key {
		return lo, sn.hashes[lo], true
	}
	return -1, 0, false
}

// Key returns the i-th key in sorted order.
func (sn *Snapshot) Key(i int) string { return string(sn.key(i)) }

// Hash returns the i-th key's hash.
func (sn *Snapshot) Hash(i int) uint64 { return sn.hashes[i] }

// Values returns the mapped values last accepted for the i-th key
// (field → nil, int64, float64, string or bool).
// It reads the snapshot file and is safe for concurrent use.
func (sn *Snapshot) Values(i int) (map[string]any, error) {
	var mv mapVisitor
	if err := sn.VisitValues(i, &mv); err != nil {
		return nil, err
	}
	return mv.m, nil
}

// VisitValues is Values for a caller that re-encodes the values: vv gets
// them one by one, typed, without a map or boxed values.
func (sn *Snapshot) VisitValues(i int, vv ValueVisitor) error {
	return sn.WithRecord(i, func(body []byte) error { return visitValues(body, sn.fields, vv) })
}

// WithRecord calls fn with the value record of key i as the snapshot
// stores it (checked against its checksum), valid only during the call: a
// caller that copies records elsewhere decodes them later with
// DecodeRecord and Fields.
func (sn *Snapshot) WithRecord(i int, fn func(body []byte) error) error {
	if i < 0 || i >= sn.n {
		return fmt.Errorf("snapshot index %d out of range [0,%d)", i, sn.n)
	}
	if err := sn.withValue(sn.valOff[i], fn); err != nil {
		return fmt.Errorf("values of %q: %w", sn.key(i), err)
	}
	return nil
}

// Fields is the field table the snapshot's records refer to.
func (sn *Snapshot) Fields() []string { return sn.fields }

// Close releases files the snapshot keeps open.
func (sn *Snapshot) Close() error {
	if sn.f == nil {
		return nil
	}
	err := sn.f.Close()
	sn.f = nil
	return err
}

// Failure is one entry of a sync's failure index.
type Failure struct {
	Key         string    `json:"key"`
	Operation   string    `json:"operation"`
	Error       string    `json:"error"`
	Attempts    int       `json:"attempts"` // accumulated across runs
	FirstFailed time.Time `json:"first_failed"`
	LastFailed  time.Time `json:"last_failed"`
	// Unknown marks a record that was in flight when a run stopped (a
	// crash, a kill, a full disk): the destination may or may not have it.
	// The next plan retries it like a rejected record: as a removal if it
	// left the model, as an upsert in insert mode. It stays set when a
	// later attempt is refused (the destination may still hold what the
	// unknown send wrote), until a send of the record is accepted.
	Unknown bool `json:"unknown,omitempty"`
}

// FailureIndex is a sync's failure index by key.
type FailureIndex map[string]*Failure

// LoadFailures reads a sync's failure index, including the journal of an
// interrupted apply: records it shows in flight without an outcome come
// back as entries with Unknown set.
func (s *Store) LoadFailures(sync string) (FailureIndex, error) {
	if err := checkName(sync); err != nil {
		return nil, err
	}
	if err := s.checkSyncDirs(sync); err != nil {
		return nil, err
	}
	return retryMixed(func() (FailureIndex, error) { return s.loadFailures(sync) })
}

func (s *Store) loadFailures(sync string) (FailureIndex, error) {
	dir := s.syncDir(sync)
	idx, fh, err := readFailures(filepath.Join(dir, failuresFile))
	if err != nil {
		return nil, err
	}
	snap, err := snapshotGens(filepath.Join(dir, snapshotFile))
	if err != nil {
		return nil, err
	}
	jpath := filepath.Join(dir, journalFile)
	j, err := openJournal(jpath)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	r := &replayer{failures: idx, inflight: map[string]inFlight{}}
	js, err := j.scan(jpath, r.apply)
	if gerr := checkGenerations(dir, snap, fh, j != nil, js); gerr != nil {
		return nil, fmt.Errorf("sync %s: %w", sync, gerr)
	}
	if err != nil {
		return nil, fmt.Errorf("sync %s: %w", sync, err)
	}
	r.settle()
	return idx, nil
}

// Counts are the record counts of one run.
type Counts struct {
	Added    int `json:"added"`
	Changed  int `json:"changed"`
	Removed  int `json:"removed"`
	Retried  int `json:"retried"`
	Accepted int `json:"accepted"`
	Rejected int `json:"rejected"`
	Excluded int `json:"excluded"`
	// StillFailing counts the rejected records that were in the failure
	// index and were rejected again with the same kind of error: a
	// warning, not a failure of the run (unless apply --strict).
	StillFailing int `json:"still_failing,omitempty"`
}

// Run is one apply of one sync.
type Run struct {
	Sync       string    `json:"sync"`
	Run        int       `json:"run"` // 1, 2, … per sync; set by AppendRun
	Status     RunStatus `json:"status"`
	ConfigHash string    `json:"config_hash"`
	Commit     string    `json:"commit"`
	Dirty      bool      `json:"dirty,omitempty"` // the config differed from Commit
	Started    time.Time `json:"started"`
	DurationMS int64     `json:"duration_ms"`
	Counts     Counts    `json:"counts"`
	// ByAction splits the outcomes by what the plan asked for: "add",
	// "change", "remove", "retry" → accepted and rejected records.
	ByAction map[string]Outcomes `json:"by_action,omitempty"`
	Requests int                 `json:"requests"` // calls made to the destination, retries and splits included
	Resent   int                 `json:"resent"`   // records sent more than once within the run
	Error    string              `json:"error,omitempty"`
	// CDC is where the run kept the sync's snapshot: CDCLocal (the
	// state) or CDCWarehouse (tables in the source); "" in runs recorded
	// before it was.
	CDC string `json:"cdc,omitempty"`
	// CDCSchema is the schema of those tables (CDCWarehouse).
	CDCSchema string `json:"cdc_schema,omitempty"`
}

// Where a run kept its sync's snapshot (Run.CDC).
const (
	CDCLocal     = "local"
	CDCWarehouse = "warehouse"
)

// Outcomes counts the records of one action by their end.
type Outcomes struct {
	Accepted int `json:"accepted"`
	Rejected int `json:"rejected"`
}

// RowLog is the outcome of one record in one run.
type RowLog struct {
	Run       int       `json:"run"`
	Key       string    `json:"key"`
	Operation string    `json:"operation"`
	Status    RowStatus `json:"status"`
	Error     string    `json:"error,omitempty"`
	Attempts  int       `json:"attempts"`
}
