package engine

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/schema"
)

// Numbers a float64 would not give back as written load exactly: as a
// DECIMAL column, never rounded into one another.
func TestFixtureNumbersAreNeverRounded(t *testing.T) {
	dir := writeFixtures(t, map[string]string{
		"ks.jsonl": `{"id": 12345678901234567890, "v": "a"}` + "\n" +
			`{"id": 12345678901234567891, "v": "b"}` + "\n" + `{"id": 3, "v": "c"}` + "\n",
		"vals.jsonl": `{"id": 1, "v": 12345678901234567891, "f": 1.5, "x": 1e3}` + "\n" +
			`{"id": 2, "v": 9007199254740993, "f": 0.12345678901234567891, "x": 2.5}` + "\n",
	})
	e := NewEmbedded()
	defer e.Close()
	mustLoad(t, e, dir, nil)

	cols, rows := collect(t, e, "SELECT id, v, f, x FROM vals ORDER BY id")
	types := []schema.Type{schema.TypeInt, schema.TypeDecimal, schema.TypeDecimal, schema.TypeFloat}
	for i, c := range cols {
		if c.Type != types[i] {
			t.Errorf("vals.jsonl column %s: %s (%s), want %s", c.Name, c.Type, c.DBType, types[i])
		}
	}
	want := [][]any{
		{int64(1), "12345678901234567891", "1.50000000000000000000", 1000.0},
		{int64(2), "9007199254740993", "0.12345678901234567891", 2.5},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("vals.jsonl rows:\n got %#v\nwant %#v", rows, want)
	}

	_, rows = collect(t, e, "SELECT id, v FROM ks ORDER BY v")
	want = [][]any{{"12345678901234567890", "a"}, {"12345678901234567891", "b"}, {"3", "c"}}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("ks.jsonl rows:\n got %#v\nwant %#v", rows, want)
	}

	csvDir := writeFixtures(t, map[string]string{
		"vals.csv": "id,v\n1,12345678901234567891\n2,9007199254740993\n",
		"ks.csv":   "id,v\n12345678901234567890,a\n12345678901234567891,b\n3,c\n",
	})
	e2 := NewEmbedded()
	defer e2.Close()
	mustLoad(t, e2, csvDir, nil)
	cols, rows = collect(t, e2, "SELECT id, v FROM vals ORDER BY id")
	if cols[1].Type != schema.TypeDecimal {
		t.Errorf("vals.csv column v: %s (%s), want decimal", cols[1].Type, cols[1].DBType)
	}
	if want := [][]any{{int64(1), "12345678901234567891"}, {int64(2), "9007199254740993"}}; !reflect.DeepEqual(rows, want) {
		t.Errorf("vals.csv rows:\n got %#v\nwant %#v", rows, want)
	}
	cols, rows = collect(t, e2, "SELECT id, v FROM ks ORDER BY v")
	if cols[0].Type != schema.TypeDecimal {
		t.Errorf("ks.csv column id: %s (%s), want decimal", cols[0].Type, cols[0].DBType)
	}
	if want := [][]any{{"12345678901234567890", "a"}, {"12345678901234567891", "b"}, {"3", "c"}}; !reflect.DeepEqual(rows, want) {
		t.Errorf("ks.csv rows:\n got %#v\nwant %#v", rows, want)
	}
}

// A column typed in column_types that cannot hold a value exactly is an
// error at the value's file and line, never a rounded value.
func TestTypedColumnRefusesInexactNumbers(t *testing.T) {
	dir := writeFixtures(t, map[string]string{
		"i.csv":   "v\n1\n12345678901234567891\n",
		"f.csv":   "v\n1.5\n9007199254740993\n",
		"i.jsonl": "{\"v\": 1}\n{\"v\": 12345678901234567891}\n",
		"f.jsonl": "{\"v\": 1.5}\n\n{\"v\": 9007199254740993}\n",
		"g.jsonl": "{\"v\": 1.5}\n{\"v\": 0.12345678901234567891}\n",
		"d.jsonl": "{\"v\": 1.5e3}\n{\"v\": 12345678901234567891}\n",
	})
	e := NewEmbedded()
	defer e.Close()
	diags := e.LoadDir(dir, map[string]map[string]string{
		"i": {"v": "int"}, "f": {"v": "float"}, "g": {"v": "double"}, "d": {"v": "decimal"},
	})
	got := map[string]int{}
	for _, d := range diags {
		if d.Subject == nil {
			t.Fatalf("diagnostic without a file: %s", d.Error())
		}
		got[filepath.Base(d.Subject.Filename)] = d.Subject.Start.Line
		if !strings.Contains(d.Detail, "type decimal holds it exactly") {
			t.Errorf("%s: %q does not say what to do", d.Subject.Filename, d.Detail)
		}
	}
	want := map[string]int{"i.csv": 3, "f.csv": 3, "i.jsonl": 2, "f.jsonl": 3, "g.jsonl": 2}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("diagnostics at %v, want %v\n%s", got, want, diags.Error())
	}
	_, rows := collect(t, e, "SELECT v FROM d ORDER BY v")
	if want := [][]any{{"1500"}, {"12345678901234567891"}}; !reflect.DeepEqual(rows, want) {
		t.Errorf("decimal column: got %#v, want %#v", rows, want)
	}
}
