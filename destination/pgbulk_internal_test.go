package destination

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// A bigint, double precision or boolean column goes as an array of its
// own type when every value of the batch is of it (or NULL), as text
// otherwise; the elements are the values' binary forms.
func TestBulkParamsTypeTheArraysTheyCan(t *testing.T) {
	key := &column{name: "id", kind: kindInt, castType: "int8"}
	cols := []*column{key,
		{name: "f", kind: kindFloat, castType: "float8"},
		{name: "r", kind: kindFloat, bits: 32, castType: "float4"},
		{name: "b", kind: kindBool, castType: "bool"},
		{name: "s", kind: kindText, castType: "text"},
		{name: "n", kind: kindInt, castType: "int8"},
	}
	wr := &write{
		key: []any{int64(math.MinInt64), int64(7)},
		vals: [][]any{
			{math.Inf(-1), 0.5, true, "x", int64(1)},
			{nil, 1.5, nil, nil, "not a number yet"},
		},
	}
	params, elems, _, ok := bulkParams(nil, wr, []int{0, 1}, cols)
	if !ok {
		t.Fatal("no parameters")
	}
	want := []uint32{pgInt8OID, pgFloat8OID, pgTextOID, pgBoolOID, pgTextOID, pgTextOID}
	for j := range cols {
		if elems[j] != want[j] {
			t.Errorf("column %s: element type %d, want %d", cols[j].name, elems[j], want[j])
		}
		if got := binary.BigEndian.Uint32(params[j][8:]); got != want[j] {
			t.Errorf("column %s: the array says element type %d, want %d", cols[j].name, got, want[j])
		}
	}
	// id: two int8 elements, no NULL.
	p := params[0]
	if nulls := binary.BigEndian.Uint32(p[4:]); nulls != 0 {
		t.Errorf("id: NULL flag %d", nulls)
	}
	if n := binary.BigEndian.Uint32(p[20:]); n != 8 || int64(binary.BigEndian.Uint64(p[24:])) != math.MinInt64 {
		t.Errorf("id's first element: length %d, value %d", n, int64(binary.BigEndian.Uint64(p[24:])))
	}
	// f: -Inf, then NULL (length -1), and the NULL flag set.
	p = params[1]
	if nulls := binary.BigEndian.Uint32(p[4:]); nulls != 1 {
		t.Errorf("f: NULL flag %d, want 1", nulls)
	}
	if v := math.Float64frombits(binary.BigEndian.Uint64(p[24:])); !math.IsInf(v, -1) {
		t.Errorf("f's first element: %v", v)
	}
	if n := binary.BigEndian.Uint32(p[32:]); n != math.MaxUint32 {
		t.Errorf("f's second element: length %d, want -1 (NULL)", n)
	}
	// b: true as one byte.
	if p = params[3]; binary.BigEndian.Uint32(p[20:]) != 1 || p[24] != 1 {
		t.Errorf("b's first element: %x", p[20:25])
	}
}

func TestCopyRowByRowVersions(t *testing.T) {
	for v, want := range map[string]bool{
		"15.20 (Debian 15.20-0+deb12u1)": true,
		"12.0":                           true,
		"16.4":                           true,
		"11.22":                          false, // no COPY … WHERE
		"17.2":                           false, // resource owners in a hash table
		"9.6.24":                         false,
		"":                               false,
		"devel":                          false,
	} {
		if got := copyRowByRow(v); got != want {
			t.Errorf("copyRowByRow(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestCopyWhereRefused(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "42601", Message: `syntax error at or near "WHERE"`}, true},
		{&pgconn.PgError{Code: "0A000", Message: "unimplemented"}, true},
		{&pgconn.PgError{Code: "42883", Message: "function pg_catalog.random() does not exist"}, true},
		{&pgconn.PgError{Code: "42501", Message: "permission denied for function random"}, true},
		{&pgconn.PgError{Code: "42501", Message: "permission denied for table contacts"}, false},
		{&pgconn.PgError{Code: "23505", Message: "duplicate key"}, false},
		{errors.New("connection reset"), false},
	} {
		if got := copyWhereRefused(c.err); got != c.want {
			t.Errorf("copyWhereRefused(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
