package main

import (
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Every awkward value the harness could paste into a config reads back
// as itself, interpolating nothing.
func TestHCLStringRoundTrips(t *testing.T) {
	for _, s := range []string{
		"",
		"postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
		`postgres://u:p"w\d@127.0.0.1/test`,
		"root:${HOME}@tcp(127.0.0.1:3306)/test",
		"%{ if true }yes%{ endif }",
		"$${ already doubled %%{",
		"$$${ and %%%{",
		"trailing $", "trailing %", `trailing \`, `\"`, `\\n`,
		"line\nbreak\r\n\ttab",
		"nul\x00 bell\a del\x7f esc\x1b",
		"line separator\u2028 bom\ufeff",
		"unicode é ß 漢字 🎉",
		"{}[]()=,#//*",
	} {
		lit := hclString(s)
		src := []byte("v = " + lit + "\n")
		f, diags := hclsyntax.ParseConfig(src, "t.hcl", hcl.InitialPos)
		if diags.HasErrors() {
			t.Errorf("%q as %s: %s", s, lit, diags.Error())
			continue
		}
		attrs, diags := f.Body.JustAttributes()
		if diags.HasErrors() {
			t.Errorf("%q as %s: %s", s, lit, diags.Error())
			continue
		}
		v, diags := attrs["v"].Expr.Value(nil) // no variables: an interpolation fails
		if diags.HasErrors() {
			t.Errorf("%q as %s: %s", s, lit, diags.Error())
			continue
		}
		if got := v.AsString(); got != s {
			t.Errorf("%q as %s reads back as %q", s, lit, got)
		}
		if !hclHolds(s) {
			t.Errorf("hclHolds(%q) = false, yet it round-trips", s)
		}
	}
}

// What HCL cannot hold as given is refused, not silently changed.
func TestHCLHolds(t *testing.T) {
	for _, s := range []string{"pass\xffword", "e\u0301"} { // invalid UTF-8; é decomposed
		if hclHolds(s) {
			t.Errorf("hclHolds(%q) = true, but a config reads it back changed", s)
		}
	}
}
