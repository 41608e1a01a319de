package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"

	"github.com/backflowhq/backflow/repofs"
)

// sensitive is the cty mark carried by every value read through env() and
// by everything computed from one.
const sensitive = "sensitive"

// errUnsetEnv and errFileRead are returned by env() and file() so that the
// generic "Error in function call" diagnostic can be rewritten into a
// specific one (see rewriteFunctionDiag).
type errUnsetEnv struct{ name string }

func (e *errUnsetEnv) Error() string {
	return fmt.Sprintf("environment variable %q is not set", e.name)
}

type errFileRead struct {
	path string
	err  error
}

func (e *errFileRead) Error() string { return fmt.Sprintf("cannot read %s: %v", e.path, e.err) }

// functions returns the functions available in attribute expressions.
func (l *loader) functions() map[string]function.Function {
	fs := map[string]function.Function{
		"env":  l.envFunc(),
		"file": l.fileFunc(),
	}
	for name, f := range map[string]function.Function{
		"abs": stdlib.AbsoluteFunc, "ceil": stdlib.CeilFunc, "floor": stdlib.FloorFunc,
		"max": stdlib.MaxFunc, "min": stdlib.MinFunc, "parseint": stdlib.ParseIntFunc,
		"chomp": stdlib.ChompFunc, "format": stdlib.FormatFunc, "formatlist": stdlib.FormatListFunc,
		"indent": stdlib.IndentFunc, "join": stdlib.JoinFunc, "lower": stdlib.LowerFunc,
		"upper": stdlib.UpperFunc, "replace": stdlib.ReplaceFunc, "regex": stdlib.RegexFunc,
		"regexall": stdlib.RegexAllFunc, "regex_replace": stdlib.RegexReplaceFunc,
		"split": stdlib.SplitFunc, "strlen": stdlib.StrlenFunc, "substr": stdlib.SubstrFunc,
		"title": stdlib.TitleFunc, "trim": stdlib.TrimFunc, "trimprefix": stdlib.TrimPrefixFunc,
		"trimsuffix": stdlib.TrimSuffixFunc, "trimspace": stdlib.TrimSpaceFunc,
		"strrev":   stdlib.ReverseFunc,
		"coalesce": stdlib.CoalesceFunc, "coalescelist": stdlib.CoalesceListFunc,
		"compact": stdlib.CompactFunc, "concat": stdlib.ConcatFunc, "contains": stdlib.ContainsFunc,
		"distinct": stdlib.DistinctFunc, "element": stdlib.ElementFunc, "flatten": stdlib.FlattenFunc,
		"index": stdlib.IndexFunc, "keys": stdlib.KeysFunc, "length": stdlib.LengthFunc,
		"lookup": stdlib.LookupFunc, "merge": stdlib.MergeFunc, "range": stdlib.RangeFunc,
		"reverse": stdlib.ReverseListFunc, "slice": stdlib.SliceFunc, "sort": stdlib.SortFunc,
		"values": stdlib.ValuesFunc, "zipmap": stdlib.ZipmapFunc,
		"jsondecode": stdlib.JSONDecodeFunc, "jsonencode": stdlib.JSONEncodeFunc,
		"csvdecode": stdlib.CSVDecodeFunc, "formatdate": stdlib.FormatDateFunc,
		"timeadd": stdlib.TimeAddFunc,
	} {
		fs[name] = l.bounded(name, f)
	}
	return fs
}

// envFunc reads an environment variable. Its result is always marked
// sensitive, the default too: the caller cannot tell which one it got.
func (l *loader) envFunc() function.Function {
	return function.New(&function.Spec{
		Description: "Reads an environment variable, or returns the default when it is unset.",
		Params:      []function.Parameter{{Name: "name", Type: cty.String}},
		VarParam:    &function.Parameter{Name: "default", Type: cty.String},
		Type: func(args []cty.Value) (cty.Type, error) {
			if len(args) > 2 {
				return cty.NilType, function.NewArgErrorf(2, "env takes a name and at most one default")
			}
			return cty.String, nil
		},
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			name := args[0].AsString()
			v, ok := os.LookupEnv(name)
			if !ok {
				if len(args) < 2 {
					return cty.NilVal, &errUnsetEnv{name: name}
				}
				v = args[1].AsString()
			}
			l.secrets = append(l.secrets, v)
			return cty.StringVal(v).Mark(sensitive), nil
		},
	})
}

