package engine

import (
	"context"
	"strings"

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

// Tuner is implemented by sources that can run one query with session
// settings local to its read-only transaction (PostgreSQL SET LOCAL):
// warehouse CDC turns JIT compilation off and gives its joins memory.
type Tuner interface {
	QueryTuned(ctx context.Context, query string, settings []Setting) (Rows, error)
}

// QueryTuned runs query on src with settings where src takes them, and
// plainly otherwise.
func QueryTuned(ctx context.Context, src Source, query string, settings []Setting) (Rows, error) {
	if t, ok := src.(Tuner); ok {
		return t.QueryTuned(ctx, query, settings)
	}
	return src.Query(ctx, query)
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
