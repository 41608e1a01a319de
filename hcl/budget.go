package config

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// Evaluating a config must not exhaust memory either: a 70-byte
// expression such as join("", [for i in range(1000) : format("%0999999d", i)])
// builds a 1 GB string. Two rules bound what evaluation can build:
//
//   - every value a function returns counts against MaxConfigSize (the
//     budget file() also draws from), and a call whose result could exceed
//     what is left is refused before it runs (see estimates);
//   - for expressions ([for …], {for …}, %{ for }) are refused: they repeat
//     their body once per element, out of reach of any function's budget,
//     and nest into products. The config language needs no loops.
//
// With no variables in the language, every other value is a literal of a
// size-limited file or a function result, so what evaluation holds stays
// within a small multiple of the files and the budget.

// errBudget is returned by a function call whose result would exceed what
// is left of MaxConfigSize.
type errBudget struct {
	fn   string
	size int64
}

func (e *errBudget) Error() string {
	return fmt.Sprintf("%s() would return about %d bytes, more than is left of the %d MiB a config may read and compute", e.fn, e.size, MaxConfigSize>>20)
}

// errJSONDepth is returned by jsondecode() for JSON nested too deeply for
// its recursive decoder.
var errJSONDepth = fmt.Errorf("the JSON nests more than %d levels deep, the limit for a config", MaxNesting)

// valueOverhead approximates the memory of one value besides its bytes.
const valueOverhead = 64

// size approximates the memory a value holds.
func size(v cty.Value) int64 {
	v, _ = v.UnmarkDeep()
	if !v.IsKnown() || v.IsNull() {
		return valueOverhead
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		return valueOverhead + int64(len(v.AsString()))
	case ty.IsListType() || ty.IsSetType() || ty.IsTupleType() || ty.IsMapType() || ty.IsObjectType():
		n := int64(valueOverhead)
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			if k.Type() == cty.String {
				n = add(n, int64(len(k.AsString())))
			}
			n = add(n, size(e))
		}
		return n
	}
	return valueOverhead
}

// left is what remains of MaxConfigSize.
func (l *loader) left() int64 { return MaxConfigSize - l.size }

// bounded wraps a function so that its results count against
// MaxConfigSize, refusing a call whose estimated result exceeds what is
// left before running it.
func (l *loader) bounded(name string, f function.Function) function.Function {
	estimate := estimates[name]
	check := func(args []cty.Value) error {
		if estimate == nil {
			return nil
		}
		n, err := estimate(args)
		if err == nil && n > l.left() {
			err = &errBudget{fn: name, size: n}
		}
		return err
	}
	return function.New(&function.Spec{
		Description: f.Description(),
		Params:      f.Params(),
		VarParam:    f.VarParam(),
		// Some functions do the work in working out their type
		// (jsondecode decodes), so the estimate is checked first there too.
		Type: func(args []cty.Value) (cty.Type, error) {
			if err := check(args); err != nil {
				return cty.NilType, err
			}
			return f.ReturnTypeForValues(args)
		},
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if err := check(args); err != nil {
				return cty.NilVal, err
			}
			for _, a := range args {
				if hugeNumber(a) {
					return cty.NilVal, errHugeNumber
				}
			}
			v, err := f.Call(args)
			if err != nil {
				return v, err
			}
			if hugeNumber(v) {
				return cty.NilVal, errHugeNumber
			}
			n := size(v)
			if l.grow(int(n)) != nil {
				return cty.NilVal, &errBudget{fn: name, size: n}
			}
			return v, nil
		},
	})
}

// str returns a known string argument's value, or "".
func str(v cty.Value) string {
	v, _ = v.UnmarkDeep()
	if !v.IsKnown() || v.IsNull() || v.Type() != cty.String {
		return ""
	}
	return v.AsString()
}

// length returns a known collection argument's length, or 1.
func length(v cty.Value) int64 {
	v, _ = v.UnmarkDeep()
	if !v.IsKnown() || v.IsNull() || !v.CanIterateElements() {
		return 1
	}
	return int64(v.LengthInt())
}

func sizes(args []cty.Value) int64 {
	var n int64
	for _, a := range args {
		n = add(n, size(a))
	}
	return n
}

var digits = regexp.MustCompile(`[0-9]+`)