// fileFunc reads a file relative to the config folder, through the
// loader's file system: inside the repository, a regular file of at most
// repofs.MaxFileSize bytes. Its bytes join the config hash. A file read
// twice is read once; every value returned counts against MaxConfigSize.
func (l *loader) fileFunc() function.Function {
	return function.New(&function.Spec{
		Description: "Reads a UTF-8 file, relative to the config folder, inside the repository.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			arg := args[0].AsString()
			key := filepath.ToSlash(filepath.Clean(arg))
			b, ok := l.read[key]
			if !ok {
				p, err := repofs.Join(l.fsDir, arg)
				if err == nil {
					b, err = repofs.ReadFile(l.fsys, p)
				}
				if err != nil {
					return cty.NilVal, &errFileRead{path: arg, err: err}
				}
				if !utf8.Valid(b) {
					return cty.NilVal, &errFileRead{path: arg, err: errors.New("the file is not valid UTF-8 text")}
				}
				l.read[key] = b
			}
			if err := l.grow(len(b)); err != nil {
				return cty.NilVal, &errFileRead{path: arg, err: err}
			}
			return cty.StringVal(string(b)), nil
		},
	})
}

// unwrapPathError drops the path os.ReadFile puts in its error, which the
// diagnostic already names relative to the config folder.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// withholdSecretDiag replaces the detail of a failed function call one of
// whose arguments holds a value read from env(), or built from one (a
// marked value): what the function said may quote that argument, changed
// beyond what masking the secret's text can find (strrev, upper, a
// substring), so it is not shown. It reports whether it did.
func withholdSecretDiag(d *hcl.Diagnostic) bool {
	extra, ok := hcl.DiagnosticExtra[hclsyntax.FunctionCallDiagExtra](d)
	if !ok || d.Expression == nil || d.EvalContext == nil {
		return false
	}
	// The expression is the call, or (an argument it refused) the
	// argument.
	exprs := []hcl.Expression{d.Expression}
	if call, ok := d.Expression.(*hclsyntax.FunctionCallExpr); ok {
		exprs = exprs[:0]
		for _, a := range call.Args {
			exprs = append(exprs, a)
		}
	}
	marked := false
	for _, e := range exprs {
		if v, _ := e.Value(d.EvalContext); v.ContainsMarked() || usesEnv(e) {
			marked = true
			break
		}
	}
	if !marked {
		return false
	}
	d.Summary = "Error in function call"
	d.Detail = fmt.Sprintf("Call to function %q failed on a value read from env(), or built from one; what it said is withheld, since it may show that value. Check the call's arguments and the environment variable's value.", extra.CalledFunctionName())
	if d.Context != nil {
		d.Subject = d.Context
	}
	return true
}

// rewriteFunctionDiag turns the generic diagnostics of a failed env() or
// file() call into specific ones, pointing at the whole call.
func rewriteFunctionDiag(d *hcl.Diagnostic) {
	extra, ok := hcl.DiagnosticExtra[hclsyntax.FunctionCallDiagExtra](d)
	if !ok || extra.FunctionCallError() == nil {
		return
	}
	var unset *errUnsetEnv
	var read *errFileRead
	switch err := extra.FunctionCallError(); {
	case budgetDiag(d, err):
	case errors.As(err, &unset):
		d.Summary = "Unset environment variable"
		d.Detail = fmt.Sprintf("The environment variable %q is not set. Set it, or give env() a default as second argument, like env(%q, \"value\").", unset.name, unset.name)
	case errors.As(err, &read):
		var reason string
		d.Summary, reason = pathProblem(read.err)
		d.Detail = fmt.Sprintf("file(%q) cannot be read: %s. %s", read.path, reason, pathsAllowed)
		if errors.Is(read.err, errConfigTooLarge) {
			d.Detail = fmt.Sprintf("file(%q) cannot be read: %s. Read fewer or smaller files.", read.path, reason)
		}
	default:
		return
	}
	if d.Context != nil {
		d.Subject = d.Context
	}
}
