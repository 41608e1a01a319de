package config

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
	"github.com/hashicorp/hcl/v2"
)

func mustLoad(t *testing.T, dir string) *Config {
	t.Helper()
	cfg, diags := Load(dir, testOptions())
	if diags.HasErrors() {
		t.Fatalf("Load(%s): %s", dir, diags.Error())
	}
	return cfg
}

// loadSrc writes files into a temporary folder and loads it.
func loadSrc(t *testing.T, files map[string]string) (*Config, hcl.Diagnostics) {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		writeFile(t, filepath.Join(dir, name), src)
	}
	return Load(dir, testOptions())
}

func TestLoadFull(t *testing.T) {
	cfg := mustLoad(t, "testdata/valid/full")

	if len(cfg.Sources) != 1 || len(cfg.Models) != 2 || len(cfg.Destinations) != 2 || len(cfg.Syncs) != 2 || len(cfg.Tests) != 1 {
		t.Fatalf("block counts: %d sources, %d models, %d destinations, %d syncs, %d tests",
			len(cfg.Sources), len(cfg.Models), len(cfg.Destinations), len(cfg.Syncs), len(cfg.Tests))
	}
	src := cfg.Sources[0]
	if src.Name != "warehouse" || src.Type != "embedded" || src.Args.String("fixtures") != "data" {
		t.Errorf("source = %+v", src)
	}
	columnTypes := map[string]map[string]string{}
	for _, tb := range src.Args.Blocks("table") {
		columnTypes[tb.Label] = tb.Values.StringMap("column_types")
	}
	if want := map[string]map[string]string{"users": {"age": "int", "signup": "timestamp"}}; !reflect.DeepEqual(columnTypes, want) {
		t.Errorf("column types = %v, want %v", columnTypes, want)
	}

	users, orders := cfg.Models[0], cfg.Models[1]
	if users.Source != src || orders.Source != src {
		t.Errorf("models do not point at the source")
	}
	if users.Query != "SELECT id, email, name FROM users WHERE active\n" {
		t.Errorf("file() query = %q", users.Query)
	}
	if !reflect.DeepEqual(cfg.Reads, []string{"models/active_users.sql"}) {
		t.Errorf("Reads = %v", cfg.Reads)
	}
	if orders.Query != "SELECT id, user_id FROM orders\n" {
		t.Errorf("heredoc query = %q", orders.Query)
	}
	if !reflect.DeepEqual(users.PrimaryKey, []string{"id"}) || !reflect.DeepEqual(orders.PrimaryKey, []string{"user_id", "id"}) {
		t.Errorf("primary keys = %v, %v", users.PrimaryKey, orders.PrimaryKey)
	}
	if users.PKRange.Start.Line != 12 || users.QueryRange.Start.Line != 11 {
		t.Errorf("ranges: pk %v, query %v", users.PKRange, users.QueryRange)
	}

	crm, api := cfg.Destinations[0], cfg.Destinations[1]
	wantCRM := destination.Policy{Timeout: 10 * time.Second, BatchSize: 50, SplitRetries: true,
		MaxAttempts: 6, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 20 * time.Second, MaxElapsed: 5 * time.Minute, CircuitBreaker: 10, MaxInFlight: 1}
	if crm.Type != "sqlite" || crm.Args.String("path") != "crm.db" || destination.PolicyOf(crm.Common) != wantCRM ||
		!strings.HasPrefix(crm.Args.String("init_sql"), "CREATE TABLE") || crm.Args.Duration("lock_timeout") != destination.SQLiteDefaultLockTimeout {
		t.Errorf("crm = %+v", crm)
	}
	wantDefault := destination.Policy{Timeout: 30 * time.Second, BatchSize: 100, MaxAttempts: 5, InitialBackoff: 200 * time.Millisecond, MaxBackoff: 30 * time.Second, CircuitBreaker: destination.DefaultCircuitBreaker, MaxInFlight: 1}
	if api.Type != "http" || api.Args.String("url") != "https://api.example.com/records" || destination.PolicyOf(api.Common) != wantDefault {
		t.Errorf("api defaults = %+v", destination.PolicyOf(api.Common))
	}
	if got := api.Args.StringMap("headers")["Authorization"]; got != "Bearer ABC" {
		t.Errorf("header = %q", got)
	}

	s := cfg.Syncs[0]
	if s.Model != users || s.Destination != crm || s.Object != "contacts" || s.Key != "external_id" ||
		s.Mode != ModeUpdate || s.DeleteBehavior != DeleteDelete || s.FailureThreshold != 0.05 {
		t.Errorf("sync = %+v", s)
	}
	if len(s.Mapping) != 2 || s.Mapping[0] != (Field{"email", "email", s.Mapping[0].Range}) || s.Mapping[1].Field != "full_name" || s.Mapping[1].Column != "name" {
		t.Errorf("mapping = %+v (want sorted by field)", s.Mapping)
	}
	if s.Mapping[0].Range.Start.Line != 11 || s.Mapping[1].Range.Start.Line != 10 {
		t.Errorf("mapping ranges = %v, %v", s.Mapping[0].Range, s.Mapping[1].Range)
	}
	if len(s.Excludes) != 2 {
		t.Fatalf("excludes = %+v", s.Excludes)
	}
	r := s.Excludes[0]
	if r.Name != "missing_email" || r.Reason != "the CRM rejects contacts without a valid email" ||
		r.Expr != "row.email == null || !row.email.contains('@')" || string(r.Raw) != `"`+r.Expr+`"` ||
		r.Range.Start.Line != 14 || r.Range.Start.Column != 14 {
		t.Errorf("rule = %+v (raw %q)", r, r.Raw)
	}
	if h := s.Excludes[1]; h.Expr != "row.email.endsWith('@example.com')\n" ||
		string(h.Raw) != "<<-CEL\n      row.email.endsWith('@example.com')\n    CEL" {
		t.Errorf("heredoc rule = %q, raw %q", h.Expr, h.Raw)
	}
	if !reflect.DeepEqual(s.SensitiveFields, []string{"email"}) || s.RedactValues {
		t.Errorf("sensitive fields = %v, redact values = %v", s.SensitiveFields, s.RedactValues)
	}
	d := cfg.Syncs[1]
	if d.Mode != ModeUpsert || d.DeleteBehavior != DeleteNothing || d.FailureThreshold != 1 || d.Mapping != nil || d.Excludes != nil ||
		d.SensitiveFields != nil || !d.RedactValues {
		t.Errorf("sync defaults = %+v", d)
	}

	test := cfg.Tests[0]
	wantRows := []map[string]any{
		{"id": int64(1), "email": "a@b.c", "score": 1.5, "active": true, "note": nil},
		{"id": int64(2), "email": "nope", "score": int64(2), "active": false, "note": "x"},
	}
	if test.Sync != s || test.Fixtures != "testdata/users" || len(test.Tables) != 1 || test.Tables[0].Name != "users" ||
		!reflect.DeepEqual(test.Tables[0].Rows, wantRows) {
		t.Errorf("test = %+v", test)
	}
	if !reflect.DeepEqual(test.ExpectExcluded, map[string]string{"2": "missing_email"}) ||
		!reflect.DeepEqual(test.ExpectSent, []string{"1", "3"}) ||
		!reflect.DeepEqual(test.ExpectRows, map[string]map[string]any{"1": {"email": "a@b.c", "full_name": nil}}) {
		t.Errorf("expectations = %v, %v, %v", test.ExpectExcluded, test.ExpectSent, test.ExpectRows)
	}

	if len(cfg.Files) != 2 || cfg.Files[filepath.Join("testdata/valid/full", "main.hcl")] == nil {
		t.Errorf("Files = %v", cfg.Files)
	}
}

