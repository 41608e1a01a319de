package engine

import (
	"fmt"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/expression"
	"github.com/dolthub/go-mysql-server/sql/expression/function"
	"github.com/dolthub/go-mysql-server/sql/types"
)

// MaxValueBytes bounds a string the embedded engine's string functions
// build. go-mysql-server has no such bound (MySQL's is max_allowed_packet):
// left alone, one short model query such as SELECT REPEAT('x', 2000000000)
// takes gigabytes, or a recursive CTE doubling a string with CONCAT(s, s)
// crashes the process.
const MaxValueBytes = 16 << 20

// boundedFunctions are the string functions whose result can be much
// larger than their arguments, with the size of the result they would
// build from their evaluated arguments (nil: known only once built, and
// at most a few times the arguments' size).
var boundedFunctions = map[string]func(ctx *sql.Context, args []any) int64{
	"repeat": func(ctx *sql.Context, args []any) int64 {
		return int64(len(text(ctx, args[0]))) * count(ctx, args[1])
	},
	"space": func(ctx *sql.Context, args []any) int64 { return count(ctx, args[0]) },
	// The length of LPAD and RPAD is in characters (the size of what they
	// build, in bytes, is checked once built).
	"lpad": func(ctx *sql.Context, args []any) int64 { return count(ctx, args[1]) },
	"rpad": func(ctx *sql.Context, args []any) int64 { return count(ctx, args[1]) },
	"replace": func(ctx *sql.Context, args []any) int64 {
		s, from, to := text(ctx, args[0]), text(ctx, args[1]), text(ctx, args[2])
		if from == "" {
			return int64(len(s))
		}
		return int64(len(s)) + int64(strings.Count(s, from))*int64(len(to)-len(from))
	},
	// At worst the pattern matches at every position of the string.
	"regexp_replace": func(ctx *sql.Context, args []any) int64 {
		s, repl := text(ctx, args[0]), text(ctx, args[2])
		return int64(len(s)) + int64(len(s)+1)*int64(len(repl))
	},
	"concat":    nil,
	"concat_ws": nil,
	"hex":       nil,
	"to_base64": nil,
}

// boundedFunction returns the built-in function name, wrapped so that it
// refuses to build a value of more than MaxValueBytes, if it is one of
// boundedFunctions.
func boundedFunction(name string) (sql.Function, bool) {
	name = strings.ToLower(name)
	size, ok := boundedFunctions[name]
	if !ok {
		return nil, false
	}
	var builtin sql.Function
	for _, f := range function.BuiltIns {
		if f.FunctionName() == name {
			builtin = f
			break
		}
	}
	if builtin == nil {
		return nil, false
	}
	return sql.FunctionN{Name: name, Fn: func(args ...sql.Expression) (sql.Expression, error) {
		inner, err := builtin.NewInstance(args)
		if err != nil {
			return nil, err
		}
		return &boundedExpr{name: name, inner: inner, size: size}, nil
	}}, true
}

// boundedExpr is a built-in function that evaluates its arguments once,
// checks the size of the result they would give before building it (when
// size is known), and checks the size of what it built.
type boundedExpr struct {
	name  string
	inner sql.Expression
	size  func(ctx *sql.Context, args []any) int64
}

var (
	_ sql.FunctionExpression = (*boundedExpr)(nil)
	_ sql.CollationCoercible = (*boundedExpr)(nil)
)

func (b *boundedExpr) Eval(ctx *sql.Context, row sql.Row) (any, error) {
	children := b.inner.Children()
	args := make([]any, len(children))
	lits := make([]sql.Expression, len(children))
	for i, c := range children {
		v, err := c.Eval(ctx, row)
		if err != nil {
			return nil, err
		}
		args[i], lits[i] = v, expression.NewLiteral(v, c.Type())
	}
	if b.size != nil && !hasNull(args) {
		if n := b.size(ctx, args); n > MaxValueBytes {
			return nil, b.tooLarge(fmt.Sprintf("%d bytes", n))
		}
	}
	e, err := b.inner.WithChildren(lits...)
	if err != nil {
		return nil, err
	}
	v, err := e.Eval(ctx, row)
	if err != nil {
		return nil, err
	}
	if n := valueSize(v); n > MaxValueBytes {
		return nil, b.tooLarge(fmt.Sprintf("%d bytes", n))
	}
	return v, nil
}

func (b *boundedExpr) tooLarge(size string) error {
	return fmt.Errorf("%s() would build a value of %s; the embedded engine builds values of at most %d MiB",
		strings.ToUpper(b.name), size, MaxValueBytes>>20)
}

func (b *boundedExpr) WithChildren(children ...sql.Expression) (sql.Expression, error) {
	inner, err := b.inner.WithChildren(children...)
	if err != nil {
		return nil, err
	}
	return &boundedExpr{name: b.name, inner: inner, size: b.size}, nil
}

func (b *boundedExpr) Resolved() bool             { return b.inner.Resolved() }
func (b *boundedExpr) String() string             { return b.inner.String() }
func (b *boundedExpr) Type() sql.Type             { return b.inner.Type() }
func (b *boundedExpr) IsNullable() bool           { return b.inner.IsNullable() }
func (b *boundedExpr) Children() []sql.Expression { return b.inner.Children() }
func (b *boundedExpr) FunctionName() string       { return b.name }
func (b *boundedExpr) Description() string        { return "the built-in " + b.name + ", bounded in size" }
func (b *boundedExpr) CollationCoercibility(ctx *sql.Context) (sql.CollationID, byte) {
	if c, ok := b.inner.(sql.CollationCoercible); ok {
		return c.CollationCoercibility(ctx)
	}
	return sql.Collation_binary, 5
}

func hasNull(args []any) bool {
	for _, a := range args {
		if a == nil {
			return true
		}
	}
	return false
}

// text is an argument as the string function reads it.
func text(ctx *sql.Context, v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	}
	s, _, err := types.LongText.Convert(ctx, v)
	if err != nil {
		return ""
	}
	str, _ := s.(string)
	return str
}

// count is an argument read as a count; what does not convert counts 0
// and is left to the function to refuse.
func count(ctx *sql.Context, v any) int64 {
	n, _, err := types.Int64.Convert(ctx, v)
	if err != nil {
		return 0
	}
	i, _ := n.(int64)
	return max(i, 0)
}

func valueSize(v any) int {
	switch x := v.(type) {
	case string:
		return len(x)
	case []byte:
		return len(x)
	}
	return 0
}
