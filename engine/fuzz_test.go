package engine

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// checkFixtureDiags fails unless every diagnostic points at a line of a
// fixture file and says what to do.
func checkFixtureDiags(t *testing.T, diags hcl.Diagnostics) {
	t.Helper()
	for _, d := range diags {
		switch {
		case d.Subject == nil || d.Subject.Filename == "" || d.Subject.Start.Line < 1:
			t.Errorf("diagnostic %q without position: %s", d.Summary, d.Detail)
		case d.Summary == "" || !strings.HasSuffix(d.Detail, "."):
			t.Errorf("diagnostic %q is not a full sentence: %q", d.Summary, d.Detail)
		case strings.Contains(d.Detail, "goroutine ") || strings.Contains(d.Detail, "panic"):
			t.Errorf("diagnostic %q leaks a Go panic: %s", d.Summary, d.Detail)
		}
	}
}

// countNonNull returns the number of rows of table t and, per row in
// scan order, how many of its values are not NULL.
func countNonNull(t *testing.T, e *Embedded, table string) []int {
	t.Helper()
	_, rows := collect(t, e, "SELECT * FROM "+table)
	out := make([]int, len(rows))
	for i, r := range rows {
		for _, v := range r {
			if v != nil {
				out[i]++
			}
		}
	}
	return out
}

// FuzzLoadCSV loads one fuzzed CSV fixture: it either fails with a
// positioned diagnostic or loads every record, no non-empty cell lost.
func FuzzLoadCSV(f *testing.F) {
	for _, s := range []string{
		"id,name\n1,ann\n2,bob\n",
		"id,name\r\n1,ann\r\n2,bob\r\n",
		"\ufeffid,name\n1,ann\n",
		"",
		"\n",
		"id\n",
		"id,id\n1,2\n",
		"id,ID\n1,2\n",
		"a,,b\n1,2,3\n",
		"x\nNaN\nInf\n-Inf\n1e400\n99999999999999999999\n",
		"x\n1\n\n2\n",
		"x,y\n\"multi\nline\",2\n3,4\n",
		"x\n\"unterminated\n",
		"x\n2024-02-30\n2024-01-01T00:00:00Z\n",
		"x;y\n1;2\n",
		"é,ü\n1,2\n",
		"select,from\n1,2\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		dir := writeFixtures(t, map[string]string{"t.csv": src})
		e := NewEmbedded()
		defer e.Close()
		diags := e.LoadDir(dir, nil)
		checkFixtureDiags(t, diags)
		if diags.HasErrors() {
			return
		}
		r := csv.NewReader(strings.NewReader(strings.TrimPrefix(src, string(utf8BOM))))
		r.FieldsPerRecord = -1
		recs, err := r.ReadAll()
		if err != nil || len(recs) == 0 {
			t.Fatalf("loaded a CSV that does not parse (%v)", err)
		}
		got := countNonNull(t, e, "t")
		if len(got) != len(recs)-1 {
			t.Fatalf("loaded %d rows of %d", len(got), len(recs)-1)
		}
		// Rows come back in insertion order from a memory table.
		for i, rec := range recs[1:] {
			want := 0
			for _, s := range rec {
				if s != "" {
					want++
				}
			}
			if got[i] != want {
				t.Errorf("row %d: %d non-null values, want %d", i+1, got[i], want)
			}
		}
	})
}

// FuzzLoadJSONL loads one fuzzed JSONL fixture: it either fails with a
// positioned diagnostic or loads one row per non-blank line.
func FuzzLoadJSONL(f *testing.F) {
	for _, s := range []string{
		`{"id": 1, "tags": ["a", ["b"]], "o": {"k": [1, {"z": null}]}}` + "\n",
		`{"id": 1}` + "\r\n" + `{"id": 2}` + "\r\n",
		"\ufeff" + `{"id": 1}` + "\n",
		"[1, 2]\n",
		"1\n",
		"null\n",
		`"x"` + "\n",
		`{}` + "\n",
		`{"a": 1} {"a": 2}` + "\n",
		`{"a": 1, "a": 2}` + "\n",
		`{"a": 1, "A": 2}` + "\n",
		`{"a": 1e400}` + "\n",
		`{"a": 123456789012345678901234567890}` + "\n",
		`{"a": 1}` + "\n" + `{"a": "x"}` + "\n" + `{"a": true}` + "\n",
		`{"a": "2024-01-01"}` + "\n" + `{"a": 1}` + "\n",
		`{"": 1}` + "\n",
		`{"a": "\u0000"}` + "\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		dir := writeFixtures(t, map[string]string{"t.jsonl": src})
		e := NewEmbedded()
		defer e.Close()
		diags := e.LoadDir(dir, nil)
		checkFixtureDiags(t, diags)
		if diags.HasErrors() {
			return
		}
		var lines [][]byte
		for _, l := range bytes.Split(bytes.TrimPrefix([]byte(src), utf8BOM), []byte("\n")) {
			if len(bytes.TrimSpace(l)) > 0 {
				lines = append(lines, l)
			}
		}
		got := countNonNull(t, e, "t")
		if len(got) != len(lines) {
			t.Fatalf("loaded %d rows of %d lines", len(got), len(lines))
		}
		for i, l := range lines {
			var obj map[string]any
			if err := json.Unmarshal(l, &obj); err != nil {
				t.Fatalf("loaded line %d, which is not a JSON object: %v", i+1, err)
			}
			want := 0
			for _, v := range obj {
				if v != nil {
					want++
				}
			}
			if got[i] != want {
				t.Errorf("line %d: %d non-null values, want %d", i+1, got[i], want)
			}
		}
	})
}

// FuzzLoadSQL runs one fuzzed SQL fixture: it must not panic, and a
// failure is a diagnostic on a line of the file.
func FuzzLoadSQL(f *testing.F) {
	for _, s := range []string{
		"CREATE TABLE t (id INT); INSERT INTO t VALUES (1), (2);",
		"CREATE TABLE plan (id INT);",
		"CREATE TABLE `plan` (id INT); INSERT INTO `plan` VALUES (1);",
		"CREATE TABLE t (id INT)\nINSERT INTO t VALUES (1);",
		"SELEC 1;",
		"",
		";;;",
		"-- only a comment\n",
		"/* unterminated",
		"CREATE TABLE t (s TEXT); INSERT INTO t VALUES ('unterminated);",
		"DROP TABLE nope;",
		"CREATE TABLE t (id INT);\r\nINSERT INTO t VALUES (1);\r\n",
		"\ufeffCREATE TABLE t (id INT);",
		"CREATE DATABASE other; USE other; CREATE TABLE x (a INT);",
		"SELECT 1/0; SELECT * FROM information_schema.tables;",
		"CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (1);",
		"--\nCREATE TABLE t (id INT);",
		"#x\n/* y */ CREATE TABLE t (id INT);",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		dir := writeFixtures(t, map[string]string{"s.sql": src})
		e := NewEmbedded()
		defer e.Close()
		checkFixtureDiags(t, e.LoadDir(dir, nil))
	})
}
