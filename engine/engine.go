package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/backflowhq/backflow/schema"
)

// Rows streams a query result (see schema.Rows for the values it holds).
type Rows = schema.Rows

// Source runs model queries. Implementations: the embedded go-mysql-server
// (fixtures) and live PostgreSQL / MySQL databases.
type Source interface {
	// Query runs a model query and streams its rows.
	Query(ctx context.Context, query string) (Rows, error)
	// Schema returns the columns a query would return without reading its rows.
	Schema(ctx context.Context, query string) ([]schema.Column, error)
	Close() error
}

// Setting is a database session setting.
type Setting struct{ Name, Value string }

// Tuning is how a query runs besides its text.
type Tuning struct {
	// Settings are session settings local to the query's transaction.
	Settings []Setting
	// Guard are tables the query's transaction locks for reading before
	// the query runs, waiting at most GuardWait for a lock another session
	// holds on one (a LOCK TABLE left open, a long transaction, a schema
	// change): the locks are held to the transaction's end, so the query
	// never waits for these tables again, while it waits for its other
	// tables as long as the query timeout allows. A wait that runs out is
	// a *LockError.
	Guard     []Table
	GuardWait time.Duration
}

// Table is a table by schema (MySQL: database) and name.
type Table struct{ Schema, Name string }

// Tuner is implemented by sources that can run one query with session
// settings local to its read-only transaction (PostgreSQL SET LOCAL) and
// tables guarded: warehouse CDC turns JIT compilation off, gives its
// joins memory, and bounds its wait for its snapshot tables' locks.
type Tuner interface {
	QueryTuned(ctx context.Context, query string, tuning Tuning) (Rows, error)
}

// QueryTuned runs query on src with tuning where src takes it, and
// plainly otherwise.
func QueryTuned(ctx context.Context, src Source, query string, tuning Tuning) (Rows, error) {
	if t, ok := src.(Tuner); ok {
		return t.QueryTuned(ctx, query, tuning)
	}
	return src.Query(ctx, query)
}

// LockError reports that another session held a lock on a table of
// Tuning.Guard for longer than Tuning.GuardWait.
type LockError struct {
	Server string // "PostgreSQL", "MySQL" or "MariaDB"
	Addr   string // host:port of the server
	Table  Table
	Wait   time.Duration
	Err    error // what the server said, secrets removed
}

func (e *LockError) Error() string {
	return fmt.Sprintf("%s at %s: another session held a lock on table %s.%s for more than %v (a LOCK TABLE left open, a long transaction or a schema change); %s",
		e.Server, e.Addr, e.Table.Schema, e.Table.Name, e.Wait, e.Find())
}

func (e *LockError) Unwrap() error { return e.Err }

// Find says how to find the session holding the lock.
func (e *LockError) Find() string {
	switch e.Server {
	case "PostgreSQL":
		return fmt.Sprintf("find it in pg_locks and pg_stat_activity: SELECT a.pid, a.state, a.xact_start, a.query FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE l.relation = '%s.%s'::regclass AND l.granted",
			quotePG(e.Table.Schema), quotePG(e.Table.Name))
	case "MariaDB":
		return "find it with SHOW PROCESSLIST (a session in a long transaction, or holding LOCK TABLES), or in information_schema.metadata_lock_info where the metadata_lock_info plugin is installed"
	}
	return "find it with SHOW PROCESSLIST (a session in a long transaction, or holding LOCK TABLES), or in performance_schema.metadata_locks"
}

// quotePG quotes a PostgreSQL identifier for the text of a regclass
// literal, single quotes doubled.
func quotePG(name string) string {
	return strings.ReplaceAll(`"`+strings.ReplaceAll(name, `"`, `""`)+`"`, "'", "''")
}

// Subquery returns a model query of src as the text of a subquery: without
// the semicolons that may end it, read as src's server reads SQL (quotes,
// comments). It may end in a line comment: a statement nesting it must
// start a new line before closing the parenthesis.
func Subquery(src Source, query string) string {
	if l, ok := src.(interface{ lexer() sqlLexer }); ok {
		return l.lexer().subquery(query)
	}
	return strings.TrimRight(strings.TrimSpace(query), ";")
}

func plainName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
