package engine

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/backflowhq/backflow/schema"
)

// pgSource is a Source over one pgx connection. A Query holds mu until its
// Rows are closed (a pgx connection runs one query at a time). Its errors
// never contain the DSN or its password.
type pgSource struct {
	mu      sync.Mutex
	conn    *pgx.Conn
	secrets []string
}

var _ Source = (*pgSource)(nil)

func (s *pgSource) scrub(err error) error { return scrub(err, s.secrets) }

// Query runs a model query and streams its rows.
func (s *pgSource) Query(ctx context.Context, query string) (Rows, error) {
	s.mu.Lock()
	rows, err := s.conn.Query(ctx, query)
	if err != nil {
		s.mu.Unlock()
		return nil, s.scrub(fmt.Errorf("postgres query: %w", err))
	}
	return &pgRows{s: s, rows: rows, cols: s.columns(rows.FieldDescriptions())}, nil
}

// Schema returns the columns of query by describing it as a prepared
// statement, without running it.
func (s *pgSource) Schema(ctx context.Context, query string) ([]schema.Column, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sd, err := s.conn.Prepare(ctx, "", strings.TrimRight(strings.TrimSpace(query), ";"))
	if err != nil {
		return nil, s.scrub(fmt.Errorf("postgres query schema: %w", err))
	}
	return s.columns(sd.Fields), nil
}

// columns describes a result. PostgreSQL does not report nullability of
// result columns, so every column is nullable.
func (s *pgSource) columns(fields []pgconn.FieldDescription) []schema.Column {
	cols := make([]schema.Column, len(fields))
	tm := s.conn.TypeMap()
	for i, f := range fields {
		name := fmt.Sprintf("oid %d", f.DataTypeOID)
		if t, ok := tm.TypeForOID(f.DataTypeOID); ok {
			name = t.Name
		}
		cols[i] = schema.Column{Name: f.Name, Type: postgresType(f.DataTypeOID), Nullable: true, DBType: name}
	}
	return cols
}

// Close closes the connection.
func (s *pgSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.scrub(s.conn.Close(context.Background()))
}

func postgresType(oid uint32) schema.Type {
	switch oid {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID:
		return schema.TypeInt
	case pgtype.Float4OID, pgtype.Float8OID:
		return schema.TypeFloat
	case pgtype.NumericOID:
		return schema.TypeDecimal
	case pgtype.BoolOID:
		return schema.TypeBool
	case pgtype.ByteaOID:
		return schema.TypeBytes
	case pgtype.TimestampOID, pgtype.TimestamptzOID, pgtype.DateOID:
		return schema.TypeTimestamp
	case pgtype.JSONOID, pgtype.JSONBOID:
		return schema.TypeJSON
	}
	return schema.TypeString
}

// pgRows adapts pgx.Rows; Close releases the source's connection.
type pgRows struct {
	s      *pgSource
	rows   pgx.Rows
	cols   []schema.Column
	row    []any
	err    error
	closed bool
}

func (r *pgRows) Columns() []schema.Column { return r.cols }

func (r *pgRows) Next() bool {
	if r.err != nil || r.closed || !r.rows.Next() {
		return false
	}
	vals, err := r.rows.Values()
	if err != nil {
		r.err = r.s.scrub(fmt.Errorf("postgres query: %w", err))
		return false
	}
	if r.row == nil {
		r.row = make([]any, len(vals))
	}
	for i, v := range vals {
		x, err := pgValue(r.cols[i].Type, v)
		if err != nil {
			r.err = fmt.Errorf("postgres query: column %s (%s): %w", r.cols[i].Name, r.cols[i].DBType, err)
			return false
		}
		r.row[i] = x
	}
	return true
}

func (r *pgRows) Row() []any { return r.row }

func (r *pgRows) Err() error {
	if r.err != nil {
		return r.err
	}
	return r.s.scrub(r.rows.Err())
}

func (r *pgRows) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.rows.Close()
	r.s.mu.Unlock()
	return r.s.scrub(r.rows.Err())
}

// pgValue normalises a value pgx decoded: numerics through their text
// form, JSON re-encoded, everything else as liveValue converts it.
func pgValue(t schema.Type, v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case pgtype.Numeric:
		if !x.Valid {
			return nil, nil
		}
		if t == schema.TypeDecimal || t == schema.TypeString {
			dv, err := x.Value()
			if err != nil {
				return nil, err
			}
			return dv, nil
		}
	case driver.Valuer:
		dv, err := x.Value()
		if err != nil {
			return nil, err
		}
		return liveValue(t, dv)
	}
	if t == schema.TypeJSON {
		if _, ok := v.(string); !ok {
			b, err := json.Marshal(v)
			return string(b), err
		}
	}
	if b, ok := v.([16]byte); ok && t == schema.TypeString { // uuid
		return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
	}
	return liveValue(t, v)
}
