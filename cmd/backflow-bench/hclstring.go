package main

import (
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// hclString is s as an HCL quoted string literal, for every value (a DSN,
// a URL, a table name, a query) the harness pastes into a config it
// writes: quotes, backslashes and control characters are escaped and the
// template introducers ${ and %{ doubled, so the config reads back s and
// interpolates nothing. HCL strings are valid UTF-8 in Unicode normal form
// C; hclHolds says whether s is one.
func hclString(s string) string {
	return string(hclwrite.TokensForValue(cty.StringVal(s)).Bytes())
}

// hclHolds says whether a config reads back hclString(s) as s itself: s is
// valid UTF-8 and already in normal form C.
func hclHolds(s string) bool {
	return utf8.ValidString(s) && cty.StringVal(s).AsString() == s
}
