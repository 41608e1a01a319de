package engine

import (
	"context"

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
