package state

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Locks of the database backends: one per sync, taken on a connection kept
// for the life of the Held. PostgreSQL: a session advisory lock whose key
// is the first 8 bytes of SHA-256("backflow state lock", schema, sync)
// (advisory locks are per database, so the schema and sync name it).
// MySQL: GET_LOCK of "backflow:" and 40 hex digits of the same hash (lock
// names are per server; the schema is a database name, unique on it). The
// database releases the lock when the session ends, however the holder
// ends. The locks table names each holder (who, pid, operation, since,
// and the session holding it); a row whose session no longer holds the
// lock was left by a holder that died: it is stale, and the next Lock
// takes it over.

// heartbeatEvery is how often a held lock's connection is used, so that
// server idle timeouts (MySQL's wait_timeout) do not end the session.
const heartbeatEvery = 30 * time.Second

// sqlHeld is a lock on some syncs.
type sqlHeld struct {
	b       *sqlBackend
	conn    *sql.Conn
	session int64 // the connection's backend pid / connection id
	info    LockInfo
	syncs   []string
	took    *LockInfo

	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	done bool

	verified time.Time // when a check last found the lock held (guarded by b.mu)
}

// TookOverFrom implements Held.
func (h *sqlHeld) TookOverFrom() *LockInfo { return h.took }

// Lock implements Locker: the lock of each named sync, in name order, on
// one connection. With a deadline on ctx it waits for locks other runners
// hold until then; otherwise a held lock is refused at once, naming its
// holder.
func (b *sqlBackend) Lock(ctx context.Context, operation string, syncs []string) (Held, error) {
	names := slices.Clone(syncs)
	slices.Sort(names)
	names = slices.Compact(names)
	for _, s := range names {
		if err := checkName(s); err != nil {
			return nil, err
		}
	}
	if err := b.ensure(); err != nil {
		return nil, err
	}
	cctx, cancel := b.opCtx()
	defer cancel()
	conn, err := b.db.Conn(cctx)
	if err != nil {
		return nil, b.fail("lock the state", err)
	}
	h := &sqlHeld{b: b, conn: conn, syncs: names, stop: make(chan struct{}), info: LockInfo{
		ID: randomHex(16), Operation: operation, Who: whoAmI(), PID: os.Getpid(), Created: time.Now().UTC().Truncate(time.Second),
	}}
	sessionQuery := `SELECT CONNECTION_ID()`
	if b.pg {
		sessionQuery = `SELECT pg_backend_pid()`
	}
	if err := conn.QueryRowContext(cctx, sessionQuery).Scan(&h.session); err != nil {
		h.drop()
		return nil, b.fail("lock the state", err)
	}
	_, wait := ctx.Deadline()
	for _, s := range names {
		for {
			ok, err := b.tryLock(conn, s)
			if err != nil {
				h.release()
				return nil, b.fail("lock sync "+s, err)
			}
			if ok {
				break
			}
			if wait && ctx.Err() == nil {
				t := time.NewTimer(lockRetry)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
				if ctx.Err() == nil {
					continue
				}
			}
			holder := b.holderOf(s)
			h.release()
			return nil, &LockedError{Holder: holder, Waited: wait, Sync: s}
		}
	}
	if len(names) == 0 {
		// Nothing to lock (a config without syncs): a Held all the same.
		h.wg.Add(1)
		go h.heartbeat()
		return h, nil
	}
	wctx, wcancel := b.opCtx()
	defer wcancel()
	cctx = wctx
	err = b.writeTx(cctx, "lock the state", func(tx *sql.Tx) error {
		prev, err := b.lockRows(cctx, tx, `sync IN `+inClause(len(names)), anys(names)...)
		if err != nil {
			return err
		}
		for _, r := range prev {
			if r.info.ID != h.info.ID {
				info := r.info
				h.took = &info
				break
			}
		}
		if _, err := tx.ExecContext(cctx, b.q(`DELETE FROM {locks} WHERE sync IN `+inClause(len(names))), anys(names)...); err != nil {
			return err
		}
		return b.insert(cctx, tx, bulkInsert{table: "locks", cols: []string{"sync", "lock_id", "operation", "who", "pid", "since", "session"},
			kinds: []colKind{colText, colText, colText, colText, colInt, colTime, colInt}}, len(names), func(i int, dst []any) {
			in := h.info
			dst[0], dst[1], dst[2], dst[3] = names[i], in.ID, sanitizeText(in.Operation), sanitizeText(in.Who)
			dst[4], dst[5], dst[6] = int64(in.PID), in.Created, h.session
		})
	})
	if err != nil {
		h.release()
		return nil, err
	}
	b.mu.Lock()
	for _, s := range names {
		b.held[s] = h
	}
	b.mu.Unlock()
	h.wg.Add(1)
	go h.heartbeat()
	return h, nil
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// tryLock takes a sync's lock on conn if it is free.
func (b *sqlBackend) tryLock(conn *sql.Conn, sync string) (bool, error) {
	ctx, cancel := b.opCtx()
	defer cancel()
	key, name := b.lockKey(sync)
	if b.pg {
		var ok bool
		err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok)
		return ok, err
	}
	var got sql.NullInt64
	err := conn.QueryRowContext(ctx, `SELECT GET_LOCK(?, 0)`, name).Scan(&got)
	return got.Int64 == 1, err
}

