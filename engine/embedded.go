package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/memory"
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/backflowhq/backflow/schema"
)

// embeddedDatabase is the name of the one database of an Embedded engine,
// selected as current for every query.
const embeddedDatabase = "fixtures"

// Embedded is an in-process go-mysql-server database loaded from fixtures.
//
// It is safe for concurrent use: every call into go-mysql-server (loading,
// planning a query, reading one row, closing) is serialised by one mutex,
// so several Rows may be open at once and read in any interleaving.
// CSV, JSONL and AddTable fixtures are fixtureTables: key-less, stored by
// column and appended to in bulk rather than through go-mysql-server's
// row-at-a-time inserter (memory tables with a key even insert in
// quadratic time); key uniqueness is the caller's business. Tables a .sql
// fixture creates are go-mysql-server memory tables.
type Embedded struct {
	mu  sync.Mutex
	db  *memory.Database
	pro *memory.DbProvider
	eng *sqle.Engine
	// timeout bounds a model query, from Query to the end of its rows.
	// go-mysql-server looks at the context where it scans a table.
	timeout time.Duration
	// memoryLimit bounds the heap a model query grows, in bytes, from
	// Query to the end of its rows (watchMemory); 0: unbounded.
	memoryLimit int64
	// stuck is a query left running when its context ended (its timeout,
	// Ctrl-C) while the engine computed without looking at it: later
	// calls are refused until it ends (see embeddedRows).
	stuck atomic.Pointer[stuckQuery]
}

// stuckQuery is a query left running (Embedded.stuck): ended is closed
// when its goroutine returns.
type stuckQuery struct {
	ended chan struct{}
	cause error
}

// usable is an error while a query left running still runs: it holds the
// engine, so anything else would wait for it.
func (e *Embedded) usable() error {
	q := e.stuck.Load()
	if q == nil {
		return nil
	}
	select {
	case <-q.ended:
		e.stuck.CompareAndSwap(q, nil)
		return nil
	default:
		return fmt.Errorf("an earlier model query of the embedded source is still running: it did not stop when it should have (%v); "+
			"simplify that query (the engine does not look at the time while it joins computed rows)", q.cause)
	}
}

var _ Source = (*Embedded)(nil)

// NewEmbedded returns an empty embedded database. It reads and writes no
// host files (see sandbox.go).
func NewEmbedded() *Embedded {
	confineFileAccess()
	db := memory.NewDatabase(embeddedDatabase)
	pro := memory.NewDBProvider(db)
	return &Embedded{db: db, pro: pro, eng: sqle.NewDefault(sandboxProvider{pro}), timeout: DefaultQueryTimeout, memoryLimit: DefaultMemoryLimit}
}

// SetQueryTimeout bounds each later model query (DefaultQueryTimeout
// unless set); 0 or less leaves queries unbounded.
func (e *Embedded) SetQueryTimeout(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.timeout = d
}

// queryTimeout is the cause of a model query's context ending at the
// embedded source's query_timeout.
type queryTimeout struct{ limit time.Duration }

func (q *queryTimeout) Error() string {
	return fmt.Sprintf("the model query did not finish within %s (query_timeout)", q.limit)
}

func (q *queryTimeout) Is(target error) bool { return target == context.DeadlineExceeded }

// sqlContext returns a go-mysql-server context on a fresh memory session
// (memory tables refuse any other session type) with the fixtures database
// selected.
func (e *Embedded) sqlContext(ctx context.Context) *sql.Context {
	sess := memory.NewSession(sql.NewBaseSession(), e.pro)
	sctx := sql.NewContext(ctx, sql.WithSession(sess))
	sctx.SetCurrentDatabase(embeddedDatabase)
	return sctx
}

