package state

import (
	"context"
	"time"
)

// The interfaces below are how the rest of backflow uses a state store, so
// that a backend other than the local folder (a schema in PostgreSQL or
// MySQL) is one more implementation: reconcile and the CLI never see which.
// *Store, the local folder, implements Backend.

// Reader reads the state of every sync.
type Reader interface {
	// Meta returns the state's version, lineage and serial.
	Meta() (Meta, error)
	// Syncs lists the syncs that have state, sorted.
	Syncs() ([]string, error)
	// LoadSnapshot reads what the destination last accepted for a sync.
	LoadSnapshot(sync string) (SnapshotReader, error)
	// LoadFailures reads a sync's failure index.
	LoadFailures(sync string) (FailureIndex, error)
}

// SnapshotReader is one sync's snapshot: keys in order, each with the hash
// and the values last accepted.
type SnapshotReader interface {
	Len() int
	Lookup(key string) (i int, hash uint64, ok bool)
	Key(i int) string
	Values(i int) (map[string]any, error)
	Close() error
}

// Writer starts recording the outcome of an apply (or a reset) of a sync.
type Writer interface {
	Begin(sync string, reset bool) (Tx, error)
}

// Tx records the outcomes of one apply of one sync: checkpointed as it
// goes, committed at the end, or abandoned.
type Tx interface {
	// InFlight records durably that these records are about to be sent:
	// after a crash their outcome is unknown, and they are sent again.
	InFlight(recs []InFlightRecord) error
	// Unsent says the destination wrote none of these records in flight
	// and said nothing about them (a fatal answer): they stay pending
	// rather than becoming failure entries whose outcome is unknown.
	Unsent(keys []string)
	Accept(key string, hash uint64, values map[string]any)
	Forget(key string)
	Fail(f Failure)
	Checkpoint() error
	Commit() error
	Abort() error
}

// LockChecker is a Tx whose lock can be lost while it is open: a database
// backend's lock is held by a session, which the server may end (a
// restart, pg_terminate_backend, a network cut); another runner may then
// take the lock and write. StillHeld returns nil when the lock was seen
// held within maxAge (each write of the Tx checks it), and otherwise checks
// it now. An apply asks before each request it sends: requests announced
// ahead are not sent once the lock is gone.
type LockChecker interface {
	StillHeld(ctx context.Context, maxAge time.Duration) error
}

// History is the run history and the per-record logs of recent runs.
type History interface {
	AppendRun(r Run, rows []RowLog, keep int) (Run, error)
	Runs(sync string) ([]Run, error)
	RowLogs(sync string, run int) ([]RowLog, error)
}

// Locker serialises writers.
type Locker interface {
	// Lock takes the lock of the named syncs for an operation (a backend
	// may lock more: the local folder has one lock for all). When ctx has
	// a deadline it waits for a lock another holder has until then;
	// otherwise it fails at once. Either way a refusal is *LockedError
	// naming the holder.
	Lock(ctx context.Context, operation string, syncs []string) (Held, error)
	// ForceUnlock removes a lock left behind by a holder that died.
	ForceUnlock(id string) error
	// LockStatus says who holds the lock, if anyone.
	LockStatus() (LockStatus, error)
}

// PerSyncLocking is implemented by backends whose runners lock syncs one
// by one (the database backends), so that the state's serial moves while
// other syncs are applied: a saved plan is then checked per sync.
type PerSyncLocking interface{ PerSyncLocks() bool }

// Held is a lock taken.
type Held interface {
	Unlock() error
	// TookOverFrom names the holder that died holding the lock, when
	// taking it meant taking it over; nil otherwise.
	TookOverFrom() *LockInfo
}

// Backend is a whole state store.
type Backend interface {
	Reader
	Writer
	History
	Locker
	// Location says where the state lives, for messages ("folder
	// .backflow", "schema backflow on host:5432").
	Location() string
}

// RunStatus is how a run ended, as recorded in the run history.
type RunStatus string

const (
	RunSucceeded   RunStatus = "succeeded"
	RunFailed      RunStatus = "failed" // more rejections than the failure threshold allows, a fatal answer, the circuit breaker
	RunInterrupted RunStatus = "interrupted"
	RunResetCDC    RunStatus = "reset-cdc"
	// RunIncomplete is a run that started and recorded no outcome: the
	// process was killed or the machine stopped during it.
	RunIncomplete RunStatus = "incomplete"
	// RunResetIncomplete is a reset-cdc that started and recorded no
	// end: the sync's state may be the one before it or the one after it,
	// and its run history may not say where its snapshot is. The sync is
	// not planned until a reset-cdc ends.
	RunResetIncomplete RunStatus = "reset-cdc-incomplete"
)

// RowStatus is how one record of a run ended.
type RowStatus string

const (
	RowAccepted RowStatus = "accepted"
	RowRejected RowStatus = "rejected"
)

// localBackend adapts *Store's concrete return types to Backend.
type localBackend struct{ *Store }

// Backend returns the store as a Backend.
func (s *Store) Backend() Backend { return localBackend{s} }

func (b localBackend) LoadSnapshot(sync string) (SnapshotReader, error) {
	sn, err := b.Store.LoadSnapshot(sync)
	if err != nil {
		return nil, err
	}
	return sn, nil
}

func (b localBackend) Begin(sync string, reset bool) (Tx, error) {
	w, err := b.Store.Begin(sync, reset)
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (b localBackend) Lock(ctx context.Context, operation string, _ []string) (Held, error) {
	var l *Lock
	var err error
	if _, wait := ctx.Deadline(); wait {
		l, err = b.Store.LockContext(ctx, operation)
	} else {
		l, err = b.Store.Lock(operation)
	}
	if err != nil {
		return nil, err
	}
	return l, nil
}

// TookOverFrom implements Held.
func (l *Lock) TookOverFrom() *LockInfo { return l.TookOver }

func (b localBackend) Location() string { return "folder " + b.Store.Dir() }
