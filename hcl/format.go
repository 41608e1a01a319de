package config

import (
	"bytes"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"

	"github.com/backflowhq/backflow/repofs"
)

// Format returns src in canonical HCL layout. A file with syntax errors is
// not formatted: the result is nil and the errors are returned.
func Format(src []byte, filename string) ([]byte, hcl.Diagnostics) {
	if d := checkNesting(src, filename); d != nil {
		return nil, hcl.Diagnostics{d}
	}
	if _, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos); diags.HasErrors() {
		return nil, diags
	}
	return hclwrite.Format(src), nil
}

// FormatResult is one file considered by FormatDir.
type FormatResult struct {
	Path      string // filepath.Join(dir, relative path)
	Original  []byte
	Formatted []byte // nil when the file has syntax errors
}

// Changed says whether formatting changes the file.
func (r FormatResult) Changed() bool {
	return r.Formatted != nil && !bytes.Equal(r.Original, r.Formatted)
}

// FormatDir formats every *.hcl file of dir (and of its sub-folders when
// recursive, hidden ones skipped), sorted by path. It writes nothing. Files
// maps each path to its original bytes, for WriteDiagnostics.
func FormatDir(dir string, recursive bool) ([]FormatResult, map[string]*hcl.File, hcl.Diagnostics) {
	var paths []string
	var diags hcl.Diagnostics
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && (!recursive || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(d.Name(), ".hcl") {
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Cannot read config folder",
			Detail:   fmt.Sprintf("The folder %q could not be listed: %v.", dir, err),
			Subject:  &hcl.Range{Filename: dir, Start: hcl.InitialPos, End: hcl.InitialPos},
		})
	}
	sort.Strings(paths)
	files := map[string]*hcl.File{}
	var results []FormatResult
	// Files are read as config files are: inside dir, regular, bounded.
	fsys, dirErr := repofs.NewDir(dir)
	for _, path := range paths {
		src, err := []byte(nil), dirErr
		if err == nil {
			var rel string
			if rel, err = filepath.Rel(dir, path); err == nil {
				src, err = readConfigFile(fsys, filepath.ToSlash(rel))
			}
		}
		if err != nil {
			summary, reason := pathProblem(err)
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  summary,
				Detail:   fmt.Sprintf("The file could not be read: %s. %s", reason, configFilesAllowed),
				Subject:  &hcl.Range{Filename: path, Start: hcl.InitialPos, End: hcl.InitialPos},
			})
			continue
		}
		files[path] = &hcl.File{Bytes: src}
		out, fd := Format(src, path)
		diags = append(diags, fd...)
		results = append(results, FormatResult{Path: path, Original: src, Formatted: out})
	}
	return results, files, diags
}
