// Package rules owns the CEL layer: it builds a CEL environment from a
// model's columns (the variable `row`, typed field by field), compiles and
// type-checks a sync's `exclude` rules once, and evaluates them per row under
// a cost limit. Problems found while compiling are hcl.Diagnostics pointing
// inside the .hcl file; it never reads config files or runs queries itself.
package rules
