package project

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/pmezard/go-difflib/difflib"

	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/repofs"
)

// BlockChange is one config block that differs between a git revision and
// the working tree.
type BlockChange struct {
	File  string `json:"file"`  // relative to the config folder
	Block string `json:"block"` // e.g. sync "users_to_crm"
	Kind  string `json:"kind"`  // added | removed | changed
	Diff  string `json:"diff"`  // unified diff of the block's text
}

// ConfigChanges compares the config folder's *.hcl files with their
// content at rev (any revision git understands: a branch, tag or commit)
// block by block, for `plan --base REV`. Both sides are read through
// repofs, so they obey the same confinement and limits as the config.
func ConfigChanges(dir, rev string) ([]BlockChange, error) {
	loc, err := repofs.Locate(dir)
	if err != nil {
		return nil, fmt.Errorf("--base: %w", err)
	}
	if !loc.Git {
		return nil, fmt.Errorf("--base: the config folder is not in a git repository")
	}
	work, err := repofs.NewDir(loc.Root)
	if err != nil {
		return nil, fmt.Errorf("--base: %w", err)
	}
	return configChanges(loc, work, loc.Dir, rev)
}

// ConfigChanges is the package function for the project's config, as it
// was read (from the working tree, or from the --ref revision).
func (p *Project) ConfigChanges(rev string) ([]BlockChange, error) {
	loc, err := repofs.Locate(p.Config.Dir)
	if err != nil {
		return nil, fmt.Errorf("--base: %w", err)
	}
	if !loc.Git {
		return nil, fmt.Errorf("--base: the config folder is not in a git repository")
	}
	return configChanges(loc, p.Config.FS, p.Config.FSDir, rev)
}

// configChanges compares the *.hcl files of folder dir of cur with those
// of the same folder at rev in the repository at loc.
func configChanges(loc repofs.Location, cur fs.FS, dir, rev string) ([]BlockChange, error) {
	base, err := repofs.OpenRevision(loc, rev)
	if err != nil {
		return nil, fmt.Errorf("--base: %w", err)
	}
	old, err := hclFiles(base, loc.Dir)
	if err != nil {
		return nil, fmt.Errorf("--base: reading %s: %w", rev, err)
	}
	current, err := hclFiles(cur, dir)
	if err != nil {
		return nil, fmt.Errorf("--base: %w", err)
	}

	oldBlocks, newBlocks := blocksOf(old), blocksOf(current)
	var ids []string
	for id := range newBlocks {
		ids = append(ids, id)
	}
	for id := range oldBlocks {
		if _, ok := newBlocks[id]; !ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	var out []BlockChange
	for _, id := range ids {
		o, wasThere := oldBlocks[id]
		n, isThere := newBlocks[id]
		c := BlockChange{Block: id}
		switch {
		case !wasThere:
			c.Kind, c.File = "added", n.file
		case !isThere:
			c.Kind, c.File = "removed", o.file
		case o.text == n.text:
			continue
		default:
			c.Kind, c.File = "changed", n.file
		}
		diff, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
			A: lines(o.text), B: lines(n.text),
			FromFile: rev + ":" + pathOr(o.file, c.File), ToFile: pathOr(n.file, c.File), Context: 3,
		})
		if err != nil {
			return nil, err
		}
		c.Diff = diff
		out = append(out, c)
	}
	return out, nil
}

// hclFiles reads the *.hcl files of folder dir of fsys, by name; a folder
// missing from fsys has none.
func hclFiles(fsys fs.FS, dir string) (map[string][]byte, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".hcl") {
			continue
		}
		b, err := repofs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		files[e.Name()] = b
	}
	return files, nil
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return difflib.SplitLines(s)
}

func pathOr(p, alt string) string {
	if p == "" {
		return alt
	}
	return p
}

type blockText struct {
	file, text string
}

