package engine

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

var _ Sharer = (*pgSource)(nil)

// sharedBegin opens a transaction that imports a snapshot: one snapshot
// for the whole transaction (REPEATABLE READ; in a read-only transaction
// it never fails to serialize).
const sharedBegin = "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"

// snapshotID is what pg_export_snapshot returns (00000003-0000001B-1), and
// the only text SET TRANSACTION SNAPSHOT is given.
var snapshotID = regexp.MustCompile(`^[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+$`)

// afterExport runs once the first transaction has exported its snapshot
// (tests: a write committed there must be invisible to every query).
var afterExport = func() {}

// QueryShared implements Sharer, with one connection more than queries.
//
// The source's own connection leads: in a READ COMMITTED transaction it
// locks the guarded tables, then parses every query, which locks every
// relation each reads (held to the transaction's end), and only then
// exports a snapshot. A table a query reads can then not be truncated or
// swapped (neither is MVCC-safe) between the snapshot and the query, as a
// single statement ensures by locking before it takes its snapshot. Each
// query runs on a connection of its own, in a REPEATABLE READ transaction
// importing that snapshot, its locks already held by the leader; the
// leader holds its own until the rows are closed.
//
// Another session's exclusive lock request queued behind the leader's
// locks would make a query's lock wait behind it, and it waits for the
// leader, which waits for the query: PostgreSQL cannot see that deadlock,
// which closes in the client. The queries wait for a lock at most
// partLockWait, then the whole is given up as ErrNotShared (the caller's
// single query then waits for that session as any reader does).
//
// The queries are started together, each by a goroutine of its own (the
// server answers a query's first row only once it has done the work
// before it), and read together.
func (s *pgSource) QueryShared(ctx context.Context, queries []string, tu Tuning) (Rows, error) {
	if len(queries) == 0 {
		return nil, errors.New("QueryShared: no query")
	}
	lead, err := s.beginWith(ctx, tu)
	if err != nil {
		return nil, err
	}
	var parts []*pgQuery
	endAll := func(err error) error {
		for _, q := range parts {
			_ = q.end(nil)
		}
		return lead.end(err)
	}
	// notShared: the snapshot could not be shared; unless the caller
	// gave up meanwhile, in which case that is what to say.
	notSharedErr := func(err error) error {
		if ctx.Err() != nil {
			return endAll(err)
		}
		return endAll(&notShared{cause: err})
	}
	for _, q := range queries {
		if _, err := lead.conn.Prepare(lead.qctx, "", q); err != nil {
			return nil, endAll(s.errs.queryError(ctx, lead.qctx, "query", err, serverTimeoutPG(err)))
		}
	}
	var id string
	if err := lead.conn.QueryRow(lead.qctx, "SELECT pg_export_snapshot()").Scan(&id); err != nil {
		return nil, notSharedErr(s.errs.queryError(ctx, lead.qctx, "exporting the snapshot", err, false))
	}
	if !snapshotID.MatchString(id) {
		return nil, endAll(&notShared{cause: fmt.Errorf("the server exported a snapshot named %q", id)})
	}
	afterExport()
	// The parts' settings; no guard, the leader holding the locks.
	ptu := Tuning{Settings: append(slices.Clone(tu.Settings), Setting{Name: "lock_timeout", Value: strconv.FormatInt(max(partLockWait.Milliseconds(), 1), 10)})}
	for range queries {
		conn, err := pgx.ConnectConfig(ctx, s.cfg)
		if err != nil {
			var ce *pgconn.ConnectError
			if errors.As(err, &ce) {
				err = &scrubbedError{msg: ce.Unwrap().Error(), cause: err}
			}
			return nil, notSharedErr(s.errs.connectError(ctx, err))
		}
		q, err := s.open(&pgQuery{s: s, conn: conn, ctx: ctx, own: true}, ptu, sharedBegin+"; SET TRANSACTION SNAPSHOT '"+id+"'")
		if err != nil {
			return nil, notSharedErr(err)
		}
		parts = append(parts, q)
	}
	rows := make([]Rows, len(parts))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for i, q := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.runOn(q, queries[i])
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
					// The others stop: their work would be thrown away.
					for _, o := range parts {
						o.cancel()
					}
				}
				mu.Unlock()
				return
			}
			rows[i] = r
		}()
	}
	wg.Wait()
	if firstErr != nil {
		for _, r := range rows {
			if r != nil {
				_ = r.Close()
			}
		}
		parts = nil // ended by runOn, or by their rows' Close
		if lockNotAvailable(firstErr) && ctx.Err() == nil {
			return nil, lead.end(&notShared{cause: firstErr})
		}
		return nil, lead.end(firstErr)
	}
	m := mergeRows(rows)
	m.release = func() error { return lead.end(nil) }
	return m, nil
}

// partLockWait bounds a shared query's wait for a lock: the leader holds
// every lock the queries' text names, so a wait means another session's
// request queued behind it (see QueryShared).
var partLockWait = time.Second

// lockNotAvailable says whether err is PostgreSQL's lock_timeout.
func lockNotAvailable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "55P03"
}

// runOn runs query in q's open transaction and reads its first row; on
// failure q is ended.
func (s *pgSource) runOn(q *pgQuery, query string) (Rows, error) {
	rows, err := q.conn.Query(q.qctx, query, pgx.QueryExecModeDescribeExec, pgResultFormats)
	if err != nil {
		return nil, q.end(s.errs.queryError(q.ctx, q.qctx, "query", err, serverTimeoutPG(err)))
	}
	return s.startRows(q, rows)
}

// abort cancels the query from any goroutine: its reads end promptly.
func (r *pgRows) abort() { r.q.cancel() }
