package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
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
}

var _ Source = (*Embedded)(nil)

// NewEmbedded returns an empty embedded database. It reads and writes no
// host files (see sandbox.go).
func NewEmbedded() *Embedded {
	confineFileAccess()
	db := memory.NewDatabase(embeddedDatabase)
	pro := memory.NewDBProvider(db)
	return &Embedded{db: db, pro: pro, eng: sqle.NewDefault(sandboxProvider{pro}), timeout: DefaultQueryTimeout}
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
func checkColumns(columns []string) error {
	if len(columns) == 0 {
		return errors.New("a table needs at least one column")
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
func (e *Embedded) Query(ctx context.Context, query string) (_ Rows, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer recoverEngine(&err)
	cancel := context.CancelFunc(func() {})
	if e.timeout > 0 {
		ctx, cancel = context.WithTimeoutCause(ctx, e.timeout, &queryTimeout{e.timeout})
	}
	sctx := e.sqlContext(ctx)
	stmt, err := parseModel(sctx, query)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("embedded query: %w", err)
	}
	sch, iter, _, err := e.eng.QueryWithBindings(sctx, query, stmt, nil, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("embedded query: %w", contextCause(sctx, err))
	}
	cols := columnsOf(sch)
	return &embeddedRows{e: e, ctx: sctx, cancel: cancel, iter: iter, sch: sch, cols: cols, row: make([]any, len(cols))}, nil
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

// embeddedRows adapts a go-mysql-server row iterator to Rows; every call
// into the iterator holds the engine's mutex.
type embeddedRows struct {
	e      *Embedded
	ctx    *sql.Context
	cancel context.CancelFunc // ends the query's context (its timeout)
	iter   sql.RowIter
	sch    sql.Schema
	cols   []schema.Column
	row    []any
	err    error
	done   bool
}

func (r *embeddedRows) Columns() []schema.Column { return r.cols }

func (r *embeddedRows) Next() bool {
	if r.done {
		return false
	}
	raw, err := r.next()
	if err != nil {
		r.done = true
		if !errors.Is(err, io.EOF) {
			r.err = fmt.Errorf("embedded query: %w", contextCause(r.ctx, err))
		}
		return false
	}
	for i := range r.row {
		var v any
		if i < len(raw) {
			v = raw[i]
		}
		r.row[i], err = portableValue(r.ctx, r.sch[i].Type, r.cols[i].Type, v)
		if err != nil {
			r.done = true
			r.err = fmt.Errorf("embedded query: column %s: %w", r.cols[i].Name, err)
			return false
		}
	}
	return true
}

// next reads one row from the engine.
func (r *embeddedRows) next() (_ sql.Row, err error) {
	r.e.mu.Lock()
	defer r.e.mu.Unlock()
	defer recoverEngine(&err)
	return r.iter.Next(r.ctx)
}

func (r *embeddedRows) Row() []any { return r.row }
func (r *embeddedRows) Err() error { return r.err }

func (r *embeddedRows) Close() (err error) {
	r.done = true
	if r.cancel != nil {
		defer r.cancel()
	}
	if r.iter == nil {
		return nil
	}
	r.e.mu.Lock()
	defer r.e.mu.Unlock()
	defer recoverEngine(&err)
	iter := r.iter
	r.iter = nil
	return iter.Close(r.ctx)
}

// recoverEngine turns a panic of go-mysql-server, which a query the
// engine mishandles can cause, into an error in *err: the query is
// untrusted input, and a run must end with a message, not a stack trace.
func recoverEngine(err *error) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("the embedded engine failed on this query (%v); simplify the query or the fixtures it reads", p)
	}
}