// widths bounds what the widths and precisions of a format spec can add:
// the sum of every number written in it.
func widths(spec string) int64 {
	var n int64
	for _, d := range digits.FindAllString(spec, -1) {
		w, err := strconv.ParseInt(d, 10, 64)
		if err != nil {
			return huge
		}
		n = add(n, w)
	}
	return n
}

// huge is more than any budget; estimates saturate at it rather than
// overflow.
const huge = int64(1) << 50

// mul multiplies non-negative estimates, saturating at huge.
func mul(a, b int64) int64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	if a > huge/b {
		return huge
	}
	return a * b
}

// add adds non-negative estimates, saturating at huge.
func add(xs ...int64) int64 {
	var n int64
	for _, x := range xs {
		n = min(n+max(x, 0), huge)
	}
	return n
}

// num returns a known number argument's value as an int64, or 0.
func num(v cty.Value) int64 {
	v, _ = v.UnmarkDeep()
	if !v.IsKnown() || v.IsNull() || v.Type() != cty.Number {
		return 0
	}
	n, _ := v.AsBigFloat().Int64()
	return n
}

// largest is the size of the largest argument.
func largest(args []cty.Value) int64 {
	var n int64
	for _, a := range args {
		n = max(n, size(a))
	}
	return n
}

// formatBound bounds one expansion of a format spec: its text, its widths
// and precisions, and each verb expanding to the largest argument (verbs
// such as %[1]s can repeat one).
func formatBound(spec string, args []cty.Value) int64 {
	return add(int64(len(spec)), widths(spec), mul(int64(strings.Count(spec, "%")), largest(args)))
}

// matches returns how many times pattern matches s, counting up to
// upTo at most (the count only needs to tell a result over the budget),
// and its number of groups; a pattern that does not compile is left to the
// function.
func matches(pattern, s string, upTo int64) (n, groups int64) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return 0, 0
	}
	return int64(len(re.FindAllStringIndex(s, int(min(upTo, int64(len(s))+1))))), int64(re.NumSubexp())
}

// estimates bound, from their arguments, the results of the functions
// whose result can be much larger than their arguments, before they run.
// The other functions' results are at most a small multiple of their
// arguments, and are counted after the call.
var estimates = map[string]func(args []cty.Value) (int64, error){
	"format": func(args []cty.Value) (int64, error) {
		return formatBound(str(args[0]), args[1:]), nil
	},
	"formatlist": func(args []cty.Value) (int64, error) {
		n := int64(1)
		for _, a := range args[1:] {
			n = max(n, length(a))
		}
		return mul(n, add(valueOverhead, formatBound(str(args[0]), args[1:]))), nil
	},
	"indent": func(args []cty.Value) (int64, error) {
		s := str(args[1])
		return add(int64(len(s)), mul(num(args[0]), int64(strings.Count(s, "\n")+1))), nil
	},
	"join": func(args []cty.Value) (int64, error) {
		var n int64
		for _, a := range args[1:] {
			n += length(a)
		}
		return add(sizes(args), mul(n, int64(len(str(args[0]))))), nil
	},
	"replace": func(args []cty.Value) (int64, error) {
		s, sub := str(args[0]), str(args[1])
		n := int64(len(s) + 1)
		if sub != "" {
			n = int64(strings.Count(s, sub))
		}
		return add(int64(len(s)), mul(n, int64(len(str(args[2]))))), nil
	},
	"regex_replace": func(args []cty.Value) (int64, error) {
		// A $1 in the replacement can expand to the whole string.
		s, repl := str(args[0]), str(args[2])
		each := add(int64(len(repl)), mul(int64(strings.Count(repl, "$")), int64(len(s))))
		n, _ := matches(str(args[1]), s, MaxConfigSize/max(each, 1)+1)
		return add(int64(len(s)), mul(n, each)), nil
	},
	"regex": func(args []cty.Value) (int64, error) {
		_, groups := matches(str(args[0]), "", 0)
		return mul(groups+1, valueOverhead+int64(len(str(args[1])))), nil
	},
	"regexall": func(args []cty.Value) (int64, error) {
		// Matches do not overlap: each group captures at most the string
		// once over all matches.
		s := str(args[1])
		n, groups := matches(str(args[0]), s, MaxConfigSize/valueOverhead+1)
		return add(mul(groups+1, int64(len(s))), mul(n, mul(groups+1, valueOverhead))), nil
	},
	"split": func(args []cty.Value) (int64, error) {
		sep, s := str(args[0]), str(args[1])
		n := int64(len(s) + 1)
		if sep != "" {
			n = int64(strings.Count(s, sep) + 1)
		}
		return add(int64(len(s)), mul(n, valueOverhead)), nil
	},
	"csvdecode": func(args []cty.Value) (int64, error) {
		s := str(args[0])
		cells := int64(strings.Count(s, ",") + strings.Count(s, "\n") + 1)
		return add(int64(len(s)), mul(cells, valueOverhead)), nil
	},
	"jsondecode": func(args []cty.Value) (int64, error) {
		s := str(args[0])
		if jsonDepth(s) > MaxNesting {
			return 0, errJSONDepth
		}
		items := int64(strings.Count(s, ",") + strings.Count(s, ":") + 1)
		return add(int64(len(s)), mul(items, valueOverhead)), nil
	},
}

