package rules

import (
	"slices"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"

	"github.com/backflowhq/backflow/schema"
)

// Reads is what one rule may read of a row.
type Reads struct {
	// Columns are the columns the rule selects by name (row.<column>,
	// has(row.<column>)), in the model's column order.
	Columns []string
	// All is true when the rule may read any column: it does not compile
	// against the columns, or it uses the row other than by selecting a
	// named column (passes it to a function, indexes it, puts it in a
	// list, compares it) — which Compile refuses too. Columns is then
	// incomplete.
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
	refs, whole := rowUses(checked, columnIndex(columns))
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
	r.All = len(whole) > 0
	return r
}

func columnIndex(columns []schema.Column) map[string]int {
	index := make(map[string]int, len(columns))
	for i, c := range columns {
		index[c.Name] = i
	}
	return index
}

// rowUses lists, in first-use order, the columns a checked rule selects
// as row.<column>; whole lists the nodes, in the order of the source,
// where it uses `row` any other way or holds a node it does not know.
// `row` is the variable of type Row: a comprehension variable of that
// name (`[1].exists(row, row == 1)`) is not the row.
func rowUses(checked *cel.Ast, index map[string]int) (refs []int, whole []ast.Expr) {
	native := checked.NativeRep()
	refMap := native.ReferenceMap()
	seen := make(map[int]bool)
	selected := map[int64]bool{} // ids of `row` idents that are a selection's operand
	var rows []ast.Expr          // every `row` ident
	var other []ast.Expr         // nodes the walk does not know
	// names are what an identifier is written as and what it resolves to.
	names := func(e ast.Expr) []string {
		n := []string{strings.TrimPrefix(e.AsIdent(), ".")}
		if r := refMap[e.ID()]; r != nil && r.Name != "" {
			n = append(n, r.Name)
		}
		return n
	}
	isRow := func(e ast.Expr) bool {
		if e.Kind() != ast.IdentKind || !slices.Contains(names(e), "row") {
			return false
		}
		t := native.GetType(e.ID())
		return t.Kind() == types.StructKind && t.TypeName() == rowTypeName
	}
	ast.PreOrderVisit(native.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		switch e.Kind() {
		case ast.IdentKind:
			if isRow(e) {
				rows = append(rows, e)
			}
			for _, n := range names(e) {
				if strings.HasPrefix(n, "row.") {
					// A qualified name through row: not a form the checker
					// makes today, and not a plain selection.
					other = append(other, e)
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
		case ast.StructKind:
			// A Row built by the rule: no more a value at run time than
			// the row is.
			if t := native.GetType(e.ID()); t.Kind() == types.StructKind && t.TypeName() == rowTypeName {
				other = append(other, e)
			}
		case ast.UnspecifiedExprKind:
			other = append(other, e)
		}
	}))
	for _, e := range rows {
		if !selected[e.ID()] {
			whole = append(whole, e)
		}
	}
	whole = append(whole, other...)
	info := native.SourceInfo()
	slices.SortStableFunc(whole, func(a, b ast.Expr) int {
		la, lb := info.GetStartLocation(a.ID()), info.GetStartLocation(b.ID())
		if la.Line() != lb.Line() {
			return la.Line() - lb.Line()
		}
		return la.Column() - lb.Column()
	})
	return refs, whole
}
