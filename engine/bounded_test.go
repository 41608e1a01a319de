package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// queryAll runs query on e and returns its rows, or the error of the query
// or of reading its rows.
func queryAll(e *Embedded, query string) ([][]any, error) {
	rows, err := e.Query(context.Background(), query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]any
	for rows.Next() {
		out = append(out, append([]any(nil), rows.Row()...))
	}
	return out, rows.Err()
}

// TestStringFunctionsAreBounded checks that a short model query cannot make
// the engine build an enormous value: each of these would otherwise take
// from tens of megabytes to many gigabytes (or crash the process).
func TestStringFunctionsAreBounded(t *testing.T) {
	e := NewEmbedded()
	defer e.Close()
	if err := e.AddTable("t", []string{"id", "s"}, [][]any{{1, "ab"}}); err != nil {
		t.Fatal(err)
	}
	over := MaxValueBytes + 1
	tests := []struct{ name, query, fn string }{
		{"repeat", fmt.Sprintf("SELECT REPEAT('x', %d)", over), "REPEAT()"},
		{"repeat of a column", "SELECT REPEAT(s, 2000000000) FROM t", "REPEAT()"},
		{"space", "SELECT SPACE(2000000000)", "SPACE()"},
		{"lpad", "SELECT LPAD('x', 2000000000, 'y')", "LPAD()"},
		{"rpad", fmt.Sprintf("SELECT RPAD(s, %d, 'é') FROM t", over), "RPAD()"},
		{"replace", "SELECT REPLACE(REPEAT('a', 1000000), 'a', REPEAT('b', 100))", "REPLACE()"},
		{"regexp_replace", "SELECT REGEXP_REPLACE(REPEAT('a', 100000), 'a', REPEAT('b', 1000))", "REGEXP_REPLACE()"},
		{"concat doubling", "WITH RECURSIVE r(s, n) AS (SELECT CAST('a' AS CHAR(100)), 0 UNION ALL SELECT CONCAT(s, s), n + 1 FROM r WHERE n < 26) SELECT LENGTH(s) FROM r", "CONCAT()"},
		{"hex doubling", "WITH RECURSIVE r(s, n) AS (SELECT CAST('a' AS CHAR(100)), 0 UNION ALL SELECT HEX(s), n + 1 FROM r WHERE n < 26) SELECT LENGTH(s) FROM r", "HEX()"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := queryAll(e, tt.query)
			if err == nil {
				t.Fatalf("%s: no error", tt.query)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.fn) || !strings.Contains(msg, "at most 16 MiB") {
				t.Errorf("%s: error %q does not name %s and the bound", tt.query, msg, tt.fn)
			}
		})
	}
}

// TestBoundedStringFunctionsStillWork checks the wrapped functions give
// MySQL's results below the bound, NULLs and argument errors included.
func TestBoundedStringFunctionsStillWork(t *testing.T) {
	e := NewEmbedded()
	defer e.Close()
	if err := e.AddTable("t", []string{"id", "s"}, [][]any{{1, "ab"}, {2, nil}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ expr, want string }{
		{"REPEAT('ab', 3)", "ababab"},
		{"REPEAT(NULL, 3)", "<nil>"},
		{"SPACE(2)", "  "},
		{"LPAD('x', 4, 'ab')", "abax"},
		{"RPAD('x', 5, 'é')", "xéé"},
		{"LPAD('hello', 2, 'z')", "he"},
		{"REPLACE('a-b-c', '-', '+=')", "a+=b+=c"},
		{"REPLACE('abc', '', 'x')", "abc"},
		{"REGEXP_REPLACE('a1b22', '[0-9]+', '#')", "a#b#"},
		{"CONCAT('a', 1, 'b')", "a1b"},
		{"CONCAT('a', NULL)", "<nil>"},
		{"CONCAT_WS('-', 'a', NULL, 'b')", "a-b"},
		{"HEX('ab')", "6162"},
		{"TO_BASE64('ab')", "YWI="},
		{"(SELECT GROUP_CONCAT(CONCAT(s, '!')) FROM t)", "ab!"},
		{"(SELECT COUNT(*) FROM t WHERE CONCAT(s, 'x') = 'abx')", "1"},
		{"CONCAT(REPEAT('x', FLOOR(RAND() * 3)), 'y') LIKE '%y'", "true"},
	}
	for _, tt := range tests {
		rows, err := queryAll(e, "SELECT "+tt.expr)
		if err != nil {
			t.Errorf("%s: %v", tt.expr, err)
			continue
		}
		if got := fmt.Sprint(rows[0][0]); got != tt.want {
			t.Errorf("%s = %q, want %q", tt.expr, got, tt.want)
		}
	}
}
