package state

import (
	"bytes"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func journalPath(s *Store, sync string) string {
	return filepath.Join(s.Dir(), "syncs", sync, "journal")
}

// crashedApply leaves the journal of an apply that checkpointed a, b and a
// failure of c, recorded d after its last checkpoint, then died.
func crashedApply(t *testing.T, s *Store) {
	t.Helper()
	w := begin(t, s, "users", false)
	w.Accept("base", 1, map[string]any{"v": "old"})
	w.Fail(Failure{Key: "c", Operation: "upsert", Error: "e0", Attempts: 2, FirstFailed: time.Unix(100, 0), LastFailed: time.Unix(100, 0)})
	must(t, w.Commit())

	w = begin(t, s, "users", false)
	w.Accept("a", 1, map[string]any{"v": "a"})
	must(t, w.Checkpoint())
	w.Accept("b", 2, map[string]any{"v": "b", "new": true})
	w.Forget("base")
	w.Fail(Failure{Key: "c", Operation: "upsert", Error: "e1", Attempts: 1, FirstFailed: time.Unix(200, 0), LastFailed: time.Unix(200, 0)})
	must(t, w.Checkpoint())
	w.Accept("d", 4, nil) // never checkpointed
	// The process dies: no Commit, no Abort. (Release the descriptors only.)
	_ = w.journal.Close()
	_ = w.base.Close()
}

func checkCrashed(t *testing.T, s *Store) {
	t.Helper()
	hashes, values := contents(t, load(t, s, "users"))
	if !reflect.DeepEqual(hashes, map[string]uint64{"a": 1, "b": 2}) {
		t.Errorf("snapshot after crash = %v", hashes)
	}
	if !reflect.DeepEqual(values["b"], map[string]any{"v": "b", "new": true}) {
		t.Errorf("values of b = %v", values["b"])
	}
	idx, err := s.LoadFailures("users")
	must(t, err)
	if f := idx["c"]; len(idx) != 1 || f == nil || f.Attempts != 3 || f.Error != "e1" ||
		!f.FirstFailed.Equal(time.Unix(100, 0)) || !f.LastFailed.Equal(time.Unix(200, 0)) {
		t.Errorf("failures after crash = %v", idx)
	}
}

func foldIn(t *testing.T, s *Store) {
	t.Helper()
	w := begin(t, s, "users", false)
	if f := w.Failures()["c"]; f == nil || f.Attempts != 3 {
		t.Errorf("Begin did not replay the journal's failures: %v", w.Failures())
	}
	w.Accept("e", 5, nil)
	must(t, w.Commit())
	if _, err := os.Stat(journalPath(s, "users")); !os.IsNotExist(err) {
		t.Errorf("journal left after Commit: %v", err)
	}
	hashes, _ := contents(t, load(t, s, "users"))
	if !reflect.DeepEqual(hashes, map[string]uint64{"a": 1, "b": 2, "e": 5}) {
		t.Errorf("after folding the journal in: %v", hashes)
	}
	idx, err := s.LoadFailures("users")
	must(t, err)
	if f := idx["c"]; len(idx) != 1 || f == nil || f.Attempts != 3 {
		t.Errorf("failures after folding in: %v", idx)
	}
}

func TestJournalReplayAfterCrash(t *testing.T) {
	s := newStore(t)
	crashedApply(t, s)
	checkCrashed(t, s)
	foldIn(t, s)
}

func TestJournalTornRecord(t *testing.T) {
	for name, tear := range map[string]func(path string) error{
		"garbage tail": func(path string) error {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte{40, 0, 0, 0, 1, 2, 3, 4, 'A', 1})
			return err
		},
		"bad checksum": func(path string) error {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte{2, 0, 0, 0, 1, 2, 3, 4, 'F', 0})
			return err
		},
		"half header": func(path string) error {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte{9, 0, 0})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			crashedApply(t, s)
			must(t, tear(journalPath(s, "users")))
			checkCrashed(t, s)
			// A later apply appends after the intact records, which a
			// second crash must not hide behind the torn one.
			w := begin(t, s, "users", false)
			w.Accept("z", 26, nil)
			must(t, w.Checkpoint())
			must(t, w.Abort())
			hashes, _ := contents(t, load(t, s, "users"))
			if !reflect.DeepEqual(hashes, map[string]uint64{"a": 1, "b": 2, "z": 26}) {
				t.Errorf("after appending past a torn record: %v", hashes)
			}
		})
	}
}