// lockOwner returns the session holding a sync's lock, if any.
func (b *sqlBackend) lockOwner(ctx context.Context, q querier, sync string) (session int64, held bool, err error) {
	key, name := b.lockKey(sync)
	var owner sql.NullInt64
	if b.pg {
		u := uint64(key)
		err = q.QueryRowContext(ctx, `SELECT MIN(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1`, int64(u>>32), int64(u&0xffffffff)).Scan(&owner)
	} else {
		err = q.QueryRowContext(ctx, `SELECT IS_USED_LOCK(?)`, name).Scan(&owner)
	}
	return owner.Int64, owner.Valid, err
}

// checkHeld fails when this backend took a sync's lock and its session no
// longer holds it: another runner may hold it now, and writing on would
// mix two runs.
func (b *sqlBackend) checkHeld(ctx context.Context, q querier, sync string) error {
	b.mu.Lock()
	h := b.held[sync]
	b.mu.Unlock()
	if h == nil {
		return nil
	}
	asked := time.Now()
	owner, held, err := b.lockOwner(ctx, q, sync)
	if err != nil {
		return err
	}
	if !held || owner != h.session {
		return fmt.Errorf("the lock on sync %q was lost (its database session ended); stopped so that another runner's writes are not mixed with these", sync)
	}
	b.mu.Lock()
	if asked.After(h.verified) {
		h.verified = asked
	}
	b.mu.Unlock()
	return nil
}

// stillHeld is checkHeld on the backend's pool, unless the lock was found
// held within maxAge.
func (b *sqlBackend) stillHeld(ctx context.Context, sync string, maxAge time.Duration) error {
	b.mu.Lock()
	h := b.held[sync]
	fresh := h != nil && time.Since(h.verified) <= maxAge
	b.mu.Unlock()
	if h == nil || fresh {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.fail("check the lock of sync "+sync, b.checkHeld(ctx, b.db, sync))
}

type lockRow struct {
	sync    string
	info    LockInfo
	session int64
}

func (b *sqlBackend) lockRows(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, where string, args ...any) ([]lockRow, error) {
	rows, err := q.QueryContext(ctx, b.q(`SELECT sync, lock_id, operation, who, pid, since, session FROM {locks} WHERE `+where+` ORDER BY sync`), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []lockRow
	for rows.Next() {
		var r lockRow
		if err := rows.Scan(&r.sync, &r.info.ID, &r.info.Operation, &r.info.Who, &r.info.PID, &r.info.Created, &r.session); err != nil {
			return nil, err
		}
		r.info.Created = r.info.Created.UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// holderOf names the runner holding a sync's lock, as well as it can.
func (b *sqlBackend) holderOf(sync string) LockInfo {
	unknown := LockInfo{Who: "another runner (holder unknown)"}
	ctx, cancel := b.opCtx()
	defer cancel()
	rows, err := b.lockRows(ctx, b.db, `sync = ?`, sync)
	if err != nil || len(rows) == 0 {
		return unknown
	}
	owner, held, err := b.lockOwner(ctx, b.db, sync)
	if err != nil || !held || owner != rows[0].session {
		// The holder took the lock a moment ago and has not written its
		// info yet (what the row says is of an earlier holder).
		return unknown
	}
	return rows[0].info
}

func (h *sqlHeld) heartbeat() {
	defer h.wg.Done()
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), heartbeatEvery)
			_ = h.conn.PingContext(ctx) // a lost session is caught by checkHeld
			cancel()
		}
	}
}

// drop closes the lock's connection: the session ends and the database
// releases every lock it held.
func (h *sqlHeld) drop() {
	_ = h.conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = h.conn.Close()
}

