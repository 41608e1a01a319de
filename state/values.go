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

// canonical converts v to one of the stored types (nil, int64, float64,
// string, bool), widening Go's other integer and float types.
func canonical(v any) (any, error) {
	switch x := v.(type) {
	case nil, int64, float64, string, bool:
		return x, nil
	case int:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case uint8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint:
		if uint64(x) > math.MaxInt64 {
			return nil, fmt.Errorf("integer %d overflows int64", x)
		}
		return int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return nil, fmt.Errorf("integer %d overflows int64", x)
		}
		return int64(x), nil
	case float32:
		return float64(x), nil
	default:
		return nil, fmt.Errorf("unsupported value type %T", v)
	}
}

// appendValue appends v's tag and payload.
func appendValue(dst []byte, v any) ([]byte, error) {
	c, err := canonical(v)
	if err != nil {
		return dst, err
	}
	switch x := c.(type) {
	case nil:
		dst = append(dst, tagNil)
	case bool:
		if x {
			dst = append(dst, tagTrue)
		} else {
			dst = append(dst, tagFalse)
		}
	case int64:
		dst = append(dst, tagInt)
		dst = binary.AppendVarint(dst, x)
	case float64:
		dst = append(dst, tagFloat)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(x))
	case string:
		dst = append(dst, tagString)
		dst = binary.AppendUvarint(dst, uint64(len(x)))
		dst = append(dst, x...)
	}
	return dst, nil
}

// decodeValues decodes a record body against the field names.
func decodeValues(body []byte, names []string) (map[string]any, error) {
	count, n := binary.Uvarint(body)
	if n <= 0 || count > uint64(len(body)) {
		return nil, errCorruptValues
	}
	body = body[n:]
	out := make(map[string]any, count)
	for range count {
		id, n := binary.Uvarint(body)
		if n <= 0 || id >= uint64(len(names)) || len(body) < n+1 {
			return nil, errCorruptValues
		}
		tag := body[n]
		body = body[n+1:]
		var v any
		switch tag {
		case tagNil:
		case tagFalse:
			v = false
		case tagTrue:
			v = true
		case tagInt:
			x, n := binary.Varint(body)
			if n <= 0 {
				return nil, errCorruptValues
			}
			v, body = x, body[n:]
		case tagFloat:
			if len(body) < 8 {
				return nil, errCorruptValues
			}
			v, body = math.Float64frombits(binary.LittleEndian.Uint64(body)), body[8:]
		case tagString:
			l, n := binary.Uvarint(body)
			if n <= 0 || l > uint64(len(body)-n) {
				return nil, errCorruptValues
			}
			v, body = string(body[n:n+int(l)]), body[n+int(l):]
		default:
			return nil, errCorruptValues
		}
		out[names[id]] = v
	}
	if len(body) != 0 {
		return nil, errCorruptValues
	}
	return out, nil
}
