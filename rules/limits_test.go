package rules

import (
	"strings"
	"testing"
)

func TestRuleLimits(t *testing.T) {
	tests := []struct {
		name, expr, summary, limit string
	}{
		{"60,000 parentheses", strings.Repeat("(", 60_000) + "row.active" + strings.Repeat(")", 60_000), "Rule Too Long", "16384"},
		{"long list", "row.id in [" + strings.Repeat("1, ", 6000) + "1]", "Rule Too Long", "16384"},
		{"parentheses", strings.Repeat("(", MaxRuleNesting+1) + "row.active" + strings.Repeat(")", MaxRuleNesting+1), "Rule Nested Too Deeply", "100"},
		{"lists", "row.id in " + strings.Repeat("[", 200) + strings.Repeat("]", 200), "Rule Nested Too Deeply", "100"},
		{"sum chain", "row.id == 1" + strings.Repeat(" + 1", 500), "Rule Nested Too Deeply", "100"},
		{"call chain", "row.email" + strings.Repeat(".lowerAscii()", 500) + " == 'a'", "Rule Nested Too Deeply", "100"},
		{"conditionals", strings.Repeat("row.active ? true : ", 200) + "false", "Rule Nested Too Deeply", "100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := quoted("deep", tt.expr)
			_, diags := Compile(testColumns, []Rule{r})
			if len(diags) != 1 || diags[0].Summary != tt.summary {
				t.Fatalf("diags = %v, want one %q", diags, tt.summary)
			}
			d := diags[0]
			if !strings.Contains(d.Detail, tt.limit) || !strings.Contains(d.Detail, `"deep"`) {
				t.Errorf("the detail does not name the rule and the limit %s: %s", tt.limit, d.Detail)
			}
			if d.Subject == nil || d.Subject.Filename != "syncs.hcl" || d.Subject.Start.Line != 10 {
				t.Errorf("subject = %v, want syncs.hcl line 10", d.Subject)
			}
		})
	}
}

func TestRulesWithinLimits(t *testing.T) {
	for _, expr := range []string{
		strings.Repeat("(", 40) + "row.active" + strings.Repeat(")", 40),
		"row.id == 1" + strings.Repeat(" + 1", 40),
		"row.id in [" + strings.Repeat("1, ", 3000) + "1]",
		"row.active" + strings.Repeat(" || row.active", 500),
		"row.email == null || !row.email.contains('@') || row.email.endsWith('.invalid')",
	} {
		if _, diags := Compile(testColumns, []Rule{quoted("ok", expr)}); diags.HasErrors() {
			t.Errorf("%.60s…: %s", expr, diags.Error())
		}
	}
}
