package engine

import (
	"context"

	"github.com/backflowhq/backflow/schema"
)

// Rows streams a query result. Values returned by Row use only these Go
// types: nil, int64, float64, string, bool, []byte, time.Time (UTC).
// Decimal and JSON values are strings. The slice returned by Row may be
// reused by the next call to Next; copy what must outlive it.
type Rows interface {
	Columns() []schema.Column
	Next() bool
	Row() []any
	Err() error
	Close() error
}

// Source runs model queries. Implementations: the embedded go-mysql-server
// (fixtures) and live PostgreSQL / MySQL databases.
type Source interface {
	// Query runs a model query and streams its rows.
	Query(ctx context.Context, query string) (Rows, error)
	// Schema returns the columns a query would return without reading its rows.
	Schema(ctx context.Context, query string) ([]schema.Column, error)
	Close() error
}
