package rules

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/internal/suggest"
	"github.com/backflowhq/backflow/schema"
)

// DefaultCostLimit is the CEL cost budget of one rule evaluated on one row
// unless WithCostLimit says otherwise.
const DefaultCostLimit = 1_000_000

// Option configures Compile.
type Option func(*options)

type options struct{ costLimit uint64 }

// WithCostLimit sets the CEL cost budget of one rule on one row; a rule
// that exceeds it fails with an error naming the rule.
func WithCostLimit(limit uint64) Option { return func(o *options) { o.costLimit = limit } }

// Program is a sync's exclude rules compiled against a model's columns.
// It is safe for concurrent use.
type Program struct {
	columns []schema.Column
	rules   []compiled
	pool    sync.Pool // *rowData, reused across Exclude calls
}

type compiled struct {
	name string
	prg  cel.Program // tracks cost against the limit
	// fast, when set, evaluates without cost tracking: the rule's static
	// cost estimate stays within the limit for every row whose strings,
	// bytes and JSON are at most boundedSize long, so tracking could never
	// stop it. Rows with larger values use prg.
	fast cel.Program
	refs []int // columns the rule selects, for naming a null one in errors
}

// boundedSize is the value size (bytes of a string, bytes, JSON text)
// assumed by the static cost estimate that lets a rule skip run-time cost
// tracking, which costs several times the evaluation itself.
const boundedSize = 1 << 16

// sizeBound estimates every value of unknown size as at most boundedSize.
type sizeBound struct{}

func (sizeBound) EstimateSize(checker.AstNode) *checker.SizeEstimate {
	return &checker.SizeEstimate{Min: 0, Max: boundedSize}
}

func (sizeBound) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// Compile type-checks rules against columns (fields of `row`). Every problem
// (syntax, unknown column, type error, non-bool result) is a diagnostic whose
// Subject points at the offending part of the expression inside the .hcl file.
// A rule must return bool (or a nullable bool or dyn, checked per row; a
// null result does not exclude).
func Compile(columns []schema.Column, rs []Rule, opts ...Option) (*Program, hcl.Diagnostics) {
	o := options{costLimit: DefaultCostLimit}
	for _, opt := range opts {
		opt(&o)
	}
	env, err := newEnv(columns)
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot Build Rule Environment", Detail: err.Error() + "."}}
	}
	index := columnIndex(columns)
	p := &Program{columns: columns}
	p.pool.New = func() any { return &rowData{cols: columns} }
	var diags hcl.Diagnostics
	for _, r := range rs {
		if d := checkLength(r); d != nil {
			diags = append(diags, d)
			continue
		}
		checked, iss := env.Compile(r.Expr)
		if iss != nil && iss.Err() != nil {
			for _, e := range iss.Errors() {
				diags = append(diags, limitDiag(ruleDiag(r, e.Location.Line(), e.Location.Column(), e.Message, columns), r, e.Message))
			}
			continue
		}
		refs, whole := rowUses(checked, index)
		if len(whole) > 0 {
			diags = append(diags, rowValueDiag(r, checked, whole[0], columns))
			continue
		}
		if t := checked.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.NullableType(cel.BoolType)) && !t.IsExactType(cel.DynType) {
			d := ruleDiag(r, 1, 0, fmt.Sprintf("the expression returns %s", t), columns)
			d.Summary = "Rule Must Return Bool"
			d.Detail = fmt.Sprintf("Exclude rule %q returns %s, but a rule must return bool (true excludes the row). Compare the value, for example `row.x == ...`.", r.Name, t)
			diags = append(diags, d)
			continue
		}
		prg, err := env.Program(checked, cel.CostLimit(o.costLimit), cel.EvalOptions(cel.OptOptimize))
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid Exclude Rule",
				Detail:   fmt.Sprintf("Exclude rule %q cannot be prepared: %v.", r.Name, err),
				Subject:  r.Range.Ptr(),
			})
			continue
		}
		c := compiled{name: r.Name, prg: prg, refs: refs}
		if est, err := env.EstimateCost(checked, sizeBound{}); err == nil && est.Max <= o.costLimit {
			if fast, err := env.Program(checked, cel.EvalOptions(cel.OptOptimize)); err == nil {
				c.fast = fast
			}
		}
		p.rules = append(p.rules, c)
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return p, nil
}

// newEnv is the CEL environment of rules over columns: the variable `row`
// of type Row, whose fields are the columns.
func newEnv(columns []schema.Column) (*cel.Env, error) {
	prov, err := newRowProvider(columns)
	if err != nil {
		return nil, err
	}
	return cel.NewEnv(append(limitOptions(),
		cel.CustomTypeProvider(prov),
		cel.Variable("row", cel.ObjectType(rowTypeName)),
		ext.Strings(),
	)...)
}

var (
	undefinedField = regexp.MustCompile(`undefined field '([^']*)'`)
	// rowTypeIssue is a type error about a value of type Row: the row
	// itself given to an operator, function or comprehension.
	rowTypeIssue = regexp.MustCompile(`(applied to|of type) '[^']*\bRow\b`)
)

// rowValueDetail says that rule name uses the row as a value, and how to
// read it instead. The row is no value at run time: such a rule would
// fail on every row.
func rowValueDetail(name string, columns []schema.Column) string {
	example := ""
	if len(columns) > 0 {
		example = fmt.Sprintf(" (for example row.%s)", columns[0].Name)
	}
	return fmt.Sprintf("Exclude rule %q uses the row as a value: read columns as row.<column>%s, and test whether one is set with has(row.<column>). "+
		"The row itself cannot be passed to a function, compared, converted, indexed or put in a list or map.", name, example)
}

