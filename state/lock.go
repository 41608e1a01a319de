package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"
)

// The lock is an flock(2) on dir/lock.flock, which the OS releases when its
// holder exits, however it exits; dir/lock holds the holder's LockInfo so
// that a refused writer can say who holds it. flock locks belong to an open
// file description, so two Stores of one process exclude each other too.

// Lock takes the exclusive lock at once or fails with *LockedError.
//
// A holder-info file left behind by a process that died is stale (its flock
// went with it): Lock succeeds and replaces it.
func (s *Store) Lock(operation string) (*Lock, error) {
	if err := mkdirDurable(s.dir); err != nil {
		return nil, err
	}
	fl := flock.New(filepath.Join(s.dir, lockFile), flock.SetPermissions(filePerm))
	ok, err := fl.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lock state in %s: %w", s.dir, err)
	}
	if !ok {
		holder, err := s.lockHolder()
		if err != nil {
			// Taken a moment ago and its info not written yet, or released
			// and its info already removed.
			holder = LockInfo{Who: "another process (holder unknown)"}
		}
		return nil, &LockedError{Holder: holder}
	}
	info := LockInfo{
		ID:        randomHex(16),
		Operation: operation,
		Who:       whoAmI(),
		PID:       os.Getpid(),
		Created:   time.Now().UTC().Truncate(time.Second),
	}
	data, err := json.MarshalIndent(info, "", "  ")
	if err == nil {
		err = writeFileAtomic(s.dir, lockInfoFile, append(data, '\n'))
	}
	if err != nil {
		_ = fl.Unlock()
		return nil, fmt.Errorf("lock state in %s: %w", s.dir, err)
	}
	return &Lock{Info: info, store: s, fl: fl}, nil
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
// holder. Lock itself ignores stale holder info, so ForceUnlock is only
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

func (s *Store) lockHolder() (LockInfo, error) {
	var info LockInfo
	data, err := os.ReadFile(filepath.Join(s.dir, lockInfoFile))
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(data, &info); err != nil {
		return info, fmt.Errorf("read lock info in %s: %w", s.dir, err)
	}
	return info, nil
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
