package config

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/backflowhq/backflow/internal/suggest"
)

// secretOK says whether an attribute may hold a value read through env().
type secretOK bool

const (
	noSecret    secretOK = false
	allowSecret secretOK = true
)

// eval evaluates an attribute's expression. ok is false when a diagnostic
// was recorded; the returned value is then unusable. The value is unmarked:
// sens says whether any part of it came from env().
func (l *loader) eval(attr *hcl.Attribute, allow secretOK) (val cty.Value, sens bool, ok bool) {
	if l.broken(attr.Expr.Range()) {
		return cty.NilVal, false, false
	}
	val, diags := attr.Expr.Value(l.ctx)
	l.addEval(diags)
	if diags.HasErrors() {
		return cty.NilVal, false, false
	}
	if !val.ContainsMarked() && usesEnv(attr.Expr) {
		// A value built from env() whose mark some operation dropped
		// (HCL unmarks a key indexing an object: {"a" = "a", …}[substr(
		// env("X"), 0, 1)] is an unmarked "a"): still sensitive, whole.
		val = val.Mark(sensitive)
	}
	if val.ContainsMarked() {
		sens = true
		l.addDerivedSecrets(val)
		val, _ = val.UnmarkDeep()
		if !allow {
			l.add(&hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Sensitive value not allowed here",
				Detail: fmt.Sprintf("The argument %q cannot use a value read through env(): such values are sensitive, and this one would be shown in plans and logs. Write the value in the file; env() is allowed in dsn, url, headers and path.",
					attr.Name),
				Subject: attr.Expr.Range().Ptr(),
			})
			return cty.NilVal, sens, false
		}
	}
	if !val.IsWhollyKnown() {
		l.errorf(attr.Expr.Range(), "Invalid value", "The value of %q cannot be computed while loading the config. Use literal values, env() or file().", attr.Name)
		return cty.NilVal, sens, false
	}
	if val.IsNull() {
		l.errorf(attr.Expr.Range(), "Invalid value", "The argument %q must not be null. Remove it to use its default, or give it a value.", attr.Name)
		return cty.NilVal, sens, false
	}
	return val, sens, true
}

// convertTo evaluates and converts to a primitive type, with a diagnostic
// naming the expected type.
func (l *loader) convertTo(attr *hcl.Attribute, ty cty.Type, allow secretOK) (cty.Value, bool) {
	val, _, ok := l.eval(attr, allow)
	if !ok {
		return cty.NilVal, false
	}
	out, err := convert.Convert(val, ty)
	if err != nil {
		l.errorf(attr.Expr.Range(), "Invalid value type", "The argument %q must be %s, not %s.", attr.Name, typeName(ty), typeName(val.Type()))
		return cty.NilVal, false
	}
	return out, true
}

func (l *loader) str(attr *hcl.Attribute, allow secretOK) (string, bool) {
	v, ok := l.convertTo(attr, cty.String, allow)
	if !ok {
		return "", false
	}
	return v.AsString(), true
}

func (l *loader) boolean(attr *hcl.Attribute) (bool, bool) {
	v, ok := l.convertTo(attr, cty.Bool, noSecret)
	if !ok {
		return false, false
	}
	return v.True(), true
}

// maxInteger is the largest whole number an argument accepts.
const maxInteger = 1 << 31

// integerIn reads a whole number from lowest to highest (0: maxInteger).
func (l *loader) integerIn(attr *hcl.Attribute, lowest, highest int64) (int, bool) {
	if highest <= 0 {
		highest = maxInteger
	}
	v, ok := l.convertTo(attr, cty.Number, noSecret)
	if !ok {
		return 0, false
	}
	bf := v.AsBigFloat()
	if !bf.IsInt() {
		l.errorf(attr.Expr.Range(), "Invalid number", "The argument %q must be a whole number, like %d.", attr.Name, max(lowest, 1)*10)
		return 0, false
	}
	i, acc := bf.Int64()
	switch {
	case i < lowest || acc != big.Exact && bf.Sign() < 0:
		l.errorf(attr.Expr.Range(), "Invalid number", "The argument %q must be at least %d; it is %s.", attr.Name, lowest, bf.Text('g', 10))
		return 0, false
	case i > highest || acc != big.Exact:
		l.errorf(attr.Expr.Range(), "Invalid number", "The argument %q must be at most %d; it is %s.", attr.Name, highest, bf.Text('g', 10))
		return 0, false
	}
	return int(i), true
}