// AddTable creates (or replaces) a table from rows given in Go values
// (nil, int64, int, float64, string, bool, []byte, time.Time); column types
// are inferred as for CSV: strings are read like CSV cells (int, float,
// bool, timestamp, else string) and typed values keep their kind (an int
// column with a float widens to float; mixed kinds become string).
func (e *Embedded) AddTable(name string, columns []string, rows [][]any) error {
	if !validIdentifier(name) {
		return fmt.Errorf("table name %q is not a valid identifier (letters, digits and underscores, not starting with a digit)", name)
	}
	if err := checkColumns(columns); err != nil {
		return fmt.Errorf("table %s: %w", name, err)
	}
	inf := newInference(len(columns))
	norm := make([][]any, len(rows))
	for i, r := range rows {
		if len(r) != len(columns) {
			return fmt.Errorf("table %s: row %d has %d values for %d columns", name, i+1, len(r), len(columns))
		}
		norm[i] = make([]any, len(r))
		for j, v := range r {
			x, err := typedValue(v)
			if err != nil {
				return fmt.Errorf("table %s: row %d, column %s: %w", name, i+1, columns[j], err)
			}
			norm[i][j] = x
			inf[j].observe(x)
		}
	}
	spec := newSpec(name, columns, inf)
	b := newTableBuilder(spec, len(norm))
	for i, r := range norm {
		for j, v := range r {
			if err := b.appendValue(j, v); err != nil {
				return fmt.Errorf("table %s: row %d: column %s (%s): %w", name, i+1, columns[j], spec.types[j], err)
			}
		}
	}
	return e.putTable(context.Background(), b.table(len(norm)))
}

// putTable adds a loaded fixture table, replacing any table of the same
// name (in any case).
func (e *Embedded) putTable(ctx context.Context, t *fixtureTable) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	sctx := e.sqlContext(ctx)
	if old, ok, _ := e.db.GetTableInsensitive(sctx, t.name); ok {
		if _, fixture := old.(*fixtureTable); fixture {
			e.db.DeleteTable(old.Name())
		} else if err := e.db.DropTable(sctx, old.Name()); err != nil { // a table a .sql fixture created
			return fmt.Errorf("replacing table %s: %w", old.Name(), err)
		}
	}
	e.db.AddTable(t.name, t)
	return nil
}

// checkColumns requires non-empty, case-insensitively unique column names.
// MaxFixtureColumns bounds the columns of a fixture table (CSV, JSONL or
// a test's rows), as MySQL bounds a table's (PostgreSQL: 1,600). Planning a
// model over a table costs memory per column, about 90 KB each for
// SELECT *: 40,000 columns took 3.7 GB, past the engine's memory_limit.
const MaxFixtureColumns = 4096

func checkColumns(columns []string) error {
	if len(columns) == 0 {
		return errors.New("a table needs at least one column")
	}
	if len(columns) > MaxFixtureColumns {
		return fmt.Errorf("a table has at most %d columns, not %d", MaxFixtureColumns, len(columns))
	}
	seen := make(map[string]bool, len(columns))
	for _, c := range columns {
		if strings.TrimSpace(c) == "" {
			return errors.New("a column name is empty")
		}
		k := strings.ToLower(c)
		if seen[k] {
			return fmt.Errorf("column %q appears twice", c)
		}
		seen[k] = true
	}
	return nil
}

// exec runs one statement of a .sql fixture to completion, if the sandbox
// allows it (a *refusal otherwise).
func (e *Embedded) exec(ctx context.Context, text string) (err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer recoverEngine(&err)
	sctx := e.sqlContext(ctx)
	stmt, err := parseStatement(sctx, text)
	if err != nil || stmt == nil {
		return err
	}
	if err := checkFixture(stmt, text); err != nil {
		return err
	}
	_, iter, _, err := e.eng.QueryWithBindings(sctx, text, stmt, nil, nil)
	if err != nil {
		return err
	}
	for {
		if _, err := iter.Next(sctx); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			_ = iter.Close(sctx)
			return err
		}
	}
	return iter.Close(sctx)
}

// parseModel parses a model query and refuses anything but one SELECT
// that uses no file feature.
func parseModel(sctx *sql.Context, query string) (sqlparser.Statement, error) {
	stmt, err := parseStatement(sctx, query)
	if err != nil {
		return nil, err
	}
	if stmt == nil {
		return nil, errors.New("the query is empty")
	}
	return stmt, checkModel(stmt, query)
}

