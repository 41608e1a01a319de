package engine

import "testing"

func TestSubquery(t *testing.T) {
	pg := postgresLexer(true)
	my := mysqlLexer("STRICT_TRANS_TABLES")
	for _, tc := range []struct {
		name  string
		lx    sqlLexer
		query string
		want  string
	}{
		{"plain", my, "  SELECT 1\n", "SELECT 1"},
		{"semicolons", my, "SELECT 1;; \n", "SELECT 1"},
		{"line comment kept", my, "SELECT 1 -- c\n", "SELECT 1 -- c"},
		{"hash comment kept", my, "SELECT 1 # c", "SELECT 1 # c"},
		{"semicolon before a comment", my, "SELECT 1; -- c ;", "SELECT 1 -- c ;"},
		{"semicolons between comments", my, "SELECT 1 /* a */ ;\n# b\n;", "SELECT 1 /* a */ \n# b"},
		{"semicolon in a string", my, "SELECT ';' AS s", "SELECT ';' AS s"},
		{"semicolon in a string before one that ends", my, "SELECT 'a;' AS s;", "SELECT 'a;' AS s"},
		{"backslash-escaped quote", my, `SELECT 'it\'s;' AS s; -- c`, `SELECT 'it\'s;' AS s -- c`},
		{"mysql: --x is no comment", my, "SELECT 1--1;", "SELECT 1--1"},
		{"postgres: # is no comment", pg, "SELECT 1 # 2;", "SELECT 1 # 2"},
		{"postgres: dollar quotes", pg, "SELECT $$;$$; -- c", "SELECT $$;$$ -- c"},
		{"unterminated string only trimmed", my, "SELECT 'a; ", "SELECT 'a"},
	} {
		if got := tc.lx.subquery(tc.query); got != tc.want {
			t.Errorf("%s: subquery(%q) = %q, want %q", tc.name, tc.query, got, tc.want)
		}
	}
}
