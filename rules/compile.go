package rules

import (
	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/engine"
)

// Program is a sync's exclude rules compiled against a model's columns.
// It is safe for concurrent use.
type Program struct{}

// Compile type-checks rules against columns (fields of `row`). Every problem
// (syntax, unknown column, type error, non-bool result) is a diagnostic whose
// Subject points at the offending part of the expression inside the .hcl file.
func Compile(columns []engine.Column, rs []Rule) (*Program, hcl.Diagnostics) {
	panic("TODO")
}

// Exclude evaluates the rules in order against one row (values index-aligned
// with the columns given to Compile, Go types as engine.Rows yields) and
// returns the name of the first rule that is true, or "" when the row is
// included. A rule that fails at run time (or exceeds the cost limit) is an
// error naming the rule and, for a null column, the column.
func (p *Program) Exclude(row []any) (string, error) {
	panic("TODO")
}
