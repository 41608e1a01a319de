package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestRegexpFunctions runs MySQL's regular-expression functions through
// the embedded engine (on the RE2-based stand-in for ICU, see
// internal/icuregex). Expected values are MySQL 8's.
func TestRegexpFunctions(t *testing.T) {
	e := NewEmbedded()
	defer e.Close()
	if err := e.AddTable("words", []string{"id", "w"}, [][]any{{1, "Dog"}, {2, "cat"}, {3, "dogma"}, {4, nil}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ expr, want string }{
		{`REGEXP_LIKE('CamelCase', 'CAMELCASE', 'i')`, "true"},
		{`REGEXP_LIKE('CamelCase', 'CAMELCASE', 'c')`, "false"},
		{`REGEXP_LIKE('CamelCase', 'CAMELCASE', 'ic')`, "false"},
		{`REGEXP_LIKE('a\nb', '^b')`, "false"},
		{`REGEXP_LIKE('a\nb', '^b', 'm')`, "true"},
		{`REGEXP_LIKE('a\nb', 'a.b')`, "false"},
		{`REGEXP_LIKE('a\nb', 'a.b', 'n')`, "true"},
		{`REGEXP_LIKE('abc', '^[a-c]{3}$')`, "true"},
		{`'Michael!' REGEXP '.*'`, "true"},
		{`'new*\n*line' REGEXP 'new\\*.\\*line'`, "false"},
		{`'abc' RLIKE 'B'`, "false"},
		{`REGEXP_LIKE('x', NULL)`, "<nil>"},

		{`REGEXP_INSTR('dog cat dog', 'dog')`, "1"},
		{`REGEXP_INSTR('dog cat dog', 'dog', 2)`, "9"},
		{`REGEXP_INSTR('aa aaa aaaa', 'a{2}')`, "1"},
		{`REGEXP_INSTR('aa aaa aaaa', 'a{4}')`, "8"},
		{`REGEXP_INSTR('dog cat dog', 'dog', 1, 2)`, "9"},
		{`REGEXP_INSTR('dog cat dog', 'dog', 1, 1, 1)`, "4"},
		{`REGEXP_INSTR('dog cat dog', 'dog', 1, 3)`, "0"},
		{`REGEXP_INSTR('héllo wörld', 'w')`, "7"},
		{`REGEXP_INSTR('abc', '^b', 2)`, "0"},
		{`REGEXP_INSTR('abc', 'b', 2)`, "2"},
		{`REGEXP_INSTR('ab cd', '\\bc', 2)`, "4"},
		{`REGEXP_INSTR('abcd', '\\bc', 2)`, "0"},

		{`REGEXP_SUBSTR('abc def ghi', '[a-z]+')`, "abc"},
		{`REGEXP_SUBSTR('abc def ghi', '[a-z]+', 1, 3)`, "ghi"},
		{`REGEXP_SUBSTR('abc def ghi', '[a-z]+', 6)`, "ef"},
		{`REGEXP_SUBSTR('abc def ghi', 'x')`, "<nil>"},
		{`REGEXP_SUBSTR('héllo wörld', 'w.r')`, "wör"},
		{`REGEXP_SUBSTR('Price: 12.50 EUR', '[0-9]+\\.[0-9]+')`, "12.50"},

		{`REGEXP_REPLACE('a b c', 'b', 'X')`, "a X c"},
		{`REGEXP_REPLACE('abc def ghi', '[a-z]+', 'X', 1, 3)`, "abc def X"},
		{`REGEXP_REPLACE('abc def ghi', '[a-z]+', 'X', 5)`, "abc X X"},
		{`REGEXP_REPLACE('abc def ghi', '[a-z]+', 'X', 5, 1)`, "abc X ghi"},
		{`REGEXP_REPLACE('John Smith', '(\\w+) (\\w+)', '$2, $1')`, "Smith, John"},
		{`REGEXP_REPLACE('a.b.c', '\\.', '\\$')`, "a$b$c"},
		{`REGEXP_REPLACE('héllo', 'l', 'L', 4)`, "hélLo"},
		{`REGEXP_REPLACE('AbAb', 'b', 'x', 1, 0, 'i')`, "AxAx"},
		{`REGEXP_REPLACE('AbAb', 'a', 'x', 1, 0, 'i')`, "xbxb"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			_, rows := collect(t, e, "SELECT "+tt.expr)
			if got := fmt.Sprint(rows[0][0]); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}

	_, rows := collect(t, e, "SELECT id FROM words WHERE w REGEXP '^dog' ORDER BY id")
	if fmt.Sprint(rows) != "[[3]]" {
		t.Errorf("REGEXP in WHERE: got %v", rows)
	}
	_, rows = collect(t, e, "SELECT id FROM words WHERE REGEXP_LIKE(w, '^dog', 'i') ORDER BY id")
	if fmt.Sprint(rows) != "[[1] [3]]" {
		t.Errorf("REGEXP_LIKE over a column: got %v", rows)
	}
}

// TestRegexpICUOnlyRefused checks that patterns RE2 cannot run are errors
// naming the problem, not silently different matches.
func TestRegexpICUOnlyRefused(t *testing.T) {
	e := NewEmbedded()
	defer e.Close()
	for _, expr := range []string{
		`REGEXP_LIKE('aa', '(a)\\1')`,
		`REGEXP_LIKE('ab', 'a(?=b)')`,
		`REGEXP_LIKE('ab', '(?<=a)b')`,
		`REGEXP_LIKE('aab', 'a*+b')`,
		`REGEXP_SUBSTR('ab', '(')`,
		`REGEXP_REPLACE('ab', '(a)', '$2')`,
	} {
		rows, err := e.Query(context.Background(), "SELECT "+expr)
		if err == nil {
			for rows.Next() {
			}
			err = rows.Err()
			rows.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "regular expression is invalid") {
			t.Errorf("%s: got error %v, want an invalid regular expression", expr, err)
		}
	}
}
