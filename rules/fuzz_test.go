package rules

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/schema"
)

// heredoc is a rule written as `when = <<-EOT` at line 10, column 12, its
// lines indented by four spaces.
func heredoc(name, expr string) Rule {
	raw := "<<-EOT\n    " + strings.ReplaceAll(expr, "\n", "\n    ") + "\n  EOT\n"
	start := hcl.Pos{Line: 10, Column: 12, Byte: 200}
	return Rule{Name: name, Expr: expr + "\n", Raw: []byte(raw),
		Range: hcl.Range{Filename: "syncs.hcl", Start: start, End: advance(start, []byte(raw))}}
}

// FuzzCompile compiles one fuzzed rule, written quoted or as a heredoc,
// against the test columns plus one fuzzed column name, and evaluates it
// on a full row and on a row of nulls: problems must be diagnostics inside
// the rule's range, and evaluation must not panic.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		"row.email == null || !row.email.contains('@')",
		"row.id / 0 == 1",
		"row.id % 0 == 1",
		"row.score / 0.0 > 1.0",
		"[1, 2, 3].all(x, x > row.id)",
		"[1, 2, 3].exists_one(x, x == 2) && {'a': 1}.exists(k, k == 'a')",
		"[1, 2].map(x, x * 2).filter(y, y > 2).size() > 0",
		"row.signed_up < timestamp('not a time')",
		"row.signed_up - duration('1h') < timestamp('2024-01-01T00:00:00Z')",
		"row.email == 'caf\\u00e9\\n\\t\\\"'",
		"row.émail == 'x'",
		"row.props.a.b.c == 1",
		"row.id == 9223372036854775807 + 1",
		"row.id == 99999999999999999999",
		"has(row.email)",
		"row",
		"1",
		"",
		"row.email.matches('(')",
		"row.email.substring(10) == ''",
		"int(row.email) == 1",
		"'a' * 3",
		"row.id ==",
		"row.id == 1\n&& row.nope",
		"\"unterminated",
		"row['email'] == 'x'",
		"row.email in ['a', 'b']",
		"dyn(row.props) == dyn(1)",
		"size(row.avatar) > 1",
		"row.balance > 1e400",
	} {
		f.Add(s, "extra", false)
		f.Add(s, "", true)
	}
	f.Add("row.in == 1", "in", false)
	f.Add("row.`a-b` == 1", "a-b", true)
	f.Add("row.id == 1", "id", false)
	f.Fuzz(func(t *testing.T, expr, column string, useHeredoc bool) {
		cols := append(append([]schema.Column(nil), testColumns...), schema.Column{Name: column, Type: schema.TypeString, Nullable: true})
		r := quoted("r", expr)
		if useHeredoc {
			r = heredoc("r", expr)
		}
		p, diags := Compile(cols, []Rule{r}, WithCostLimit(10_000))
		for _, d := range diags {
			s := d.Subject
			switch {
			case s == nil:
				t.Errorf("diagnostic %q without position: %s", d.Summary, d.Detail)
			case s.Filename != r.Range.Filename || s.Start.Byte < r.Range.Start.Byte || s.Start.Byte > r.Range.End.Byte ||
				s.Start.Line < r.Range.Start.Line || s.Start.Line > r.Range.End.Line:
				t.Errorf("diagnostic %q at %s, outside the rule at %s", d.Summary, s, r.Range)
			case !strings.HasSuffix(d.Detail, ".") && !strings.HasSuffix(d.Detail, "?"):
				t.Errorf("diagnostic %q is not a full sentence: %q", d.Summary, d.Detail)
			}
		}
		if p == nil {
			if !diags.HasErrors() {
				t.Fatal("no program and no error")
			}
			return
		}
		row := append(append([]any(nil), testRow...), "x")
		_, _ = p.Exclude(row)
		_, _ = p.Exclude(make([]any, len(cols)))
	})
}
