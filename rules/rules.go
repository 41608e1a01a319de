package rules

import "github.com/hashicorp/hcl/v2"

// Rule is one `exclude` block of a sync, as written.
type Rule struct {
	Name   string
	Reason string
	// Expr is the CEL source (the string value of `when`).
	Expr string
	// Range is the range of the `when` expression in its .hcl file, and
	// Raw its exact bytes there (quotes, escapes or heredoc markers
	// included), so positions inside Expr can be mapped back to the file.
	Range hcl.Range
	Raw   []byte
}
