// Package spec describes the arguments of configurable blocks — a source, a
// destination or a state backend of some type — as data: name, kind,
// required, default, sensitive, documentation and example. Drivers declare
// a Spec next to the code it configures and register it with a constructor;
// the config loader decodes a block's arguments from the spec alone (it
// knows no type names), and reference documentation is generated from the
// same specs. Every default therefore lives once, in a spec.
//
// The package holds data and small helpers only; decoding HCL is the config
// loader's job, and opening anything is the drivers'.
package spec

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind is the kind of value an argument takes.
type Kind int

const (
	String     Kind = iota // a string
	Int                    // a whole number, at least Arg.Min
	Bool                   // true or false
	Duration               // a positive duration with a unit: "200ms", "5s"
	Percent                // a percentage "5%", decoded as a fraction in [0,1]
	StringMap              // an object of strings: { name = "value" }
	StringList             // a string, or a list of strings
	// The kinds below document arguments the config loader decodes with
	// code of its own (references, rules, test data); they have no generic
	// decoding.
	Reference // a reference to another block: model.users
	Rule      // a CEL expression over row, as a string
	Object    // an object: { field = "column" }
	Rows      // a list of objects
)

var kindNames = [...]string{"string", "number", "bool", "duration", "percentage", "map of strings", "string or list of strings",
	"reference", "CEL expression", "object", "list of objects"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Arg describes one argument.
type Arg struct {
	Name     string
	Kind     Kind
	Required bool
	// Default is the value when the argument is not set, as the Go value
	// its kind decodes to (string, int, bool, time.Duration, float64 for a
	// percentage as a fraction, map[string]string, []string); nil for none.
	Default any
	// Min is the lowest value of an Int; Max its highest (0: 2³¹).
	Min, Max int
	// OneOf lists the accepted values of a String; empty accepts any.
	OneOf []string
	// Sensitive arguments may take values read through env(); such values
	// are masked wherever they would be shown. Other arguments refuse
	// env() so that nothing secret ends up in plans.
	Sensitive bool
	// Reads marks a String naming a path the config reads (Folder: a
	// folder of fixtures): the loader confines it to the repository, like
	// file(). Paths backflow writes (a SQLite file) are not marked.
	Reads PathKind
	// Check, when set, validates each string of the value (a String, each
	// element of a StringList, each value of a StringMap). Return a
	// *Problem for a specific summary, or any error for "Invalid value".
	Check func(s string) error
	// Doc is one sentence saying what the argument does.
	Doc string
	// Example is the argument as one would write it, like `path = "crm.db"`.
	Example string
}

// PathKind says what a String argument's path is read as.
type PathKind int

const (
	NotAPath PathKind = iota
	Folder            // a folder read as config (fixtures)
)

// DefaultText renders the default as it would be written in HCL, or "".
func (a Arg) DefaultText() string {
	switch d := a.Default.(type) {
	case nil:
		return ""
	case string:
		return strconv.Quote(d)
	case int:
		return strconv.Itoa(d)
	case bool:
		return strconv.FormatBool(d)
	case time.Duration:
		return strconv.Quote(FormatDuration(d))
	case float64:
		return strconv.Quote(strconv.FormatFloat(d*100, 'f', -1, 64) + "%")
	case []string:
		q := make([]string, len(d))
		for i, s := range d {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	case map[string]string:
		if len(d) == 0 {
			return "{}"
		}
	}
	return fmt.Sprint(a.Default)
}

// FormatDuration writes d the way people write durations in config:
// "200ms", "5s", "1m30s" (never "5m0s").
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Block describes a nested block, such as a destination's `retry`.
type Block struct {
	Type string
	// Label names the block's one label ("name" for `table "users" {}`);
	// empty for a block without labels.
	Label string
	// Multi allows the block several times (with distinct labels).
	Multi bool
	Doc   string
	Spec  Spec
}

// Spec is the arguments and nested blocks of a block.
type Spec struct {
	Args   []Arg
	Blocks []Block
	// Validate, when set, checks arguments against each other after each
	// was decoded on its own (a backoff's initial ≤ maximum, say).
	Validate func(v Values) *Problem
}

// Arg returns the argument called name.
func (s Spec) Arg(name string) (Arg, bool) {
	for _, a := range s.Args {
		if a.Name == name {
			return a, true
		}
	}
	return Arg{}, false
}

// Block returns the nested block of type typ.
func (s Spec) Block(typ string) (Block, bool) {
	for _, b := range s.Blocks {
		if b.Type == typ {
			return b, true
		}
	}
	return Block{}, false
}

// Merge returns a spec holding the arguments and blocks of every spec, in
// order. Names must not repeat (a programming error: it panics).
func Merge(specs ...Spec) Spec {
	var out Spec
	seen := map[string]bool{}
	var validators []func(Values) *Problem
	for _, s := range specs {
		for _, a := range s.Args {
			if seen[a.Name] {
				panic("spec: argument " + a.Name + " declared twice")
			}
			seen[a.Name] = true
			out.Args = append(out.Args, a)
		}
		for _, b := range s.Blocks {
			if seen[b.Type] {
				panic("spec: block " + b.Type + " declared twice")
			}
			seen[b.Type] = true
			out.Blocks = append(out.Blocks, b)
		}
		if s.Validate != nil {
			validators = append(validators, s.Validate)
		}
	}
	if len(validators) > 0 {
		out.Validate = func(v Values) *Problem {
			for _, f := range validators {
				if p := f(v); p != nil {
					return p
				}
			}
			return nil
		}
	}
	return out
}

// Problem is a user-facing complaint about an argument: a short title-case
// summary and a full-sentence detail. Arg names the argument it is about
// (where a diagnostic should point); empty means the block.
type Problem struct {
	Arg     string
	Summary string
	Detail  string
}

func (p *Problem) Error() string { return p.Summary + ": " + p.Detail }

// Type is one type of a family: its name, what it is for, and its own
// arguments beside the family's common ones.
type Type struct {
	Name string
	Doc  string
	Spec Spec
}

// Family is a kind of block whose arguments depend on its type, such as
// `destination`: TypeArg ("type") selects a Type, Common holds what every
// block of the family takes.
type Family struct {
	Kind    string // the block type: "source", "destination", "state"
	TypeArg string // the argument selecting the type: "type", "backend"
	// DefaultType is used when TypeArg is not set; "" makes it required.
	DefaultType string
	Doc         string
	Common      Spec
	Types       []Type // sorted by name
}

// Lookup returns the type called name.
func (f *Family) Lookup(name string) (Type, bool) {
	for _, t := range f.Types {
		if t.Name == name {
			return t, true
		}
	}
	return Type{}, false
}

// TypeNames lists the family's types, sorted.
func (f *Family) TypeNames() []string {
	out := make([]string, len(f.Types))
	for i, t := range f.Types {
		out[i] = t.Name
	}
	return out
}

// Catalog is every family a config may use, by block type.
type Catalog map[string]*Family

// Driver is a registered type with its constructor, of whatever signature
// the family uses (Open is typically a func(ctx, Config) (T, error)).
type Driver[F any] struct {
	Type Type
	Open F
}

// Registry holds the drivers of one family. Packages keep a default
// registry their built-in drivers register in; tests build fresh ones.
type Registry[F any] struct {
	family  Family
	drivers map[string]Driver[F]
}

// NewRegistry returns an empty registry of a family; types are added with
// Register.
func NewRegistry[F any](f Family) *Registry[F] {
	f.Types = nil
	return &Registry[F]{family: f, drivers: map[string]Driver[F]{}}
}

// Register adds or replaces the driver of d.Type.Name.
func (r *Registry[F]) Register(d Driver[F]) {
	if d.Type.Name == "" {
		panic("spec: driver without a type name")
	}
	r.drivers[d.Type.Name] = d
}

// Lookup returns the driver of a type.
func (r *Registry[F]) Lookup(typ string) (Driver[F], bool) {
	d, ok := r.drivers[typ]
	return d, ok
}

// Types lists the registered type names, sorted.
func (r *Registry[F]) Types() []string {
	out := make([]string, 0, len(r.drivers))
	for t := range r.drivers {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Family returns the family with every registered type, for the config
// loader and the documentation.
func (r *Registry[F]) Family() *Family {
	f := r.family
	for _, name := range r.Types() {
		f.Types = append(f.Types, r.drivers[name].Type)
	}
	return &f
}

// QuotedMax is how much of a config value a message quotes back (Clip):
// what a config holds may be megabytes long.
const QuotedMax = 200

// Clip is s cut to at most n bytes at a character boundary, "…" marking
// a cut: a value from a config or a peer, quoted back in a message.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
