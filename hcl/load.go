package config

import "github.com/hashicorp/hcl/v2"

// Load parses every *.hcl file of dir together and resolves it. The returned
// Config is non-nil whenever the files could be read, even with errors, so
// that callers can render diagnostics with Config.Files.
func Load(dir string) (*Config, hcl.Diagnostics) {
	panic("TODO")
}
