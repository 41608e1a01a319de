package reconcile

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/destination"
)

// bombPlan writes a well-formed saved plan (chunk CRCs and the file's
// SHA-256 right) of one sync whose header says adds to add and holds
// chunks chunks of one add each, every one an email value of valueBytes
// bytes, which deflate stores in a few kilobytes: what a small file can
// make a reader decode.
func bombPlan(t *testing.T, adds, chunks, valueBytes int) string {
	t.Helper()
	sp := &SyncPlan{Name: "users", Model: "m", Destination: "d", Object: "contacts", KeyField: "id",
		Fields: []string{"email"}, Mode: "upsert", DeleteBehavior: "delete", Add: adds, Rows: adds}
	p := &Plan{FormatVersion: FormatVersion, Lineage: "abc", Serial: 7, ConfigHash: "cfg", Syncs: []*SyncPlan{sp}}
	path := filepath.Join(t.TempDir(), "bomb.plan")
	writeBomb(t, path, p, chunks, valueBytes)
	return path
}

// writeBomb writes to path the header of p, whose one sync says it holds
// chunks changes, then chunks chunks of one add each (the sync's field
// "email" a value of valueBytes bytes).
func writeBomb(t *testing.T, path string, p *Plan, chunks, valueBytes int) {
	t.Helper()
	sp := p.Syncs[0]
	body, err := json.Marshal(planHeader{Plan: p, Changes: []int{chunks}})
	if err != nil {
		t.Fatal(err)
	}
	head, err := encodeChunk(0, body, methodFlate, ActionRemove)
	if err != nil {
		t.Fatal(err)
	}
	out := append([]byte(planMagic), head...)
	fc := newFieldCodec(sp.Fields, sp.KeyField)
	big := strings.Repeat("a", valueBytes)
	for i := range chunks {
		c := Change{Action: ActionAdd, Key: fmt.Sprint(i), Op: destination.OpUpsert, KeyValue: int64(i),
			After: map[string]any{"email": big, sp.KeyField: int64(i)}}
		raw, err := appendChange(nil, &c, false, fc)
		if err != nil {
			t.Fatal(err)
		}
		chunk, err := encodeChunk(1, raw, methodFlate|flagNoHash, ActionAdd)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, chunk...)
	}
	if err := os.WriteFile(path, reseal(append(out, make([]byte, planTrailer)...)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCraftBombPlan writes, when BACKFLOW_BOMB_FROM names a saved plan of
// one sync, a bomb made of its header to BACKFLOW_BOMB_OUT:
// BACKFLOW_BOMB_CHUNKS chunks (6 unless given) of one add each, an email
// value of 256 MiB less 256 bytes (a chunk decodes to at most 256 MiB)
// stored deflated, the header's counts set to BACKFLOW_BOMB_ADDS (the
// number of chunks unless given). For measuring show and apply by hand
// (/usr/bin/time -v); skipped otherwise.
func TestCraftBombPlan(t *testing.T) {
	from, out := os.Getenv("BACKFLOW_BOMB_FROM"), os.Getenv("BACKFLOW_BOMB_OUT")
	if from == "" || out == "" {
		t.Skip("BACKFLOW_BOMB_FROM and BACKFLOW_BOMB_OUT are not set")
	}
	p, err := ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	chunks := 6
	if c := os.Getenv("BACKFLOW_BOMB_CHUNKS"); c != "" {
		fmt.Sscan(c, &chunks)
	}
	adds := chunks
	if a := os.Getenv("BACKFLOW_BOMB_ADDS"); a != "" {
		fmt.Sscan(a, &adds)
	}
	sp := p.Syncs[0]
	sp.spill, sp.Changes, sp.KeepSynced, sp.MassRemoval = nil, nil, nil, nil
	sp.Add, sp.Change, sp.Remove, sp.Retry = adds, 0, 0, 0
	writeBomb(t, out, p, chunks, maxChunkRaw-256) // the most a chunk decodes to, less its key
}

// liveHeap is the bytes of the heap still reachable.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestSavedPlanCountsMustMatchItsChanges: a header saying 280 adds over
// chunks holding 6 is refused as damaged, not shown as 280 to add.
func TestSavedPlanCountsMustMatchItsChanges(t *testing.T) {
	path := bombPlan(t, 280, 6, 10)
	p, err := ReadFile(path)
	if err == nil || p != nil || !strings.Contains(err.Error(), "modified or damaged") || !strings.Contains(err.Error(), "are not what its changes hold") {
		t.Fatalf("ReadFile = %v, %v; want the plan refused as damaged", p, err)
	}
	if p, err := ReadFile(bombPlan(t, 6, 6, 10)); err != nil {
		t.Fatalf("counts that match: %v", err)
	} else {
		p.Close()
	}
}

// TestSavedPlanBombIsDecodedAChunkAtATime reads a plan of 8 chunks of
// one 8 MiB value each (the file: a few hundred kilobytes): ReadFile
// decodes none of them (a stale plan is refused before), and reading
// them back, or rendering them, holds about one at a time rather than
// all of them.
func TestSavedPlanBombIsDecodedAChunkAtATime(t *testing.T) {
	const value, chunks = 8 << 20, 8
	path := bombPlan(t, chunks, chunks, value)
	if fi, err := os.Stat(path); err != nil || fi.Size() > 1<<20 {
		t.Fatalf("bomb of %v bytes (%v)", fi.Size(), err)
	}
	base := liveHeap()
	p, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sp := p.Syncs[0]
	if grew := liveHeap() - base; len(sp.Changes) != 0 || grew > value/2 {
		t.Fatalf("ReadFile holds %d changes and %d bytes more; want none decoded", len(sp.Changes), grew)
	}
	var most int64
	n := 0
	err = sp.Each(func(c *Change) error {
		n++
		if len(c.After["email"].(string)) != value {
			t.Fatalf("change %d: a value of %d bytes", n, len(c.After["email"].(string)))
		}
		most = max(most, liveHeap()-base)
		return nil
	})
	if err != nil || n != chunks {
		t.Fatalf("read %d changes: %v", n, err)
	}
	t.Logf("reading: %d MiB held at most", most>>20)
	if most > 3*value {
		t.Fatalf("reading the changes held %d MiB at most; want about one chunk's %d MiB", most>>20, value>>20)
	}
	if err := p.Verify(); err != nil {
		t.Fatal(err)
	}
	// Rendering writes each change as it is read: at any write, the
	// change being written and its text, not the ten first of them.
	most = 0
	p.Render(heapWriter{&most, base}, RenderOptions{})
	t.Logf("rendering: %d MiB held at most", most>>20)
	if most == 0 || most > 5*value {
		t.Fatalf("rendering held %d MiB at most; want a few times one chunk's %d MiB", most>>20, value>>20)
	}
}

// heapWriter records the most live heap above base at any write.
type heapWriter struct {
	most *int64
	base int64
}

func (w heapWriter) Write(b []byte) (int, error) {
	*w.most = max(*w.most, liveHeap()-w.base)
	return io.Discard.Write(b)
}
