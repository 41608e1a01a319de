package engine

import (
	"fmt"
	"strings"
	"time"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/dolthub/vitess/go/vt/proto/query"

	"github.com/backflowhq/backflow/schema"
)

// decimalSpec is the precision and scale of a DECIMAL fixture column, sized
// from its values so results print without padding zeros.
type decimalSpec struct{ precision, scale uint8 }

// gmsType is the go-mysql-server column type a fixture column of type t is
// stored as. Booleans are TINYINT(1), which columnType maps back to schema.TypeBool.
func gmsType(t schema.Type, d decimalSpec) sql.Type {
	switch t {
	case schema.TypeInt:
		return types.Int64
	case schema.TypeFloat:
		return types.Float64
	case schema.TypeBool:
		return types.Boolean
	case schema.TypeBytes:
		return types.LongBlob
	case schema.TypeTimestamp:
		return types.DatetimeMaxPrecision
	case schema.TypeDecimal:
		return types.MustCreateDecimalType(d.precision, d.scale)
	case schema.TypeJSON:
		return types.JSON
	default:
		return types.LongText
	}
}

// columnType maps a go-mysql-server type to the portable Type. TINYINT(1)
// (how go-mysql-server spells BOOLEAN, and the type of comparisons) is
// schema.TypeBool; types with no closer match (TIME, YEAR, BIT, geometry) are
// schema.TypeString.
func columnType(t sql.Type) schema.Type {
	switch qt := t.Type(); {
	case qt == query.Type_INT8 && strings.HasPrefix(t.String(), "tinyint(1)"):
		return schema.TypeBool
	case qt == query.Type_INT8, qt == query.Type_INT16, qt == query.Type_INT24, qt == query.Type_INT32, qt == query.Type_INT64,
		qt == query.Type_UINT8, qt == query.Type_UINT16, qt == query.Type_UINT24, qt == query.Type_UINT32, qt == query.Type_UINT64:
		return schema.TypeInt
	case qt == query.Type_FLOAT32, qt == query.Type_FLOAT64:
		return schema.TypeFloat
	case qt == query.Type_DECIMAL:
		return schema.TypeDecimal
	case qt == query.Type_BLOB, qt == query.Type_BINARY, qt == query.Type_VARBINARY:
		return schema.TypeBytes
	case qt == query.Type_DATETIME, qt == query.Type_TIMESTAMP, qt == query.Type_DATE:
		return schema.TypeTimestamp
	case qt == query.Type_JSON:
		return schema.TypeJSON
	default:
		return schema.TypeString
	}
}

// columnsOf describes a go-mysql-server result schema.
func columnsOf(sch sql.Schema) []schema.Column {
	cols := make([]schema.Column, len(sch))
	for i, c := range sch {
		cols[i] = schema.Column{Name: c.Name, Type: columnType(c.Type), Nullable: c.Nullable, DBType: c.Type.String()}
	}
	return cols
}

// portableValue converts a value go-mysql-server returned for a column of
// type st (portable type pt) to one of the Go types Rows promises.
func portableValue(ctx *sql.Context, st sql.Type, pt schema.Type, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch pt {
	case schema.TypeBool:
		i, err := toInt64(v)
		if err != nil {
			return nil, err
		}
		return i != 0, nil
	case schema.TypeInt:
		return toInt64(v)
	case schema.TypeFloat:
		switch x := v.(type) {
		case float64:
			return x, nil
		case float32:
			return float64(x), nil
		}
	case schema.TypeTimestamp:
		if x, ok := v.(time.Time); ok {
			return x.UTC(), nil
		}
	case schema.TypeBytes:
		switch x := v.(type) {
		case []byte:
			return x, nil
		case string:
			return []byte(x), nil
		}
	case schema.TypeString:
		if x, ok := v.(string); ok {
			return x, nil
		}
	}
	if dt, ok := st.(sql.DecimalType); ok {
		if d, ok := v.(interface{ StringFixed(int32) string }); ok {
			return d.StringFixed(int32(dt.Scale())), nil
		}
	}
	// Decimals, JSON, enums, sets and the rare types: the engine's own
	// text rendering, as a MySQL client would receive it.
	sv, err := st.SQL(ctx, nil, v)
	if err != nil {
		return nil, err
	}
	if sv.IsNull() {
		return nil, nil
	}
	if pt == schema.TypeBytes {
		return sv.ToBytes(), nil
	}
	return sv.ToString(), nil
}

func toInt64(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case int32:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case int:
		return int64(x), nil
	case uint64:
		if x > 1<<63-1 {
			return 0, fmt.Errorf("unsigned value %d overflows int64", x)
		}
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint8:
		return int64(x), nil
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	}
	return 0, fmt.Errorf("unexpected integer value of Go type %T", v)
}