// rowValueDiag is the diagnostic for rule r, whose checked expression uses
// the row as a value at node e.
func rowValueDiag(r Rule, checked *cel.Ast, e ast.Expr, columns []schema.Column) *hcl.Diagnostic {
	loc := checked.NativeRep().SourceInfo().GetStartLocation(e.ID())
	d := ruleDiag(r, loc.Line(), loc.Column(), "uses the row as a value", columns)
	if e.Kind() == ast.IdentKind {
		d.Subject.End = exprPos(r, loc.Line(), loc.Column()+utf8.RuneCountInString(strings.TrimPrefix(e.AsIdent(), ".")))
	}
	d.Detail = rowValueDetail(r.Name, columns)
	return d
}

// ruleDiag is the diagnostic for a CEL issue at line/column (CEL's: 1-based
// line, 0-based column) of r's expression, placed in the .hcl file.
func ruleDiag(r Rule, line, col int, msg string, columns []schema.Column) *hcl.Diagnostic {
	start := exprPos(r, line, col)
	end := start
	end.Column++
	end.Byte++
	detail := fmt.Sprintf("Exclude rule %q: %s.", r.Name, sqlTypeWords(msg))
	if d, ok := typeErrorDetail(r.Name, r.Expr, msg, columns); ok {
		detail = d
	}
	if rowTypeIssue.MatchString(msg) {
		detail = rowValueDetail(r.Name, columns)
	}
	if m := undefinedField.FindStringSubmatch(msg); m != nil {
		// CEL places a selection at its dot; point at the column name instead.
		if lines := strings.Split(r.Expr, "\n"); line >= 1 && line <= len(lines) && col < len(lines[line-1]) {
			if off := strings.Index(lines[line-1][col:], m[1]); off >= 0 {
				start = exprPos(r, line, col+off)
				end = exprPos(r, line, col+off+len(m[1]))
			}
		}
		detail = fmt.Sprintf("Exclude rule %q refers to column %q, which the model does not have.", r.Name, m[1])
		if s := closest(m[1], columns); s != "" {
			detail += fmt.Sprintf(" Did you mean %q?", s)
		} else {
			var names []string
			for _, c := range columns {
				names = append(names, c.Name)
			}
			detail += fmt.Sprintf(" Its columns are: %s.", strings.Join(names, ", "))
		}
	}
	ctx := r.Range
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Invalid Exclude Rule",
		Detail:   detail,
		Subject:  &hcl.Range{Filename: r.Range.Filename, Start: start, End: end},
		Context:  &ctx,
	}
}

// closest is the column name nearest to name, if it is a likely typo.
func closest(name string, columns []schema.Column) string {
	names := make([]string, len(columns))
	for i, c := range columns {
		names[i] = c.Name
	}
	return suggest.Closest(name, names)
}

// withinBound reports whether every string and bytes value of the row is at
// most boundedSize long.
func withinBound(row []any) bool {
	for _, v := range row {
		switch x := v.(type) {
		case string:
			if len(x) > boundedSize {
				return false
			}
		case []byte:
			if len(x) > boundedSize {
				return false
			}
		}
	}
	return true
}

// Exclude evaluates the rules in order against one row (values index-aligned
// with the columns given to Compile, Go types as engine.Rows yields) and
// returns the name of the first rule that is true, or "" when the row is
// included. A rule that fails at run time (or exceeds the cost limit) is an
// error naming the rule and, for a null column, the column.
func (p *Program) Exclude(row []any) (string, error) {
	if len(p.rules) == 0 {
		return "", nil
	}
	rd := p.pool.Get().(*rowData)
	rd.vals = row
	defer func() {
		rd.vals = nil
		p.pool.Put(rd)
	}()
	bounded := withinBound(row)
	for i := range p.rules {
		r := &p.rules[i]
		prg := r.prg
		if bounded && r.fast != nil {
			prg = r.fast
		}
		out, _, err := prg.Eval(rd)
		if err != nil {
			return "", p.evalError(r, row, err)
		}
		switch out {
		case types.True:
			return r.name, nil
		case types.False, types.NullValue:
			continue
		}
		return "", fmt.Errorf("exclude rule %q returned %s (%v), not bool", r.name, out.Type(), out.Value())
	}
	return "", nil
}

// evalError explains a run-time failure: the rule, and the null columns
// the rule reads, which are the usual cause ("no such overload").
func (p *Program) evalError(r *compiled, row []any, err error) error {
	var nulls []string
	for _, i := range r.refs {
		if i < len(row) && row[i] == nil {
			nulls = append(nulls, p.columns[i].Name)
		}
	}
	msg := err.Error()
	if strings.Contains(msg, "cost limit exceeded") {
		return fmt.Errorf("exclude rule %q exceeded its cost limit: %w", r.name, err)
	}
	if len(nulls) > 0 {
		return fmt.Errorf("exclude rule %q failed because column %s is null (test it first, e.g. `row.%s == null || ...`): %w",
			r.name, strings.Join(nulls, ", "), nulls[0], err)
	}
	return fmt.Errorf("exclude rule %q failed: %w", r.name, err)
}