// Unlock implements Held: the holder rows go first, then the locks, then
// the session. Unlocking twice is a no-op.
func (h *sqlHeld) Unlock() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.done {
		return nil
	}
	h.done = true
	close(h.stop)
	h.wg.Wait()
	b := h.b
	b.mu.Lock()
	for _, s := range h.syncs {
		if b.held[s] == h {
			delete(b.held, s)
		}
	}
	b.mu.Unlock()
	ctx, cancel := b.opCtx()
	defer cancel()
	_, err := b.db.ExecContext(ctx, b.q(`DELETE FROM {locks} WHERE lock_id = ?`), h.info.ID)
	h.release()
	return b.fail("unlock the state", err)
}

// release lets go of the locks taken so far, then drops the session. The
// locks are released at once, not when the server gets round to ending
// the session: the next runner may be waiting for them.
func (h *sqlHeld) release() {
	ctx, cancel := h.b.opCtx()
	defer cancel()
	if h.b.pg {
		_, _ = h.conn.ExecContext(ctx, `SELECT pg_advisory_unlock_all()`)
	} else {
		for _, s := range h.syncs {
			_, name := h.b.lockKey(s)
			_, _ = h.conn.ExecContext(ctx, `SELECT RELEASE_LOCK(?)`, name)
		}
	}
	h.drop()
}

// LockStatus implements Locker: the lock of each sync that has holder info
// or is held.
func (b *sqlBackend) LockStatus() (LockStatus, error) {
	var st LockStatus
	ctx, cancel := b.opCtx()
	defer cancel()
	if ok, err := b.present(ctx); err != nil || !ok {
		return st, err
	}
	rows, err := b.lockRows(ctx, b.db, `1 = 1`)
	if err != nil {
		return st, b.fail("read the locks", err)
	}
	seen := map[string]bool{}
	for _, r := range rows {
		seen[r.sync] = true
		owner, held, err := b.lockOwner(ctx, b.db, r.sync)
		if err != nil {
			return st, b.fail("read the locks", err)
		}
		info := r.info
		sl := SyncLock{Sync: r.sync, Holder: &info}
		switch {
		case held && owner == r.session:
			sl.Held = true
		case held:
			sl.Held = true
			sl.Note = fmt.Sprintf("held by another runner whose info is not written yet; the recorded holder, %s, is gone", info)
		default:
			sl.Stale = true
			sl.Note = fmt.Sprintf("left by %s, whose database session ended; the next command takes the lock over", info)
		}
		st.Syncs = append(st.Syncs, sl)
	}
	names, err := b.Syncs()
	if err != nil {
		return st, err
	}
	for _, s := range names {
		if seen[s] {
			continue
		}
		if _, held, err := b.lockOwner(ctx, b.db, s); err != nil {
			return st, b.fail("read the locks", err)
		} else if held {
			st.Syncs = append(st.Syncs, SyncLock{Sync: s, Held: true, Note: "held by another runner (holder unknown)"})
		}
	}
	slices.SortFunc(st.Syncs, func(a, b SyncLock) int { return strings.Compare(a.Sync, b.Sync) })
	for _, sl := range st.Syncs {
		if sl.Held && !st.Held {
			st.Held, st.Holder, st.Note = true, sl.Holder, sl.Note
		}
	}
	if !st.Held {
		for _, sl := range st.Syncs {
			if sl.Stale {
				st.Stale, st.Holder, st.Note = true, sl.Holder, sl.Note
				break
			}
		}
	}
	return st, nil
}

// ForceUnlock implements Locker: it removes holder info left by a runner
// that died. A lock whose session still holds it cannot be broken: it is
// released when that runner ends.
func (b *sqlBackend) ForceUnlock(id string) error {
	ctx, cancel := b.opCtx()
	defer cancel()
	if ok, err := b.present(ctx); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("state in %s is not locked", b.where)
	}
	rows, err := b.lockRows(ctx, b.db, `lock_id = ?`, id)
	if err != nil {
		return b.fail("read the locks", err)
	}
	if len(rows) == 0 {
		return fmt.Errorf("no lock with ID %q in %s (`state list` shows the locks)", id, b.where)
	}
	for _, r := range rows {
		owner, held, err := b.lockOwner(ctx, b.db, r.sync)
		if err != nil {
			return b.fail("read the locks", err)
		}
		if held && owner == r.session {
			return fmt.Errorf("lock %s is held by a running process: %s; it is released when that process exits or its database session ends", id, r.info)
		}
	}
	_, err = b.db.ExecContext(ctx, b.q(`DELETE FROM {locks} WHERE lock_id = ?`), id)
	return b.fail("unlock the state", err)
}

// PerSyncLocks implements PerSyncLocking: runners lock syncs one by one.
func (b *sqlBackend) PerSyncLocks() bool { return true }