// duration reads a positive Go duration such as "200ms".
func (l *loader) duration(attr *hcl.Attribute) (time.Duration, bool) {
	s, ok := l.str(attr, noSecret)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		l.errorf(attr.Expr.Range(), "Invalid duration", "The argument %q must be a positive duration with a unit, like \"200ms\", \"5s\" or \"1m\"; %q is not.", attr.Name, s)
		return 0, false
	}
	return d, true
}

var percentRE = regexp.MustCompile(`^\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*$`)

// percent reads "N%" with 0 ≤ N ≤ 100 as a fraction.
func (l *loader) percent(attr *hcl.Attribute) (float64, bool) {
	s, ok := l.str(attr, noSecret)
	if !ok {
		return 0, false
	}
	m := percentRE.FindStringSubmatch(s)
	var f float64
	if m != nil {
		f, _ = strconv.ParseFloat(m[1], 64)
	}
	if m == nil || f > 100 {
		l.errorf(attr.Expr.Range(), "Invalid percentage", "The argument %q must be a percentage from \"0%%\" to \"100%%\", like \"5%%\"; %q is not.", attr.Name, s)
		return 0, false
	}
	return f / 100, true
}

// limit reads a count (a whole number, or a string of one) or a
// percentage ("25%").
func (l *loader) limit(attr *hcl.Attribute) (Limit, bool) {
	s, ok := l.str(attr, noSecret)
	if !ok {
		return Limit{}, false
	}
	if lim, ok := parseLimit(s); ok {
		return lim, true
	}
	l.errorf(attr.Expr.Range(), "Invalid limit", "The argument %q must be a count of records, like 100, or a percentage from \"0%%\" to \"100%%\", like \"25%%\"; %q is neither.", attr.Name, s)
	return Limit{}, false
}

