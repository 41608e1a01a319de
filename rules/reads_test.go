package rules

import (
	"reflect"
	"strings"
	"testing"
)

func TestReadColumns(t *testing.T) {
	tests := []struct {
		expr string
		cols []string
		all  bool
	}{
		{`row.email == "x"`, []string{"email"}, false},
		{`.row.id == 7`, []string{"id"}, false},
		{`has(row.score) && row.score > 1.0`, []string{"score"}, false},
		{`row.props.tier == "gold"`, []string{"props"}, false},
		{`row.email.lowerAscii().contains("a") || row.active`, []string{"email", "active"}, false},
		// Model order, whatever the order of use.
		{`row.score > 1.0 && row.id == 1`, []string{"id", "score"}, false},
		// A name inside a string literal or a comment is not a read.
		{`row.email == "id active signed_up"`, []string{"email"}, false},
		{"row.id == 1 // row.avatar", []string{"id"}, false},
		{`"row.balance" == "x"`, nil, false},
		// Selections inside macros and comprehensions still name their column.
		{`[1, 2].exists(x, x == row.id)`, []string{"id"}, false},
		// The row used other than by selecting a named column: any column.
		{`dyn(row)["em" + "ail"] == "x"`, nil, true},
		{`dyn(row).email == "x"`, nil, true},
		{`has(dyn(row).email)`, nil, true},
		{`row == row`, nil, true},
		{`[row].exists(r, r.email == "x")`, nil, true},
		{`[row, 1][0]["id"] == 7`, nil, true},
		{`{"a": row}["a"].email == "x" && row.id == 1`, []string{"id"}, true},
		// A comprehension variable named row is not the row: it hides it.
		{`[1].exists(row, row == 1)`, nil, false},
		{`[{"id": 1}].exists(row, row.id == 1) || row.email == "x"`, []string{"email"}, false},
		// What does not compile may read anything.
		{`row.nope == 1`, nil, true},
		{`row.id +`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got := ReadColumns(testColumns, tt.expr)
			if got.All != tt.all {
				t.Errorf("All = %v, want %v", got.All, tt.all)
			}
			if !tt.all && !reflect.DeepEqual(got.Columns, tt.cols) {
				t.Errorf("Columns = %q, want %q", got.Columns, tt.cols)
			}
		})
	}
}

// TestRowIsNoValueAtRunTime pins why Compile refuses a rule using the row
// other than by selecting a column (TestRowAsValueRefused): the row is no
// CEL value, so such a rule, prepared without that check, fails on every
// row. Should that change, ReadColumns already counts such a rule as
// reading every column (TestReadColumns).
func TestRowIsNoValueAtRunTime(t *testing.T) {
	env, err := newEnv(testColumns)
	if err != nil {
		t.Fatal(err)
	}
	for _, expr := range []string{`dyn(row)["em" + "ail"] == "a@x.io"`, `[row][0].email == "a@x.io"`, `row == row`} {
		checked, iss := env.Compile(expr)
		if iss != nil && iss.Err() != nil {
			t.Fatalf("%s: %v", expr, iss.Err())
		}
		prg, err := env.Program(checked)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		out, _, err := prg.Eval(&rowData{cols: testColumns, vals: testRow})
		if err == nil {
			t.Fatalf("%s returned %v, want an error", expr, out)
		}
		// The error must not carry the row's values.
		if msg := err.Error(); strings.Contains(msg, "a@x.io") || strings.Contains(msg, "gold") {
			t.Errorf("%s: the error prints the row's values: %s", expr, msg)
		}
	}
}
