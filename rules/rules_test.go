package rules

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/schema"
)

var testColumns = []schema.Column{
	{Name: "id", Type: schema.TypeInt},
	{Name: "email", Type: schema.TypeString, Nullable: true},
	{Name: "score", Type: schema.TypeFloat, Nullable: true},
	{Name: "active", Type: schema.TypeBool},
	{Name: "avatar", Type: schema.TypeBytes, Nullable: true},
	{Name: "signed_up", Type: schema.TypeTimestamp},
	{Name: "balance", Type: schema.TypeDecimal, Nullable: true},
	{Name: "props", Type: schema.TypeJSON, Nullable: true},
}

var testRow = []any{int64(7), "a@x.io", 1.5, true, []byte("png"),
	time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC), "10.25", `{"tier": "gold", "n": 3}`}

// quoted is a rule written as `when = "<expr>"` at line 10, column 12.
func quoted(name, expr string) Rule {
	raw := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(expr) + `"`
	start := hcl.Pos{Line: 10, Column: 12, Byte: 200}
	return Rule{Name: name, Expr: expr, Raw: []byte(raw),
		Range: hcl.Range{Filename: "syncs.hcl", Start: start, End: advance(start, []byte(raw))}}
}

func TestEveryTypeThroughARule(t *testing.T) {
	tests := []struct {
		expr string
		want bool
	}{
		{"row.id == 7", true},
		{"row.id > 7", false},
		{"row.email.endsWith('x.io')", true},
		{"row.score > 1.0", true},
		{"row.active", true},
		{"!row.active", false},
		{"row.avatar == b'png'", true},
		{"row.signed_up > timestamp('2024-01-01T00:00:00Z')", true},
		{"row.signed_up.getFullYear() == 2023", false},
		{"row.balance >= 10.25", true},
		{"row.props.tier == 'gold'", true},
		{"row.props.n == 3.0", true},
		{"row.email.lowerAscii() == 'a@x.io'", true},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			p, diags := Compile(testColumns, []Rule{quoted("r", tt.expr)})
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			got, err := p.Exclude(testRow)
			if err != nil {
				t.Fatal(err)
			}
			if (got == "r") != tt.want {
				t.Errorf("excluded by %q, want excluded=%v", got, tt.want)
			}
		})
	}
}

func TestNulls(t *testing.T) {
	nullRow := []any{int64(1), nil, nil, false, nil, time.Unix(0, 0).UTC(), nil, nil}
	p, diags := Compile(testColumns, []Rule{
		quoted("no_score", "row.score == null && row.id == 2"),
		quoted("missing_email", "row.email == null || !row.email.contains('@')"),
	})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if got, err := p.Exclude(nullRow); err != nil || got != "missing_email" {
		t.Errorf("null email: got %q, %v", got, err)
	}
	if got, err := p.Exclude(testRow); err != nil || got != "" {
		t.Errorf("full row: got %q, %v", got, err)
	}

	p, diags = Compile(testColumns, []Rule{quoted("bad_email", "!row.email.contains('@')")})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	_, err := p.Exclude(nullRow)
	if err == nil || !strings.Contains(err.Error(), `"bad_email"`) || !strings.Contains(err.Error(), "column email is null") {
		t.Errorf("null column error: %v", err)
	}
}

func TestCostLimit(t *testing.T) {
	expr := "[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, a+b+c > 0)))"
	p, diags := Compile(testColumns, []Rule{quoted("heavy", expr)}, WithCostLimit(100))
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	_, err := p.Exclude(testRow)
	if err == nil || !strings.Contains(err.Error(), `"heavy"`) || !strings.Contains(err.Error(), "cost limit") {
		t.Errorf("cost limit error: %v", err)
	}
	p, _ = Compile(testColumns, []Rule{quoted("heavy", expr)})
	if got, err := p.Exclude(testRow); err != nil || got != "heavy" {
		t.Errorf("default limit: got %q, %v", got, err)
	}
}