func parseLimit(s string) (Limit, bool) {
	if m := percentRE.FindStringSubmatch(s); m != nil {
		f, _ := strconv.ParseFloat(m[1], 64)
		if f > 100 {
			return Limit{}, false
		}
		return Limit{Fraction: f / 100, Percent: true}, true
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 {
		return Limit{}, false
	}
	return Limit{Count: n}, true
}

func mustLimit(s string) Limit {
	l, ok := parseLimit(s)
	if !ok {
		panic("config: bad default limit " + s)
	}
	return l
}

// oneOf reads a string that must be one of valid; what names it in the
// summary ("Invalid mode").
func (l *loader) oneOf(attr *hcl.Attribute, summary string, valid []string) (string, bool) {
	s, ok := l.str(attr, noSecret)
	if !ok {
		return "", false
	}
	for _, v := range valid {
		if s == v {
			return s, true
		}
	}
	l.errorf(attr.Expr.Range(), summary, "%q is not a valid value for %q. Use %s.%s", s, attr.Name, quoteList(valid, "or"), didYouMean(s, valid))
	return "", false
}

// stringList reads a string or a list of strings.
func (l *loader) stringList(attr *hcl.Attribute) ([]string, bool) {
	val, _, ok := l.eval(attr, noSecret)
	if !ok {
		return nil, false
	}
	if val.Type() == cty.String {
		return []string{val.AsString()}, true
	}
	list, err := convert.Convert(val, cty.List(cty.String))
	if err != nil {
		l.errorf(attr.Expr.Range(), "Invalid value type", "The argument %q must be a string or a list of strings, not %s.", attr.Name, typeName(val.Type()))
		return nil, false
	}
	var out []string
	for it := list.ElementIterator(); it.Next(); {
		_, v := it.Element()
		if v.IsNull() {
			l.errorf(attr.Expr.Range(), "Invalid value", "The list %q must not contain null.", attr.Name)
			return nil, false
		}
		out = append(out, v.AsString())
	}
	return out, true
}

// stringMap reads an object or map of strings.
func (l *loader) stringMap(attr *hcl.Attribute, allow secretOK) (map[string]string, bool) {
	val, _, ok := l.eval(attr, allow)
	if !ok {
		return nil, false
	}
	m, err := convert.Convert(val, cty.Map(cty.String))
	if err != nil || !m.Type().IsMapType() {
		l.errorf(attr.Expr.Range(), "Invalid value type", "The argument %q must be a map of strings, like { name = \"value\" }, not %s.", attr.Name, typeName(val.Type()))
		return nil, false
	}
	out := map[string]string{}
	for it := m.ElementIterator(); it.Next(); {
		k, v := it.Element()
		if v.IsNull() {
			l.errorf(attr.Expr.Range(), "Invalid value", "The entry %q of %q must not be null.", k.AsString(), attr.Name)
			return nil, false
		}
		out[k.AsString()] = v.AsString()
	}
	return out, true
}

// entry is one `key = value` item of an object constructor, with the
// ranges needed to point at it.
type entry struct {
	Key      string
	KeyRange hcl.Range
	Value    hcl.Expression
}

// entries reads an attribute written as an object constructor `{ k = v }`,
// key by key, so that each value keeps its own range. Duplicate keys are
// diagnosed; the first wins.
func (l *loader) entries(attr *hcl.Attribute) ([]entry, bool) {
	if l.broken(attr.Expr.Range()) {
		return nil, false
	}
	pairs, diags := hcl.ExprMap(attr.Expr)
	if diags.HasErrors() {
		l.errorf(attr.Expr.Range(), "Invalid value type", "The argument %q must be written as an object, like { name = \"value\" }.", attr.Name)
		return nil, false
	}
	var out []entry
	seen := map[string]hcl.Range{}
	ok := true
	for _, p := range pairs {
		k, diags := p.Key.Value(l.ctx)
		l.addEval(diags)
		if diags.HasErrors() {
			ok = false
			continue
		}
		if k.IsMarked() || usesEnv(p.Key) {
			l.errorf(p.Key.Range(), "Sensitive value not allowed here", "A key of %q cannot use a value read through env().", attr.Name)
			ok = false
			continue
		}
		ks, err := convert.Convert(k, cty.String)
		if err != nil || ks.IsNull() || !ks.IsKnown() {
			l.errorf(p.Key.Range(), "Invalid key", "The keys of %q must be strings.", attr.Name)
			ok = false
			continue
		}
		key := ks.AsString()
		if first, dup := seen[key]; dup {
			l.errorf(p.Key.Range(), "Duplicate key", "The key %q is already set in %q at line %d. Remove one of them.", key, attr.Name, first.Start.Line)
			ok = false
			continue
		}
		seen[key] = p.Key.Range()
		out = append(out, entry{Key: key, KeyRange: p.Key.Range(), Value: p.Value})
	}
	return out, ok
}

// exprString evaluates one expression that must be a string (no conversion
// from numbers or bools) and not sensitive; what names it in messages.
func (l *loader) exprString(expr hcl.Expression, what, example string) (string, bool) {
	if l.broken(expr.Range()) {
		return "", false
	}
	if tr, diags := hcl.AbsTraversalForExpr(expr); !diags.HasErrors() && len(tr) == 1 {
		l.errorf(expr.Range(), "Invalid value type", "%s must be a quoted string: write %s = %q.", what, example, tr.RootName())
		return "", false
	}
	val, diags := expr.Value(l.ctx)
	l.addEval(diags)
	if diags.HasErrors() {
		return "", false
	}
	if val.ContainsMarked() || usesEnv(expr) {
		l.errorf(expr.Range(), "Sensitive value not allowed here", "%s cannot use a value read through env(): it would be shown in plans and logs.", what)
		return "", false
	}
	if !val.IsKnown() || val.IsNull() || val.Type() != cty.String {
		l.errorf(expr.Range(), "Invalid value type", "%s must be a string, not %s.", what, typeName(val.Type()))
		return "", false
	}
	return val.AsString(), true
}

// usesEnv reports whether expr calls env() anywhere: its value may be
// built from a secret even where no mark says so.
func usesEnv(expr hcl.Expression) bool {
	e, ok := expr.(hclsyntax.Expression)
	if !ok {
		return false
	}
	found := false
	hclsyntax.VisitAll(e, func(n hclsyntax.Node) hcl.Diagnostics {
		if c, ok := n.(*hclsyntax.FunctionCallExpr); ok && c.Name == "env" {
			found = true
		}
		return nil
	})
	return found
}

// goValue converts a primitive cty value to nil, int64 (integral
// numbers that fit), float64 (numbers a float64 gives back as written),
// json.Number (the others, as written: 12345678901234567891 or
// 0.30000000000000000001, which a float64 would round; a test's table
// makes their column an exact decimal, as a fixture's), string or bool.
func goValue(v cty.Value) (any, bool) {
	if v.IsNull() {
		return nil, true
	}
	switch v.Type() {
	case cty.String:
		return v.AsString(), true
	case cty.Bool:
		return v.True(), true
	case cty.Number:
		bf := v.AsBigFloat()
		if bf.IsInt() {
			if i, acc := bf.Int64(); acc == big.Exact {
				return i, true
			}
			return json.Number(bf.Text('f', 0)), true
		}
		// Exact when the float's shortest text reads back, at the
		// number's precision, as the number written.
		f, _ := bf.Float64()
		back, _, err := big.ParseFloat(strconv.FormatFloat(f, 'g', -1, 64), 10, bf.Prec(), big.ToNearestEven)
		if err != nil || back.Cmp(bf) == 0 || math.IsInf(f, 0) {
			return f, true
		}
		return json.Number(bf.Text('g', -1)), true
	}
	return nil, false
}

// keyString stringifies a primary key as written in a test: strings as
// they are, integral numbers without a decimal point.
func keyString(v cty.Value) (string, bool) {
	switch {
	case v.IsNull():
		return "", false
	case v.Type() == cty.String:
		return v.AsString(), true
	case v.Type() == cty.Number:
		bf := v.AsBigFloat()
		if bf.IsInt() {
			return bf.Text('f', 0), true
		}
		return bf.Text('g', -1), true
	}
	return "", false
}

func typeName(t cty.Type) string {
	switch {
	case t == cty.String:
		return "a string"
	case t == cty.Number:
		return "a number"
	case t == cty.Bool:
		return "a bool"
	case t == cty.DynamicPseudoType:
		return "a value of unknown type"
	case t.IsListType(), t.IsTupleType(), t.IsSetType():
		return "a list"
	case t.IsMapType(), t.IsObjectType():
		return "an object"
	}
	return t.FriendlyName()
}

// quoteList renders ["a","b","c"] as `"a", "b" or "c"`.
func quoteList(items []string, conj string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	if len(q) < 2 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " " + conj + " " + q[len(q)-1]
}

// didYouMean returns ` Did you mean "x"?` for the closest candidate, or "".
func didYouMean(name string, candidates []string) string { return suggest.DidYouMean(name, candidates) }

// addDerivedSecrets records every string computed from an env() value
// (trimmed, upper-cased, joined into a URL or header) as a secret: it is
// what reaches a server and what an error echoes back, and it need not
// contain the value env() read.
func (l *loader) addDerivedSecrets(val cty.Value) {
	plain, marked := val.UnmarkDeepWithPaths()
	for _, pm := range marked {
		v, err := pm.Path.Apply(plain)
		if err != nil {
			continue
		}
		cty.Walk(v, func(_ cty.Path, v cty.Value) (bool, error) {
			// A string this short ("1" from a condition on a secret)
			// would mask every occurrence of it; redact skips parts as
			// short for the same reason.
			if v.Type() == cty.String && v.IsKnown() && !v.IsNull() && len(v.AsString()) >= 4 {
				l.secrets = append(l.secrets, v.AsString())
			}
			return true, nil
		})
	}
}
