package state

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/gofrs/flock"
)

// FormatVersion is the version of the state directory layout this build writes.
const FormatVersion = 1

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

// Store is a state directory. Reads need no lock; writers must hold the
// Lock (callers take it once per command).
type Store struct {
	dir string
	mu  sync.Mutex // serialises this Store's read-modify-writes (meta, runs)
}

// Open opens (without creating) the state directory dir. The directory and
// its files are created on the first write. A directory written by a newer
// format version is refused.
func Open(dir string) (*Store, error) {
	s := &Store{dir: dir}
	if _, err := s.Meta(); err != nil {
		return nil, err
	}
	return s, nil
}

// Dir returns the directory.
func (s *Store) Dir() string { return s.dir }

// Meta returns the metadata; a directory never written has Version
// FormatVersion, an empty Lineage and Serial 0.
func (s *Store) Meta() (Meta, error) {
	m := Meta{Version: FormatVersion}
	data, err := os.ReadFile(filepath.Join(s.dir, metaFile))
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("state file %s is corrupt (%v): restore it from a backup of the state directory, or move the directory away to start over (every record will then be sent again)", filepath.Join(s.dir, metaFile), err)
	}
	if m.Version > FormatVersion {
		return m, fmt.Errorf("state in %s has format version %d; this build of backflow reads up to %d: upgrade backflow", s.dir, m.Version, FormatVersion)
	}
	return m, nil
}

// bumpSerial records a write: serial +1, and a lineage on the first one.
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
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(s.dir, metaFile, append(data, '\n'))
}

func (s *Store) syncDir(sync string) string { return filepath.Join(s.dir, syncsDir, sync) }

// Syncs lists the syncs that have state, sorted.
func (s *Store) Syncs() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, syncsDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() || !validName(e.Name()) {
			continue
		}
		for _, f := range []string{snapshotFile, failuresFile, journalFile} {
			if _, err := os.Stat(filepath.Join(s.syncDir(e.Name()), f)); err == nil {
				out = append(out, e.Name())
				break
			}
		}
	}
	return out, nil // ReadDir sorts by name
}

// LockInfo describes the holder of the lock.
type LockInfo struct {
	ID        string    `json:"id"`
	Operation string    `json:"operation"`
	Who       string    `json:"who"` // user@host
	PID       int       `json:"pid"`
	Created   time.Time `json:"created"`
}

// LockedError is returned by Lock when another process holds it.
type LockedError struct{ Holder LockInfo }

func (e *LockedError) Error() string {
	return fmt.Sprintf("state is locked by %s (pid %d) for %q since %s (lock ID %s)",
		e.Holder.Who, e.Holder.PID, e.Holder.Operation, e.Holder.Created.Format(time.RFC3339), e.Holder.ID)
}

// Lock is a held exclusive lock.
type Lock struct {
	Info LockInfo

	store *Store
	fl    *flock.Flock
}

// Snapshot is what the destination last accepted for one sync, sorted by
// key. Only keys and hashes are held in memory; values are read on demand.
type Snapshot struct {
	f         *os.File // nil: no snapshot file
	valuesEnd int64    // end of the file's values section
	n         int
	arena     []byte   // keys, concatenated in order
	keyOff    []uint32 // key i is arena[keyOff[i]:keyOff[i+1]]
	hashes    []uint64
	valOff    []uint64 // value record offset in f, or in mem when memBit is set
	fields    []string // field table of the value records
	mem       []byte   // value records replayed from a journal
	sample    []uint64 // prefix of every sampleEvery-th key (see searchRange)
}

