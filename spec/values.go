package spec

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"sort"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/redact"
)

// Values are a block's decoded arguments, with defaults applied for those
// not set. Getters take the argument's name and return its kind's Go
// value; asking for an argument as another kind than its spec declares is
// a programming error and panics.
type Values struct {
	vals      map[string]any
	set       map[string]bool
	sensitive map[string]bool
	ranges    map[string]hcl.Range
	failed    map[string]bool
	blocks    map[string][]BlockValues
	// Range is the block's own range (its header), for messages about the
	// block as a whole.
	Range hcl.Range
}

// BlockValues is one nested block: its label (if any) and arguments.
type BlockValues struct {
	Label  string
	Values Values
}

// Defaults returns the values of a block that sets nothing: every default
// of s, and for each nested block that may appear once, its defaults too.
func Defaults(s Spec) Values {
	v := Values{}
	for _, a := range s.Args {
		if a.Default != nil {
			v.put(a.Name, a.Default)
		}
	}
	for _, b := range s.Blocks {
		if !b.Multi {
			v.AddBlock(b.Type, "", Defaults(b.Spec))
		}
	}
	return v
}

func (v *Values) put(name string, val any) {
	if v.vals == nil {
		v.vals = map[string]any{}
	}
	v.vals[name] = val
}

// Set records an argument the config sets, with the range of its value
// and whether any of it came from env(). The config loader calls it.
func (v *Values) Set(name string, val any, rng hcl.Range, sensitive bool) {
	if sensitive {
		// Behind a pointer, so that even fmt paths that skip Format (a bad
		// verb on an enclosing struct) print an address only.
		val = &boxed{val}
	}
	v.put(name, val)
	if v.set == nil {
		v.set, v.ranges, v.sensitive = map[string]bool{}, map[string]hcl.Range{}, map[string]bool{}
	}
	v.set[name] = true
	v.ranges[name] = rng
	if sensitive {
		v.sensitive[name] = true
	}
}

// Fail records that the config sets an argument to a value that could not
// be decoded (a diagnostic says why); its default stays.
func (v *Values) Fail(name string) {
	if v.failed == nil {
		v.failed = map[string]bool{}
	}
	v.failed[name] = true
}

// Valid reports whether every named argument is either unset or decoded
// fine, so that a check across arguments is worth making.
func (v Values) Valid(names ...string) bool {
	for _, n := range names {
		if v.failed[n] {
			return false
		}
	}
	return true
}

// Broken reports whether an argument the config sets, in the block or in
// a nested one, could not be decoded. Such a block must not be used: its
// default would stand in for the argument, and the empty DSN of an env()
// whose variable is unset connects wherever the driver's defaults point.
func (v Values) Broken() bool {
	if len(v.failed) > 0 {
		return true
	}
	for _, bs := range v.blocks {
		for _, b := range bs {
			if b.Values.Broken() {
				return true
			}
		}
	}
	return false
}

// Format prints the values with every argument whose value came from env()
// masked, so that a Values printed by accident leaks nothing.
func (v Values) Format(f fmt.State, _ rune) {
	names := make([]string, 0, len(v.vals))
	for n := range v.vals {
		names = append(names, n)
	}
	sort.Strings(names)
	io.WriteString(f, "{")
	for i, n := range names {
		if i > 0 {
			io.WriteString(f, " ")
		}
		if v.sensitive[n] {
			fmt.Fprintf(f, "%s:%s", n, redact.Mask)
		} else {
			fmt.Fprintf(f, "%s:%v", n, v.vals[n])
		}
	}
	btypes := make([]string, 0, len(v.blocks))
	for t := range v.blocks {
		btypes = append(btypes, t)
	}
	sort.Strings(btypes)
	for _, t := range btypes {
		for _, b := range v.blocks[t] {
			fmt.Fprintf(f, " %s%q:%v", t, b.Label, b.Values)
		}
	}
	io.WriteString(f, "}")
}

// MarshalJSON masks like Format: Values are not meant to be serialised.
func (v Values) MarshalJSON() ([]byte, error) { return json.Marshal(fmt.Sprint(v)) }