// jsonDepth returns how deeply arrays and objects nest in JSON text
// (outside strings), without decoding it.
func jsonDepth(s string) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString && c == '"':
			inString = false
		case inString:
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

// refuseLoops diagnoses every for expression of body, and every number
// literal too large or too small to write out (hugeNumber), and marks it
// broken, so that nothing containing it is evaluated.
func (l *loader) refuseLoops(body *hclsyntax.Body) {
	hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
		switch e := n.(type) {
		case *hclsyntax.ForExpr:
			rng := e.Range()
			l.errorf(rng, "For expressions are not supported", "A config is evaluated on pull requests, where its input is untrusted, and a for expression repeats its body once per element without bound. Write the values out, or compute them in the model's SQL.")
			l.syntaxErrors = append(l.syntaxErrors, rng)
		case *hclsyntax.LiteralValueExpr:
			if hugeNumber(e.Val) {
				rng := e.Range()
				l.errorf(rng, "Number out of range", "A number in a config lies within ±1e1000 (and, but for 0, beyond ±1e-1000): writing this one out would take minutes of CPU and hundreds of MB, and the config is evaluated on pull requests, where its input is untrusted.")
				l.syntaxErrors = append(l.syntaxErrors, rng)
			}
		}
		return nil
	})
}

// hugeNumber reports whether v holds a number (at any depth) whose
// magnitude is beyond 2^±3400 (about 1e±1023): written out as text (a
// template, format(), jsonencode()) it takes time and memory that grow
// with its exponent: 1e30000000 took 117 s and 465 MB.
func hugeNumber(v cty.Value) bool {
	v, _ = v.UnmarkDeep()
	if !v.IsKnown() || v.IsNull() {
		return false
	}
	t := v.Type()
	switch {
	case t == cty.Number:
		f := v.AsBigFloat()
		if f.Sign() == 0 || f.IsInf() {
			return false
		}
		e := f.MantExp(nil)
		return e > 3400 || e < -3400
	case t.IsListType() || t.IsSetType() || t.IsTupleType() || t.IsMapType() || t.IsObjectType():
		for it := v.ElementIterator(); it.Next(); {
			if _, ev := it.Element(); hugeNumber(ev) {
				return true
			}
		}
	}
	return false
}

// errHugeNumber: a function was given, or would return, a number that
// hugeNumber refuses.
var errHugeNumber = errors.New("a number beyond ±1e1000 (or, but for 0, within ±1e-1000), which would take minutes to write out")

// budgetDiag rewrites the diagnostic of a function that exceeded the
// budget or the JSON depth; ok says whether it was one.
func budgetDiag(d *hcl.Diagnostic, err error) bool {
	var b *errBudget
	switch {
	case errors.As(err, &b):
		d.Summary = "Config too large"
		d.Detail = fmt.Sprintf("This call cannot run: %v. Compute less in the config.", b)
	case errors.Is(err, errJSONDepth):
		d.Summary = "Nesting too deep"
		d.Detail = fmt.Sprintf("jsondecode() cannot read this value: %v.", errJSONDepth)
	default:
		return false
	}
	return true
}
