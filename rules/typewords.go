package rules

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/backflowhq/backflow/schema"
)

// CEL names types and operators its own way (wrapper(int), '_==_'); people
// writing rules think in their model's SQL types. These rewrite a CEL type
// error in those words.

var (
	overloadRE = regexp.MustCompile(`found no matching overload for '([^']+)' applied to '\((.*)\)'`)
	celTypeRE  = regexp.MustCompile(`wrapper\((\w+)\)|google\.protobuf\.Timestamp|google\.protobuf\.Duration|null_type|double|uint`)
	rowFieldRE = regexp.MustCompile(`\brow\.([A-Za-z_][A-Za-z0-9_]*)`)
)

var celOperators = map[string]string{
	"_==_": "==", "_!=_": "!=", "_<_": "<", "_<=_": "<=", "_>_": ">", "_>=_": ">=",
	"_+_": "+", "_-_": "-", "_*_": "*", "_/_": "/", "_%_": "%", "!_": "!", "-_": "unary -",
	"_&&_": "&&", "_||_": "||", "@in": "in", "_?_:_": "?:", "_[_]": "[]",
}

// sqlTypeWords renders a CEL type name as the portable type a column of
// the model has ("int", "float", "timestamp"; "null" for null).
func sqlTypeWords(s string) string {
	return celTypeRE.ReplaceAllStringFunc(s, func(m string) string {
		switch {
		case strings.HasPrefix(m, "wrapper("):
			return sqlTypeWords(strings.TrimSuffix(strings.TrimPrefix(m, "wrapper("), ")"))
		case m == "google.protobuf.Timestamp":
			return "timestamp"
		case m == "google.protobuf.Duration":
			return "duration"
		case m == "null_type":
			return "null"
		case m == "double":
			return "float"
		case m == "uint":
			return "unsigned int"
		}
		return m
	})
}

// typeErrorDetail rewrites a CEL overload error of rule expr in the words of
// SQL types, naming the columns the rule reads with their types on the
// source, and what to do. ok is false when msg is not such an error.
func typeErrorDetail(name, expr, msg string, columns []schema.Column) (string, bool) {
	m := overloadRE.FindStringSubmatch(msg)
	if m == nil {
		return "", false
	}
	op := celOperators[m[1]]
	if op == "" {
		op = m[1] + "()"
	}
	args := sqlTypeWords(m[2])
	var b strings.Builder
	fmt.Fprintf(&b, "Exclude rule %q applies %s to values of types (%s), which it does not take.", name, op, args)
	seen := map[string]bool{}
	for _, f := range rowFieldRE.FindAllStringSubmatch(expr, -1) {
		for _, c := range columns {
			if c.Name != f[1] || seen[c.Name] {
				continue
			}
			seen[c.Name] = true
			fmt.Fprintf(&b, " Column %q is %s on the source, seen by rules as %s", c.Name, dbType(c), c.Type)
			if c.Type == schema.TypeInt && strings.HasPrefix(strings.ToLower(c.DBType), "tinyint") {
				b.WriteString(` (MySQL keeps bools as TINYINT(1)): compare it with 1 or 0, or declare column_types = { ` + c.Name + ` = "bool" } on the model`)
			}
			b.WriteString(".")
		}
	}
	b.WriteString(" Compare values of one type: convert with int(), double(), string() or timestamp(), or test for null first.")
	return b.String(), true
}

func dbType(c schema.Column) string {
	if c.DBType == "" {
		return c.Type.String()
	}
	return strings.ToUpper(c.DBType)
}
