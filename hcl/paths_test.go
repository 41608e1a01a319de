package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/internal/gittest"
	"github.com/backflowhq/backflow/repofs"
)

// canary is in every file the config must not be able to read.
const canary = "CANARY-7f3a9c"

// modelSrc is a config whose model query is expr, at line 8.
func modelSrc(expr string) string {
	return fmt.Sprintf(`source "w" {
  type     = "embedded"
  fixtures = "data"
}

model "m" {
  source      = source.w
  query       = %s
  primary_key = "id"
}
`, expr)
}

// rendered is everything a user could see of a load: diagnostics as text
// and JSON, and the loaded values.
func rendered(t *testing.T, cfg *Config, diags hcl.Diagnostics) string {
	t.Helper()
	var out strings.Builder
	if cfg != nil {
		if err := WriteDiagnostics(&out, cfg.Files, diags, false, 0); err != nil {
			t.Fatal(err)
		}
		j, _ := json.Marshal(DiagnosticsJSONWithSnippets(diags, cfg.Files))
		out.Write(j)
		for _, m := range cfg.Models {
			out.WriteString(m.Query)
		}
	}
	out.WriteString(diags.Error())
	return out.String()
}

func TestFileStaysInsideTheRepository(t *testing.T) {
	t.Setenv("BACKFLOW_TEST_CANARY", canary)
	outside := filepath.Join(t.TempDir(), "secret.sql")
	writeFile(t, outside, canary)

	// The config folder is a subfolder of a git repository, whose root is
	// the limit; a sibling folder of the config is inside it.
	repo := gittest.Init(t, t.TempDir())
	repo.Write(t, map[string]string{
		"shared/q.sql":      "SELECT 1 AS id",
		".git/canary":       canary,
		"config/.keep":      "",
		"config/models.sql": "SELECT 2 AS id",
	})
	cfgDir := filepath.Join(repo.Dir, "config")
	if err := os.Symlink("/etc/passwd", filepath.Join(cfgDir, "passwd.sql")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(cfgDir, "out.sql")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../shared/q.sql", filepath.Join(cfgDir, "in.sql")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(cfgDir, "fifo.sql"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(cfgDir, "big.sql")
	writeFile(t, big, "")
	if err := os.Truncate(big, repofs.MaxFileSize+1); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		expr    string
		summary string // "" when the read must succeed
		query   string
	}{
		{`file("models.sql")`, "", "SELECT 2 AS id"},
		{`file("../shared/q.sql")`, "", "SELECT 1 AS id"},
		{`file("in.sql")`, "", "SELECT 1 AS id"},
		{`file("../../x.sql")`, "Path outside the repository", ""},
		{`file("../shared/../../x.sql")`, "Path outside the repository", ""},
		{`file("/etc/passwd")`, "Absolute path", ""},
		{`file("` + outside + `")`, "Absolute path", ""},
		{`"SELECT '${file("/proc/self/environ")}' AS id"`, "Absolute path", ""},
		{`file("/dev/zero")`, "Absolute path", ""},
		{`file("passwd.sql")`, "Path outside the repository", ""},
		{`file("out.sql")`, "Path outside the repository", ""},
		{`file("../.git/canary")`, "Path inside .git", ""},
		{`file("fifo.sql")`, "Not a regular file", ""},
		{`file(".")`, "Not a regular file", ""},
		{`file("big.sql")`, "File too large", ""},
		{`file("missing.sql")`, "Cannot read file", ""},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			writeFile(t, filepath.Join(cfgDir, "main.hcl"), modelSrc(tt.expr))
			cfg, diags := Load(cfgDir, testOptions())
			out := rendered(t, cfg, diags)
			if strings.Contains(out, canary) || strings.Contains(out, "root:x:0:0") {
				t.Fatalf("forbidden content in the output:\n%s", out)
			}
			if tt.summary == "" {
				if diags.HasErrors() {
					t.Fatal(diags.Error())
				}
				if cfg.Models[0].Query != tt.query {
					t.Errorf("query = %q, want %q", cfg.Models[0].Query, tt.query)
				}
				return
			}
			if len(diags) != 1 || diags[0].Summary != tt.summary {
				t.Fatalf("diags = %v, want one %q", diags, tt.summary)
			}
			d := diags[0]
			// At the call, in main.hcl line 8, after `query       = `.
			if s := d.Subject; s == nil || s.Filename != filepath.Join(cfgDir, "main.hcl") || s.Start.Line != 8 || s.Start.Column < 17 {
				t.Errorf("subject = %v", d.Subject)
			}
			if tt.summary != "Cannot read file" && !strings.Contains(d.Detail, "inside the repository") {
				t.Errorf("the detail does not say what is allowed: %s", d.Detail)
			}
		})
	}
}

