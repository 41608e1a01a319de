package engine

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// wideRow is n comma-separated fields named or valued prefix0, prefix1, ….
func wideRow(prefix string, n int) string {
	f := make([]string, n)
	for i := range f {
		f[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return strings.Join(f, ",")
}

// wideObject is a JSON object of n keys.
func wideObject(n int) string {
	f := make([]string, n)
	for i := range f {
		f[i] = fmt.Sprintf(`"c%d": %d`, i, i)
	}
	return "{" + strings.Join(f, ", ") + "}"
}

// A fixture wider than MaxFixtureColumns is refused at the line that makes
// it so, before anything is inferred or loaded; one at the limit loads.
func TestWideFixturesAreBounded(t *testing.T) {
	dir := writeFixtures(t, map[string]string{
		"atlimit.csv": wideRow("c", MaxFixtureColumns) + "\n" + wideRow("", MaxFixtureColumns) + "\n",
		"wide.csv":    wideRow("c", 40_000) + "\n" + wideRow("", 40_000) + "\n",
		"wide.jsonl":  "{\"c0\": 1}\n" + wideObject(MaxFixtureColumns) + "\n" + wideObject(MaxFixtureColumns+1) + "\n",
	})
	e := NewEmbedded()
	defer e.Close()
	diags := e.LoadDir(dir, nil)
	got := map[string]int{}
	for _, d := range diags {
		if d.Subject == nil {
			t.Fatalf("diagnostic without a file: %s", d.Error())
		}
		got[filepath.Base(d.Subject.Filename)] = d.Subject.Start.Line
		if d.Summary != "Too Many Fixture Columns" || !strings.Contains(d.Detail, "at most 4096") {
			t.Errorf("%s: %s: %s", d.Subject.Filename, d.Summary, d.Detail)
		}
	}
	if want := map[string]int{"wide.csv": 1, "wide.jsonl": 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("diagnostics at %v, want %v\n%s", got, want, diags.Error())
	}
	cols, rows := collect(t, e, "SELECT * FROM atlimit")
	if len(cols) != MaxFixtureColumns || len(rows) != 1 || rows[0][MaxFixtureColumns-1] != int64(MaxFixtureColumns-1) {
		t.Errorf("atlimit: %d columns, %d rows", len(cols), len(rows))
	}
	if err := e.AddTable("wide", strings.Split(wideRow("c", MaxFixtureColumns+1), ","), nil); err == nil || !strings.Contains(err.Error(), "at most 4096 columns") {
		t.Errorf("AddTable of %d columns: %v", MaxFixtureColumns+1, err)
	}
}
