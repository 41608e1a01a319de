package engine

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/backflowhq/backflow/schema"
)

// Sharer is implemented by sources that can run several queries at once,
// each on a connection of its own, all reading one snapshot of the
// database, as a single query would (PostgreSQL: a snapshot exported by the
// first transaction and imported by the others). Warehouse CDC splits its
// statement by key this way, so that the server diffs with more than one
// core: PostgreSQL 15 runs a full join in one process.
type Sharer interface {
	// QueryShared runs every query with tuning, at once, and returns their
	// rows together, in no particular order; their columns must be alike.
	// An error any query raises before its first row is returned, the
	// others being cancelled. ErrNotShared: the snapshot could not be
	// shared, and nothing ran.
	QueryShared(ctx context.Context, queries []string, tuning Tuning) (Rows, error)
}

// ErrNotShared is returned (wrapped) by QueryShared when the source cannot
// share a snapshot between connections: it does not know how, the server
// refused to export or import one, or a second connection could not be
// opened (a connection limit). The caller runs its work as one query.
var ErrNotShared = errors.New("the snapshot cannot be shared between connections")

// QueryShared runs queries at once on src where src is a Sharer; otherwise
// it returns ErrNotShared.
func QueryShared(ctx context.Context, src Source, queries []string, tuning Tuning) (Rows, error) {
	if s, ok := src.(Sharer); ok {
		return s.QueryShared(ctx, queries, tuning)
	}
	return nil, ErrNotShared
}

// notShared wraps the cause of a snapshot that could not be shared.
type notShared struct{ cause error }

func (e *notShared) Error() string        { return ErrNotShared.Error() + ": " + e.cause.Error() }
func (e *notShared) Is(target error) bool { return target == ErrNotShared }
func (e *notShared) Unwrap() error        { return e.cause }

// aborter is a Rows whose query can be cancelled from another goroutine
// than the one reading it (its reads then end promptly).
type aborter interface{ abort() }

// mergedRows reads several results at once, each in a goroutine of its
// own, so that no server waits for the client to drain another's rows.
// Each input is read, then closed, by its goroutine only.
type mergedRows struct {
	cols []schema.Column
	ins  []Rows
	rows chan []any
	done chan struct{} // closed by Close: the readers stop
	wg   sync.WaitGroup

	mu       sync.Mutex
	err      error // the first input's error (reading or closing it)
	failed   chan struct{}
	failOnce sync.Once
	stop     sync.Once
	row      []any
	// release, when set, runs once every input is closed (Close).
	release func() error
}

// mergeRows returns the rows of every input, in no particular order. Row
// values are copied (the inputs may reuse their row slices).
func mergeRows(ins []Rows) *mergedRows {
	m := &mergedRows{cols: ins[0].Columns(), ins: ins, rows: make(chan []any, 256), done: make(chan struct{}), failed: make(chan struct{})}
	m.wg.Add(len(ins))
	for _, in := range ins {
		go m.read(in)
	}
	go func() {
		m.wg.Wait()
		close(m.rows)
	}()
	return m
}

func (m *mergedRows) read(in Rows) {
	defer m.wg.Done()
	defer func() {
		if err := in.Close(); err != nil && !m.stopped() {
			m.fail(err)
		}
	}()
	for in.Next() {
		select {
		case m.rows <- slices.Clone(in.Row()):
		case <-m.done:
			return
		case <-m.failed:
			return
		}
	}
	if err := in.Err(); err != nil && !m.stopped() {
		m.fail(err)
	}
}

// stopped says whether Close stopped the inputs: their errors since are
// its cancellations, not failures.
func (m *mergedRows) stopped() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// fail records the first error and stops every input: a result missing
// some rows must not pass for a whole one.
func (m *mergedRows) fail(err error) {
	m.mu.Lock()
	if m.err == nil {
		m.err = err
	}
	m.mu.Unlock()
	m.failOnce.Do(func() {
		close(m.failed)
		m.abortAll()
	})
}

func (m *mergedRows) abortAll() {
	for _, in := range m.ins {
		if a, ok := in.(aborter); ok {
			a.abort()
		}
	}
}

func (m *mergedRows) Columns() []schema.Column { return m.cols }

func (m *mergedRows) Next() bool {
	select {
	case <-m.failed:
		return false
	default:
	}
	row, ok := <-m.rows
	if !ok {
		return false
	}
	select {
	case <-m.failed:
		return false
	default:
	}
	m.row = row
	return true
}

func (m *mergedRows) Row() []any { return m.row }

func (m *mergedRows) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Close stops the inputs not read to their end (their queries cancelled)
// and waits for their readers, which close them.
func (m *mergedRows) Close() error {
	m.stop.Do(func() {
		close(m.done)
		m.abortAll()
	})
	// Drained until every reader is gone (the channel is closed then).
	for range m.rows {
	}
	if m.release != nil {
		release := m.release
		m.release = nil
		if err := release(); err != nil {
			m.fail(err)
		}
	}
	return m.Err()
}