func TestJournalTruncatedLastRecord(t *testing.T) {
	s := newStore(t)
	crashedApply(t, s)
	path := journalPath(s, "users")
	info, err := os.Stat(path)
	must(t, err)
	// Cut into the last record (the failure of c): the whole last
	// checkpoint (b, the forget of base, the failure of c) is lost, as a
	// group; the checkpoint before it stays.
	must(t, os.Truncate(path, info.Size()-3))
	hashes, _ := contents(t, load(t, s, "users"))
	if !reflect.DeepEqual(hashes, map[string]uint64{"a": 1, "base": 1}) {
		t.Errorf("snapshot = %v", hashes)
	}
	idx, err := s.LoadFailures("users")
	must(t, err)
	if f := idx["c"]; f == nil || f.Attempts != 2 || f.Error != "e0" {
		t.Errorf("failure of c = %+v, want the committed one", f)
	}
	// Cut into the magic: an empty journal.
	must(t, os.Truncate(path, 3))
	hashes, _ = contents(t, load(t, s, "users"))
	if !reflect.DeepEqual(hashes, map[string]uint64{"base": 1}) {
		t.Errorf("snapshot with a torn magic = %v", hashes)
	}
	w := begin(t, s, "users", false)
	w.Accept("y", 25, nil)
	must(t, w.Checkpoint())
	must(t, w.Abort())
	hashes, _ = contents(t, load(t, s, "users"))
	if !reflect.DeepEqual(hashes, map[string]uint64{"base": 1, "y": 25}) {
		t.Errorf("after rewriting a torn journal: %v", hashes)
	}
}

func TestJournalReplayIsIdempotent(t *testing.T) {
	// A crash between Commit's snapshot rename and the journal's removal
	// leaves a journal already contained in the snapshot.
	s := newStore(t)
	crashedApply(t, s)
	saved, err := os.ReadFile(journalPath(s, "users"))
	must(t, err)
	w := begin(t, s, "users", false)
	w.Accept("e", 5, map[string]any{"v": "e"})
	must(t, w.Commit())
	must(t, os.WriteFile(journalPath(s, "users"), saved, 0o600))
	hashes, values := contents(t, load(t, s, "users"))
	if !reflect.DeepEqual(hashes, map[string]uint64{"a": 1, "b": 2, "e": 5}) {
		t.Errorf("snapshot = %v", hashes)
	}
	if !reflect.DeepEqual(values["b"], map[string]any{"v": "b", "new": true}) {
		t.Errorf("values of b = %v", values["b"])
	}
	idx, err := s.LoadFailures("users")
	must(t, err)
	if f := idx["c"]; f == nil || f.Attempts != 3 {
		t.Errorf("failure of c = %+v", f)
	}
}

func TestJournalNotAJournal(t *testing.T) {
	s := newStore(t)
	must(t, os.MkdirAll(filepath.Join(s.Dir(), "syncs", "users"), 0o700))
	must(t, os.WriteFile(journalPath(s, "users"), []byte("hello world"), 0o600))
	if _, err := s.LoadSnapshot("users"); err == nil {
		t.Error("LoadSnapshot accepted a foreign journal")
	}
	if _, err := s.Begin("users", false); err == nil {
		t.Error("Begin accepted a foreign journal")
	}
}

func TestOverlayMixesFileAndJournalValues(t *testing.T) {
	s := newStore(t)
	w := begin(t, s, "users", false)
	for _, k := range []string{"a", "c", "e"} {
		w.Accept(k, 1, map[string]any{"from": "file " + k})
	}
	must(t, w.Commit())
	w = begin(t, s, "users", false)
	w.Accept("b", 2, map[string]any{"from": "journal b", "extra": 1.25})
	w.Accept("e", 2, map[string]any{"from": "journal e"})
	w.Forget("c")
	must(t, w.Checkpoint())
	must(t, w.Abort())
	hashes, values := contents(t, load(t, s, "users"))
	wantValues := map[string]map[string]any{
		"a": {"from": "file a"},
		"b": {"from": "journal b", "extra": 1.25},
		"e": {"from": "journal e"},
	}
	if !reflect.DeepEqual(hashes, map[string]uint64{"a": 1, "b": 2, "e": 2}) || !reflect.DeepEqual(values, wantValues) {
		t.Errorf("overlay = %v %v", hashes, values)
	}
}

