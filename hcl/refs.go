package config

import (
	"fmt"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/backflowhq/backflow/internal/suggest"
)

// ref reads attr as a reference `want.name` to a declared block, without
// evaluating it, and returns the name. ok is false when a diagnostic was
// recorded.
func (l *loader) ref(attr *hcl.Attribute, want string) (string, bool) {
	if l.broken(attr.Expr.Range()) {
		return "", false
	}
	example := fmt.Sprintf("%s.name", want)
	tr, diags := hcl.AbsTraversalForExpr(attr.Expr)
	if diags.HasErrors() {
		detail := fmt.Sprintf("The argument %q must be a reference to a %s block, like %s = %s.", attr.Name, want, attr.Name, example)
		if v, d := attr.Expr.Value(nil); !d.HasErrors() && v.Type() == cty.String && v.IsKnown() && !v.IsNull() {
			s := v.AsString()
			if t, d := hclsyntax.ParseTraversalAbs([]byte(s), "", hcl.InitialPos); !d.HasErrors() && len(t) == 2 {
				detail = fmt.Sprintf("The argument %q must be a reference, not a string: remove the quotes, like %s = %s.", attr.Name, attr.Name, s)
			} else {
				detail = fmt.Sprintf("The argument %q must be a reference, not a string: write %s = %s.%s.", attr.Name, attr.Name, want, s)
			}
		}
		l.errorf(attr.Expr.Range(), "Invalid reference", "%s", detail)
		return "", false
	}
	var name string
	if len(tr) == 2 {
		if a, ok := tr[1].(hcl.TraverseAttr); ok {
			name = a.Name
		}
	}
	if name == "" {
		l.errorf(attr.Expr.Range(), "Invalid reference", "The argument %q must be a reference to a %s block, like %s = %s, with nothing after the name.", attr.Name, want, attr.Name, example)
		return "", false
	}
	root := tr.RootName()
	switch {
	case root == want:
	case isKind(root):
		l.errorf(attr.Expr.Range(), "Invalid reference type", "The argument %q must refer to a %s block, like %s; %s.%s is a %s.", attr.Name, want, example, root, name, root)
		return "", false
	default:
		hint := fmt.Sprintf(" Write %s.%s to refer to the %s %q.", want, name, want, name)
		if s := suggest.Closest(root, kinds); s != "" && s != want {
			hint = fmt.Sprintf(" Did you mean %s.%s?", s, name)
		}
		l.errorf(attr.Expr.Range(), "Invalid reference", "%q is not a block type.%s", root, hint)
		return "", false
	}
	if _, ok := l.decls[want][name]; !ok {
		var names []string
		for n := range l.decls[want] {
			names = append(names, n)
		}
		sort.Strings(names)
		hint := didYouMean(name, names)
		if hint == "" {
			hint = fmt.Sprintf(" Declare it with a %s %q { … } block, or fix the name.", want, name)
		}
		l.errorf(attr.Expr.Range(), "Reference to undeclared "+want, "No %s named %q is declared in this folder.%s", want, name, hint)
		return "", false
	}
	return name, true
}

func isKind(s string) bool {
	for _, k := range kinds {
		if k == s {
			return true
		}
	}
	return false
}
