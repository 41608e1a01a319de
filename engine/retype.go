package engine

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/backflowhq/backflow/schema"
)

// Retype returns a Source that reads the named result columns of src as
// the given portable types, for what a database's column metadata cannot
// say: a MySQL TINYINT(1) that holds a flag (int to bool, 0 and 1 only;
// any other value is an error naming the column), or a MariaDB JSON column,
// which the server describes as LONGTEXT (string to json, valid JSON text
// only). Naming a column's own type changes nothing; any other change is
// an error from Schema and Query. Columns a result lacks are ignored.
func Retype(src Source, types map[string]schema.Type) Source {
	if len(types) == 0 {
		return src
	}
	return &retyped{src: src, types: types}
}

type retyped struct {
	src   Source
	types map[string]schema.Type
}

func (r *retyped) Close() error { return r.src.Close() }

func (r *retyped) Schema(ctx context.Context, query string) ([]schema.Column, error) {
	cols, err := r.src.Schema(ctx, query)
	if err != nil {
		return nil, err
	}
	out, _, err := r.retype(cols)
	return out, err
}

func (r *retyped) Query(ctx context.Context, query string) (Rows, error) {
	return r.QueryTuned(ctx, query, Tuning{})
}

// QueryTuned implements Tuner when the source does.
func (r *retyped) QueryTuned(ctx context.Context, query string, tuning Tuning) (Rows, error) {
	rows, err := QueryTuned(ctx, r.src, query, tuning)
	if err != nil {
		return nil, err
	}
	return r.wrap(rows)
}

// wrap reads rows with the columns retyped.
func (r *retyped) wrap(rows Rows) (Rows, error) {
	cols, conv, err := r.retype(rows.Columns())
	if err != nil {
		_ = rows.Close()
		return nil, err
	}
	if conv == nil {
		return rows, nil
	}
	return &retypedRows{Rows: rows, cols: cols, conv: conv}, nil
}

// QueryShared implements Sharer when the source does.
func (r *retyped) QueryShared(ctx context.Context, queries []string, tuning Tuning) (Rows, error) {
	rows, err := QueryShared(ctx, r.src, queries, tuning)
	if err != nil {
		return nil, err
	}
	return r.wrap(rows)
}

// retype returns the new column list and, per column, the conversion of
// its values (nil: none at all).
func (r *retyped) retype(cols []schema.Column) ([]schema.Column, []func(any) (any, error), error) {
	out := append([]schema.Column(nil), cols...)
	var conv []func(any) (any, error)
	for i, c := range cols {
		want, ok := r.types[c.Name]
		if !ok || want == c.Type {
			continue
		}
		var f func(any) (any, error)
		switch {
		case c.Type == schema.TypeInt && want == schema.TypeBool:
			f = func(v any) (any, error) {
				switch v {
				case nil:
					return nil, nil
				case int64(0):
					return false, nil
				case int64(1):
					return true, nil
				}
				return nil, fmt.Errorf("column %s (%s) holds %v, which is not a boolean (0 or 1)", c.Name, c.DBType, v)
			}
		case c.Type == schema.TypeString && want == schema.TypeJSON:
			f = func(v any) (any, error) {
				s, ok := v.(string)
				if !ok {
					return v, nil
				}
				if !json.Valid([]byte(s)) {
					return nil, fmt.Errorf("column %s (%s) holds text that is not valid JSON", c.Name, c.DBType)
				}
				return compactJSON(s), nil
			}
		default:
			return nil, nil, fmt.Errorf("column %s is %s (%s) and cannot be read as %s: only an int column can be read as bool, and a string column as json", c.Name, c.Type, c.DBType, want)
		}
		if conv == nil {
			conv = make([]func(any) (any, error), len(cols))
		}
		conv[i] = f
		out[i].Type = want
	}
	return out, conv, nil
}

type retypedRows struct {
	Rows
	cols []schema.Column
	conv []func(any) (any, error)
	row  []any
	err  error
}

func (r *retypedRows) Columns() []schema.Column { return r.cols }

func (r *retypedRows) Next() bool {
	if r.err != nil || !r.Rows.Next() {
		return false
	}
	in := r.Rows.Row()
	if r.row == nil {
		r.row = make([]any, len(in))
	}
	for i, v := range in {
		if r.conv[i] == nil {
			r.row[i] = v
			continue
		}
		x, err := r.conv[i](v)
		if err != nil {
			r.err = err
			return false
		}
		r.row[i] = x
	}
	return true
}

func (r *retypedRows) Row() []any { return r.row }

func (r *retypedRows) Err() error {
	if r.err != nil {
		return r.err
	}
	return r.Rows.Err()
}
