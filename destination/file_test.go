package destination_test

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/redact"
)

func TestFileAppendsJSONLines(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := destination.Default().Open(ctx, "file", config(t, "file", "log", dir, map[string]any{"path": "out.jsonl"}))
	if err != nil {
		t.Fatal(err)
	}
	o := d.Write(ctx, &destination.Batch{Object: "contacts", KeyField: "id", Fields: []string{"email"}, Records: []destination.Record{
		{Key: "1", Op: destination.OpUpsert, Fields: map[string]any{"email": "a@x"}},
		{Key: "2", Op: destination.OpUpsert, Fields: map[string]any{"email": math.NaN()}},
	}})
	if o.Err != nil || len(o.Results) != 2 || o.Results[0].Err != nil || o.Results[1].Err == nil {
		t.Fatalf("want record 1 accepted and the NaN record rejected, got %+v", o)
	}
	if got := o.Results[1].Err.Error(); !strings.Contains(got, `record "2": encode as JSON: field "email": NaN is not a JSON number`) {
		t.Errorf("the NaN record's error does not name its field: %s", got)
	}
	mustAccept(t, d.Write(ctx, &destination.Batch{Object: "contacts", KeyField: "id", Records: []destination.Record{
		{Key: "3", Op: destination.OpDelete},
	}}), 1)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	f, err := os.Open(filepath.Join(dir, "out.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2: %v", len(lines), lines)
	}
	if lines[0]["key"] != "1" || lines[0]["operation"] != "upsert" || lines[0]["object"] != "contacts" ||
		lines[0]["fields"].(map[string]any)["email"] != "a@x" {
		t.Fatalf("line 1: %v", lines[0])
	}
	if lines[1]["key"] != "3" || lines[1]["operation"] != "delete" || lines[1]["fields"] != nil {
		t.Fatalf("line 2: %v", lines[1])
	}
}

func TestRegistry(t *testing.T) {
	r := destination.NewRegistry()
	if _, err := r.Open(context.Background(), "sqlite", destination.Config{Name: "x"}); err == nil {
		t.Fatal("an empty registry should know no type")
	}
	destination.RegisterBuiltins(r)
	if got, want := r.Types(), destination.Default().Types(); len(got) == 0 || len(got) != len(want) {
		t.Fatalf("RegisterBuiltins gave %v, Default has %v", got, want)
	}
}

// A failed write names the file, whose path may come from env(): it is
// masked like every other message.
func TestFileWriteErrorMasksThePath(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full to fail the write")
	}
	ctx := context.Background()
	cfg := config(t, "file", "log", t.TempDir(), map[string]any{"path": "/dev/full"})
	cfg.Redact = redact.New("/dev/full") // as env() gives it
	d, err := destination.Default().Open(ctx, "file", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	o := d.Write(ctx, &destination.Batch{Object: "contacts", KeyField: "id", Records: []destination.Record{{Key: "1", Op: destination.OpDelete}}})
	if o.Err == nil {
		t.Fatalf("the write to /dev/full did not fail: %+v", o)
	}
	if strings.Contains(o.Err.Error(), "/dev/full") || !strings.Contains(o.Err.Error(), redact.Mask) {
		t.Errorf("error = %s", o.Err)
	}
}
