package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// deep returns HCL that nests or chains n times: each of these overflowed
// the Go stack (a fatal error) in the parser or the evaluator, given a
// large enough n.
func deep(kind string, n int) string {
	switch kind {
	case "parens":
		return "a = " + strings.Repeat("(", n) + "1" + strings.Repeat(")", n) + "\n"
	case "brackets":
		return "a = " + strings.Repeat("[", n) + strings.Repeat("]", n) + "\n"
	case "objects":
		return "a = " + strings.Repeat("{a=", n) + "1" + strings.Repeat("}", n) + "\n"
	case "blocks":
		return strings.Repeat("b {\n", n) + strings.Repeat("}\n", n)
	case "strings":
		return "a = " + strings.Repeat(`"${`, n) + "1" + strings.Repeat(`}"`, n) + "\n"
	case "template ifs":
		return "a = <<EOT\n" + strings.Repeat("%{if true}", n) + strings.Repeat("%{endif}", n) + "\nEOT\n"
	case "nots":
		return "a = " + strings.Repeat("!", n) + "true\n"
	case "negations":
		return "a = " + strings.Repeat("-", n) + "1\n"
	case "conditionals":
		return "a = " + strings.Repeat("true ? 1 : ", n) + "1\n"
	case "sums": // parses flat, evaluates as a left-deep tree
		return "a = 1" + strings.Repeat("+1", n) + "\n"
	case "sums over lines": // newlines do not end an expression in brackets
		return "a = (1" + strings.Repeat("+\n1", n) + ")\n"
	case "sums in a for": // nor in an object for expression
		return "a = {for k in [1]: k => 1" + strings.Repeat("+\n1", n) + "}\n"
	case "indexes":
		return "a = x" + strings.Repeat("[x]", n) + "\n"
	}
	panic(kind)
}

var deepKinds = []string{"parens", "brackets", "objects", "blocks", "strings", "template ifs", "nots",
	"negations", "conditionals", "sums", "sums over lines", "sums in a for", "indexes"}

func TestCheckNestingRefusesDeepInput(t *testing.T) {
	for _, kind := range deepKinds {
		for _, n := range []int{MaxExpressionDepth + 1, 5000} {
			src := deep(kind, n)
			d := checkNesting([]byte(src), "deep.hcl")
			if d == nil {
				t.Fatalf("%s × %d: accepted", kind, n)
			}
			if d.Subject == nil || d.Subject.Filename != "deep.hcl" || d.Subject.Start.Line < 1 {
				t.Errorf("%s: subject = %v", kind, d.Subject)
			}
			if !strings.Contains(d.Detail, "128") && !strings.Contains(d.Detail, "1024") {
				t.Errorf("%s: the detail does not name the limit: %s", kind, d.Detail)
			}
		}
	}
}

func TestCheckNestingAcceptsUsualInput(t *testing.T) {
	for _, kind := range deepKinds {
		if d := checkNesting([]byte(deep(kind, 40)), "ok.hcl"); d != nil {
			t.Errorf("%s × 40: %s", kind, d.Detail)
		}
	}
	// Sequences are not nesting: the count restarts at each separator.
	long := "a = [" + strings.Repeat(`"x" + "y", `, 5000) + "]\n" + strings.Repeat("b {\n  c = 1 + 2\n}\n", 5000) +
		"q = <<EOT\n" + strings.Repeat("${a} %{if true}x%{endif}\n", 5000) + "EOT\n"
	if d := checkNesting([]byte(long), "long.hcl"); d != nil {
		t.Errorf("long but flat input refused: %s at %v", d.Detail, d.Subject)
	}
	// MaxNesting levels exactly are fine, one more is not.
	if d := checkNesting([]byte(deep("brackets", MaxNesting)), "x.hcl"); d != nil {
		t.Errorf("%d brackets: %s", MaxNesting, d.Detail)
	}
	if d := checkNesting([]byte(deep("brackets", MaxNesting+1)), "x.hcl"); d == nil || d.Summary != "Nesting too deep" {
		t.Errorf("%d brackets: %v", MaxNesting+1, d)
	}
	// Every config file of the repository passes.
	err := filepath.WalkDir("..", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(path, ".hcl") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if d := checkNesting(src, path); d != nil {
			t.Errorf("%s: %s at %v", path, d.Summary, d.Subject)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLoadDeepFile(t *testing.T) {
	// 60,000 levels: this killed the process with a stack overflow.
	cfg, diags := loadSrc(t, map[string]string{
		"deep.hcl": "# nested\n" + deep("brackets", 60_000),
		"main.hcl": `source "w" {
  type     = "embedded"
  fixtures = "data"
}
`,
	})
	if cfg == nil || len(diags) != 1 || diags[0].Summary != "Nesting too deep" {
		t.Fatalf("diags = %v", diags)
	}
	s := diags[0].Subject
	if filepath.Base(s.Filename) != "deep.hcl" || s.Start.Line != 2 || s.Start.Column != 4+MaxNesting+1 {
		t.Errorf("subject = %s:%d:%d, want deep.hcl:2:%d", s.Filename, s.Start.Line, s.Start.Column, 4+MaxNesting+1)
	}
	if len(cfg.Sources) != 1 {
		t.Errorf("the other file was not loaded: %d sources", len(cfg.Sources))
	}
	// fmt reads and parses the same files.
	dir := filepath.Dir(s.Filename)
	_, _, fdiags := FormatDir(dir, false)
	if len(fdiags) != 1 || fdiags[0].Summary != "Nesting too deep" {
		t.Errorf("FormatDir diags = %v", fdiags)
	}
}

func TestLoadSizeLimits(t *testing.T) {
	big := "# " + strings.Repeat("x", MaxConfigFileSize) + "\n"
	_, diags := loadSrc(t, map[string]string{"big.hcl": big})
	if len(diags) != 1 || diags[0].Summary != "File too large" || !strings.Contains(diags[0].Detail, "1 MiB") {
		t.Fatalf("diags = %v", diags)
	}
	if filepath.Base(diags[0].Subject.Filename) != "big.hcl" {
		t.Errorf("subject = %v", diags[0].Subject)
	}

	// file() results count against MaxConfigSize each time, read once
	// from disk or not (9 × 4 MiB here).
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "q.sql"), strings.Repeat("x", 4<<20))
	writeFile(t, filepath.Join(dir, "main.hcl"), `
source "w" {
  type     = "embedded"
  fixtures = "data"
}

model "m" {
  source      = source.w
  query       = join("", [file("q.sql"), file("q.sql"), file("q.sql"), file("q.sql"), file("q.sql"), file("q.sql"), file("q.sql"), file("q.sql"), file("q.sql")])
  primary_key = "id"
}
`)
	_, diags = Load(dir, testOptions())
	if len(diags) == 0 {
		t.Fatal("no diagnostic")
	}
	for _, d := range diags {
		if d.Summary != "Config too large" || !strings.Contains(d.Detail, "32 MiB") {
			t.Errorf("diag %s: %s", d.Summary, d.Detail)
		}
	}
}
