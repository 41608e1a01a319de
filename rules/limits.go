package rules

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/hashicorp/hcl/v2"
)

// Limits on a rule's source. Rules come from a config under review, so
// they are untrusted: these bound the parser's recursion and work (CEL's
// own defaults are 250 levels and 100,000 characters). Evaluation is
// bounded by the cost limit (DefaultCostLimit).
const (
	// MaxRuleLength is the longest rule, in characters (code points).
	MaxRuleLength = 16 << 10
	// MaxRuleNesting is how deeply a rule's parts may nest: parentheses,
	// lists, maps, calls and chains of the same operator (a + b + c is two
	// levels) each add a level.
	MaxRuleNesting = 100
)

// limitOptions applies the limits to a CEL environment.
func limitOptions() []cel.EnvOption {
	return []cel.EnvOption{
		cel.ParserExpressionSizeLimit(MaxRuleLength),
		cel.ParserRecursionLimit(MaxRuleNesting),
	}
}

// checkLength refuses a rule longer than MaxRuleLength before it is parsed.
func checkLength(r Rule) *hcl.Diagnostic {
	n := utf8.RuneCountInString(r.Expr)
	if n <= MaxRuleLength {
		return nil
	}
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Rule Too Long",
		Detail:   fmt.Sprintf("Exclude rule %q is %d characters long; a rule may have at most %d. Split it into several rules.", r.Name, n, MaxRuleLength),
		Subject:  r.Range.Ptr(),
	}
}

// limitDiag rewrites the diagnostic of a CEL issue that is one of the
// limits, so that it names the limit; it leaves others as they are.
func limitDiag(d *hcl.Diagnostic, r Rule, msg string) *hcl.Diagnostic {
	switch {
	case strings.Contains(msg, "max recursion depth exceeded"), strings.Contains(msg, "recursion limit exceeded"):
		d.Summary = "Rule Nested Too Deeply"
		d.Detail = fmt.Sprintf("Exclude rule %q nests more than %d levels deep here (parentheses, lists, maps, calls and chains of operators each add one), the limit for a rule. Simplify it or split it into several rules.", r.Name, MaxRuleNesting)
	case strings.Contains(msg, "expression code point size exceeds limit"):
		d.Summary = "Rule Too Long"
		d.Detail = fmt.Sprintf("Exclude rule %q is longer than %d characters, the limit for a rule. Split it into several rules.", r.Name, MaxRuleLength)
	}
	return d
}
