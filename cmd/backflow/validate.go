package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/pmezard/go-difflib/difflib"
	"github.com/spf13/cobra"

	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/project"
)

func writeDiagnostics(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics, color bool, width uint) {
	if err := config.WriteDiagnostics(w, files, diags, color, width); err != nil {
		fmt.Fprintf(w, "Error: rendering diagnostics: %s\n", err)
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func newValidate(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check the configuration: syntax, references, model columns, mappings and rules",
		Long: `validate parses every *.hcl file of the config folder, resolves references,
runs each model's query on its source to learn its columns, and type-checks
mappings and exclude rules against them. It sends nothing anywhere.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, diags := project.Open(cmd.Context(), g.dir, project.Options{Ref: g.ref})
			files := map[string]*hcl.File{}
			if p != nil {
				files = p.Files
				defer p.Close()
			}
			if asJSON {
				errs, warns := 0, 0
				for _, d := range diags {
					if d.Severity == hcl.DiagError {
						errs++
					} else {
						warns++
					}
				}
				if err := printJSON(g.stdout, map[string]any{
					"format_version": "1.0",
					"valid":          errs == 0,
					"error_count":    errs,
					"warning_count":  warns,
					"diagnostics":    config.DiagnosticsJSONWithSnippets(diags, files),
				}); err != nil {
					return err
				}
			} else {
				if len(diags) > 0 {
					g.writeDiags(files, diags)
				}
				if !diags.HasErrors() {
					fmt.Fprintln(g.stdout, "Success! The configuration is valid.")
				}
			}
			if diags.HasErrors() {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	g.addRefFlag(cmd)
	return cmd
}

func newFmt(g *globals) *cobra.Command {
	var check, diff, recursive bool
	cmd := &cobra.Command{
		Use:   "fmt",
		Short: "Rewrite config files in canonical HCL format",
		Long: `fmt rewrites every *.hcl file of the config folder in canonical format and
lists the files it changed. With --check it changes nothing and exits 1 when
a file is not formatted; --diff shows what would change.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			results, files, diags := config.FormatDir(g.dir, recursive)
			if len(diags) > 0 {
				g.writeDiags(files, diags)
			}
			unformatted := false
			for _, r := range results {
				if !r.Changed() {
					continue
				}
				unformatted = true
				fmt.Fprintln(g.stdout, r.Path)
				if diff {
					ud := difflib.UnifiedDiff{
						A: difflib.SplitLines(string(r.Original)), B: difflib.SplitLines(string(r.Formatted)),
						FromFile: "old/" + r.Path, ToFile: "new/" + r.Path, Context: 3,
					}
					text, err := difflib.GetUnifiedDiffString(ud)
					if err != nil {
						return err
					}
					fmt.Fprint(g.stdout, text)
				}
				if !check {
					info, err := os.Stat(r.Path)
					if err != nil {
						return err
					}
					if err := os.WriteFile(r.Path, r.Formatted, info.Mode().Perm()); err != nil {
						return fmt.Errorf("writing %s: %w", r.Path, err)
					}
				}
			}
			if diags.HasErrors() || (check && unformatted) {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "change nothing; exit 1 when a file is not formatted")
	cmd.Flags().BoolVar(&diff, "diff", false, "show the changes as a unified diff")
	cmd.Flags().BoolVar(&recursive, "recursive", false, "also format files in sub-folders")
	return cmd
}