// TestExpectSentNull checks that a null key is named as such, not as "a
// value of unknown type".
func TestExpectSentNull(t *testing.T) {
	_, diags := loadSrc(t, map[string]string{"main.hcl": "test \"t\" {\n  sync        = sync.s\n  expect_sent = [\"1\", null]\n}\n"})
	var details []string
	for _, d := range diags {
		details = append(details, d.Detail)
	}
	if all := strings.Join(details, "\n"); !strings.Contains(all, `must be strings or numbers, not null.`) {
		t.Errorf("details:\n%s", all)
	}
}

// httpSyncSrc is a config of one sync of an embedded model to an http
// destination, with destExtra and syncExtra (a line each, or "") in those
// blocks and object (an expression) as the sync's object.
func httpSyncSrc(destExtra, object, syncExtra string) string {
	return `
source "w" {
  type     = "embedded"
  fixtures = "data"
}
model "m" {
  source      = source.w
  query       = "SELECT 1 AS id"
  primary_key = "id"
}
destination "d" {
  type = "http"
  url  = "http://127.0.0.1:1/x"
  ` + destExtra + `
}
sync "s" {
  model       = model.m
  destination = destination.d
  object      = ` + object + `
  key         = "id"
  mapping     = { id = "id" }
  ` + syncExtra + `
}
`
}

// TestHostileValuesClipped: a value quoted back in an error is cut to a
// few hundred bytes, however long the config's.
func TestHostileValuesClipped(t *testing.T) {
	long := strings.Repeat("9", 100_000)
	_, diags := loadSrc(t, map[string]string{"main.hcl": httpSyncSrc(`rate_limit = "`+long+`/s"`, `"o"`, `log_accepted = "x`+long+`"`)})
	if !diags.HasErrors() {
		t.Fatal("loaded without an error")
	}
	var seen []string
	for _, d := range diags {
		seen = append(seen, d.Summary)
		if len(d.Detail) > 1000 {
			t.Errorf("%s: a detail of %d bytes: %.300s…", d.Summary, len(d.Detail), d.Detail)
		}
	}
	if len(diags) < 2 {
		t.Errorf("diagnostics %v, want rate_limit's and log_accepted's", seen)
	}
}

func TestParseLogAccepted(t *testing.T) {
	for in, want := range map[string]int{"all": -1, "none": 0, "0": 0, "1000": 1000} {
		if got, ok := parseLogAccepted(in); !ok || got != want {
			t.Errorf("parseLogAccepted(%q) = %d, %v, want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "+5", "-1", " all ", "5 ", "1e3", "99999999999999999999", "All"} {
		if got, ok := parseLogAccepted(in); ok {
			t.Errorf("parseLogAccepted(%q) = %d, want a refusal", in, got)
		}
	}
}

// TestHugeNumbersRefused: a number whose text runs to millions of digits
// (a 13-character literal, or one a function makes) is refused before
// anything writes it out; one of a thousand digits is taken.
func TestHugeNumbersRefused(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{`"c${1e30000000}"`, "Number out of range"},
		{`"c${-1e-30000000}"`, "Number out of range"},
		{`format("%d", jsondecode("1e30000000"))`, "beyond ±1e1000"},
		{`format("c%s", jsondecode("[{\"a\": 1e30000000}]"))`, "beyond ±1e1000"},
		{`"c${1e999}"`, ""},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			_, diags := loadSrc(t, map[string]string{"main.hcl": httpSyncSrc("", tc.expr, "")})
			got := ""
			for _, d := range diags {
				got += d.Summary + ": " + d.Detail + "\n"
			}
			if tc.want == "" && diags.HasErrors() {
				t.Errorf("refused: %s", got)
			}
			if tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("diags %q, want %q", got, tc.want)
			}
		})
	}
}
