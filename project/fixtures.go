package project

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/engine"
	"github.com/backflowhq/backflow/repofs"
)

// fixtureExts are the files of a fixtures folder the engine loads.
var fixtureExts = map[string]bool{".csv": true, ".jsonl": true, ".sql": true}

// loadFixtures loads the fixtures folder rel (relative to the config
// folder) into e, reading it through the config's file system: fixtures
// obey the same confinement and size limits as the config, and come from
// the same revision with --ref. Diagnostics name files as
// filepath.Join(Config.Dir, rel, name), and the bytes loaded are added to
// p.Files for their snippets (never read again from disk).
//
// The engine loads a folder on disk, so the fixture files are copied into
// a private temporary folder first. Once the engine reads an fs.FS, this
// passes p.Config.FS and the folder's path instead.
func (p *Project) loadFixtures(e *engine.Embedded, rel string, types map[string]map[string]string) hcl.Diagnostics {
	if rel == "" {
		return nil
	}
	display := filepath.Join(p.Config.Dir, rel)
	cannot := func(err error) hcl.Diagnostics {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot Read Fixtures",
			Detail:   fmt.Sprintf("The fixtures folder %q cannot be read (%v). Check the fixtures path: a folder inside the repository, relative to the config folder.", display, unwrapPath(err)),
		}}
	}
	dir, err := p.Config.Path(rel)
	if err != nil {
		return cannot(err)
	}
	entries, err := fs.ReadDir(p.Config.FS, dir)
	if err != nil {
		return cannot(err)
	}
	tmp, err := os.MkdirTemp("", "backflow-fixtures-")
	if err != nil {
		return cannot(err)
	}
	defer os.RemoveAll(tmp)
	var diags hcl.Diagnostics
	for _, ent := range entries {
		name := ent.Name()
		if ent.IsDir() || !fixtureExts[path.Ext(name)] {
			continue
		}
		shown := filepath.Join(display, name)
		b, err := repofs.ReadFile(p.Config.FS, path.Join(dir, name))
		if err == nil {
			err = os.WriteFile(filepath.Join(tmp, name), b, 0o600)
		}
		if err != nil {
			pos := hcl.Pos{Line: 1, Column: 1}
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Cannot Read Fixture",
				Detail:   fmt.Sprintf("The fixture cannot be read: %v. Fixture files must be regular files inside the repository, of at most %d MiB.", unwrapPath(err), repofs.MaxFileSize>>20),
				Subject:  &hcl.Range{Filename: shown, Start: pos, End: pos},
			})
			continue
		}
		p.Files[shown] = &hcl.File{Bytes: b}
	}
	for _, d := range e.LoadDir(tmp, types) {
		for _, r := range []*hcl.Range{d.Subject, d.Context} {
			if r != nil {
				r.Filename = rename(r.Filename, tmp, display)
			}
		}
		d.Summary = strings.ReplaceAll(d.Summary, tmp, display)
		d.Detail = strings.ReplaceAll(d.Detail, tmp, display)
		diags = append(diags, d)
	}
	return diags
}

// rename replaces the folder from at the start of name by to.
func rename(name, from, to string) string {
	if rest, ok := strings.CutPrefix(name, from+string(filepath.Separator)); ok {
		return filepath.Join(to, rest)
	}
	if name == from {
		return to
	}
	return name
}

// unwrapPath drops the path of an *fs.PathError: diagnostics name it.
func unwrapPath(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}
