package state

import (
	"fmt"
	"time"
)

// FormatVersion is the version of the state directory layout this build writes.
const FormatVersion = 1

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
}

// Open opens (without creating) the state directory dir. The directory and
// its files are created on the first write.
func Open(dir string) (*Store, error) { return &Store{dir: dir}, nil }

// Dir returns the directory.
func (s *Store) Dir() string { return s.dir }

// Meta returns the metadata; a directory never written has Version
// FormatVersion, an empty Lineage and Serial 0.
func (s *Store) Meta() (Meta, error) { panic("TODO") }

// Syncs lists the syncs that have state, sorted.
func (s *Store) Syncs() ([]string, error) { panic("TODO") }

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
type Lock struct{ Info LockInfo }

// Lock takes the exclusive lock at once or fails with *LockedError.
func (s *Store) Lock(operation string) (*Lock, error) { panic("TODO") }

// Unlock releases the lock.
func (l *Lock) Unlock() error { panic("TODO") }

// ForceUnlock removes a lock left by a dead process, if its ID matches.
func (s *Store) ForceUnlock(id string) error { panic("TODO") }

// Snapshot is what the destination last accepted for one sync, sorted by
// key. Only keys and hashes are held in memory; values are read on demand.
type Snapshot struct{}

// LoadSnapshot reads a sync's snapshot, including the journal of an
// interrupted apply. A sync never applied has an empty snapshot.
func (s *Store) LoadSnapshot(sync string) (*Snapshot, error) { panic("TODO") }

// Len is the number of keys.
func (sn *Snapshot) Len() int { panic("TODO") }

// Lookup finds a key.
func (sn *Snapshot) Lookup(key string) (i int, hash uint64, ok bool) { panic("TODO") }

// Key returns the i-th key in sorted order.
func (sn *Snapshot) Key(i int) string { panic("TODO") }

// Hash returns the i-th key's hash.
func (sn *Snapshot) Hash(i int) uint64 { panic("TODO") }

// Values returns the mapped values last accepted for the i-th key
// (field → nil, int64, float64, string or bool).
func (sn *Snapshot) Values(i int) (map[string]any, error) { panic("TODO") }

// Close releases files the snapshot keeps open.
func (sn *Snapshot) Close() error { panic("TODO") }

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
func (s *Store) LoadFailures(sync string) (FailureIndex, error) { panic("TODO") }

// SyncWriter records the outcome of one apply of one sync.
type SyncWriter struct{}

// Begin starts recording a sync's results (serial +1). With reset, the
// snapshot and failure index start empty (reset-cdc) instead of from the
// current state.
func (s *Store) Begin(sync string, reset bool) (*SyncWriter, error) { panic("TODO") }

// Accept records that key was written with these mapped values.
func (w *SyncWriter) Accept(key string, hash uint64, values map[string]any) { panic("TODO") }

// Forget records that key left the destination (or is no longer tracked):
// it is dropped from the snapshot and the failure index.
func (w *SyncWriter) Forget(key string) { panic("TODO") }

// Fail records a rejection. Attempts and FirstFailed accumulate onto an
// existing entry for the key; f.Attempts is this run's count.
func (w *SyncWriter) Fail(f Failure) { panic("TODO") }

// Checkpoint makes everything recorded so far durable (journal append and
// fsync), so that a crash loses none of it.
func (w *SyncWriter) Checkpoint() error { panic("TODO") }

// Commit writes the new snapshot and failure index atomically, removes the
// journal and increments the serial.
func (w *SyncWriter) Commit() error { panic("TODO") }

// Abort discards nothing durable: checkpointed results stay in the journal
// and are seen by the next load. It releases the writer's files.
func (w *SyncWriter) Abort() error { panic("TODO") }

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
	Status     string    `json:"status"` // succeeded | failed | interrupted
	ConfigHash string    `json:"config_hash"`
	Commit     string    `json:"commit"`
	Started    time.Time `json:"started"`
	DurationMS int64     `json:"duration_ms"`
	Counts     Counts    `json:"counts"`
	Requests   int       `json:"requests"` // calls made to the destination, retries and splits included
	Resent     int       `json:"resent"`   // records sent more than once within the run
	Error      string    `json:"error,omitempty"`
}

// RowLog is the outcome of one record in one run.
type RowLog struct {
	Run       int    `json:"run"`
	Key       string `json:"key"`
	Operation string `json:"operation"`
	Status    string `json:"status"` // accepted | rejected
	Error     string `json:"error,omitempty"`
	Attempts  int    `json:"attempts"`
}

// AppendRun stores a run and its row logs, numbering the run, and keeps row
// logs of the last `keep` runs of the sync only (0 = default 20).
func (s *Store) AppendRun(r Run, rows []RowLog, keep int) (Run, error) { panic("TODO") }

// Runs lists a sync's runs ("" = every sync), oldest first.
func (s *Store) Runs(sync string) ([]Run, error) { panic("TODO") }

// RowLogs returns the row logs of one run of a sync (0 = the latest run).
func (s *Store) RowLogs(sync string, run int) ([]RowLog, error) { panic("TODO") }
