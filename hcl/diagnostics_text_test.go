package config

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
)

func TestWriteDiagnosticsShowsPositionContextAndCarets(t *testing.T) {
	src := []byte("sync \"s\" {\n\tobject = \"contacts\"\n  mode = \"upsurt\"\n}\n")
	f, diags := hclparse.NewParser().ParseHCL(src, "dir/main.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	d := hcl.Diagnostics{
		{Severity: hcl.DiagError, Summary: "Invalid Mode", Detail: "Use \"upsert\", \"update\", \"insert\" or \"all\". Did you mean \"upsert\"?",
			Subject: &hcl.Range{Filename: "dir/main.hcl", Start: hcl.Pos{Line: 3, Column: 10, Byte: 38}, End: hcl.Pos{Line: 3, Column: 18, Byte: 46}}},
		{Severity: hcl.DiagWarning, Summary: "Tab", Detail: "Tabs are kept.",
			Subject: &hcl.Range{Filename: "dir/main.hcl", Start: hcl.Pos{Line: 2, Column: 11, Byte: 21}, End: hcl.Pos{Line: 2, Column: 21, Byte: 31}}},
		{Severity: hcl.DiagError, Summary: "No Subject", Detail: "A folder-level problem."},
	}
	var b bytes.Buffer
	if err := WriteDiagnostics(&b, map[string]*hcl.File{"dir/main.hcl": f}, d, false, 30); err != nil {
		t.Fatal(err)
	}
	want := `Error: Invalid Mode

  on dir/main.hcl:3:10, in sync "s":
     3:   mode = "upsurt"
                 ^^^^^^^^

Use "upsert", "update",
"insert" or "all". Did you
mean "upsert"?

Warning: Tab

  on dir/main.hcl:2:11, in sync "s":
     2: 	object = "contacts"
        	         ^^^^^^^^^^

Tabs are kept.

Error: No Subject

A folder-level problem.

`
	if got := b.String(); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	var c bytes.Buffer
	WriteDiagnostics(&c, nil, d[:1], true, 0)
	if !strings.Contains(c.String(), "\x1b[1;31mError\x1b[0m") || strings.Contains(c.String(), "   3:") {
		t.Fatalf("colour output / missing file: %q", c.String())
	}
}
