package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Value tags of the compact value encoding. A record's body is
// uvarint(field count) followed, per field in name order, by
// uvarint(field id), a tag byte and the tag's payload. Field ids index the
// field table of the snapshot (or journal) the record belongs to.
const (
	tagNil    byte = 0
	tagFalse  byte = 1
	tagTrue   byte = 2
	tagInt    byte = 3 // zigzag varint
	tagFloat  byte = 4 // 8 bytes, IEEE 754 bits little endian
	tagString byte = 5 // uvarint length, bytes
)

var errCorruptValues = errors.New("corrupt value record")

// fieldTable numbers field names. Ids are never reused or renumbered: a
// table only grows, so records encoded against a prefix of it stay valid.
type fieldTable struct {
	names []string
	ids   map[string]uint64
}

func newFieldTable(names []string) *fieldTable {
	t := &fieldTable{names: slices.Clone(names), ids: make(map[string]uint64, len(names))}
	for i, n := range t.names {
		t.ids[n] = uint64(i)
	}
	return t
}

// define records name at id, which must be the next id or an existing id
// already holding name.
func (t *fieldTable) define(id uint64, name string) error {
	switch {
	case id < uint64(len(t.names)):
		if t.names[id] != name {
			return fmt.Errorf("field %d is %q, not %q", id, t.names[id], name)
		}
		return nil
	case id == uint64(len(t.names)):
		t.names = append(t.names, name)
		t.ids[name] = id
		return nil
	default:
		return fmt.Errorf("field %d defined before field %d", id, len(t.names))
	}
}

// appendValue appends v's tag and payload. Go's other integer and float
// types are widened to int64 and float64.
func appendValue(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, tagNil), nil
	case bool:
		if x {
			return append(dst, tagTrue), nil
		}
		return append(dst, tagFalse), nil
	case string:
		dst = append(dst, tagString)
		dst = binary.AppendUvarint(dst, uint64(len(x)))
		return append(dst, x...), nil
	case float64:
		return appendFloat(dst, x), nil
	case float32:
		return appendFloat(dst, float64(x)), nil
	case int64:
		return appendInt(dst, x), nil
	case int:
		return appendInt(dst, int64(x)), nil
	case int8:
		return appendInt(dst, int64(x)), nil
	case int16:
		return appendInt(dst, int64(x)), nil
	case int32:
		return appendInt(dst, int64(x)), nil
	case uint8:
		return appendInt(dst, int64(x)), nil
	case uint16:
		return appendInt(dst, int64(x)), nil
	case uint32:
		return appendInt(dst, int64(x)), nil
	case uint:
		return appendUint(dst, uint64(x))
	case uint64:
		return appendUint(dst, x)
	default:
		return dst, fmt.Errorf("unsupported value type %T", v)
	}
}

func appendInt(dst []byte, x int64) []byte {
	return binary.AppendVarint(append(dst, tagInt), x)
}

func appendUint(dst []byte, x uint64) ([]byte, error) {
	if x > math.MaxInt64 {
		return dst, fmt.Errorf("integer %d overflows int64", x)
	}
	return appendInt(dst, int64(x)), nil
}

func appendFloat(dst []byte, x float64) []byte {
	return binary.LittleEndian.AppendUint64(append(dst, tagFloat), math.Float64bits(x))
}

// decodeValues decodes a record body against the field names.
func decodeValues(body []byte, names []string) (map[string]any, error) {
	var mv mapVisitor
	if err := visitValues(body, names, &mv); err != nil {
		return nil, err
	}
	return mv.m, nil
}

// mapVisitor gathers a record's values in a map, as Values returns them.
type mapVisitor struct{ m map[string]any }

func (v *mapVisitor) Count(n int)                   { v.m = make(map[string]any, n) }
func (v *mapVisitor) Nil(field string)              { v.m[field] = nil }
func (v *mapVisitor) Bool(field string, x bool)     { v.m[field] = x }
func (v *mapVisitor) Int(field string, x int64)     { v.m[field] = x }
func (v *mapVisitor) Float(field string, x float64) { v.m[field] = x }
func (v *mapVisitor) String(field string, x []byte) { v.m[field] = string(x) }

// scanned is a value as scanValue reads it: its tag and, by tag, its
// integer, float or string payload (a view of the body).
type scanned struct {
	tag byte
	i   int64
	f   float64
	s   []byte
}

// visit hands the value to vv as field name.
func (v scanned) visit(name string, vv ValueVisitor) {
	switch v.tag {
	case tagNil:
		vv.Nil(name)
	case tagFalse, tagTrue:
		vv.Bool(name, v.tag == tagTrue)
	case tagInt:
		vv.Int(name, v.i)
	case tagFloat:
		vv.Float(name, v.f)
	case tagString:
		vv.String(name, v.s)
	}
}

