package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestEvaluationIsBounded checks expressions that, from a few bytes of
// config, built gigabytes (or overflowed the stack) while loading.
func TestEvaluationIsBounded(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mib.txt"), strings.Repeat("x", 1<<20))
	writeFile(t, filepath.Join(dir, "lines.txt"), strings.Repeat("x\n", 1<<19))
	writeFile(t, filepath.Join(dir, "deep.json"), strings.Repeat("[", 1<<22)+strings.Repeat("]", 1<<22))
	tests := []struct{ expr, summary string }{
		// 1 GB through a loop: 99 s and 2.6 GB of heap before.
		{`join("", [for i in range(1000) : format("%0999999d", i)])`, "For expressions are not supported"},
		{`"%{for i in range(1000)}${file("mib.txt")}%{endfor}"`, "For expressions are not supported"},
		{`jsonencode({for k in range(10) : k => k})`, "For expressions are not supported"},
		{`format("%0999999999d", 1)`, "Config too large"},
		{`format("${strrev(strrev(strrev("%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s%[1]s")))}", file("mib.txt"))`, "Config too large"},
		{`formatlist(file("mib.txt"), range(1000))`, "Config too large"},
		{`indent(1000000000000000000, file("lines.txt"))`, "Config too large"},
		{`join(file("mib.txt"), formatlist("%d", range(1000)))`, "Config too large"},
		{`replace(file("mib.txt"), "x", file("mib.txt"))`, "Config too large"},
		{`regex_replace(file("mib.txt"), "x", "$0$0")`, "Config too large"},
		{`jsonencode(jsondecode(file("deep.json")))`, "Nesting too deep"},
	}
	for _, tt := range tests {
		t.Run(tt.expr[:min(len(tt.expr), 60)], func(t *testing.T) {
			writeFile(t, filepath.Join(dir, "main.hcl"), modelSrc(tt.expr))
			_, diags := Load(dir, testOptions())
			if len(diags) != 1 || diags[0].Summary != tt.summary {
				t.Fatalf("diags = %v, want one %q", diags, tt.summary)
			}
			if s := diags[0].Subject; s == nil || s.Start.Line != 8 {
				t.Errorf("subject = %v, want line 8", s)
			}
		})
	}
}

func TestUsualFunctionsStillWork(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "q.sql"), "select id from users")
	for expr, want := range map[string]string{
		`upper(file("q.sql"))`:                                     "SELECT ID FROM USERS",
		`format("%s-%05d", "a", 7)`:                                "a-00007",
		`join(",", formatlist("%s!", ["a", "b"]))`:                 "a!,b!",
		`jsondecode("{\"a\": [1, [2]]}").a[1][0] == 2 ? "y" : "n"`: "y",
		`regex_replace("abcb", "b", "[$0]")`:                       "a[b]c[b]",
		`replace("a.b.c", ".", "::")`:                              "a::b::c",
		`indent(2, "a\nb")`:                                        "a\n  b",
		`csvdecode("x,y\n1,2")[0].y`:                               "2",
		`regexall("[0-9]", "a1b2")[1]`:                             "2",
	} {
		writeFile(t, filepath.Join(dir, "main.hcl"), modelSrc(expr))
		cfg, diags := Load(dir, testOptions())
		if diags.HasErrors() {
			t.Errorf("%s: %s", expr, diags.Error())
			continue
		}
		if got := cfg.Models[0].Query; got != want {
			t.Errorf("%s = %q, want %q", expr, got, want)
		}
	}
}