// Query runs a model query and streams its rows. The query must be one
// SELECT; file features are refused (see sandbox.go).
//
// The query runs in a goroutine of its own, which reads its rows ahead
// (embeddedRows): go-mysql-server looks at the context only where it
// scans a table, so a query computing without scanning (a cross join of
// CTEs) would otherwise hold the caller past its query_timeout and past
// Ctrl-C. When the context ends first, Query or Next returns its cause
// and the goroutine is left to end on its own; until it does, the engine
// refuses other work (usable). The context also ends, with a
// memoryExceeded cause, when the heap grows by more than the source's
// memory_limit while the engine runs the query (watchMemory).
func (e *Embedded) Query(ctx context.Context, query string) (_ Rows, err error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	e.mu.Lock()
	timeout, memoryLimit := e.timeout, e.memoryLimit
	e.mu.Unlock()
	ctx, cancelMemory := context.WithCancelCause(ctx)
	cancelTimeout := context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancelTimeout = context.WithTimeoutCause(ctx, timeout, &queryTimeout{timeout})
	}
	stopWatch := watchMemory(memoryLimit, &memoryExceeded{limit: memoryLimit}, cancelMemory)
	cancel := func() {
		stopWatch()
		cancelTimeout()
		cancelMemory(nil)
	}
	sctx := e.sqlContext(ctx)
	var stmt sqlparser.Statement
	func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		defer recoverEngine(&err)
		stmt, err = parseModel(sctx, query)
	}()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("embedded query: %w", err)
	}
	r := &embeddedRows{e: e, ctx: sctx, cancel: cancel, stopWatch: stopWatch, chunks: make(chan rowsChunk, 2), stop: make(chan struct{}), ended: make(chan struct{})}
	started := make(chan error, 1)
	go r.produce(query, stmt, started)
	select {
	case err = <-started:
	case <-ctx.Done():
		r.abandon()
		return nil, fmt.Errorf("embedded query: %w", contextCause(sctx, ctx.Err()))
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("embedded query: %w", contextCause(sctx, err))
	}
	return r, nil
}

// contextCause is err, or the reason the query's context ended when it
// ended (the engine reports that as a bare "context deadline exceeded").
func contextCause(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		if cause := context.Cause(ctx); cause != nil {
			return cause
		}
	}
	return err
}

// Schema returns the columns a query would return, by analysing it without
// executing it.
func (e *Embedded) Schema(ctx context.Context, query string) (_ []schema.Column, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer recoverEngine(&err)
	sctx := e.sqlContext(ctx)
	stmt, err := parseModel(sctx, query)
	if err != nil {
		return nil, fmt.Errorf("embedded query schema: %w", err)
	}
	node, err := e.eng.BoundQueryPlan(sctx, query, stmt, nil)
	if err != nil {
		return nil, fmt.Errorf("embedded query schema: %w", err)
	}
	return columnsOf(node.Schema()), nil
}

// Close releases the engine. The Embedded must not be used afterwards.
func (e *Embedded) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.eng.Close()
}

// embeddedRows is a query's rows, read from go-mysql-server by a
// goroutine of its own (produce), rowsChunk rows at a time, each call into
// the engine holding its mutex.
type embeddedRows struct {
	e      *Embedded
	ctx    *sql.Context
	cancel func() // ends the query's context (its timeout) and its memory watch
	// stopWatch ends the query's memory watch: when its rows are closed
	// or abandoned, or the engine has sent the last of them (what the
	// caller keeps of them is its own business).
	stopWatch func()
	cols      []schema.Column // set before produce's start is sent
	chunks    chan rowsChunk
	stop      chan struct{} // closed by Close: produce ends
	ended     chan struct{} // closed when produce returns
	cur       rowsChunk
	i         int
	row       []any
	err       error
	done      bool
}

