package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const pgSource = `
source "warehouse" {
  type = "postgres"
  dsn  = %s
}
`

func TestEnv(t *testing.T) {
	t.Setenv("BACKFLOW_TEST_DSN", "postgres://u:pw@db/x")
	os.Unsetenv("BACKFLOW_TEST_MISSING")
	tests := []struct {
		expr, want, diag string
	}{
		{`env("BACKFLOW_TEST_DSN")`, "postgres://u:pw@db/x", ""},
		{`env("BACKFLOW_TEST_MISSING", "postgres://fallback")`, "postgres://fallback", ""},
		{`"${env("BACKFLOW_TEST_DSN")}?sslmode=disable"`, "postgres://u:pw@db/x?sslmode=disable", ""},
		{`lower(env("BACKFLOW_TEST_DSN"))`, "postgres://u:pw@db/x", ""},
		{`env("BACKFLOW_TEST_MISSING")`, "", "Unset environment variable"},
		{`env("A", "b", "c")`, "", "Invalid function argument"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			cfg, diags := loadSrc(t, map[string]string{"main.hcl": fmt.Sprintf(pgSource, tt.expr)})
			if tt.diag != "" {
				if len(diags) != 1 || diags[0].Summary != tt.diag {
					t.Fatalf("diags = %v, want one %q", diags, tt.diag)
				}
				if tt.diag == "Unset environment variable" {
					// The whole call, not just `env(`.
					if r := diags[0].Subject; r.Start.Column != 10 || r.End.Column != 10+len(tt.expr) {
						t.Errorf("subject = %v", r)
					}
					if !strings.Contains(diags[0].Detail, "BACKFLOW_TEST_MISSING") {
						t.Errorf("detail does not name the variable: %s", diags[0].Detail)
					}
				}
				return
			}
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			if got := cfg.Sources[0].Args.String("dsn"); got != tt.want {
				t.Errorf("dsn = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	const secret = "s3cr3t-pa55word"
	t.Setenv("BACKFLOW_TEST_DSN", "postgres://u:"+secret+"@db/x")
	t.Setenv("BACKFLOW_TEST_TOKEN", secret)
	cfg, diags := loadSrc(t, map[string]string{"main.hcl": fmt.Sprintf(pgSource, `env("BACKFLOW_TEST_DSN")`) + `
destination "api" {
  type    = "http"
  url     = "https://example.com"
  headers = { Authorization = "Bearer ${env("BACKFLOW_TEST_TOKEN")}" }
}

destination "pg" {
  type = "postgres"
  dsn  = env("BACKFLOW_TEST_DSN")
  # Errors that quote the value must not leak it either.
  batch_size = env("BACKFLOW_TEST_TOKEN")
  init_sql   = parseint(env("BACKFLOW_TEST_TOKEN"), 10)
}

model "m" {
  source      = source.warehouse
  query       = "SELECT 1 AS id"
  primary_key = env("BACKFLOW_TEST_TOKEN")
}
`})
	if !diags.HasErrors() {
		t.Fatal("want diagnostics for sensitive values in batch_size, init_sql and primary_key")
	}
	var out strings.Builder
	for _, v := range []any{cfg, *cfg, cfg.Sources[0], *cfg.Sources[0], cfg.Destinations[0], *cfg.Destinations[0], *cfg.Destinations[1]} {
		fmt.Fprintf(&out, "%v %+v %#v %s\n", v, v, v, v)
	}
	b, err := json.Marshal(cfg.Destinations)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(b)
	if err := WriteDiagnostics(&out, cfg.Files, diags, false, 0); err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(DiagnosticsJSONWithSnippets(diags, cfg.Files))
	out.Write(j)
	out.WriteString(diags.Error())
	if strings.Contains(out.String(), secret) {
		t.Fatalf("secret printed:\n%s", out.String())
	}
	if got := cfg.Destinations[0].Args.StringMap("headers")["Authorization"]; got != "Bearer "+secret {
		t.Errorf("header = %q", got)
	}
	if got := cfg.Destinations[1].Args.String("dsn"); !strings.Contains(got, secret) {
		t.Errorf("dsn = %q", got)
	}
	for _, d := range diags {
		if d.EvalContext != nil || d.Expression != nil {
			t.Errorf("diagnostic %q carries an EvalContext or Expression", d.Summary)
		}
	}
}

// TestSecretsChangedInCallsNeverPrinted: a function that fails on a value
// built from env() (reversed, upper-cased, cut) may quote it in its error,
// where masking the secret's text cannot find it: the error is withheld.
func TestSecretsChangedInCallsNeverPrinted(t *testing.T) {
	const secret = "hunter2secretvalue"
	t.Setenv("BACKFLOW_TEST_TOKEN", secret)
	forms := []string{secret, "eulavterces2retnuh", "HUNTER2SECRETVALUE", "nter2secr", "ter2se"}
	for _, expr := range []string{
		`timeadd(strrev(env("BACKFLOW_TEST_TOKEN")), "1h")`,
		`env(upper(env("BACKFLOW_TEST_TOKEN")))`,
		`file(strrev(env("BACKFLOW_TEST_TOKEN")))`,
		`parseint(strrev(env("BACKFLOW_TEST_TOKEN")), 10)`,
		`parseint(substr(env("BACKFLOW_TEST_TOKEN"), 2, 9), 10)`,
		`format("%d", title(env("BACKFLOW_TEST_TOKEN")))`,
		`regex(replace(env("BACKFLOW_TEST_TOKEN"), "s", "("), "x")`,
	} {
		t.Run(expr, func(t *testing.T) {
			cfg, diags := loadSrc(t, map[string]string{"main.hcl": fmt.Sprintf(pgSource, expr)})
			if !diags.HasErrors() {
				t.Fatal("loaded without an error")
			}
			var out strings.Builder
			if err := WriteDiagnostics(&out, cfg.Files, diags, false, 0); err != nil {
				t.Fatal(err)
			}
			j, _ := json.Marshal(DiagnosticsJSONWithSnippets(diags, cfg.Files))
			out.Write(j)
			for _, f := range forms {
				if strings.Contains(out.String(), f) {
					t.Errorf("%q printed:\n%s", f, out.String())
				}
			}
			if !strings.Contains(out.String(), "withheld") {
				t.Errorf("the error does not say it is withheld:\n%s", out.String())
			}
		})
	}
	// HCL drops the mark of a key indexing an object: a value rebuilt from
	// a secret one character at a time is still the secret's, wherever it
	// goes.
	var m, parts []string
	for _, c := range "abcdefghijklmnopqrstuvwxyz0123456789" {
		m = append(m, fmt.Sprintf("%q = %q", string(c), strings.ToUpper(string(c))))
	}
	for i := range len(secret) {
		parts = append(parts, fmt.Sprintf(`{%s}[substr(env("BACKFLOW_TEST_TOKEN"), %d, 1)]`, strings.Join(m, ", "), i))
	}
	rebuilt := `join("", [` + strings.Join(parts, ", ") + `])`
	for _, src := range []string{
		fmt.Sprintf(pgSource, `timeadd(`+rebuilt+`, "1h")`),
		fmt.Sprintf(pgSource, `"postgres://db/x"`) + `
model "m" {
  source      = source.warehouse
  query       = "SELECT 1 AS id"
  primary_key = ` + rebuilt + `
}
`,
	} {
		cfg, diags := loadSrc(t, map[string]string{"main.hcl": src})
		var out strings.Builder
		if err := WriteDiagnostics(&out, cfg.Files, diags, false, 0); err != nil {
			t.Fatal(err)
		}
		if !diags.HasErrors() || strings.Contains(strings.ToLower(out.String()), "hunter2") {
			t.Errorf("a secret rebuilt by indexing: %s", out.String())
		}
	}

	// A call that fails on values of the config alone says what it said.
	_, diags := loadSrc(t, map[string]string{"main.hcl": fmt.Sprintf(pgSource, `timeadd("2020-01-01T00:00:00Z", "1xx")`)})
	if len(diags) != 1 || !strings.Contains(diags[0].Detail, `unknown unit "xx"`) {
		t.Errorf("diags %v, want the function's own words", diags)
	}
}

func TestFileAndHash(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "models/users.sql"), "SELECT 1 AS id\n")
	writeFile(t, filepath.Join(dir, "main.hcl"), `
source "w" {
  type     = "embedded"
  fixtures = "data"
}

model "users" {
  source      = source.w
  query       = file("models/users.sql")
  primary_key = "id"
}
`)
	cfg := mustLoad(t, dir)
	if cfg.Models[0].Query != "SELECT 1 AS id\n" {
		t.Errorf("query = %q", cfg.Models[0].Query)
	}
	h1 := cfg.Hash
	if len(h1) != 64 {
		t.Fatalf("hash = %q", h1)
	}
	if again := mustLoad(t, dir).Hash; again != h1 {
		t.Errorf("hash is not stable: %s, %s", h1, again)
	}
	// A change in a file read through file() changes the hash.
	writeFile(t, filepath.Join(dir, "models/users.sql"), "SELECT 2 AS id\n")
	h2 := mustLoad(t, dir).Hash
	if h2 == h1 {
		t.Error("hash ignores files read through file()")
	}
	// So does a new .hcl file, even an empty one.
	writeFile(t, filepath.Join(dir, "extra.hcl"), "")
	if h3 := mustLoad(t, dir).Hash; h3 == h2 {
		t.Error("hash ignores a new .hcl file")
	}
}

func TestStdlibFunctions(t *testing.T) {
	cfg, diags := loadSrc(t, map[string]string{"main.hcl": `
source "w" {
  type     = "embedded"
  fixtures = join("/", ["data", lower("FIX")])
}

model "m" {
  source      = source.w
  query       = format("SELECT %s FROM %s", upper("id"), coalesce(null, "t"))
  primary_key = concat(["a"], split(",", "b,c"))
}
`})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if cfg.Sources[0].Args.String("fixtures") != "data/fix" || cfg.Models[0].Query != "SELECT ID FROM t" ||
		strings.Join(cfg.Models[0].PrimaryKey, ",") != "a,b,c" {
		t.Errorf("got %q, %q, %v", cfg.Sources[0].Args.String("fixtures"), cfg.Models[0].Query, cfg.Models[0].PrimaryKey)
	}
}

func TestSuggest(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want string
	}{
		{"active_user", []string{"orders", "active_users"}, ` Did you mean "active_users"?`},
		{"crmm", []string{"crm", "api"}, ` Did you mean "crm"?`},
		{"zzz", []string{"crm", "api"}, ""},
		{"x", []string{"y"}, ""}, // one letter differs from everything one letter long
		{"Upsert", []string{"upsert", "update"}, ` Did you mean "upsert"?`},
	}
	for _, tt := range tests {
		if got := didYouMean(tt.name, tt.in); got != tt.want {
			t.Errorf("didYouMean(%q, %v) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
	}
}

// TestDerivedSecretsMasked: a value computed from env() (trimmed of the
// newline a secret file ends with, upper-cased, reversed) is no longer the
// env() value itself, yet it is what reaches the server and what an error
// echoes back; it is masked as well as the value read.
func TestDerivedSecretsMasked(t *testing.T) {
	t.Setenv("BACKFLOW_TEST_TOKEN", "S3cr3t-XYZ-123456\n")
	t.Setenv("BACKFLOW_TEST_PATH", " P4th-QWE-987654 ")
	cfg, diags := loadSrc(t, map[string]string{"main.hcl": `
destination "api" {
  type    = "http"
  url     = "https://example.com/hooks/${trimspace(env("BACKFLOW_TEST_PATH"))}"
  headers = {
    Authorization = "Bearer ${trimspace(env("BACKFLOW_TEST_TOKEN"))}"
    X-Upper       = upper(trimspace(env("BACKFLOW_TEST_TOKEN")))
    X-Reversed    = strrev(trimspace(env("BACKFLOW_TEST_TOKEN")))
  }
}
`})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	msg := "token S3cr3t-XYZ-123456 / S3CR3T-XYZ-123456 / 654321-ZYX-t3rc3S at /hooks/P4th-QWE-987654?x=1"
	got := cfg.Redact.String(msg)
	for _, leak := range []string{"S3cr3t", "S3CR3T", "t3rc3S", "P4th"} {
		if strings.Contains(got, leak) {
			t.Errorf("%q shows in %q", leak, got)
		}
	}
}

// TestDerivedSecretsInMarkedMaps: a map made sensitive as a whole (merged
// with one built from env()) gives each of its strings as a secret, as
// does a sensitive element of a plain map.
func TestDerivedSecretsInMarkedMaps(t *testing.T) {
	t.Setenv("BACKFLOW_TEST_TOKEN", "S3cr3t-XYZ-123456\n")
	cfg, diags := loadSrc(t, map[string]string{"main.hcl": `
destination "api" {
  type    = "http"
  url     = "https://example.com/hooks"
  headers = merge({ Accept = "application/json" }, { X-Key = trimspace(env("BACKFLOW_TEST_TOKEN")) })
}
destination "api2" {
  type    = "http"
  url     = "https://example.com/hooks"
  headers = { Accept = "application/json", X-Key = lower(trimspace(env("BACKFLOW_TEST_TOKEN"))) }
}
`})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	got := cfg.Redact.String("key S3cr3t-XYZ-123456 s3cr3t-xyz-123456")
	if strings.Contains(got, "3cr3t") {
		t.Errorf("derived secret shows in %q", got)
	}
}

// A short string computed from a secret ("1" from a condition on it) is
// not a secret of its own: it would mask every such digit in the output.
func TestShortDerivedValuesAreNotSecrets(t *testing.T) {
	t.Setenv("BACKFLOW_TEST_TOKEN", "S3cr3t-XYZ-123456")
	cfg, diags := loadSrc(t, map[string]string{"main.hcl": `
destination "api" {
  type    = "http"
  url     = "https://example.com/hooks"
  headers = { X-Flag = strlen(env("BACKFLOW_TEST_TOKEN")) > 0 ? "1" : "0" }
}
`})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if got := cfg.Redact.String("sync 1: 10 accepted"); got != "sync 1: 10 accepted" {
		t.Errorf("got %q", got)
	}
}