// sortLatest orders keys bytewise, whatever their length or shared
// prefix, and keeps the last record of each key.
func TestSortLatestOrdersBytewise(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	alphabet := []string{"", "\x00", "a", "ab", "abcdefgh", "abcdefgi", "\xff", "1000009", "100001"}
	var c changes
	last := map[string]uint64{}
	for rec := uint64(1); rec <= 3000; rec++ {
		k := alphabet[r.IntN(len(alphabet))] + alphabet[r.IntN(len(alphabet))]
		if r.IntN(3) == 0 {
			k += string(rune('a' + r.IntN(3)))
		}
		if err := c.add(rec*16, 16, []byte(k), r.IntN(5) == 0); err != nil {
			t.Fatal(err)
		}
		last[k] = rec * 16
	}
	c.sortLatest()
	want := slices.Sorted(maps.Keys(last))
	if c.sortedLen() != len(want) {
		t.Fatalf("%d entries, want %d", c.sortedLen(), len(want))
	}
	for i := range c.sortedLen() {
		e := c.sortedAt(i)
		if k := string(c.keyOf(e)); k != want[i] || e.rec&^forgetBit != last[k] {
			t.Fatalf("entry %d: key %q record %d, want %q record %d", i, k, e.rec&^forgetBit, want[i], last[want[i]])
		}
	}
}

// The writer's count of its changes is the size of the index a commit
// reads back: the index is made at its size, not grown as it is read.
func TestChangesIndexSizedByTheWriter(t *testing.T) {
	s := newStore(t)
	w, err := s.Begin("s", false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		key := strings.Repeat("k", i) // lengths past 127 take two bytes of length
		w.Accept(key, uint64(i), map[string]any{"n": int64(i)})
		if i%3 == 0 {
			w.Forget(key)
		}
	}
	if err := w.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	jpath := filepath.Join(w.dir, journalFile)
	data, err := os.ReadFile(jpath)
	if err != nil {
		t.Fatal(err)
	}
	ch := &changes{src: bytes.NewReader(data)}
	if _, err := scanJournal(jpath, data, (&replayer{changes: ch}).apply); err != nil {
		t.Fatal(err)
	}
	if len(ch.entries) != w.changed || len(ch.keys) != w.changedKeys {
		t.Fatalf("index of %d entries and %d key bytes, the writer counted %d and %d", len(ch.entries), len(ch.keys), w.changed, w.changedKeys)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// AcceptValues records what Accept records of the map of the same names
// and values, whatever the names' order, whether the caller passes the same
// slice again or another, and mixed with Accept: the snapshot committed,
// and the journal replayed after a crash, hold each record's values.
func TestAcceptValuesIsAcceptOfTheMap(t *testing.T) {
	ab := []string{"b", "a", "zeta", "key"}
	other := []string{"key", "zeta", "c"}
	want := map[string]map[string]any{}
	record := func(w *SyncWriter, i int) {
		k := "k" + strings.Repeat("x", i)
		switch i % 3 {
		case 0:
			w.AcceptValues(k, uint64(i), ab, []any{int64(i), "a" + k, nil, k})
			want[k] = map[string]any{"b": int64(i), "a": "a" + k, "zeta": nil, "key": k}
		case 1:
			w.AcceptValues(k, uint64(i), other, []any{k, "2024-02-29", float64(i)})
			want[k] = map[string]any{"key": k, "zeta": "2024-02-29", "c": float64(i)}
		default:
			m := map[string]any{"a": float64(i) / 2, "key": k, "b": true}
			w.Accept(k, uint64(i), m)
			want[k] = m
		}
	}
	s := newStore(t)
	w := begin(t, s, "s", false)
	for i := range 60 {
		record(w, i)
	}
	must(t, w.Commit())
	if _, got := contents(t, load(t, s, "s")); !reflect.DeepEqual(got, want) {
		t.Fatalf("committed:\n%v\nwant\n%v", got, want)
	}
	// Checkpointed, then the process dies: the journal is replayed.
	w = begin(t, s, "s", false)
	for i := 60; i < 90; i++ {
		record(w, i)
	}
	must(t, w.Checkpoint())
	_ = w.journal.Close()
	_ = w.base.Close()
	if _, got := contents(t, load(t, s, "s")); !reflect.DeepEqual(got, want) {
		t.Fatalf("replayed:\n%v\nwant\n%v", got, want)
	}
	// Values for other names than given are refused, not recorded.
	w = begin(t, s, "s", false)
	w.AcceptValues("bad", 1, ab, []any{int64(1)})
	if err := w.Commit(); err == nil || !strings.Contains(err.Error(), "1 values for 4 fields") {
		t.Fatalf("commit after mismatched values: %v", err)
	}
}
