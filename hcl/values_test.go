package config

import (
	"encoding/json"
	"testing"

	"github.com/zclconf/go-cty/cty"
)

// goValue keeps numbers a float64 would round as written (json.Number).
func TestGoValueNeverRounds(t *testing.T) {
	for _, tc := range []struct {
		in   cty.Value
		want any
	}{
		{cty.NumberIntVal(5), int64(5)},
		{cty.MustParseNumberVal("0.1"), 0.1},
		{cty.MustParseNumberVal("1e-7"), 1e-7},
		{cty.MustParseNumberVal("0.30000000000000004"), 0.30000000000000004},
		{cty.MustParseNumberVal("0.30000000000000000001"), json.Number("0.30000000000000000001")},
		{cty.MustParseNumberVal("12345678901234567891"), json.Number("12345678901234567891")},
		{cty.MustParseNumberVal("-9223372036854775809"), json.Number("-9223372036854775809")},
	} {
		got, ok := goValue(tc.in)
		if !ok || got != tc.want {
			t.Errorf("goValue(%s) = %#v, want %#v", tc.in.AsBigFloat().Text('g', -1), got, tc.want)
		}
	}
}
