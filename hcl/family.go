package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/spec"
)

// schemaOf is the body schema of a spec: its arguments and nested blocks.
func schemaOf(specs ...spec.Spec) *hcl.BodySchema {
	s := &hcl.BodySchema{}
	seen := map[string]bool{}
	for _, sp := range specs {
		for _, a := range sp.Args {
			if !seen[a.Name] {
				seen[a.Name] = true
				s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: a.Name})
			}
		}
		for _, b := range sp.Blocks {
			if !seen["block "+b.Type] {
				seen["block "+b.Type] = true
				h := hcl.BlockHeaderSchema{Type: b.Type}
				if b.Label != "" {
					h.LabelNames = []string{b.Label}
				}
				s.Blocks = append(s.Blocks, h)
			}
		}
	}
	return s
}

// typed is a block of a family once decoded: its type (empty when missing
// or unknown), the family's common arguments and the type's own.
type typed struct {
	typ    string
	common spec.Values
	args   spec.Values
}

// decodeFamily decodes a block whose arguments depend on its type: the
// type argument selects one of the family's types, whose spec decodes the
// rest. Arguments of another type are named as such; arguments of no type
// are reported by hcl with a "did you mean".
func (l *loader) decodeFamily(b *hcl.Block, fam *spec.Family) typed {
	var out typed
	specs := []spec.Spec{fam.Common}
	for _, t := range fam.Types {
		specs = append(specs, t.Spec)
	}
	full := schemaOf(specs...)
	full.Attributes = append([]hcl.AttributeSchema{{Name: fam.TypeArg}}, full.Attributes...)
	c := l.content(b, full)

	var ts spec.Type
	known := false
	if a, ok := c.Attributes[fam.TypeArg]; ok {
		summary := fmt.Sprintf("Unknown %s %s", fam.Kind, fam.TypeArg)
		if typ, ok := l.oneOf(a, summary, fam.TypeNames()); ok {
			out.typ = typ
			ts, known = fam.Lookup(typ)
		}
	} else if fam.DefaultType != "" {
		out.typ = fam.DefaultType
		ts, known = fam.Lookup(fam.DefaultType)
	} else if !l.brokenBody(b) {
		l.errorf(b.DefRange, "Missing required argument", "The %s block needs the argument %q: one of %s.", fam.Kind, fam.TypeArg, quoteList(fam.TypeNames(), "or"))
	}

	own := func(name string, block bool) bool {
		for _, sp := range []spec.Spec{fam.Common, ts.Spec} {
			if block {
				if _, ok := sp.Block(name); ok {
					return true
				}
			} else if _, ok := sp.Arg(name); ok {
				return true
			}
		}
		return false
	}
	users := func(name string, block bool) []string {
		var names []string
		for _, t := range fam.Types {
			if _, ok := t.Spec.Arg(name); ok && !block {
				names = append(names, t.Name)
			}
			if _, ok := t.Spec.Block(name); ok && block {
				names = append(names, t.Name)
			}
		}
		return names
	}
	attrs := hcl.Attributes{}
	for name, a := range c.Attributes {
		if name == fam.TypeArg {
			continue
		}
		if known && !own(name, false) {
			l.errorf(a.NameRange, "Argument not used by this type", "The argument %q only applies to %s of type %s; remove it from this %s %s.",
				name, plural(fam.Kind), quoteList(users(name, false), "or"), out.typ, fam.Kind)
			continue
		}
		attrs[name] = a
	}
	var blocks hcl.Blocks
	for _, nb := range c.Blocks {
		if known && !own(nb.Type, true) {
			l.errorf(nb.DefRange, "Block not used by this type", "The %s block only applies to %s of type %s; remove it from this %s %s.",
				nb.Type, plural(fam.Kind), quoteList(users(nb.Type, true), "or"), out.typ, fam.Kind)
			continue
		}
		blocks = append(blocks, nb)
	}

	desc := fmt.Sprintf("The %s block", fam.Kind)
	out.common = l.decodeSpec(fam.Common, attrs, blocks, b, desc)
	if known {
		desc = fmt.Sprintf("%s %s %s", upperFirst(article(out.typ)), out.typ, fam.Kind)
		out.args = l.decodeSpec(ts.Spec, attrs, blocks, b, desc)
	}
	return out
}

