package engine

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

var _ Sharer = (*pgSource)(nil)

// sharedBegin opens a transaction whose snapshot can be exported, or
// imported: one snapshot for the whole transaction (REPEATABLE READ; in a
// read-only transaction it never fails to serialize).
const sharedBegin = "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"

// snapshotID is what pg_export_snapshot returns (00000003-0000001B-1), and
// the only text SET TRANSACTION SNAPSHOT is given.
var snapshotID = regexp.MustCompile(`^[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+$`)

// afterExport runs once the first transaction has exported its snapshot
// (tests: a write committed there must be invisible to every query).
var afterExport = func() {}

// QueryShared implements Sharer. The first query runs on the source's
// connection, in a transaction that locks the guarded tables and then
// exports its snapshot; each other query opens a connection of its own,
// imports that snapshot before anything else, and locks the guarded tables
// too. The queries are started together, each by a goroutine of its own
// (the server answers a query's first row only once it has done the work
// before it), and read together.
func (s *pgSource) QueryShared(ctx context.Context, queries []string, tu Tuning) (Rows, error) {
	if len(queries) == 0 {
		return nil, errors.New("QueryShared: no query")
	}
	first, err := s.beginAs(ctx, tu, sharedBegin)
	if err != nil {
		return nil, err
	}
	qs := []*pgQuery{first}
	endAll := func(err error) error {
		for _, q := range qs {
			_ = q.end(nil)
		}
		return err
	}
	var id string
	if err := first.conn.QueryRow(first.qctx, "SELECT pg_export_snapshot()").Scan(&id); err != nil {
		if ctx.Err() != nil {
			return nil, endAll(s.errs.queryError(ctx, first.qctx, "exporting the snapshot", err, false))
		}
		return nil, endAll(&notShared{cause: s.errs.queryError(ctx, first.qctx, "exporting the snapshot", err, false)})
	}
	if !snapshotID.MatchString(id) {
		return nil, endAll(&notShared{cause: fmt.Errorf("the server exported a snapshot named %q", id)})
	}
	afterExport()
	for range queries[1:] {
		conn, err := pgx.ConnectConfig(ctx, s.cfg)
		if err != nil {
			var ce *pgconn.ConnectError
			if errors.As(err, &ce) {
				err = &scrubbedError{msg: ce.Unwrap().Error(), cause: err}
			}
			err = s.errs.connectError(ctx, err)
			if ctx.Err() != nil {
				return nil, endAll(err)
			}
			return nil, endAll(&notShared{cause: err})
		}
		q, err := s.open(&pgQuery{s: s, conn: conn, ctx: ctx, own: true}, tu, sharedBegin+"; SET TRANSACTION SNAPSHOT '"+id+"'")
		if err != nil {
			var le *LockError
			if errors.As(err, &le) || ctx.Err() != nil {
				return nil, endAll(err)
			}
			return nil, endAll(&notShared{cause: err})
		}
		qs = append(qs, q)
	}
	rows := make([]Rows, len(qs))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for i, q := range qs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.runOn(q, queries[i])
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
					// The others stop: their work would be thrown away.
					for _, o := range qs {
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
		return nil, firstErr
	}
	return mergeRows(rows), nil
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
