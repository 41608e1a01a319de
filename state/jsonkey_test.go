package state

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Keys that are not UTF-8 keep their bytes through the failure index's and
// the row logs' JSON; UTF-8 keys are written as before.
func TestKeysKeepTheirBytesInJSON(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, key := range []string{"k\xff", "k\uFFFD", "plain", "", "a\x00b", "\xfe\xff|x"} {
		data, err := json.Marshal(Failure{Key: key, Operation: "upsert", Error: "e", Attempts: 2, FirstFailed: at, LastFailed: at})
		if err != nil {
			t.Fatal(err)
		}
		var f Failure
		if err := strictUnmarshal(data, &f); err != nil {
			t.Fatalf("%q: %v", data, err)
		}
		if f.Key != key || f.Attempts != 2 || !f.LastFailed.Equal(at) {
			t.Errorf("failure %q read back as %+v from %s", key, f, data)
		}
		data, err = json.Marshal(RowLog{Run: 3, Key: key, Operation: "delete", Status: "accepted", Attempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		var r RowLog
		if err := strictUnmarshal(data, &r); err != nil {
			t.Fatalf("%q: %v", data, err)
		}
		if r.Key != key || r.Run != 3 || r.Status != "accepted" {
			t.Errorf("row log %q read back as %+v from %s", key, r, data)
		}
		if isUTF8 := !strings.Contains(string(data), `"bytes"`); isUTF8 != (key != "k\xff" && key != "\xfe\xff|x") {
			t.Errorf("%q written as %s", key, data)
		}
	}
	// Unknown fields are still refused, beside the key and within it.
	for _, bad := range []string{`{"key":"a","run":1,"x":1}`, `{"key":{"bytes":"YQ==","x":1},"run":1}`} {
		var r RowLog
		if err := strictUnmarshal([]byte(bad), &r); err == nil {
			t.Errorf("%s read as %+v", bad, r)
		}
	}
}
