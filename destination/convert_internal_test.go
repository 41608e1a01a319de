package destination

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/schema"
)

// decimalValue stands for a decimal type a driver or engine returns.
type decimalValue struct{ s string }

func (d decimalValue) String() string { return d.s }

func TestConvert(t *testing.T) {
	ts := time.Date(2024, 5, 3, 11, 57, 0, 123456789, time.UTC)
	col := func(k colKind) *column { return &column{name: "c", dbType: "t", kind: k} }
	for _, tc := range []struct {
		name  string
		c     converter
		in    any
		want  any
		fails bool
	}{
		{"text from int", converter{col: col(kindText)}, int64(1), "1", false},
		{"text from float", converter{col: col(kindText)}, 0.5, "0.5", false},
		{"text from bool", converter{col: col(kindText)}, true, "true", false},
		{"text from bytes is base64", converter{col: col(kindText)}, []byte("hi"), "aGk=", false},
		{"text from decimal type", converter{col: col(kindText)}, decimalValue{"1.50"}, "1.50", false},
		{"int from json.Number", converter{col: col(kindInt)}, json.Number("-9007199254740993"), int64(-9007199254740993), false},
		{"int from exponent", converter{col: col(kindInt)}, json.Number("1e3"), int64(1000), false},
		{"int from integral float", converter{col: col(kindInt)}, 3.0, int64(3), false},
		{"int from huge unsigned", converter{col: col(kindInt)}, uint64(math.MaxUint64), "18446744073709551615", false},
		{"int from fraction", converter{col: col(kindInt)}, 1.5, nil, true},
		{"int from time", converter{col: col(kindInt)}, ts, nil, true},
		{"int4 in range", converter{col: &column{kind: kindInt, bits: 32}}, int64(-1 << 31), int64(-1 << 31), false},
		{"int4 out of range", converter{col: &column{kind: kindInt, bits: 32}}, int64(1 << 31), nil, true},
		{"int2 out of range", converter{col: &column{kind: kindInt, bits: 16}}, "40000", nil, true},
		{"float from string", converter{col: col(kindFloat)}, "2.5", 2.5, false},
		{"float from word", converter{col: col(kindFloat)}, "many", nil, true},
		{"decimal keeps digits", converter{col: col(kindDecimal)}, "0012.500", "0012.500", false},
		{"decimal from float", converter{col: col(kindDecimal)}, 0.1, "0.1", false},
		{"decimal from json.Number", converter{col: col(kindDecimal)}, json.Number("12.50"), "12.50", false},
		{"decimal from decimal type", converter{col: col(kindDecimal)}, decimalValue{"-3.25"}, "-3.25", false},
		{"decimal from word", converter{col: col(kindDecimal)}, "twelve", nil, true},
		{"decimal from NaN", converter{col: col(kindDecimal)}, math.NaN(), nil, true},
		{"bool from 1", converter{col: col(kindBool)}, int64(1), true, false},
		{"bool from text", converter{col: col(kindBool)}, "FALSE", false, false},
		{"bool from 2", converter{col: col(kindBool)}, int64(2), nil, true},
		{"MySQL BOOLEAN (TINYINT(1)) from 2", converter{col: &column{kind: kindBool, bits: 8}}, int64(2), int64(2), false},
		{"MySQL BOOLEAN from -128", converter{col: &column{kind: kindBool, bits: 8}}, -128.0, int64(-128), false},
		{"MySQL BOOLEAN from true", converter{col: &column{kind: kindBool, bits: 8}}, true, true, false},
		{"MySQL BOOLEAN from 128", converter{col: &column{kind: kindBool, bits: 8}}, int64(128), nil, true},
		{"MySQL TINYINT(1) UNSIGNED from 255", converter{col: &column{kind: kindBool, bits: 8, unsigned: true}}, int64(255), int64(255), false},
		{"MySQL TINYINT(1) UNSIGNED from -1", converter{col: &column{kind: kindBool, bits: 8, unsigned: true}}, int64(-1), nil, true},
		{"bytes from base64", converter{col: col(kindBytes)}, "aGk=", []byte("hi"), false},
		{"bytes from non-base64 text", converter{col: col(kindBytes)}, "hi!", []byte("hi!"), false},
		{"bytes from text model", converter{col: col(kindBytes), model: schema.TypeString, known: true}, "aGk=", []byte("aGk="), false},
		{"bytes model, not base64", converter{col: col(kindBytes), model: schema.TypeBytes, known: true}, "hi!", nil, true},
		{"native time", converter{col: col(kindTimestampTZ)}, ts.In(time.FixedZone("x", 3600)), ts, false},
		{"native time from RFC 3339 with offset", converter{col: col(kindTimestamp)}, "2024-05-03T13:57:00.123456789+02:00", ts, false},
		{"native date before year 1 (4713 BC)", converter{col: col(kindDate)}, "-4712-01-01T00:00:00Z", time.Date(-4712, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"native time before year 1, leap day, offset", converter{col: col(kindTimestampTZ)}, "-0044-02-29T12:30:00.5+01:00", time.Date(-44, 2, 29, 11, 30, 0, 5e8, time.UTC), false},
		{"native time of a five-digit year", converter{col: col(kindTimestamp)}, "12000-05-05 10:00:00", time.Date(12000, 5, 5, 10, 0, 0, 0, time.UTC), false},
		{"no leap day in year -100", converter{col: col(kindDate)}, "-0100-02-29", nil, true},
		{"no leap day in year 10001", converter{col: col(kindDate)}, "10001-02-29", nil, true},
		{"a signed year needs four digits", converter{col: col(kindDate)}, "-712-01-01", nil, true},
		{"a year of letters", converter{col: col(kindDate)}, "2O24O-01-01", nil, true},
		{"MySQL zero date, as text", converter{col: col(kindDate), style: timeText}, "0000-00-00", "0000-00-00", false},
		{"MySQL invalid datetime, as text", converter{col: col(kindTimestamp), style: timeText}, "2024-02-30 10:00:00.5", "2024-02-30 10:00:00.5", false},
		{"MySQL zero date, native: rejected", converter{col: col(kindDate)}, "0000-00-00", nil, true},
		{"not date-shaped text: rejected", converter{col: col(kindDate), style: timeText}, "0000-00-00; DROP", nil, true},
		{"text datetime", converter{col: col(kindTimestamp), style: timeText, fracDigits: 6}, ts, "2024-05-03 11:57:00.123456", false},
		{"text datetime, whole seconds", converter{col: col(kindTimestamp), style: timeText, fracDigits: 6}, "2024-05-03 11:57:00", "2024-05-03 11:57:00", false},
		{"text date", converter{col: col(kindDate), style: timeText}, "2024-02-29T00:00:00Z", "2024-02-29", false},
		{"date from word", converter{col: col(kindDate)}, "tomorrow", nil, true},
		{"json text kept", converter{col: col(kindJSON)}, `{"a":1}`, `{"a":1}`, false},
		{"json from plain text", converter{col: col(kindJSON)}, "Ann", `"Ann"`, false},
		{"json from text model", converter{col: col(kindJSON), model: schema.TypeString, known: true}, "42", `"42"`, false},
		{"json model, invalid", converter{col: col(kindJSON), model: schema.TypeJSON, known: true}, "{", nil, true},
		{"json from int", converter{col: col(kindJSON)}, int64(7), "7", false},
		{"other as text", converter{col: col(kindOther), otherAsText: true}, int64(7), "7", false},
		{"other native", converter{col: col(kindOther)}, int64(7), int64(7), false},
		{"null stays null", converter{col: col(kindInt)}, nil, nil, false},
		{"unknown column passes", converter{}, int64(7), int64(7), false},
	} {
		got, err := tc.c.convert(tc.in)
		if (err != nil) != tc.fails || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: convert(%#v) = %#v, %v; want %#v (fails=%v)", tc.name, tc.in, got, err, tc.want, tc.fails)
		}
	}
	// JSON has no NaN: the error says so, not encoding/json's "unsupported value".
	c := converter{col: col(kindJSON)}
	if _, err := c.convert(math.Inf(1)); err == nil || !strings.Contains(err.Error(), "+Inf is not a JSON number") {
		t.Errorf("json from +Inf: %v", err)
	}
}

func TestWritable(t *testing.T) {
	for _, tc := range []struct {
		model schema.Type
		kind  colKind
		want  bool
	}{
		{schema.TypeString, kindInt, true},
		{schema.TypeTimestamp, kindInt, false},
		{schema.TypeBytes, kindDate, false},
		{schema.TypeInt, kindBytes, false},
		{schema.TypeDecimal, kindBool, false},
		{schema.TypeBool, kindInt, true},
		{schema.TypeJSON, kindText, true},
		{schema.TypeBytes, kindOther, true},
		{schema.TypeInt, kindUUID, false},
	} {
		if got := writable(tc.model, tc.kind); got != tc.want {
			t.Errorf("writable(%s, %d) = %v, want %v", tc.model, tc.kind, got, tc.want)
		}
	}
}