// LoadSnapshot reads a sync's snapshot, including the journal of an
// interrupted apply. A sync never applied has an empty snapshot.
//
// Only the index (keys and hashes, about 24 bytes per key plus the key) is
// held in memory; Close releases the file the values are read from. Reads
// take no lock: a load racing a Commit sees the state before or after it.
func (s *Store) LoadSnapshot(sync string) (*Snapshot, error) {
	if err := checkName(sync); err != nil {
		return nil, err
	}
	dir := s.syncDir(sync)
	base, err := openSnapshot(filepath.Join(dir, snapshotFile))
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, journalFile))
	if errors.Is(err, os.ErrNotExist) {
		return base, nil
	}
	if err != nil {
		_ = base.Close()
		return nil, err
	}
	fields := newFieldTable(base.fields)
	ch := &changes{log: data}
	if _, err := scanJournal(data, (&replayer{fields: fields, changes: ch}).apply); err != nil {
		_ = base.Close()
		return nil, fmt.Errorf("sync %s: %w", sync, err)
	}
	if !ch.reset && len(ch.entries) == 0 {
		return base, nil
	}
	ch.sortLatest()
	sn, err := overlay(base, ch, fields.names)
	if err != nil {
		_ = base.Close()
		return nil, err
	}
	return sn, nil
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
	if i < 0 || i >= sn.n {
		return nil, fmt.Errorf("snapshot index %d out of range [0,%d)", i, sn.n)
	}
	body, err := sn.readValue(sn.valOff[i])
	if err != nil {
		return nil, fmt.Errorf("values of %q: %w", sn.key(i), err)
	}
	v, err := decodeValues(body, sn.fields)
	if err != nil {
		return nil, fmt.Errorf("values of %q: %w", sn.key(i), err)
	}
	return v, nil
}

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
}

// FailureIndex is a sync's failure index by key.
type FailureIndex map[string]*Failure

// LoadFailures reads a sync's failure index, including the journal of an
// interrupted apply.
func (s *Store) LoadFailures(sync string) (FailureIndex, error) {
	if err := checkName(sync); err != nil {
		return nil, err
	}
	dir := s.syncDir(sync)
	idx, err := readFailures(filepath.Join(dir, failuresFile))
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, journalFile))
	if errors.Is(err, os.ErrNotExist) {
		return idx, nil
	}
	if err != nil {
		return nil, err
	}
	if _, err := scanJournal(data, (&replayer{failures: idx}).apply); err != nil {
		return nil, fmt.Errorf("sync %s: %w", sync, err)
	}
	return idx, nil
}

// readFailures reads a failure index file (a JSON list sorted by key); a
// missing file is an empty index.
func readFailures(path string) (FailureIndex, error) {
	idx := FailureIndex{}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return idx, nil
	}
	if err != nil {
		return nil, err
	}
	var list []*Failure
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	for _, f := range list {
		idx[f.Key] = f
	}
	return idx, nil
}

func writeFailures(dir string, idx FailureIndex) error {
	keys := slices.Sorted(maps.Keys(idx))
	return writeAtomic(dir, failuresFile, func(w *bufio.Writer) error {
		enc := json.NewEncoder(w)
		if _, err := w.WriteString("["); err != nil {
			return err
		}
		for i, k := range keys {
			if i > 0 {
				if _, err := w.WriteString(","); err != nil {
					return err
				}
			}
			if err := enc.Encode(idx[k]); err != nil {
				return err
			}
		}
		_, err := w.WriteString("]\n")
		return err
	})
}

// SyncWriter records the outcome of one apply of one sync.
//
// A SyncWriter is safe for concurrent use. Its memory holds the journal of
// the apply (every result recorded, in compact binary form) until Commit.
type SyncWriter struct {
	mu       sync.Mutex
	store    *Store
	sync     string
	dir      string
	base     *Snapshot   // the snapshot file as it was at Begin, without the journal
	fields   *fieldTable // base's field table plus the fields defined since
	failures FailureIndex
	log      []byte   // journal: magic and records, durable up to flushed
	flushed  int      // bytes of log already in the journal file
	journal  *os.File // opened by the first Checkpoint
	err      error    // sticky: the writer is unusable after an error
	done     bool

	names []string // scratch for Accept
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
}

// Run is one apply of one sync.
type Run struct {
	Sync       string    `json:"sync"`
	Run        int       `json:"run"` // 1, 2, … per sync; set by AppendRun
	Status     RunStatus `json:"status"`
	ConfigHash string    `json:"config_hash"`
	Commit     string    `json:"commit"`
	Started    time.Time `json:"started"`
	DurationMS int64     `json:"duration_ms"`
	Counts     Counts    `json:"counts"`
	// ByAction splits the outcomes by what the plan asked for: "add",
	// "change", "remove", "retry" → accepted and rejected records.
	ByAction map[string]Outcomes `json:"by_action,omitempty"`
	Requests int                 `json:"requests"` // calls made to the destination, retries and splits included
	Resent   int                 `json:"resent"`   // records sent more than once within the run
	Error    string              `json:"error,omitempty"`
}

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
