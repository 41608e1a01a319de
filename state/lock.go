package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/gofrs/flock"
)

// The lock is an flock(2) on dir/lock.flock, which the OS releases when its
// holder exits, however it exits; dir/lock holds the holder's LockInfo so
// that a refused writer can say who holds it. flock locks belong to an open
// file description, so two Stores of one process exclude each other too.
//
// Holder info whose flock is free was left by a process that died: Lock
// takes over (Lock.TookOver names the dead holder) and LockStatus reports
// it as stale. Unless that process still runs (on this host, by its pid
// and start time): then lock.flock was removed while it held the lock, and
// Lock refuses (LockedError.Orphaned) rather than make a second writer.

// lockRetry is how often LockContext tries again while it waits.
const lockRetry = 100 * time.Millisecond

// Lock takes the exclusive lock at once or fails with *LockedError.
//
// Holder info left behind by a process that died is stale (its flock went
// with it): Lock succeeds, replaces it and names the dead holder in
// Lock.TookOver.
func (s *Store) Lock(operation string) (*Lock, error) {
	return s.lock(context.Background(), false, operation)
}

// LockContext is Lock that waits for a lock held by another process until
// ctx is done (for --lock-timeout), then fails with *LockedError.
func (s *Store) LockContext(ctx context.Context, operation string) (*Lock, error) {
	return s.lock(ctx, true, operation)
}

func (s *Store) lock(ctx context.Context, wait bool, operation string) (*Lock, error) {
	if err := mkdirDurable(s.dir); err != nil {
		return nil, fmt.Errorf("lock state in %s: %w", s.dir, fileErr(err))
	}
	if err := tightenDir(s.dir); err != nil {
		return nil, err
	}
	if err := checkLockFile(s.dir); err != nil {
		return nil, err
	}
	fl := flock.New(filepath.Join(s.dir, lockFile), flock.SetPermissions(filePerm))
	var ok bool
	var err error
	if !wait {
		ok, err = fl.TryLock()
	} else {
		ok, err = fl.TryLockContext(ctx, lockRetry)
		if !ok && ctx.Err() != nil {
			err = nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("lock state in %s: %w", s.dir, fileErr(err))
	}
	if !ok {
		holder, err := s.lockHolder()
		if err != nil {
			// Taken a moment ago and its info not written yet, or released
			// and its info already removed.
			holder = LockInfo{Who: "another process (holder unknown)"}
		}
		return nil, &LockedError{Holder: holder, Waited: wait}
	}
	l := &Lock{store: s, fl: fl}
	if prev, err := s.lockHolder(); err == nil {
		if prev.running() {
			// Its flock is free, yet it runs: lock.flock was removed (or
			// replaced) while it held the lock, and this flock is on
			// another file. It may still write: taking over would make
			// two writers.
			_ = fl.Unlock()
			return nil, &LockedError{Holder: prev, Orphaned: true}
		}
		l.TookOver = &prev
	}
	l.Info = LockInfo{
		ID:        randomHex(16),
		Operation: operation,
		Who:       whoAmI(),
		PID:       os.Getpid(),
		Created:   time.Now().UTC().Truncate(time.Second),
	}
	data, err := json.MarshalIndent(l.Info, "", "  ")
	if err == nil {
		err = writeFileAtomic(s.dir, lockInfoFile, append(data, '\n'))
	}
	if err != nil {
		_ = fl.Unlock()
		return nil, fmt.Errorf("lock state in %s: %w", s.dir, fileErr(err))
	}
	return l, nil
}

// checkLockFile refuses a lock file that is not a regular file: opening
// a FIFO blocks for good, and a link is followed (a committed state folder
// could create or lock a file anywhere).
func checkLockFile(dir string) error {
	var ce *CorruptError
	if err := checkRegular(filepath.Join(dir, lockFile)); errors.As(err, &ce) {
		return err
	}
	return nil // missing: created; other errors: the open says
}

// tightenDir makes an existing state folder private (0700): it holds the
// values last sent, which may be personal data.
func tightenDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fileErr(err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, dirPerm); err != nil {
			return fmt.Errorf("state folder %s is readable by others (mode %v) and could not be made private: %w", dir, st.Mode().Perm(), err)
		}
	}
	return nil
}

// Unlock releases the lock. Unlocking twice is a no-op.
func (l *Lock) Unlock() error {
	if l.fl == nil {
		return nil
	}
	// The info goes first: once the flock is released another process may
	// write its own.
	err := removeDurably(filepath.Join(l.store.dir, lockInfoFile))
	if uerr := l.fl.Unlock(); err == nil {
		err = uerr
	}
	l.fl = nil
	return err
}

