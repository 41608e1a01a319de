package engine

import (
	"context"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/schema"
)

// fixedSource answers every query with the same rows.
type fixedSource struct {
	cols []schema.Column
	rows [][]any
}

func (f *fixedSource) Query(context.Context, string) (Rows, error) {
	return &fixedRows{cols: f.cols, rows: f.rows, i: -1}, nil
}
func (f *fixedSource) Schema(context.Context, string) ([]schema.Column, error) { return f.cols, nil }
func (f *fixedSource) Close() error                                            { return nil }

type fixedRows struct {
	cols []schema.Column
	rows [][]any
	i    int
}

func (r *fixedRows) Columns() []schema.Column { return r.cols }
func (r *fixedRows) Next() bool               { r.i++; return r.i < len(r.rows) }
func (r *fixedRows) Row() []any               { return r.rows[r.i] }
func (r *fixedRows) Err() error               { return nil }
func (r *fixedRows) Close() error             { return nil }

func TestRetypeRefusesWhatItCannotRead(t *testing.T) {
	src := &fixedSource{
		cols: []schema.Column{{Name: "flag", Type: schema.TypeInt, DBType: "tinyint"}, {Name: "doc", Type: schema.TypeString, DBType: "text"}},
		rows: [][]any{{int64(1), `{"a": 1}`}, {int64(2), `{}`}},
	}
	ctx := context.Background()

	_, rows, err := collectLive(ctx, Retype(src, map[string]schema.Type{"flag": schema.TypeBool, "doc": schema.TypeJSON}), "q")
	if err == nil || !strings.Contains(err.Error(), "column flag (tinyint) holds 2, which is not a boolean") {
		t.Errorf("error %v, want one naming the column and the value", err)
	}
	if len(rows) != 1 || rows[0][0] != true || rows[0][1] != `{"a":1}` {
		t.Errorf("first row %v, want [true {\"a\":1}]", rows)
	}

	src.rows = [][]any{{int64(0), `not json`}}
	if _, _, err := collectLive(ctx, Retype(src, map[string]schema.Type{"doc": schema.TypeJSON}), "q"); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("error %v, want one saying the text is not JSON", err)
	}

	if _, err := Retype(src, map[string]schema.Type{"doc": schema.TypeTimestamp}).Schema(ctx, "q"); err == nil ||
		!strings.Contains(err.Error(), "column doc is string (text) and cannot be read as timestamp") {
		t.Errorf("error %v, want one refusing string to timestamp", err)
	}
}