// AddBlock appends a nested block's values. A block that may appear once
// replaces the defaults Defaults put there.
func (v *Values) AddBlock(typ, label string, bv Values) {
	if v.blocks == nil {
		v.blocks = map[string][]BlockValues{}
	}
	if label == "" && len(v.blocks[typ]) == 1 && v.blocks[typ][0].Label == "" && !v.blocks[typ][0].Values.any() {
		v.blocks[typ] = nil
	}
	v.blocks[typ] = append(v.blocks[typ], BlockValues{Label: label, Values: bv})
}

// any reports whether anything was set explicitly.
func (v Values) any() bool { return len(v.set) > 0 || v.Range.Filename != "" }

// IsSet reports whether the config sets the argument (rather than its
// default applying).
func (v Values) IsSet(name string) bool { return v.set[name] }

// Sensitive reports whether the argument's value came from env().
func (v Values) Sensitive(name string) bool { return v.sensitive[name] }

// ArgRange is the range of an argument's value, or the block's range when
// the argument is not set.
func (v Values) ArgRange(name string) hcl.Range {
	if r, ok := v.ranges[name]; ok {
		return r
	}
	return v.Range
}

// Get returns an argument's value as decoded (nil when unset without a
// default).
func (v Values) Get(name string) any {
	if b, ok := v.vals[name].(*boxed); ok {
		return b.v
	}
	return v.vals[name]
}

// boxed holds a sensitive value.
type boxed struct{ v any }

func get[T any](v Values, name string) T {
	x, ok := v.vals[name]
	if !ok {
		var zero T
		return zero
	}
	if b, ok := x.(*boxed); ok {
		x = b.v
	}
	t, ok := x.(T)
	if !ok {
		panic("spec: argument " + name + " read as another kind than declared")
	}
	return t
}

// String returns a String argument.
func (v Values) String(name string) string { return get[string](v, name) }

// Int returns an Int argument.
func (v Values) Int(name string) int { return get[int](v, name) }

// Bool returns a Bool argument.
func (v Values) Bool(name string) bool { return get[bool](v, name) }

// Duration returns a Duration argument.
func (v Values) Duration(name string) time.Duration { return get[time.Duration](v, name) }

// Fraction returns a Percent argument as a fraction in [0,1].
func (v Values) Fraction(name string) float64 { return get[float64](v, name) }

// StringMap returns a StringMap argument (a copy).
func (v Values) StringMap(name string) map[string]string {
	return maps.Clone(get[map[string]string](v, name))
}

// StringList returns a StringList argument.
func (v Values) StringList(name string) []string {
	return append([]string(nil), get[[]string](v, name)...)
}

// Blocks returns the nested blocks of a type, in config order.
func (v Values) Blocks(typ string) []BlockValues { return v.blocks[typ] }

// Block returns the one nested block of a type (its defaults when the
// config has none).
func (v Values) Block(typ string) Values {
	if bs := v.blocks[typ]; len(bs) > 0 {
		return bs[0].Values
	}
	return Values{}
}

// ValuesFor builds the values of a block from Go values by argument name,
// defaults applied, as if a config had set them: for tests, benchmarks and
// callers that configure a driver without a config file. Nested blocks
// that may appear once take a map[string]any under their type. An unknown
// name or a value of the wrong Go type is an error.
func ValuesFor(s Spec, args map[string]any) (Values, error) {
	v := Defaults(s)
	for name, val := range args {
		if b, ok := s.Block(name); ok && !b.Multi {
			m, ok := val.(map[string]any)
			if !ok {
				return Values{}, fmt.Errorf("block %q: want map[string]any, got %T", name, val)
			}
			bv, err := ValuesFor(b.Spec, m)
			if err != nil {
				return Values{}, fmt.Errorf("block %q: %w", name, err)
			}
			v.blocks[name] = []BlockValues{{Values: bv}}
			continue
		}
		a, ok := s.Arg(name)
		if !ok {
			return Values{}, fmt.Errorf("no argument %q", name)
		}
		if !a.Kind.accepts(val) {
			return Values{}, fmt.Errorf("argument %q is a %s, not %T", name, a.Kind, val)
		}
		v.Set(name, val, hcl.Range{}, false)
	}
	return v, nil
}

// accepts reports whether x is the Go value of kind k.
func (k Kind) accepts(x any) bool {
	switch x.(type) {
	case string:
		return k == String
	case int:
		return k == Int
	case bool:
		return k == Bool
	case time.Duration:
		return k == Duration
	case float64:
		return k == Percent
	case map[string]string:
		return k == StringMap
	case []string:
		return k == StringList
	}
	return false
}
