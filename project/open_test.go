package project

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenFixtureFolderProblems checks that problems with a source's
// fixtures folder as a whole point at the source block.
func TestOpenFixtureFolderProblems(t *testing.T) {
	const config = `source "warehouse" {
  type     = "embedded"
  fixtures = "data"
  table "orders" {
    column_types = { id = "int" }
  }
}
`
	tests := []struct {
		name    string
		files   map[string]string
		summary string
	}{
		{"missing folder", nil, "Cannot Read Fixtures"},
		{"folder is a file", map[string]string{"data": "x"}, "Cannot Read Fixtures"},
		{"types for no fixture", map[string]string{"data/users.csv": "id\n1\n"}, "Column Types For Unknown Fixture"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{"main.hcl": config}
			for name, src := range tt.files {
				files[name] = src
			}
			for name, src := range files {
				path := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			p, diags := Open(context.Background(), dir, Options{})
			if p != nil {
				defer p.Close()
			}
			if len(diags) != 1 || diags[0].Summary != tt.summary {
				t.Fatalf("want one %q, got %s", tt.summary, diags.Error())
			}
			s := diags[0].Subject
			if s == nil || s.Filename != filepath.Join(dir, "main.hcl") || s.Start.Line != 1 {
				t.Errorf("diagnostic at %v, want the source block at main.hcl:1", s)
			}
			if !strings.HasSuffix(diags[0].Detail, ".") {
				t.Errorf("detail %q is not a sentence", diags[0].Detail)
			}
		})
	}
}

// TestOpenWithoutFixturesPath checks that an embedded source whose
// fixtures path is missing is reported once, without loading the config
// folder's own .sql files as fixtures.
func TestOpenWithoutFixturesPath(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{
		"main.hcl": "source \"warehouse\" {\n  type = \"embedded\"\n}\n",
		"crm.sql":  "CREATE TABLE contacts (id INTEGER PRIMARY KEY AUTOINCREMENT);\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, diags := Open(context.Background(), dir, Options{})
	if p != nil {
		defer p.Close()
	}
	if len(diags) != 1 || diags[0].Summary != "Missing required argument" {
		t.Fatalf("want only the missing fixtures argument, got %s", diags.Error())
	}
}