// Outside git, the config folder itself is the limit.
func TestFileOutsideGitStaysInTheFolder(t *testing.T) {
	parent := t.TempDir()
	writeFile(t, filepath.Join(parent, "secret.sql"), canary)
	dir := filepath.Join(parent, "config")
	writeFile(t, filepath.Join(dir, "main.hcl"), modelSrc(`file("../secret.sql")`))
	cfg, diags := Load(dir, testOptions())
	if len(diags) != 1 || diags[0].Summary != "Path outside the repository" {
		t.Fatalf("diags = %v", diags)
	}
	if out := rendered(t, cfg, diags); strings.Contains(out, canary) {
		t.Fatalf("secret in output:\n%s", out)
	}
}

func TestFixturesStayInsideTheRepository(t *testing.T) {
	parent := t.TempDir()
	writeFile(t, filepath.Join(parent, "etc/users.csv"), "id\n"+canary+"\n")
	dir := filepath.Join(parent, "config")
	writeFile(t, filepath.Join(dir, "ok/users.csv"), "id\n1\n")
	if err := os.Symlink(filepath.Join(parent, "etc"), filepath.Join(dir, "linked")); err != nil {
		t.Fatal(err)
	}
	for fixtures, summary := range map[string]string{
		"ok":         "",
		"missing":    "", // reported by the fixture loader
		"../etc":     "Path outside the repository",
		"/etc":       "Absolute path",
		"linked":     "Path outside the repository",
		"linked/sub": "Path outside the repository",
	} {
		writeFile(t, filepath.Join(dir, "main.hcl"), fmt.Sprintf(`source "w" {
  type     = "embedded"
  fixtures = %q
}

test "t" {
  fixtures = %q
}
`, fixtures, fixtures))
		cfg, diags := Load(dir, testOptions())
		var got []string
		for _, d := range diags {
			if d.Summary != "Missing required argument" {
				got = append(got, d.Summary)
				if d.Subject == nil || (d.Subject.Start.Line != 3 && d.Subject.Start.Line != 7) {
					t.Errorf("%s: subject %v", fixtures, d.Subject)
				}
			}
		}
		switch {
		case summary == "" && len(got) != 0:
			t.Errorf("fixtures = %q: %v", fixtures, got)
		case summary == "" && cfg.Sources[0].Args.String("fixtures") != fixtures:
			t.Errorf("fixtures = %q: kept %q", fixtures, cfg.Sources[0].Args.String("fixtures"))
		case summary != "" && (len(got) != 2 || got[0] != summary || got[1] != summary):
			t.Errorf("fixtures = %q: diags %v, want %q at the source and the test", fixtures, got, summary)
		case summary != "" && (cfg.Sources[0].Args.String("fixtures") != "" || cfg.Tests[0].Fixtures != ""):
			t.Errorf("fixtures = %q: a refused folder is kept", fixtures)
		}
	}
}

func TestConfigFilesAreChecked(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret.hcl")
	writeFile(t, outside, `x = "`+canary+`"`)
	writeFile(t, filepath.Join(dir, "main.hcl"), modelSrc(`"SELECT 1 AS id"`))
	if err := os.Symlink(outside, filepath.Join(dir, "linked.hcl")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe.hcl"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := Load(dir, testOptions())
	if len(diags) != 2 || diags[0].Summary != "Path outside the repository" || diags[1].Summary != "Not a regular file" {
		t.Fatalf("diags = %v", diags)
	}
	if diags[0].Subject.Filename != filepath.Join(dir, "linked.hcl") || diags[1].Subject.Filename != filepath.Join(dir, "pipe.hcl") {
		t.Errorf("subjects = %v, %v", diags[0].Subject, diags[1].Subject)
	}
	if out := rendered(t, cfg, diags); strings.Contains(out, canary) {
		t.Fatalf("secret in output:\n%s", out)
	}
}
