package engine

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// JSONL text encoding/json would read with U+FFFD in place of some of it
// is an error at its line: k\xff and k\xfe must not become one key.
func TestJSONLRefusesTextItWouldReplace(t *testing.T) {
	dir := writeFixtures(t, map[string]string{
		"bytes.jsonl":   "{\"id\": \"k\xff\"}\n\n{\"id\": \"k\xfe\"}\n",
		"keybyte.jsonl": "{\"id\": 1}\n{\"i\xffd\": 2}\n",
		"nested.jsonl":  "{\"id\": 1, \"p\": {\"a\": \"\xc3\"}}\n",
		"lone.jsonl":    `{"id": "ok \ud83d\ude00 \\udcff"}` + "\n" + `{"id": "k\udcff"}` + "\n",
		"high.jsonl":    `{"id": "k\ud83d x"}` + "\n",
		"good.jsonl":    `{"id": "\ud83d\ude00 é \\ud800"}` + "\n",
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
		if !strings.Contains(d.Detail, "U+FFFD") || !strings.HasSuffix(d.Detail, ".") {
			t.Errorf("%s: %q does not say what is wrong", d.Subject.Filename, d.Detail)
		}
	}
	want := map[string]int{"bytes.jsonl": 1, "keybyte.jsonl": 2, "nested.jsonl": 1, "lone.jsonl": 2, "high.jsonl": 1}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("diagnostics at %v, want %v\n%s", got, want, diags.Error())
	}
	if len(diags) == 0 || !strings.Contains(diags[0].Detail, "byte 10 of the line is 0xff") {
		t.Errorf("bytes.jsonl: %q does not point at the byte", diags[0].Detail)
	}
	_, rows := collect(t, e, "SELECT id FROM good")
	if want := [][]any{{"\U0001F600 é \\ud800"}}; !reflect.DeepEqual(rows, want) {
		t.Errorf("good.jsonl: got %q, want %q", rows, want)
	}
}
