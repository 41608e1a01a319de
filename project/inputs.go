package project

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/pmezard/go-difflib/difflib"
	"github.com/sergi/go-diff/diffmatchpatch"
	"github.com/zclconf/go-cty/cty"

	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/repofs"
	"github.com/backflowhq/backflow/spec"
)

// FileChange is a file the config reads, other than its *.hcl files (a
// model's SQL read with file(), an init_sql file, a fixture), that differs
// between a git revision and the config being planned.
type FileChange struct {
	// File is the path as the config names it, relative to the config
	// folder ("models/users.sql", "data/users.csv").
	File string `json:"file"`
	Kind string `json:"kind"` // added | removed | changed
	// ReadBy names the blocks that read the file, like `model "users"`
	// (through file()) or `source "warehouse"` (its fixtures folder).
	ReadBy []string `json:"read_by"`
	// Diff is the unified diff of the file; empty when the file is too
	// large to diff line by line (TooLarge), and then Added and Removed
	// still count the lines.
	Diff     string `json:"diff,omitempty"`
	Added    int    `json:"added_lines"`
	Removed  int    `json:"removed_lines"`
	TooLarge bool   `json:"too_large,omitempty"`
}

// maxDiffLines is the most lines either side of a file may have for a
// unified diff; larger files (big fixtures) are summarised in line counts.
const maxDiffLines = 20000

// configInputs is what one side of a comparison reads: its *.hcl files,
// and every other file by path relative to the config folder, with the
// blocks reading it.
type configInputs struct {
	fsys  fs.FS
	dir   string            // the config folder in fsys
	hcl   map[string][]byte // *.hcl files by name
	files map[string][]string
}

