package config

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/invalid/*/expect from the diagnostics Load returns")

// TestInvalidCorpus loads every folder of testdata/invalid and compares the
// exact set of diagnostics with the folder's `expect` file, one
// `file:line:col: Summary` per line, file relative to the folder.
func TestInvalidCorpus(t *testing.T) {
	dirs, err := filepath.Glob("testdata/invalid/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 30 {
		t.Fatalf("only %d invalid cases", len(dirs))
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			cfg, diags := Load(dir, testOptions())
			if cfg == nil {
				t.Fatal("Load returned a nil Config")
			}
			var got []string
			for _, d := range diags {
				if d.Subject == nil {
					t.Errorf("diagnostic without subject: %s", d.Error())
					continue
				}
				if d.Summary == "" || !strings.HasSuffix(d.Detail, ".") && !strings.HasSuffix(d.Detail, "?") {
					t.Errorf("diagnostic %q has no full-sentence detail: %q", d.Summary, d.Detail)
				}
				rel, err := filepath.Rel(dir, d.Subject.Filename)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, fmt.Sprintf("%s:%d:%d: %s", filepath.ToSlash(rel), d.Subject.Start.Line, d.Subject.Start.Column, d.Summary))
			}
			sort.Strings(got)
			expectPath := filepath.Join(dir, "expect")
			if *update {
				if err := os.WriteFile(expectPath, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			b, err := os.ReadFile(expectPath)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, line := range strings.Split(string(b), "\n") {
				if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
					want = append(want, line)
				}
			}
			sort.Strings(want)
			if len(want) == 0 {
				t.Fatal("expect lists no diagnostics: every invalid case must fail")
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("diagnostics differ\n--- got\n%s\n--- want\n%s\n--- details\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), diags.Error())
			}
		})
	}
}

// TestDiagnosticDetails checks the help the corpus' summaries do not show:
// suggestions, valid values and pointers to the first declaration.
func TestDiagnosticDetails(t *testing.T) {
	tests := []struct{ dir, want string }{
		{"unknown_block_type", `Did you mean "model"?`},
		{"unknown_attribute", `Did you mean "fixtures"?`},
		{"undeclared_model", `No model named "user" is declared in this folder. Did you mean "users"?`},
		{"multi_file", `Did you mean "warehouse"?`},
		{"duplicate_across_files", "already declared at " + filepath.Join("testdata/invalid/duplicate_across_files", "a.hcl") + ":1."},
		{"invalid_mode", `Use "upsert", "update", "insert" or "all". Did you mean "upsert"?`},
		{"invalid_delete_behavior", `Use "nothing", "clear" or "delete".`},
		{"unknown_source_type", `Use "embedded", "mysql" or "postgres". Did you mean "embedded"?`},
		{"unknown_destination_type", `Use "file", "http", "mysql", "postgres" or "sqlite".`},
		{"bad_durations", `like "200ms"`},
		{"reference_as_string", "remove the quotes, like destination = destination.crm."},
		{"wrong_reference_type", "destination.crm is a destination."},
		{"invalid_reference_root", "Write model.users"},
		{"test_errors", `Did you mean "missing_email"?`},
		{"mapping_not_string", `write email = "email".`},
		{"unset_env", `env("BACKFLOW_TEST_UNSET_VARIABLE_7F3A", "value")`},
		{"missing_type_specific", `An http destination needs the argument "url"`},
		{"huge_numbers", `"batch_size" must be at most 100000; it is 1e+400.`},
		{"huge_numbers", `"max_attempts" must be at least 1; it is -1e+23.`},
		{"empty_fixtures", `like fixtures = "data"`},
	}
	for _, tt := range tests {
		_, diags := Load(filepath.Join("testdata/invalid", tt.dir), testOptions())
		var details []string
		for _, d := range diags {
			details = append(details, d.Detail)
		}
		if all := strings.Join(details, "\n"); !strings.Contains(all, tt.want) {
			t.Errorf("%s: no detail contains %q:\n%s", tt.dir, tt.want, all)
		}
	}
}