// decodeSpec decodes the arguments and nested blocks of sp found among
// attrs and blocks (which may hold others, decoded by another spec), with
// defaults for what is not set. desc names the block in messages ("A
// postgres destination").
func (l *loader) decodeSpec(sp spec.Spec, attrs hcl.Attributes, blocks hcl.Blocks, owner *hcl.Block, desc string) spec.Values {
	v := spec.Defaults(sp)
	v.Range = owner.DefRange
	for _, a := range sp.Args {
		attr, set := attrs[a.Name]
		if !set {
			if a.Required && !l.brokenBody(owner) {
				like := ""
				if a.Example != "" {
					like = ", like " + a.Example
				}
				l.errorf(owner.DefRange, "Missing required argument", "%s needs the argument %q%s.", desc, a.Name, like)
			}
			continue
		}
		val, sens, good := l.decodeArg(a, attr)
		if !good {
			v.Fail(a.Name)
			continue
		}
		v.Set(a.Name, val, attr.Expr.Range(), sens)
	}
	for _, bs := range sp.Blocks {
		var first *hcl.Block
		labels := map[string]hcl.Range{}
		for _, nb := range blocks {
			if nb.Type != bs.Type {
				continue
			}
			if !bs.Multi && first != nil {
				l.errorf(nb.DefRange, fmt.Sprintf("Duplicate %s block", bs.Type), "A %s has at most one %s block; the first is at line %d. Merge them.",
					owner.Type, bs.Type, first.DefRange.Start.Line)
				continue
			}
			label := ""
			if bs.Label != "" {
				label = nb.Labels[0]
				if r, dup := labels[label]; dup {
					l.errorf(nb.DefRange, fmt.Sprintf("Duplicate %s block", bs.Type), "The %s %q is already configured at line %d of this %s. Merge the two blocks.",
						bs.Type, label, r.Start.Line, owner.Type)
					continue
				}
				labels[label] = nb.DefRange
			}
			if first == nil {
				first = nb
			}
			c := l.content(nb, schemaOf(bs.Spec))
			bv := l.decodeSpec(bs.Spec, c.Attributes, c.Blocks, nb, fmt.Sprintf("The %s block", bs.Type))
			v.AddBlock(bs.Type, label, bv)
		}
	}
	if sp.Validate != nil {
		if p := sp.Validate(v); p != nil {
			l.errorf(v.ArgRange(p.Arg), p.Summary, "%s", p.Detail)
		}
	}
	return v
}

// decodeArg reads one argument as its spec's kind. ok is false when a
// diagnostic was recorded.
func (l *loader) decodeArg(a spec.Arg, attr *hcl.Attribute) (val any, sens bool, ok bool) {
	allow := secretOK(a.Sensitive)
	if a.Kind == spec.StringMap && a.Check != nil {
		m, ok := l.checkedMap(a, attr)
		return m, false, ok
	}
	if _, sens, ok = l.eval(attr, allow); !ok {
		return nil, false, false
	}
	switch a.Kind {
	case spec.String:
		var s string
		if len(a.OneOf) > 0 {
			s, ok = l.oneOf(attr, "Invalid "+strings.ReplaceAll(a.Name, "_", " "), a.OneOf)
		} else {
			s, ok = l.str(attr, allow)
		}
		if ok && !l.check(a, attr.Expr.Range(), s) {
			return nil, sens, false
		}
		if ok && a.Reads == spec.Folder && strings.TrimSpace(s) != "" {
			if s = l.folder(attr.Expr.Range(), a.Name, s); s == "" {
				return nil, sens, false
			}
		}
		return s, sens, ok
	case spec.Int:
		n, ok := l.integerIn(attr, int64(a.Min), int64(a.Max))
		return n, sens, ok
	case spec.Bool:
		b, ok := l.boolean(attr)
		return b, sens, ok
	case spec.Duration:
		d, ok := l.duration(attr)
		return d, sens, ok
	case spec.Percent:
		f, ok := l.percent(attr)
		return f, sens, ok
	case spec.StringMap:
		m, ok := l.stringMap(attr, allow)
		return m, sens, ok
	case spec.StringList:
		list, ok := l.stringList(attr)
		if ok {
			for _, s := range list {
				if !l.check(a, attr.Expr.Range(), s) {
					return nil, sens, false
				}
			}
		}
		return list, sens, ok
	}
	panic("config: argument " + a.Name + " has an unknown kind")
}

// checkedMap reads a map of strings entry by entry, so that a value its
// Check refuses is pointed at on its own.
func (l *loader) checkedMap(a spec.Arg, attr *hcl.Attribute) (map[string]string, bool) {
	es, ok := l.entries(attr)
	out := map[string]string{}
	for _, e := range es {
		s, good := l.exprString(e.Value, fmt.Sprintf("The value of %q in %q", e.Key, a.Name), e.Key)
		if !good || !l.check(a, e.Value.Range(), s) {
			ok = false
			continue
		}
		out[e.Key] = s
	}
	return out, ok
}

// check runs an argument's Check on one string, with a diagnostic at rng.
func (l *loader) check(a spec.Arg, rng hcl.Range, s string) bool {
	if a.Check == nil {
		return true
	}
	err := a.Check(s)
	if err == nil {
		return true
	}
	var p *spec.Problem
	if errors.As(err, &p) {
		l.errorf(rng, p.Summary, "%s", p.Detail)
	} else {
		l.errorf(rng, "Invalid value", "The argument %q is not valid: %s.", a.Name, err)
	}
	return false
}
