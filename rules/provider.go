package rules

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"

	"github.com/backflowhq/backflow/schema"
)

// rowTypeName is the CEL object type of the `row` variable.
const rowTypeName = "Row"

// rowProvider is a CEL type provider that knows one object type, Row, whose
// fields are a model's columns; every other question goes to the standard
// registry. Field values are read straight from a *rowData (the row as
// engine.Rows yields it), so evaluating a rule builds no map per row.
type rowProvider struct {
	*types.Registry
	names  []string
	fields map[string]*types.FieldType
}

// celType is the CEL type a rule sees for a column of type t. Decimals are
// doubles (rules compare amounts; exactness is kept in the data, not the
// verdict) and JSON is dyn (the parsed document: maps, lists, scalars).
// Nullable columns are wrapped so `row.col == null` type-checks.
func celType(c schema.Column) *cel.Type {
	var t *cel.Type
	switch c.Type {
	case schema.TypeInt:
		t = cel.IntType
	case schema.TypeFloat, schema.TypeDecimal:
		t = cel.DoubleType
	case schema.TypeBool:
		t = cel.BoolType
	case schema.TypeBytes:
		t = cel.BytesType
	case schema.TypeTimestamp:
		t = cel.TimestampType
	case schema.TypeJSON:
		return cel.DynType
	default:
		t = cel.StringType
	}
	if c.Nullable {
		return cel.NullableType(t)
	}
	return t
}

func newRowProvider(columns []schema.Column) (*rowProvider, error) {
	reg, err := types.NewRegistry()
	if err != nil {
		return nil, fmt.Errorf("creating CEL type registry: %w", err)
	}
	p := &rowProvider{Registry: reg, fields: make(map[string]*types.FieldType, len(columns))}
	for i, c := range columns {
		p.names = append(p.names, c.Name)
		p.fields[c.Name] = &types.FieldType{
			Type: celType(c),
			IsSet: func(target any) bool {
				r, ok := target.(*rowData)
				return ok && i < len(r.vals) && r.vals[i] != nil
			},
			GetFrom: func(target any) (any, error) {
				r, ok := target.(*rowData)
				if !ok {
					return nil, fmt.Errorf("row is a %T, not a model row", target)
				}
				return r.value(i)
			},
		}
	}
	return p, nil
}

// FindStructType answers for Row, then the standard registry.
func (p *rowProvider) FindStructType(name string) (*types.Type, bool) {
	if name == rowTypeName {
		return types.NewTypeTypeWithParam(types.NewObjectType(rowTypeName)), true
	}
	return p.Registry.FindStructType(name)
}

// FindStructFieldNames lists Row's columns, then asks the standard registry.
func (p *rowProvider) FindStructFieldNames(name string) ([]string, bool) {
	if name == rowTypeName {
		return p.names, true
	}
	return p.Registry.FindStructFieldNames(name)
}

// FindStructFieldType types Row's columns, then asks the standard registry.
func (p *rowProvider) FindStructFieldType(name, field string) (*types.FieldType, bool) {
	if name == rowTypeName {
		ft, ok := p.fields[field]
		return ft, ok
	}
	return p.Registry.FindStructFieldType(name, field)
}

// rowData is one row being evaluated: values index-aligned with the
// program's columns, in the Go types engine.Rows yields.
type rowData struct {
	cols []schema.Column
	vals []any
}

// ResolveName makes rowData the activation: it binds `row` to itself.
func (r *rowData) ResolveName(name string) (any, bool) {
	if name == "row" {
		return r, true
	}
	return nil, false
}

// String keeps the row's values out of messages that print the activation
// (CEL's "unsupported conversion" error when a rule uses the row as a value).
func (r *rowData) String() string { return "the row" }

// Parent implements interpreter.Activation; there is none.
func (r *rowData) Parent() interpreter.Activation { return nil }

// value converts column i's value to the CEL value its type promises.
func (r *rowData) value(i int) (ref.Val, error) {
	if i >= len(r.vals) {
		return nil, fmt.Errorf("row has %d values, column %s is number %d", len(r.vals), r.cols[i].Name, i+1)
	}
	v := r.vals[i]
	if v == nil {
		return types.NullValue, nil
	}
	c := r.cols[i]
	switch x := v.(type) {
	case int64:
		if c.Type == schema.TypeInt {
			return types.Int(x), nil
		}
		if c.Type == schema.TypeFloat || c.Type == schema.TypeDecimal {
			return types.Double(float64(x)), nil
		}
	case float64:
		if c.Type == schema.TypeFloat || c.Type == schema.TypeDecimal {
			return types.Double(x), nil
		}
	case bool:
		if c.Type == schema.TypeBool {
			return types.Bool(x), nil
		}
	case []byte:
		if c.Type == schema.TypeBytes {
			return types.Bytes(x), nil
		}
	case time.Time:
		if c.Type == schema.TypeTimestamp {
			return types.Timestamp{Time: x}, nil
		}
	case string:
		switch c.Type {
		case schema.TypeString:
			return types.String(x), nil
		case schema.TypeDecimal:
			f, err := strconv.ParseFloat(x, 64)
			if err != nil {
				return nil, fmt.Errorf("column %s: %q is not a decimal number", c.Name, x)
			}
			return types.Double(f), nil
		case schema.TypeJSON:
			var doc any
			if err := json.Unmarshal([]byte(x), &doc); err != nil {
				return nil, fmt.Errorf("column %s: invalid JSON: %v", c.Name, err)
			}
			return types.DefaultTypeAdapter.NativeToValue(doc), nil
		case schema.TypeBytes:
			return types.Bytes(x), nil
		}
	}
	return nil, fmt.Errorf("column %s (%s) holds a Go %T", c.Name, c.Type, v)
}