// blocksOf indexes the top-level blocks of HCL files by `type "label"…`.
// A file that does not parse is compared as one block named after it.
func blocksOf(files map[string][]byte) map[string]blockText {
	out := map[string]blockText{}
	for name, src := range files {
		if config.CheckNesting(src, name) != nil {
			// Too deep to parse safely.
			out["file "+name] = blockText{file: name, text: string(src)}
			continue
		}
		f, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
		body, ok := f.Body.(*hclsyntax.Body)
		if diags.HasErrors() || !ok {
			out["file "+name] = blockText{file: name, text: string(src)}
			continue
		}
		for _, b := range body.Blocks {
			id := b.Type
			for _, l := range b.Labels {
				id += fmt.Sprintf(" %q", l)
			}
			r := b.Range()
			out[id] = blockText{file: name, text: string(r.SliceBytes(src)) + "\n"}
		}
	}
	return out
}

// loadConfig loads the config folder dir from the working tree or, with
// ref set, as of that revision, read from git's objects without a
// checkout. The folder's path inside the repository is dir's path relative
// to the repository's root (repofs.Locate), so any folder of the
// repository works, and in a bare repository dir names the repository (or
// a folder path under it that exists only in its commits). File names in
// diagnostics are shown under dir either way.
func loadConfig(dir, ref string, opts config.Options) (*config.Config, hcl.Diagnostics) {
	if ref == "" {
		return config.Load(dir, opts)
	}
	fail := func(summary, detail string) (*config.Config, hcl.Diagnostics) {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: detail}}
	}
	loc, err := repofs.Locate(dir)
	if err != nil {
		return fail("Cannot Read Config Folder", fmt.Sprintf("The config folder %q cannot be read: %v. Check the path given with -C.", dir, err))
	}
	tree, err := repofs.OpenRevision(loc, ref)
	var unknown *repofs.UnknownRevisionError
	switch {
	case errors.As(err, &unknown):
		return fail("Unknown Revision", fmt.Sprintf("--ref %q names no branch, tag or commit of the git repository at %s. Check the name; a shallow or single-branch clone may need it fetched first (git fetch origin %s).", ref, loc.Root, ref))
	case errors.Is(err, repofs.ErrNotInGit):
		return fail("Not A Git Repository", fmt.Sprintf("--ref %q reads the config from git, but the config folder %q is in no git repository.", ref, dir))
	case err != nil:
		return fail("Cannot Read Revision", fmt.Sprintf("--ref %q could not be read: %v.", ref, err))
	}
	return config.LoadFS(tree, loc.Dir, dir, opts)
}

// Commit returns the commit the config was read from: the --ref one, or
// the working tree's HEAD; "" outside git or before the first commit.
func (p *Project) Commit() string {
	if tree, ok := p.Config.FS.(*repofs.Tree); ok {
		return tree.Commit()
	}
	head, err := p.head()
	if err != nil {
		return ""
	}
	return head.Commit()
}

func (p *Project) head() (*repofs.Tree, error) {
	loc, err := repofs.Locate(p.Config.Dir)
	if err != nil {
		return nil, err
	}
	return repofs.OpenRevision(loc, "HEAD")
}

// Revision returns the commit the config was read from (see Commit) and
// whether the config read differs from that commit. With --ref it never
// does. From a working tree, it does when a file read by the config or its
// fixtures differs from HEAD's, is not in HEAD, or when a file of HEAD is
// missing from a folder the config read files of the same kind from
// (repofs.Dir.Changes). Edits to files the config does not read, untracked
// files nobody read (state folders, database files) and ignored files do
// not make it dirty: the question is whether HEAD reproduces the config,
// and comparing only what was read costs as much as the config, where a
// full status of a big working tree is slow (go-git's Worktree.Status
// takes ~0.1 s on this repository's 240 files and grows with every file).
// When the comparison itself fails, the config counts as dirty.
func (p *Project) Revision() (commit string, dirty bool) {
	if tree, ok := p.Config.FS.(*repofs.Tree); ok {
		return tree.Commit(), false
	}
	dir, ok := p.Config.FS.(*repofs.Dir)
	if !ok {
		return "", false
	}
	head, err := p.head()
	if err != nil {
		return "", false
	}
	changed, err := dir.Changes(head)
	return head.Commit(), err != nil || len(changed) > 0
}
