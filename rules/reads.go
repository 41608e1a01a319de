package rules

import (
	"slices"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"

	"github.com/backflowhq/backflow/schema"
)

// Reads is what one rule may read of a row.
type Reads struct {
	// Columns are the columns the rule selects by name (row.<column>,
	// has(row.<column>)), in the model's column order.
	Columns []string
	// All is true when the rule may read any column: it uses the row
	// other than by selecting a named column (passes it to a function,
	// indexes it, puts it in a list, compares it), or it does not
	// compile against the columns. Columns is then incomplete.
	All bool
}

// ReadColumns is what the rule expr may read of a row of columns, found
// from its type-checked syntax tree: a column whose name appears only in a
// string literal or a comment is not read. Whatever cannot be shown to be
// the selection of a fixed column counts as reading every column, so a
// column outside Columns cannot change the rule's verdict unless All.
func ReadColumns(columns []schema.Column, expr string) Reads {
	env, err := newEnv(columns)
	if err != nil {
		return Reads{All: true}
	}
	checked, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return Reads{All: true}
	}
	index := make(map[string]int, len(columns))
	for i, c := range columns {
		index[c.Name] = i
	}
	refs, all := rowUses(checked, index)
	read := make([]bool, len(columns))
	for _, i := range refs {
		read[i] = true
	}
	var r Reads
	for i, c := range columns {
		if read[i] {
			r.Columns = append(r.Columns, c.Name)
		}
	}
	r.All = all
	return r
}

// rowUses lists, in first-use order, the columns a checked rule selects
// as row.<column>; all is true when it also uses `row` any other way, or
// holds a node it does not know.
func rowUses(checked *cel.Ast, index map[string]int) (refs []int, all bool) {
	native := checked.NativeRep()
	refMap := native.ReferenceMap()
	seen := make(map[int]bool)
	selected := map[int64]bool{} // ids of `row` idents that are a selection's operand
	var rows []int64             // ids of every `row` ident
	// names are what an identifier is written as and what it resolves to.
	names := func(e ast.Expr) []string {
		n := []string{strings.TrimPrefix(e.AsIdent(), ".")}
		if r := refMap[e.ID()]; r != nil && r.Name != "" {
			n = append(n, r.Name)
		}
		return n
	}
	isRow := func(e ast.Expr) bool {
		return e.Kind() == ast.IdentKind && slices.Contains(names(e), "row")
	}
	ast.PreOrderVisit(native.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		switch e.Kind() {
		case ast.IdentKind:
			if isRow(e) {
				rows = append(rows, e.ID())
			}
			for _, n := range names(e) {
				if strings.HasPrefix(n, "row.") {
					// A qualified name through row: not a form the checker
					// makes today, and not a plain selection.
					all = true
				}
			}
		case ast.SelectKind:
			sel := e.AsSelect()
			op := sel.Operand()
			if !isRow(op) {
				return
			}
			i, ok := index[sel.FieldName()]
			if !ok {
				return // the operand then counts as a use of the whole row
			}
			selected[op.ID()] = true
			if !seen[i] {
				seen[i] = true
				refs = append(refs, i)
			}
		case ast.UnspecifiedExprKind:
			all = true
		}
	}))
	for _, id := range rows {
		if !selected[id] {
			all = true
		}
	}
	return refs, all
}
