package reconcile

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
)

var updateBadPlans = flag.Bool("update-badplans", false, "regenerate testdata/badplans from badPlanCases")

// samplePlan is a small plan of two syncs with every kind of value.
func samplePlan() *Plan {
	ts := time.Date(2026, 11, 28, 10, 0, 0, 123456789, time.UTC)
	return &Plan{
		FormatVersion: FormatVersion, Lineage: "abc", Serial: 7, ConfigHash: "cfg", Created: ts,
		Syncs: []*SyncPlan{
			{Name: "users", Model: "m", Destination: "d", Object: "contacts", KeyField: "id", Fields: []string{"email", "n"},
				Mode: "upsert", DeleteBehavior: "delete", Add: 2, Remove: 1, Excluded: map[string]int{"r": 1},
				Changes: []Change{
					{Action: ActionRemove, Key: "9", Op: destination.OpDelete, KeyValue: int64(9), Before: map[string]any{"email": "z@x", "n": 1.5}},
					{Action: ActionAdd, Key: "1", Op: destination.OpUpsert, KeyValue: int64(1), Hash: 42, After: map[string]any{"email": "a@x", "n": int64(-3), "id": int64(1)}},
					{Action: ActionAdd, Key: "2", Op: destination.OpUpsert, KeyValue: int64(2), Hash: 43, After: map[string]any{"email": nil, "n": true, "b": []byte{0, 1, 255}, "t": ts, "id": int64(2)}},
				}},
			{Name: "other", Model: "m", Destination: "d", Object: "o", KeyField: "k", Fields: []string{"v"}, Mode: "upsert", DeleteBehavior: "nothing", Retry: 1,
				Changes: []Change{{Action: ActionRetry, Key: "x", Op: destination.OpUpsert, KeyValue: "x", After: map[string]any{"v": "é", "k": "x"}, LastError: "boom", Attempts: 3}}},
		},
	}
}

// reseal recomputes a saved plan's trailer, as someone editing it would.
func reseal(b []byte) []byte {
	body := b[:len(b)-planTrailer]
	sum := sha256.Sum256(body)
	return append(append(bytes.Clone(body), planSumMagic...), sum[:]...)
}

// headerEnd is the offset just past a saved plan's header chunk.
func headerEnd(b []byte) int {
	return len(planMagic) + chunkHeader + int(binary.LittleEndian.Uint32(b[len(planMagic)+8:]))
}

// rewriteHeader replaces the header chunk's JSON after edit.
func rewriteHeader(t *testing.T, b []byte, edit func(string) string) []byte {
	var buf []byte
	raw, _, err := readChunk(bytes.NewReader(b), int64(len(planMagic)), &buf)
	if err != nil {
		t.Fatal(err)
	}
	chunk, err := encodeChunk(0, []byte(edit(string(raw))), methodFlate, ActionRemove)
	if err != nil {
		t.Fatal(err)
	}
	out := append([]byte(planMagic), chunk...)
	return reseal(append(out, b[headerEnd(b):]...))
}

// badPlanCases derive each bad plan from a good one; the value is the
// message ReadFile must refuse it with.
var badPlanCases = map[string]struct {
	want string
	make func(t *testing.T, good []byte) []byte
}{
	"empty":           {"is not a backflow plan file", func(*testing.T, []byte) []byte { return nil }},
	"garbage":         {"is not a backflow plan file", func(*testing.T, []byte) []byte { return []byte("this is not a plan\n") }},
	"format-1-json":   {"written by an older backflow (plan format 1)", func(*testing.T, []byte) []byte { return []byte(`{"checksum":"sha256:00","plan":{}}`) }},
	"magic-only":      {"cut short or damaged", func(*testing.T, []byte) []byte { return []byte(planMagic) }},
	"truncated":       {"modified or damaged after it was written (cut short)", func(_ *testing.T, g []byte) []byte { return g[:len(g)-10] }},
	"truncated-half":  {"modified or damaged after it was written", func(_ *testing.T, g []byte) []byte { return g[:len(g)/2] }},
	"flipped-bit":     {"checksum mismatch", func(_ *testing.T, g []byte) []byte { g = bytes.Clone(g); g[len(g)-planTrailer-5] ^= 1; return g }},
	"flipped-trailer": {"checksum mismatch", func(_ *testing.T, g []byte) []byte { g = bytes.Clone(g); g[len(g)-1] ^= 1; return g }},
	"resealed-flipped-chunk": {"a chunk of changes is damaged", func(_ *testing.T, g []byte) []byte {
		g = bytes.Clone(g)
		g[len(g)-planTrailer-3] ^= 0x10
		return reseal(g)
	}},
	"newer-format": {`format version "9.0" is not supported`, func(t *testing.T, g []byte) []byte {
		return rewriteHeader(t, g, func(s string) string {
			return strings.Replace(s, `"format_version":"`+FormatVersion+`"`, `"format_version":"9.0"`, 1)
		})
	}},
	"header-not-json": {"is not a backflow plan file", func(t *testing.T, g []byte) []byte {
		return rewriteHeader(t, g, func(string) string { return "[1,2" })
	}},
	"counts-too-high": {"changes missing", func(t *testing.T, g []byte) []byte {
		return rewriteHeader(t, g, func(s string) string { return strings.Replace(s, `"changes":[3,1]`, `"changes":[3,9]`, 1) })
	}},
	"counts-too-low": {"are not what its changes hold", func(t *testing.T, g []byte) []byte {
		return rewriteHeader(t, g, func(s string) string { return strings.Replace(s, `"changes":[3,1]`, `"changes":[3,0]`, 1) })
	}},
	"counts-missing-sync": {"change counts do not match the syncs", func(t *testing.T, g []byte) []byte {
		return rewriteHeader(t, g, func(s string) string { return strings.Replace(s, `"changes":[3,1]`, `"changes":[3]`, 1) })
	}},
	"chunk-split-count": {"a chunk of changes is damaged", func(t *testing.T, g []byte) []byte {
		// The second sync's single chunk claims two changes.
		g = bytes.Clone(g)
		off := len(g) - planTrailer
		for o := headerEnd(g); o < off; {
			n := binary.LittleEndian.Uint32(g[o+8:])
			next := o + chunkHeader + int(n)
			if next == off {
				binary.LittleEndian.PutUint32(g[o:], 2)
			}
			o = next
		}
		return reseal(g)
	}},
}