// scanValue reads the payload of a value of this tag at the start of body,
// returning the rest of body.
func scanValue(tag byte, body []byte) (v scanned, rest []byte, ok bool) {
	v.tag = tag
	switch tag {
	case tagNil, tagFalse, tagTrue:
		return v, body, true
	case tagInt:
		x, n := binary.Varint(body)
		if n <= 0 {
			return v, nil, false
		}
		v.i = x
		return v, body[n:], true
	case tagFloat:
		if len(body) < 8 {
			return v, nil, false
		}
		v.f = math.Float64frombits(binary.LittleEndian.Uint64(body))
		return v, body[8:], true
	case tagString:
		l, n := binary.Uvarint(body)
		if n <= 0 || l > uint64(len(body)-n) {
			return v, nil, false
		}
		v.s = body[n : n+int(l)]
		return v, body[n+int(l):], true
	}
	return v, nil, false
}

// appendNamedValues encodes values self-described, for the database
// backends: uvarint(field count), then per field in name order uvarint(len)
// and the name, a tag byte and the tag's payload.
func appendNamedValues(dst []byte, values map[string]any) ([]byte, error) {
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	slices.Sort(names)
	dst = binary.AppendUvarint(dst, uint64(len(names)))
	for _, name := range names {
		dst = appendBytes(dst, name)
		var err error
		if dst, err = appendValue(dst, values[name]); err != nil {
			return dst, fmt.Errorf("field %s: %w", name, err)
		}
	}
	return dst, nil
}

// decodeNamedValues decodes what appendNamedValues encoded.
func decodeNamedValues(body []byte) (map[string]any, error) {
	var mv mapVisitor
	if err := visitNamedValues(body, &mv); err != nil {
		return nil, err
	}
	return mv.m, nil
}

// visitNamedValues is visitValues for values encoded self-described
// (appendNamedValues).
func visitNamedValues(body []byte, vv ValueVisitor) error {
	count, n := binary.Uvarint(body)
	if n <= 0 || count > uint64(len(body)) {
		return errCorruptValues
	}
	body = body[n:]
	vv.Count(int(count))
	for range count {
		l, n := binary.Uvarint(body)
		if n <= 0 || l >= uint64(len(body)-n) {
			return errCorruptValues
		}
		name := string(body[n : n+int(l)])
		body = body[n+int(l):]
		v, rest, ok := scanValue(body[0], body[1:])
		if !ok {
			return errCorruptValues
		}
		body = rest
		v.visit(name, vv)
	}
	if len(body) != 0 {
		return errCorruptValues
	}
	return nil
}

// EncodeValues encodes a record's mapped values (canonical: nil, bool,
// int64, float64, string) self-described, as the database backends store
// them; DecodeValues reads them back equal.
func EncodeValues(values map[string]any) ([]byte, error) { return appendNamedValues(nil, values) }

// DecodeRecord decodes a snapshot's value record (Snapshot.WithRecord)
// against its field table (Snapshot.Fields), as Values returns it.
func DecodeRecord(body []byte, fields []string) (map[string]any, error) {
	return decodeValues(body, fields)
}

// DecodeValues decodes what EncodeValues encoded.
func DecodeValues(body []byte) (map[string]any, error) { return decodeNamedValues(body) }

// ValueVisitor receives the fields of a value record one by one, typed,
// without boxing them: what re-encodes values elsewhere uses it instead
// of Values' map. Strings are views of a buffer valid during the call.
type ValueVisitor interface {
	Count(n int)
	Nil(field string)
	Bool(field string, v bool)
	Int(field string, v int64)
	Float(field string, v float64)
	String(field string, v []byte)
}

// visitValues reads a record body against the field names, handing each
// value to vv (decodeValues is visitValues into a map).
func visitValues(body []byte, names []string, vv ValueVisitor) error {
	count, n := binary.Uvarint(body)
	if n <= 0 || count > uint64(len(body)) {
		return errCorruptValues
	}
	body = body[n:]
	vv.Count(int(count))
	for range count {
		id, n := binary.Uvarint(body)
		if n <= 0 || id >= uint64(len(names)) || len(body) < n+1 {
			return errCorruptValues
		}
		v, rest, ok := scanValue(body[n], body[n+1:])
		if !ok {
			return errCorruptValues
		}
		body = rest
		v.visit(names[id], vv)
	}
	if len(body) != 0 {
		return errCorruptValues
	}
	return nil
}