// ForceUnlock removes a lock left by a dead process, if its ID matches.
//
// It is for locks left behind: holder info whose process is gone. A lock
// whose holder is alive (in this process or another) cannot be broken: the
// OS releases it when the holder exits, so ForceUnlock refuses, naming the
// holder. Lock itself takes over stale holder info, so ForceUnlock is only
// needed to clear what `state` commands report.
func (s *Store) ForceUnlock(id string) error {
	holder, err := s.lockHolder()
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("state in %s is not locked", s.dir)
	}
	if err != nil {
		return err
	}
	if holder.ID != id {
		return fmt.Errorf("lock ID %q does not match the lock on the state in %s (ID %s)", id, s.dir, holder.ID)
	}
	if err := checkLockFile(s.dir); err != nil {
		return err
	}
	fl := flock.New(filepath.Join(s.dir, lockFile), flock.SetPermissions(filePerm))
	ok, err := fl.TryLock()
	if err != nil {
		return fmt.Errorf("unlock state in %s: %w", s.dir, err)
	}
	if !ok {
		return fmt.Errorf("lock %s is held by a running process: %s (pid %d) for %q since %s; it is released when that process exits",
			holder.ID, holder.Who, holder.PID, holder.Operation, holder.Created.Format(time.RFC3339))
	}
	err = removeDurably(filepath.Join(s.dir, lockInfoFile))
	if uerr := fl.Unlock(); err == nil {
		err = uerr
	}
	return err
}

// LockStatus is what LockStatus finds of the lock.
type LockStatus struct {
	// Holder is the recorded holder (nil: no holder info).
	Holder *LockInfo `json:"holder,omitempty"`
	// Held is set when a process holds the lock now.
	Held bool `json:"held"`
	// Stale is set when holder info is left by a process that is gone:
	// the next command takes the lock over (`state unlock ID` clears it).
	Stale bool `json:"stale"`
	// Note says more, for people ("": nothing to add).
	Note string `json:"note,omitempty"`
	// Syncs are the locks of single syncs, for backends that lock each
	// sync on its own (the database backends); the fields above then sum
	// them up: Held when any is held, Stale when none is held and some
	// holder info is stale, Holder the first holder of those.
	Syncs []SyncLock `json:"syncs,omitempty"`
}

// SyncLock is the lock of one sync, as LockStatus finds it.
type SyncLock struct {
	Sync   string    `json:"sync"`
	Holder *LockInfo `json:"holder,omitempty"`
	Held   bool      `json:"held"`
	Stale  bool      `json:"stale"`
	Note   string    `json:"note,omitempty"`
}

// LockStatus reports who holds the lock, if anyone, and whether holder info
// is stale. It does not keep the lock.
func (s *Store) LockStatus() (LockStatus, error) {
	var st LockStatus
	holder, err := s.lockHolder()
	switch {
	case err == nil:
		st.Holder = &holder
	case !errors.Is(err, os.ErrNotExist):
		st.Note = err.Error()
	}
	if !exists(filepath.Join(s.dir, lockFile)) {
		st.Stale = st.Holder != nil
		return st, nil
	}
	if err := checkLockFile(s.dir); err != nil {
		return st, err
	}
	fl := flock.New(filepath.Join(s.dir, lockFile), flock.SetPermissions(filePerm))
	ok, err := fl.TryRLock()
	if err != nil {
		return st, fmt.Errorf("lock state in %s: %w", s.dir, fileErr(err))
	}
	if ok {
		_ = fl.Unlock()
		st.Stale = st.Holder != nil
		if st.Stale {
			st.Note = fmt.Sprintf("left by %s, which is gone; the next command takes the lock over", holder)
		}
		return st, nil
	}
	st.Held = true
	if st.Holder != nil && holder.gone() {
		st.Note = fmt.Sprintf("held by another process: the recorded holder, %s, is gone", holder)
	}
	return st, nil
}

func (s *Store) lockHolder() (LockInfo, error) {
	var info LockInfo
	data, err := readStateFile(filepath.Join(s.dir, lockInfoFile))
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(data, &info); err != nil {
		return info, fmt.Errorf("read lock info in %s: %w", s.dir, err)
	}
	return info, nil
}

// String names the holder: who, pid, operation, since when and lock ID.
func (i LockInfo) String() string {
	return fmt.Sprintf("%s (pid %d) for %q since %s (lock ID %s)", i.Who, i.PID, i.Operation, i.Created.Format(time.RFC3339), i.ID)
}

// gone reports whether the holder provably no longer runs: it ran on this
// host and its pid does not exist.
func (i LockInfo) gone() bool {
	return i.onThisHost() && !pidAlive(i.PID)
}

// onThisHost reports whether the holder ran on this host, with a pid.
func (i LockInfo) onThisHost() bool {
	_, host, ok := strings.Cut(i.Who, "@")
	h, err := os.Hostname()
	return ok && err == nil && host == h && i.PID > 0
}

// running reports whether the holder provably still runs: it ran on this
// host, a process with its pid exists, and that process did not start after
// the lock was taken (a pid used again).
func (i LockInfo) running() bool {
	return i.onThisHost() && pidAlive(i.PID) && !pidStartedAfter(i.PID, i.Created)
}

// whoAmI returns user@host, as well as it can tell.
func whoAmI() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		name = "unknown"
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return name + "@" + host
}