// rowsChunk is up to rowsPerChunk rows, converted (portableValue), laid
// out flat; err, on the last chunk, is how the rows ended (nil: all read).
type rowsChunk struct {
	vals []any
	n    int
	err  error
}

const rowsPerChunk = 256

// produce runs the query and sends its rows; started gets the outcome of
// starting it (the columns set, or an error).
func (r *embeddedRows) produce(query string, stmt sqlparser.Statement, started chan<- error) {
	defer close(r.ended)
	defer r.stopWatch()
	e := r.e
	var (
		sch  sql.Schema
		iter sql.RowIter
		err  error
	)
	func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		defer recoverEngine(&err)
		sch, iter, _, err = e.eng.QueryWithBindings(r.ctx, query, stmt, nil, nil)
	}()
	if err != nil {
		started <- err
		return
	}
	r.cols = columnsOf(sch)
	started <- nil
	defer func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		var cerr error
		defer recoverEngine(&cerr)
		_ = iter.Close(r.ctx)
	}()
	width := len(r.cols)
	next := func() (raw sql.Row, err error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		defer recoverEngine(&err)
		return iter.Next(r.ctx)
	}
	for {
		c := rowsChunk{vals: make([]any, rowsPerChunk*width)}
		for c.n < rowsPerChunk && c.err == nil {
			raw, err := next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					c.err = fmt.Errorf("embedded query: %w", contextCause(r.ctx, err))
				} else {
					c.err = io.EOF
				}
				break
			}
			row := c.vals[c.n*width : (c.n+1)*width]
			for i := range row {
				var v any
				if i < len(raw) {
					v = raw[i]
				}
				if row[i], err = portableValue(r.ctx, sch[i].Type, r.cols[i].Type, v); err != nil {
					c.err = fmt.Errorf("embedded query: column %s: %w", r.cols[i].Name, err)
					break
				}
			}
			if c.err == nil {
				c.n++
			}
		}
		select {
		case r.chunks <- c:
		case <-r.stop:
			return
		}
		if c.err != nil {
			return
		}
	}
}

// abandon leaves the query's goroutine to end on its own: the engine is
// refused to others until it does.
func (r *embeddedRows) abandon() {
	select {
	case <-r.ended:
		return
	default:
	}
	r.e.stuck.Store(&stuckQuery{ended: r.ended, cause: contextCause(r.ctx, r.ctx.Err())})
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.cancel()
}

func (r *embeddedRows) Columns() []schema.Column { return r.cols }

func (r *embeddedRows) Next() bool {
	if r.done {
		return false
	}
	r.i++
	if r.i < r.cur.n {
		r.row = r.cur.vals[r.i*len(r.cols) : (r.i+1)*len(r.cols)]
		return true
	}
	for {
		if r.cur.err != nil {
			if !errors.Is(r.cur.err, io.EOF) {
				r.err = r.cur.err
			}
			r.done = true
			return false
		}
		select {
		case c := <-r.chunks:
			r.cur, r.i = c, 0
		case <-r.ctx.Done():
			// Its timeout, or Ctrl-C: the rows end here, whether the
			// engine saw it (its goroutine then ends at once) or goes
			// on computing without looking.
			r.abandon()
			r.err = fmt.Errorf("embedded query: %w", contextCause(r.ctx, r.ctx.Err()))
			r.done = true
			return false
		}
		if r.cur.n > 0 {
			r.row = r.cur.vals[:len(r.cols)]
			return true
		}
	}
}

func (r *embeddedRows) Row() []any { return r.row }
func (r *embeddedRows) Err() error { return r.err }

// Close ends the query: its goroutine stops and closes the engine's
// iterator, now or, if the engine is computing, once it next answers.
func (r *embeddedRows) Close() error {
	r.done = true
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.cancel()
	return nil
}

// recoverEngine turns a panic of go-mysql-server, which a query the
// engine mishandles can cause, into an error in *err: the query is
// untrusted input, and a run must end with a message, not a stack trace.
func recoverEngine(err *error) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("the embedded engine failed on this query (%v); simplify the query or the fixtures it reads", p)
	}
}
