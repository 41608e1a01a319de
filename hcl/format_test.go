package config

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		name, in, want, diag string
	}{
		{"aligns", "source \"w\" {\ntype = \"embedded\"\n  fixtures=\"data\"\n}\n",
			"source \"w\" {\n  type     = \"embedded\"\n  fixtures = \"data\"\n}\n", ""},
		{"canonical is unchanged", "model \"m\" {\n  query = \"x\"\n}\n", "model \"m\" {\n  query = \"x\"\n}\n", ""},
		{"syntax error", "source \"w\" {\n  type = \n}\n", "", "Invalid expression"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, diags := Format([]byte(tt.in), "x.hcl")
			if tt.diag != "" {
				if got != nil || len(diags) == 0 || diags[0].Summary != tt.diag || diags[0].Subject.Filename != "x.hcl" {
					t.Fatalf("got %q, %v; want diagnostic %q", got, diags, tt.diag)
				}
				return
			}
			if diags.HasErrors() || string(got) != tt.want {
				t.Fatalf("got %q (%v), want %q", got, diags, tt.want)
			}
		})
	}
}

func TestFormatDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.hcl"), "x=1\n")
	writeFile(t, filepath.Join(dir, "b.hcl"), "x = 1\n")
	writeFile(t, filepath.Join(dir, "bad.hcl"), "x = \n")
	writeFile(t, filepath.Join(dir, "notes.txt"), "x=1\n")
	writeFile(t, filepath.Join(dir, "sub/c.hcl"), "y=2\n")
	writeFile(t, filepath.Join(dir, ".hidden/d.hcl"), "y=2\n")

	changed := func(rs []FormatResult) string {
		var out []string
		for _, r := range rs {
			rel, _ := filepath.Rel(dir, r.Path)
			mark := " "
			if r.Changed() {
				mark = "*"
			}
			out = append(out, mark+filepath.ToSlash(rel))
		}
		return strings.Join(out, ",")
	}
	rs, files, diags := FormatDir(dir, false)
	if got := changed(rs); got != "*a.hcl, b.hcl, bad.hcl" {
		t.Errorf("flat = %s", got)
	}
	if len(diags) != 1 || diags[0].Subject.Filename != filepath.Join(dir, "bad.hcl") || files[filepath.Join(dir, "bad.hcl")] == nil {
		t.Errorf("diags = %v", diags)
	}
	if string(rs[0].Formatted) != "x = 1\n" || string(rs[0].Original) != "x=1\n" {
		t.Errorf("a.hcl = %q → %q", rs[0].Original, rs[0].Formatted)
	}
	rs, _, _ = FormatDir(dir, true)
	if got := changed(rs); got != "*a.hcl, b.hcl, bad.hcl,*sub/c.hcl" {
		t.Errorf("recursive = %s", got)
	}
}

func TestDiagnosticsJSON(t *testing.T) {
	cfg, diags := Load("testdata/invalid/invalid_mode", testOptions())
	if len(diags) != 1 {
		t.Fatalf("diags = %v", diags)
	}
	b, err := json.Marshal(DiagnosticsJSONWithSnippets(diags, cfg.Files))
	if err != nil {
		t.Fatal(err)
	}
	var got []struct {
		Severity, Summary, Detail string
		Range                     struct {
			Filename   string
			Start, End struct{ Line, Column, Byte int }
		}
		Snippet struct {
			Context   string
			Code      string
			StartLine int `json:"start_line"`
		}
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	g := got[0]
	if g.Severity != "error" || g.Summary != "Invalid mode" || !strings.Contains(g.Detail, `"upsert"`) ||
		g.Range.Filename != filepath.Join("testdata/invalid/invalid_mode", "main.hcl") ||
		g.Range.Start.Line != 6 || g.Range.Start.Column != 17 || g.Range.End.Column != 24 ||
		g.Snippet.StartLine != 6 || g.Snippet.Context != `sync "s"` || g.Snippet.Code != `  mode        = "upsrt"` {
		t.Errorf("json = %s", b)
	}
	if b, _ := json.Marshal(DiagnosticsJSON(nil)); string(b) != "[]" {
		t.Errorf("empty = %s", b)
	}
	warn := hcl.Diagnostics{{Severity: hcl.DiagWarning, Summary: "W", Detail: "D."}}
	if b, _ := json.Marshal(DiagnosticsJSON(warn)); string(b) != `[{"severity":"warning","summary":"W","detail":"D."}]` {
		t.Errorf("warning = %s", b)
	}
}