func TestCompileDiagnostics(t *testing.T) {
	tests := []struct {
		name    string
		expr    string
		summary string
		detail  string
		column  int // in the file; the expression starts at column 13 (after the quote)
	}{
		{"unknown column", "row.emial == null", "Invalid Exclude Rule", `Did you mean "email"?`, 17},
		{"unknown far", "row.zzzzzzzz == 1", "Invalid Exclude Rule", "Its columns are: id, email", 17},
		{"type error", "row.id + 'x' == 1", "Invalid Exclude Rule", "applies + to values of types (int, string)", 20},
		{"syntax error", "row.id == ", "Invalid Exclude Rule", "Syntax error", 23},
		{"not bool", "row.id + 1", "Rule Must Return Bool", "returns int", 13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := Compile(testColumns, []Rule{quoted("r", tt.expr)})
			if len(diags) == 0 {
				t.Fatal("no diagnostics")
			}
			d := diags[0]
			if d.Summary != tt.summary || !strings.Contains(d.Detail, tt.detail) || !strings.Contains(d.Detail, `"r"`) {
				t.Errorf("got %q / %q", d.Summary, d.Detail)
			}
			if d.Subject == nil || d.Subject.Filename != "syncs.hcl" || d.Subject.Start.Line != 10 || d.Subject.Start.Column != tt.column {
				t.Errorf("subject %v, want syncs.hcl:10,%d", d.Subject, tt.column)
			}
		})
	}
}

func TestAllProblemsReported(t *testing.T) {
	_, diags := Compile(testColumns, []Rule{quoted("a", "row.nope"), quoted("b", "row.id == 1"), quoted("c", "row.id + 'x'")})
	if len(diags) != 2 {
		t.Errorf("got %d diagnostics, want 2:\n%s", len(diags), diags.Error())
	}
}

