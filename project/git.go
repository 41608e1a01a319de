package project

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/pmezard/go-difflib/difflib"
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
// block by block, for `plan --base REV`.
func ConfigChanges(dir, rev string) ([]BlockChange, error) {
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	repo, err := git.PlainOpenWithOptions(absDir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return nil, fmt.Errorf("--base: the config folder is not in a git repository: %w", err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, fmt.Errorf("--base: %w", err)
	}
	root := wt.Filesystem.Root()
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r
	}
	if d, err := filepath.EvalSymlinks(absDir); err == nil {
		absDir = d
	}
	prefix, err := filepath.Rel(root, absDir)
	if err != nil {
		return nil, fmt.Errorf("--base: %w", err)
	}
	hash, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return nil, fmt.Errorf("--base: unknown revision %q: %w", rev, err)
	}
	commit, err := repo.CommitObject(*hash)
	if err != nil {
		return nil, fmt.Errorf("--base: %w", err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, fmt.Errorf("--base: %w", err)
	}

	old := map[string][]byte{}
	err = tree.Files().ForEach(func(f *object.File) error {
		rel, ok := strings.CutPrefix(f.Name, filepath.ToSlash(prefix)+"/")
		if prefix == "." {
			rel, ok = f.Name, true
		}
		if !ok || strings.Contains(rel, "/") || !strings.HasSuffix(rel, ".hcl") {
			return nil
		}
		content, err := f.Contents()
		if err != nil {
			return err
		}
		old[rel] = []byte(content)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("--base: reading %s: %w", rev, err)
	}
	cur := map[string][]byte{}
	names, err := filepath.Glob(filepath.Join(dir, "*.hcl"))
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		cur[filepath.Base(n)] = b
	}

	oldBlocks, newBlocks := blocksOf(old), blocksOf(cur)
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