// TestBadPlanFiles reads every damaged, cut, edited or foreign plan file
// of testdata/badplans and checks the message it is refused with (the
// folder's expect file); a FIFO, a folder and a missing file are made here.
// `go test ./reconcile -run TestBadPlanFiles -update-badplans` regenerates
// the corpus from badPlanCases.
func TestBadPlanFiles(t *testing.T) {
	if *updateBadPlans {
		good := filepath.Join(t.TempDir(), "good")
		if err := samplePlan().WriteFile(good); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(good)
		if err != nil {
			t.Fatal(err)
		}
		os.RemoveAll("testdata/badplans")
		for name, c := range badPlanCases {
			d := filepath.Join("testdata/badplans", name)
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, "plan"), c.make(t, data), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, "expect"), []byte(c.want+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	dirs, err := filepath.Glob("testdata/badplans/*")
	if err != nil || len(dirs) < 10 {
		t.Fatalf("bad plan corpus: %d cases, %v", len(dirs), err)
	}
	type tc struct{ name, path, want string }
	var cases []tc
	for _, d := range dirs {
		want, err := os.ReadFile(filepath.Join(d, "expect"))
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, tc{filepath.Base(d), filepath.Join(d, "plan"), strings.TrimSpace(string(want))})
	}
	tmp := t.TempDir()
	fifo := filepath.Join(tmp, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cases = append(cases,
		tc{"fifo", fifo, "is not a regular file"},
		tc{"folder", tmp, "is not a regular file"},
		tc{"missing", filepath.Join(tmp, "nope"), "no such file"},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := ReadFile(c.path)
			if err == nil || p != nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ReadFile = %v, %v; want an error containing %q", p, err, c.want)
			}
		})
	}
}

// FuzzReadPlan feeds arbitrary bytes to the saved-plan reader, seeded with
// the corpus and a good plan (small, and spilled): nothing may panic, and
// a file that decodes must carry a matching checksum.
func FuzzReadPlan(f *testing.F) {
	dirs, _ := filepath.Glob("testdata/badplans/*")
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, "plan")); err == nil {
			f.Add(b)
		}
	}
	dir := f.TempDir()
	good := filepath.Join(dir, "good")
	if err := samplePlan().WriteFile(good); err == nil {
		if b, err := os.ReadFile(good); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "p")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := ReadFile(path)
		if err != nil {
			return
		}
		defer p.Close()
		if len(data) < planTrailer {
			t.Fatalf("a plan read from %d bytes", len(data))
		}
		sum := sha256.Sum256(data[:len(data)-planTrailer])
		if !bytes.Equal(data[len(data)-sha256.Size:], sum[:]) {
			t.Fatalf("a plan read without its checksum: %q", data)
		}
		_ = p.Syncs[0].Each(func(*Change) error { return nil })
	})
}

// FuzzReadPlanBody fuzzes what lies behind the checksum: each input gets
// a valid trailer, so the header, chunk and change decoders see it. Nothing
// may panic or allocate without bound, and a plan that reads must iterate.
func FuzzReadPlanBody(f *testing.F) {
	dir := f.TempDir()
	good := filepath.Join(dir, "good")
	if err := samplePlan().WriteFile(good); err == nil {
		if b, err := os.ReadFile(good); err == nil {
			f.Add(b[:len(b)-planTrailer])
		}
	}
	f.Add([]byte(planMagic))
	f.Fuzz(func(t *testing.T, body []byte) {
		path := filepath.Join(dir, "p")
		sum := sha256.Sum256(body)
		data := append(append(bytes.Clone(body), planSumMagic...), sum[:]...)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, spill := range []int{0, 1 << 20} {
			old := SpillAfter
			SpillAfter = spill
			p, err := ReadFile(path)
			SpillAfter = old
			if err != nil {
				continue
			}
			for _, sp := range p.Syncs {
				_ = sp.Each(func(*Change) error { return nil })
				// As a streamed apply reads it: without Before values.
				r := sp.windows(2, 3, false)
				for {
					_, back, ok := r.next()
					if !ok {
						break
					}
					back()
				}
				_ = r.close()
			}
			p.Close()
		}
	})
}
