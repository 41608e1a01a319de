// Package config (folder hcl/) owns backflow's configuration language: it
// parses every *.hcl file of a config folder together, decodes the source,
// model, destination, sync and test blocks, resolves references between them
// (source.x, model.y, destination.z, sync.w), evaluates the functions env(),
// file() and go-cty's standard library, and canonically formats files.
//
// Every user-facing problem is an hcl.Diagnostic with a source range; all of
// them are reported at once. Values read through env() are sensitive: they
// are kept in Secret fields and never rendered.
//
// A config is untrusted input (it is planned on pull requests): LoadFS reads
// every file through one fs.FS confined to the repository (package repofs),
// and limits.go bounds file sizes and nesting before anything is parsed.
//
// It does not run queries or compile CEL: checks that need a model's
// columns (mapping, primary key, rules) belong to package project.
package config