func TestExprPos(t *testing.T) {
	start := hcl.Pos{Line: 5, Column: 10, Byte: 100}
	tests := []struct {
		name      string
		raw, expr string
		line, col int // CEL position in expr
		want      hcl.Pos
	}{
		{"plain", `"row.a == 1"`, "row.a == 1", 1, 3, hcl.Pos{Line: 5, Column: 14, Byte: 104}},
		{"escaped quotes shift", `"row.a == \"x\" && row.b"`, `row.a == "x" && row.b`, 1, 16, hcl.Pos{Line: 5, Column: 29, Byte: 119}},
		{"escaped backslash", `"'\\d' + row.b"`, `'\d' + row.b`, 1, 7, hcl.Pos{Line: 5, Column: 19, Byte: 109}},
		{"unicode escape", `"'\u00e9' + row.b"`, "'é' + row.b", 1, 6, hcl.Pos{Line: 5, Column: 22, Byte: 112}},
		{"dollar escape", `"'$${x}' + row.b"`, "'${x}' + row.b", 1, 9, hcl.Pos{Line: 5, Column: 21, Byte: 111}},
		{"heredoc", "<<EOT\nrow.a == 1 &&\n  row.b\nEOT", "row.a == 1 &&\n  row.b\n", 2, 2, hcl.Pos{Line: 7, Column: 3, Byte: 122}},
		{"flush heredoc", "<<-EOT\n    row.a == 1 &&\n\n      row.b\n    EOT", "row.a == 1 &&\n\n  row.b\n", 3, 2, hcl.Pos{Line: 8, Column: 7, Byte: 132}},
		{"flush heredoc first line", "<<-EOT\n    row.a\n    EOT", "row.a\n", 1, 3, hcl.Pos{Line: 6, Column: 8, Byte: 114}},
		{"heredoc trimmed expr", "<<EOT\n\n  row.a\nEOT", "row.a", 1, 3, hcl.Pos{Line: 7, Column: 6, Byte: 112}},
		{"no raw", "", "row.a\nrow.b", 2, 1, hcl.Pos{Line: 6, Column: 2, Byte: 107}},
		{"multibyte before", `"'é' == row.b"`, "'é' == row.b", 1, 11, hcl.Pos{Line: 5, Column: 22, Byte: 113}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := exprPos(Rule{Expr: tt.expr, Raw: []byte(tt.raw), Range: hcl.Range{Start: start}}, tt.line, tt.col)
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestHeredocDiagnostic(t *testing.T) {
	raw := "<<-EOT\n    row.email == null ||\n      row.phone == ''\n    EOT"
	expr := "row.email == null ||\n  row.phone == ''\n"
	r := Rule{Name: "h", Expr: expr, Raw: []byte(raw),
		Range: hcl.Range{Filename: "s.hcl", Start: hcl.Pos{Line: 3, Column: 12, Byte: 40}}}
	_, diags := Compile(testColumns, []Rule{r})
	if len(diags) != 1 {
		t.Fatalf("diagnostics: %s", diags.Error())
	}
	// "row.phone": the column name starts at column 11 of file line 5.
	if s := diags[0].Subject; s.Start.Line != 5 || s.Start.Column != 11 || s.End.Column != 16 {
		t.Errorf("subject at %d:%d-%d, want 5:11-16", s.Start.Line, s.Start.Column, s.End.Column)
	}
}

func TestNoRules(t *testing.T) {
	p, diags := Compile(testColumns, nil)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if got, err := p.Exclude(testRow); got != "" || err != nil {
		t.Errorf("got %q, %v", got, err)
	}
}

// BenchmarkExclude evaluates two typical rules per row.
// Run: go test ./rules/ -run '^$' -bench Exclude -benchmem
func BenchmarkExclude(b *testing.B) {
	p, diags := Compile(testColumns, []Rule{
		quoted("missing_email", "row.email == null || !row.email.contains('@')"),
		quoted("low_score", "row.score != null && row.score < 0.5 && row.active"),
	})
	if diags.HasErrors() {
		b.Fatal(diags.Error())
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Exclude(testRow); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCostLimitHoldsOnTheUntrackedFastPath(t *testing.T) {
	// The static estimate of this rule, for values up to boundedSize, fits
	// the limit, so ordinary rows skip run-time cost tracking; a row with a
	// far larger value must still be stopped by the limit.
	p, diags := Compile(testColumns, []Rule{quoted("has_at", "row.email.contains('@') && row.email.contains('zz')")}, WithCostLimit(20000))
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if p.rules[0].fast == nil {
		t.Fatal("a cheap rule should have an untracked program")
	}
	row := append([]any(nil), testRow...)
	row[1] = strings.Repeat("a", 1000) + "@zz"
	if rule, err := p.Exclude(row); err != nil || rule != "has_at" {
		t.Fatalf("small row: %q, %v", rule, err)
	}
	row[1] = strings.Repeat("a", 4<<20)
	if _, err := p.Exclude(row); err == nil || !strings.Contains(err.Error(), "has_at") || !strings.Contains(err.Error(), "cost") {
		t.Fatalf("huge row: %v, want the cost limit error naming the rule", err)
	}
}

// TestTypeErrorsSpeakSQLTypes checks that a type error names the column's
// SQL type and, for MySQL's TINYINT(1), how to treat it as bool — not CEL's
// wrapper(int).
func TestTypeErrorsSpeakSQLTypes(t *testing.T) {
	cols := []schema.Column{{Name: "active", Type: schema.TypeInt, Nullable: true, DBType: "tinyint(1)"}}
	_, diags := Compile(cols, []Rule{quoted("inactive", "row.active == false")})
	if len(diags) != 1 {
		t.Fatalf("diags: %v", diags)
	}
	d := diags[0].Detail
	for _, want := range []string{"applies == to values of types (int, bool)", `Column "active" is TINYINT(1) on the source, seen by rules as int`, `column_types = { active = "bool" }`} {
		if !strings.Contains(d, want) {
			t.Errorf("detail lacks %q:\n%s", want, d)
		}
	}
	if strings.Contains(d, "wrapper") {
		t.Errorf("detail speaks CEL: %s", d)
	}
}

// TestRowAsValueRefused: a rule may read the row only as row.<column> (and
// has(row.<column>)); any other use of the row would fail on every row at
// run time, so Compile refuses it, pointing at the row in the file.
func TestRowAsValueRefused(t *testing.T) {
	tests := []struct {
		expr   string
		column int  // in the file; the expression starts at column 13, after the quote
		typed  bool // refused by the type checker, which places the error itself
	}{
		{`dyn(row)["x"] == 1`, 17, false},
		{`dyn(row)["em" + "ail"] == "a@x.io"`, 17, false},
		{`[row][0].email == "x"`, 14, false},
		{`[row][0]["id"] == 7`, 21, true}, // Row["id"]
		{`row == row`, 13, false},
		{`row.id == 1 && {"a": row}["a"].email == "x"`, 36, false}, // quotes are escaped in the file
		{`has(dyn(row).email)`, 21, false},
		{`dyn(row).exists(k, k == "email")`, 17, false},
		{`row`, 13, false},
		{`.row == dyn(1)`, 14, false},
		// A Row built by the rule (the subject is the construction).
		{`Row{id: 1}.id == 1`, 16, true},
		// Refused by the type checker already, in the same words.
		{`size(row) > 0`, 17, true},
		{`row.all(k, true)`, 13, true},
		{`row["id"] == 7`, 16, true},
		{`row.contains("x")`, 25, true},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			p, diags := Compile(testColumns, []Rule{quoted("r", tt.expr)})
			if !diags.HasErrors() {
				_, err := p.Exclude(testRow)
				t.Fatalf("compiled; on a row: %v", err)
			}
			if len(diags) != 1 {
				t.Fatalf("%d diagnostics, want 1: %s", len(diags), diags.Error())
			}
			d := diags[0]
			for _, want := range []string{`Exclude rule "r" uses the row as a value: read columns as row.<column>`, "has(row.<column>)"} {
				if !strings.Contains(d.Detail, want) {
					t.Errorf("detail lacks %q: %s", want, d.Detail)
				}
			}
			if d.Summary != "Invalid Exclude Rule" {
				t.Errorf("summary %q", d.Summary)
			}
			s := d.Subject
			if s == nil || s.Filename != "syncs.hcl" || s.Start.Line != 10 || s.Start.Column != tt.column {
				t.Fatalf("subject %v, want syncs.hcl:10,%d", s, tt.column)
			}
			// Found by the walk, the subject is the row itself.
			if raw := quoted("r", tt.expr).Raw; !tt.typed && string(raw[s.Start.Byte-200:s.End.Byte-200]) != "row" {
				t.Errorf("subject covers %q, want row", raw[s.Start.Byte-200:s.End.Byte-200])
			}
		})
	}
}

// TestRowSelectionsStillCompile: what Compile accepts of the row.
func TestRowSelectionsStillCompile(t *testing.T) {
	for _, expr := range []string{
		`has(row.email) && row.email == "a@x.io"`,
		`.row.id == 7`,
		`row.props.tier == "gold"`,
		`[1, 7].exists(x, x == row.id)`,
		// A comprehension variable named row hides the row.
		`[7].exists(row, row == 7)`,
	} {
		p, diags := Compile(testColumns, []Rule{quoted("r", expr)})
		if diags.HasErrors() {
			t.Errorf("%s: %s", expr, diags.Error())
			continue
		}
		if got, err := p.Exclude(testRow); err != nil || got != "r" {
			t.Errorf("%s: excluded by %q, %v; want r", expr, got, err)
		}
	}
}
