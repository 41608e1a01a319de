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
			cfg, diags := Load(dir)
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
