// Package schema names the portable column types backflow works with: the
// type of a model column as rules see it, as values are hashed and as
// destinations receive them. It is a leaf package (standard library only),
// so the config loader and the rules compile without any SQL engine.
package schema

import "fmt"

// Type is the portable type of a model column, as far as backflow cares:
// it decides the CEL type a rule sees and how a value is hashed and written.
type Type int

const (
	TypeString Type = iota
	TypeInt
	TypeFloat
	TypeBool
	TypeBytes
	TypeTimestamp // also DATE and DATETIME; values are time.Time in UTC
	TypeDecimal   // exact numerics; values are their canonical decimal string
	TypeJSON      // values are the JSON text
)

var typeNames = [...]string{"string", "int", "float", "bool", "bytes", "timestamp", "decimal", "json"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", int(t))
}

// PortableNames lists the portable type names, in Type order.
func PortableNames() []string { return typeNames[:] }

// ParseType reads a type name as written in HCL (`column_types`), accepting
// the portable names above and common SQL spellings (bigint, varchar, …).
func ParseType(name string) (Type, bool) {
	switch name {
	case "string", "text", "varchar", "char":
		return TypeString, true
	case "int", "integer", "bigint", "smallint", "tinyint":
		return TypeInt, true
	case "float", "double", "real":
		return TypeFloat, true
	case "bool", "boolean":
		return TypeBool, true
	case "bytes", "blob", "binary", "varbinary":
		return TypeBytes, true
	case "timestamp", "datetime", "date":
		return TypeTimestamp, true
	case "decimal", "numeric":
		return TypeDecimal, true
	case "json":
		return TypeJSON, true
	}
	return 0, false
}

// TypeNames lists the names ParseType accepts, for "did you mean" help.
func TypeNames() []string {
	return []string{"string", "int", "float", "bool", "bytes", "timestamp", "decimal", "json",
		"text", "varchar", "char", "integer", "bigint", "smallint", "tinyint", "double", "real",
		"boolean", "blob", "binary", "varbinary", "datetime", "date", "numeric"}
}

// Column describes one column of a query result.
type Column struct {
	Name     string
	Type     Type
	Nullable bool
	DBType   string // the engine's own type name, for messages
}

// Rows streams a query result. Values returned by Row use only these Go
// types: nil, int64, float64, string, bool, []byte, time.Time (UTC).
// Decimal and JSON values are strings. The slice returned by Row may be
// reused by the next call to Next; copy what must outlive it.
type Rows interface {
	Columns() []Column
	Next() bool
	Row() []any
	Err() error
	Close() error
}

// MarshalText writes the type's portable name, so saved plans record it.
func (t Type) MarshalText() ([]byte, error) {
	if int(t) < 0 || int(t) >= len(typeNames) {
		return nil, fmt.Errorf("schema: no name for %s", t)
	}
	return []byte(typeNames[t]), nil
}

// UnmarshalText reads a portable type name.
func (t *Type) UnmarshalText(b []byte) error {
	for i, n := range typeNames {
		if n == string(b) {
			*t = Type(i)
			return nil
		}
	}
	return fmt.Errorf("schema: unknown type %q", b)
}