// inputsOf lists what cfg reads (cfg may be nil for a config that did not
// load: then only the *.hcl files and literal file() calls count).
func inputsOf(fsys fs.FS, dir string, cfg *config.Config, catalog spec.Catalog) (*configInputs, error) {
	hclSrc, err := hclFiles(fsys, dir)
	if err != nil {
		return nil, err
	}
	in := &configInputs{fsys: fsys, dir: dir, hcl: hclSrc, files: map[string][]string{}}
	readers := fileCalls(hclSrc)
	add := func(file, by string) {
		if by == "" {
			by = "the config"
		}
		for _, b := range in.files[file] {
			if b == by {
				return
			}
		}
		in.files[file] = append(in.files[file], by)
	}
	for file, blocks := range readers {
		for _, b := range blocks {
			add(file, b)
		}
	}
	if cfg == nil {
		return in, nil
	}
	for _, f := range cfg.Reads {
		if len(readers[f]) == 0 {
			add(f, "") // a path computed by an expression
		}
	}
	folder := func(rel, by string) error {
		if strings.TrimSpace(rel) == "" {
			return nil
		}
		p, err := repofs.Join(dir, filepath.ToSlash(rel))
		if err != nil {
			return nil // the loader reported it
		}
		entries, err := fs.ReadDir(fsys, p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0 {
				add(path.Join(filepath.ToSlash(rel), e.Name()), by)
			}
		}
		return nil
	}
	typed := func(kind, name, typ string, args spec.Values) error {
		fam := catalog[kind]
		if fam == nil {
			return nil
		}
		t, ok := fam.Lookup(typ)
		if !ok {
			return nil
		}
		for _, a := range append(append([]spec.Arg(nil), fam.Common.Args...), t.Spec.Args...) {
			if a.Reads == spec.Folder {
				if err := folder(args.String(a.Name), fmt.Sprintf("%s %q", kind, name)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, s := range cfg.Sources {
		if err := typed("source", s.Name, s.Type, s.Args); err != nil {
			return nil, err
		}
	}
	for _, d := range cfg.Destinations {
		if err := typed("destination", d.Name, d.Type, d.Args); err != nil {
			return nil, err
		}
	}
	for _, t := range cfg.Tests {
		if err := folder(t.Fixtures, fmt.Sprintf("test %q", t.Name)); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// read returns a file's bytes, or ok false when the side does not have it.
func (in *configInputs) read(file string) ([]byte, bool, error) {
	p, err := repofs.Join(in.dir, file)
	if err != nil {
		return nil, false, nil
	}
	b, err := repofs.ReadFile(in.fsys, p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	return b, err == nil, err
}

// fileCalls finds the literal file("…") calls of each top-level block of
// the HCL files: file path (as the loader keys it) → blocks, like
// `model "users"`. Paths built by expressions are not found here.
func fileCalls(files map[string][]byte) map[string][]string {
	out := map[string][]string{}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		src := files[name]
		if config.CheckNesting(src, name) != nil {
			continue
		}
		f, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
		body, ok := f.Body.(*hclsyntax.Body)
		if diags.HasErrors() || !ok {
			continue
		}
		for _, b := range body.Blocks {
			id := blockID(b)
			hclsyntax.VisitAll(b.Body, func(n hclsyntax.Node) hcl.Diagnostics {
				call, ok := n.(*hclsyntax.FunctionCallExpr)
				if !ok || call.Name != "file" || len(call.Args) != 1 {
					return nil
				}
				v, d := call.Args[0].Value(nil)
				if d.HasErrors() || !v.IsKnown() || v.IsNull() || v.Type() != cty.String {
					return nil
				}
				key := filepath.ToSlash(filepath.Clean(v.AsString()))
				for _, seen := range out[key] {
					if seen == id {
						return nil
					}
				}
				out[key] = append(out[key], id)
				return nil
			})
		}
	}
	return out
}

func blockID(b *hclsyntax.Block) string {
	id := b.Type
	for _, l := range b.Labels {
		id += fmt.Sprintf(" %q", l)
	}
	return id
}

// fileChanges compares the non-HCL inputs of two sides, by path.
func fileChanges(rev string, old, cur *configInputs) ([]FileChange, error) {
	var paths []string
	for p := range cur.files {
		paths = append(paths, p)
	}
	for p := range old.files {
		if _, ok := cur.files[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	var out []FileChange
	for _, p := range paths {
		a, inOld, err := old.read(p)
		if err != nil {
			return nil, fmt.Errorf("reading %s at %s: %w", p, rev, err)
		}
		b, inCur, err := cur.read(p)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		c := FileChange{File: p}
		switch {
		case !inOld && !inCur:
			continue
		case !inOld:
			c.Kind = "added"
		case !inCur:
			c.Kind = "removed"
		case string(a) == string(b):
			continue
		default:
			c.Kind = "changed"
		}
		c.ReadBy = mergeReaders(cur.files[p], old.files[p])
		if err := c.diff(rev, a, b); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func mergeReaders(a, b []string) []string {
	out := append([]string(nil), a...)
	for _, x := range b {
		found := false
		for _, y := range out {
			found = found || x == y
		}
		if !found {
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}

// diff fills the unified diff and line counts of a file change.
func (c *FileChange) diff(rev string, a, b []byte) error {
	la, lb := fileLines(a), fileLines(b)
	if len(la) > maxDiffLines || len(lb) > maxDiffLines {
		// Myers on line hashes is fast at any size; the unified form of
		// a huge fixture would be unreadable anyway.
		dmp := diffmatchpatch.New()
		ra, rb, _ := dmp.DiffLinesToRunes(string(a), string(b))
		for _, d := range dmp.DiffMainRunes(ra, rb, false) {
			switch d.Type {
			case diffmatchpatch.DiffInsert:
				c.Added += len(d.Text)
			case diffmatchpatch.DiffDelete:
				c.Removed += len(d.Text)
			}
		}
		c.TooLarge = true
		return nil
	}
	diff, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: la, B: lb, FromFile: rev + ":" + c.File, ToFile: c.File, Context: 3,
	})
	if err != nil {
		return err
	}
	for _, l := range strings.Split(diff, "\n") {
		switch {
		case strings.HasPrefix(l, "+++"), strings.HasPrefix(l, "---"):
		case strings.HasPrefix(l, "+"):
			c.Added++
		case strings.HasPrefix(l, "-"):
			c.Removed++
		}
	}
	c.Diff = diff
	return nil
}

// fileLines splits a file into lines for difflib, each ending in "\n" (a
// last line without one gets it: the diff does not show that difference).
func fileLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	out := strings.SplitAfter(string(b), "\n")
	if out[len(out)-1] == "" {
		return out[:len(out)-1]
	}
	out[len(out)-1] += "\n"
	return out
}
