package reconcile

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zeebo/xxh3"
)

// Canonical turns an engine value into the form backflow hashes, stores in
// snapshots and plans and sends: nil, bool, int64, float64 or string.
// Integral floats become int64 and times RFC 3339 strings in UTC, so that the
// same value read through another type representation hashes the same. A
// negative zero stays a float: written as 0 it would lose its sign (the
// warehouse CDC's hash, the value's text, tells -0 from 0 too).
func Canonical(v any) any {
	switch x := v.(type) {
	case nil, bool, int64, string:
		return x
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
		return strconv.FormatUint(x, 10)
	case float32:
		return canonicalFloat(float64(x))
	case float64:
		return canonicalFloat(x)
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	default:
		return x
	}
}

func canonicalFloat(f float64) any {
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 && !(f == 0 && math.Signbit(f)) {
		return int64(f)
	}
	return f
}

// keyString renders one primary key column's canonical value (Canonical) as
// the key backflow tracks records by. ok is false for NULL.
func keyString(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		return x, true
	case int64:
		return strconv.FormatInt(x, 10), true
	case float64:
		if x == 0 {
			// -0: one key with 0, as for the databases' unique indexes.
			return "0", true
		}
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	default:
		return "", false
	}
}

// compositeKey joins the parts of a composite key with '|', escaping '|'
// and '\' so that distinct tuples never produce the same key.
func compositeKey(parts []string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('|')
		}
		for j := 0; j < len(p); j++ {
			if p[j] == '|' || p[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(p[j])
		}
	}
	return b.String()
}

// hasher computes the change-detection hash of a record's mapped values:
// xxh3 over (field, canonical value) pairs in field-name order, so it is
// independent of column order in the model.
type hasher struct {
	buf []byte
	// fields and names, when set (remember), are a copy of the fields a
	// diff hashes and their encoded names.
	fields []string
	names  [][]byte
}

// remember keeps the encoded names of fields, which later sums reuse
// while they hash the same field names.
func (h *hasher) remember(fields []string) {
	h.fields, h.names = slices.Clone(fields), make([][]byte, len(fields))
	for i, f := range fields {
		h.names[i] = append(binary.AppendUvarint(nil, uint64(len(f))), f...)
	}
}

// sum hashes values, each canonical (Canonical), of fields.
func (h *hasher) sum(fields []string, values []any) uint64 {
	b := h.buf[:0]
	for i, f := range fields {
		if i < len(h.fields) && f == h.fields[i] {
			b = append(b, h.names[i]...)
		} else {
			b = binary.AppendUvarint(b, uint64(len(f)))
			b = append(b, f...)
		}
		b = appendValue(b, values[i])
	}
	h.buf = b
	return xxh3.Hash(b)
}

func appendValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, 0)
	case bool:
		if x {
			return append(b, 1, 1)
		}
		return append(b, 1, 0)
	case int64:
		b = append(b, 2)
		return binary.AppendVarint(b, x)
	case float64:
		b = append(b, 3)
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
	case string:
		b = append(b, 4)
		b = binary.AppendUvarint(b, uint64(len(x)))
		return append(b, x...)
	default:
		b = append(b, 5)
		s := fmt.Sprint(x)
		b = binary.AppendUvarint(b, uint64(len(s)))
		return append(b, s...)
	}
}

// HashValues hashes a record given as a field → canonical value map
// (as stored in snapshots and plans); it equals the hash computed from the
// row the values came from.
func HashValues(fields []string, values map[string]any) uint64 {
	vs := make([]any, len(fields))
	for i, f := range fields {
		vs[i] = Canonical(values[f])
	}
	var h hasher
	return h.sum(fields, vs)
}
