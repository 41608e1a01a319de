package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// nastyConfigs are hand-written seeds for FuzzLoad and FuzzFormat: odd
// encodings, odd values and references in odd places.
var nastyConfigs = []string{
	"",
	"\ufeffsource \"w\" {\n  type = \"embedded\"\n  fixtures = \"data\"\n}\n",
	"source \"w\" {\r\n  type = \"embedded\"\r\n  fixtures = \"data\"\r\n}\r\n",
	"source \"wärehouse\" {\n  type = \"embedded\"\n  fixtures = \"data\"\n}\nmodel \"m\" {\n  source = source.wärehouse\n  query = \"SELECT 1 AS id\"\n  primary_key = \"id\"\n}\n",
	"destination \"d\" {\n  type = \"sqlite\"\n  path = \"x.db\"\n  batch_size = 1e400\n  timeout = \"1e400s\"\n}\n",
	"destination \"d\" {\n  type = \"sqlite\"\n  path = \"x.db\"\n  batch_size = -99999999999999999999999\n}\n",
	"source \"a\" \"b\" {\n  type = \"embedded\"\n}\n",
	"source \"a\" {\n  type = \"embedded\"\n  type = \"postgres\"\n}\n",
	"model \"m\" {\n  source = source.w.x[0]\n  query = file(\".\")\n  primary_key = [\"id\", null]\n}\n",
	"model \"m\" {\n  source = source.w\n  query = file(\"../../../../../../etc/hostname\")\n  primary_key = {}\n}\n",
	"model \"m\" {\n  source = source.w\n  query = file()\n  primary_key = env(1, 2, 3)\n}\n",
	"model \"m\" {\n  source = source.w\n  query = env([\"x\"])\n  primary_key = env(null)\n}\n",
	"sync \"s\" {\n  model = model.m\n  destination = destination.d\n  object = \"o\"\n  key = \"k\"\n  mapping = { for k in [\"a\"] : k => k }\n}\n",
	"sync \"s\" {\n  model = model.m\n  destination = destination.d\n  object = \"o\"\n  key = \"k\"\n  mapping = { a = upper(\"b\"), (\"x\") = 1, c = model.m, d = null, e = [\"x\"] }\n}\n",
	"sync \"s\" {\n  model = model.m\n  destination = destination.d\n  object = \"o\"\n  key = \"k\"\n  mapping = { a = \"b\", a = \"c\" }\n  exclude \"e\" {\n    when = <<-EOT\n      row.x / 0 == 1 && [1,2].all(x, x > 0) && timestamp('bad') < now\n    EOT\n  }\n}\n",
	"sync \"s\" {\n  failure_threshold = \"NaN%\"\n  mode = null\n  delete_behavior = 3\n  exclude \"e\" \"f\" {\n    when = true\n  }\n  exclude {\n  }\n}\n",
	"test \"t\" {\n  sync = sync.s\n  table \"users\" {\n    rows = [{ id = 1e400, x = [1] }, null, 3]\n  }\n  expect_sent = [null, 1.5, [1]]\n  expect_rows = { \"1\" = 3 }\n  expect_excluded = { \"1\" = 1 }\n}\n",
	"source \"w\" {\n  type = \"embedded\"\n  fixtures = \"data\"\n  table \"users\" {\n    column_types = { id = \"bigint\", \"\" = \"int\", x = 1 }\n  }\n  table \"users\" {}\n}\n",
	"x = 1\nlocals {\n}\nsource {\n}\n",
	"source \"w\" {\n  type = \"${\"\n",
	"source \"w\" {\n  type = <<EOT\n",
	"\x00\x01\xff\xfe",
	"source \"w\" { type = \"embedded\" fixtures = \"data\" }",
	"model \"m\" {\n  source = source.w\n  query = format(\"%d\", \"x\")\n  primary_key = substr(\"abc\", 5, 10)\n}\n",
	"model \"m\" {\n  source = source.w\n  query = jsondecode(\"{\")\n  primary_key = regex(\"(\", \"x\")\n}\n",
	"model \"m\" {\n  source = source.w\n  query = range(1e9)\n  primary_key = \"id\"\n}\n",
}

// fuzzSeeds adds the .hcl files of dirs (recursively) and nastyConfigs to f.
func fuzzSeeds(f *testing.F, dirs ...string) {
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".hcl") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			f.Add(string(b))
			return nil
		})
		if err != nil {
			f.Fatal(err)
		}
	}
	for _, s := range nastyConfigs {
		f.Add(s)
	}
}

// checkDiagnostics fails unless every diagnostic has a position in a file,
// a summary and a sentence of help, and renders without panicking.
func checkDiagnostics(t *testing.T, files map[string]*hcl.File, diags hcl.Diagnostics) {
	t.Helper()
	for _, d := range diags {
		switch {
		case d.Subject == nil:
			t.Errorf("diagnostic %q without position: %s", d.Summary, d.Detail)
		case d.Subject.Filename == "" || d.Subject.Start.Line < 1 || d.Subject.Start.Column < 1:
			t.Errorf("diagnostic %q with an invalid position %#v", d.Summary, d.Subject)
		case d.Summary == "" || d.Detail == "":
			t.Errorf("diagnostic %q without summary or detail: %q", d.Summary, d.Detail)
		case strings.Contains(d.Detail, "goroutine ") || strings.Contains(d.Detail, "panic"):
			t.Errorf("diagnostic %q leaks a Go panic: %s", d.Summary, d.Detail)
		}
	}
	if err := WriteDiagnostics(io.Discard, files, diags, true, 78); err != nil {
		t.Fatal(err)
	}
	DiagnosticsJSONWithSnippets(diags, files)
}

// FuzzLoad loads one fuzzed main.hcl next to a models/q.sql file and a
// data folder.
func FuzzLoad(f *testing.F) {
	fuzzSeeds(f, "testdata", "../examples")
	f.Fuzz(func(t *testing.T, src string) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "models", "q.sql"), "SELECT 1 AS id\n")
		writeFile(t, filepath.Join(dir, "data", "users.csv"), "id\n1\n")
		writeFile(t, filepath.Join(dir, "main.hcl"), src)
		cfg, diags := Load(dir, testOptions())
		if cfg == nil {
			t.Fatal("Load returned a nil Config")
		}
		checkDiagnostics(t, cfg.Files, diags)
	})
}

// FuzzFormat formats one fuzzed file: it either fails with positioned
// diagnostics or returns a file that parses and formats to itself.
func FuzzFormat(f *testing.F) {
	fuzzSeeds(f, "testdata", "../examples")
	f.Fuzz(func(t *testing.T, src string) {
		out, diags := Format([]byte(src), "main.hcl")
		checkDiagnostics(t, map[string]*hcl.File{"main.hcl": {Bytes: []byte(src)}}, diags)
		if diags.HasErrors() {
			return
		}
		again, diags := Format(out, "main.hcl")
		if diags.HasErrors() {
			t.Fatalf("formatted output does not parse: %s\n%s", diags.Error(), out)
		}
		if string(again) != string(out) {
			t.Errorf("formatting is not idempotent:\n%q\n%q", out, again)
		}
	})
}
