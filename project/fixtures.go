package project

import (
	"path"
	"path/filepath"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/engine"
	"github.com/backflowhq/backflow/repofs"
	"github.com/backflowhq/backflow/spec"
)

// engineConfig is what a source of this project is opened with: fixtures
// are read through the config's own file system, with the same confinement
// and size limits, and from the same revision with --ref.
func (p *Project) engineConfig(name string, args spec.Values) engine.Config {
	return engine.Config{Name: name, Dir: p.Config.Dir, Args: args, Redact: p.Config.Redact, FS: p.Config.FS, FSDir: p.Config.FSDir}
}

// addFixtureFiles makes the files diagnostics point into available to the
// diagnostic writer, for their snippets. They are read through the config's
// file system, never from disk directly.
func (p *Project) addFixtureFiles(diags hcl.Diagnostics) {
	for _, d := range diags {
		if d.Subject == nil || p.Config.FS == nil {
			continue
		}
		name := d.Subject.Filename
		if _, ok := p.Files[name]; ok {
			continue
		}
		rel, err := filepath.Rel(p.Config.Dir, name)
		if err != nil {
			continue
		}
		if b, err := repofs.ReadFile(p.Config.FS, path.Join(p.Config.FSDir, filepath.ToSlash(rel))); err == nil {
			p.Files[name] = &hcl.File{Bytes: b}
		}
	}
}
