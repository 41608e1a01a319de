package state

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), ".backflow"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func begin(t *testing.T, s *Store, sync string, reset bool) *SyncWriter {
	t.Helper()
	w, err := s.Begin(sync, reset)
	must(t, err)
	return w
}

func load(t *testing.T, s *Store, sync string) *Snapshot {
	t.Helper()
	sn, err := s.LoadSnapshot(sync)
	must(t, err)
	t.Cleanup(func() { _ = sn.Close() })
	return sn
}

// contents returns a snapshot as key → hash and key → values.
func contents(t *testing.T, sn *Snapshot) (map[string]uint64, map[string]map[string]any) {
	t.Helper()
	hashes := map[string]uint64{}
	values := map[string]map[string]any{}
	for i := range sn.Len() {
		k := sn.Key(i)
		if i > 0 && sn.Key(i-1) >= k {
			t.Fatalf("keys out of order: %q then %q", sn.Key(i-1), k)
		}
		j, h, ok := sn.Lookup(k)
		if !ok || j != i || h != sn.Hash(i) {
			t.Fatalf("Lookup(%q) = %d, %x, %v; want %d, %x, true", k, j, h, ok, i, sn.Hash(i))
		}
		v, err := sn.Values(i)
		must(t, err)
		hashes[k], values[k] = sn.Hash(i), v
	}
	return hashes, values
}

func TestEmptyStore(t *testing.T) {
	s := newStore(t)
	m, err := s.Meta()
	must(t, err)
	if m != (Meta{Version: FormatVersion}) {
		t.Errorf("Meta = %+v", m)
	}
	syncs, err := s.Syncs()
	if err != nil || len(syncs) != 0 {
		t.Errorf("Syncs = %v, %v", syncs, err)
	}
	sn := load(t, s, "users")
	if sn.Len() != 0 {
		t.Errorf("Len = %d", sn.Len())
	}
	if i, _, ok := sn.Lookup("x"); ok || i != -1 {
		t.Errorf("Lookup on empty = %d, %v", i, ok)
	}
	f, err := s.LoadFailures("users")
	if err != nil || f == nil || len(f) != 0 {
		t.Errorf("LoadFailures = %v, %v", f, err)
	}
	runs, err := s.Runs("")
	if err != nil || len(runs) != 0 {
		t.Errorf("Runs = %v, %v", runs, err)
	}
	rows, err := s.RowLogs("users", 0)
	if err != nil || rows != nil {
		t.Errorf("RowLogs = %v, %v", rows, err)
	}
	if _, err := os.Stat(s.Dir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("reads created the state dir: %v", err)
	}
}

func TestInvalidSyncNames(t *testing.T) {
	s := newStore(t)
	for _, name := range []string{"", "../x", "a/b", "a.b", "1abc", "-a", "a b", "é"} {
		if _, err := s.Begin(name, false); err == nil {
			t.Errorf("Begin(%q) succeeded", name)
		}
		if _, err := s.LoadSnapshot(name); err == nil {
			t.Errorf("LoadSnapshot(%q) succeeded", name)
		}
		if _, err := s.AppendRun(Run{Sync: name}, nil, 0); err == nil {
			t.Errorf("AppendRun(%q) succeeded", name)
		}
	}
	for _, name := range []string{"a", "_a", "users_to-crm2", "A9"} {
		if !validName(name) {
			t.Errorf("validName(%q) = false", name)
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := newStore(t)
	w := begin(t, s, "users", false)
	w.Accept("b", 2, map[string]any{"email": "b@x", "age": int64(42), "score": 1.5, "vip": true, "note": nil})
	w.Accept("a", 1, map[string]any{"email": "a@x", "age": 7, "vip": false, "big": uint64(1 << 62)})
	w.Accept("c", 3, map[string]any{})
	w.Accept("zz", 9, map[string]any{"email": strings.Repeat("long", 200)})
	w.Forget("never-there")
	w.Accept("c", 33, map[string]any{"email": "c@x"}) // latest wins
	must(t, w.Commit())

	sn := load(t, s, "users")
	hashes, values := contents(t, sn)
	wantHashes := map[string]uint64{"a": 1, "b": 2, "c": 33, "zz": 9}
	wantValues := map[string]map[string]any{
		"a":  {"email": "a@x", "age": int64(7), "vip": false, "big": int64(1 << 62)},
		"b":  {"email": "b@x", "age": int64(42), "score": 1.5, "vip": true, "note": nil},
		"c":  {"email": "c@x"},
		"zz": {"email": strings.Repeat("long", 200)},
	}
	if !reflect.DeepEqual(hashes, wantHashes) {
		t.Errorf("hashes = %v, want %v", hashes, wantHashes)
	}
	if !reflect.DeepEqual(values, wantValues) {
		t.Errorf("values = %v, want %v", values, wantValues)
	}
	if _, _, ok := sn.Lookup("b0"); ok {
		t.Error("Lookup found an absent key")
	}

	// A second apply: change, forget, add with a new field; kept keys keep
	// their values (copied from the old file).
	w = begin(t, s, "users", false)
	w.Accept("b", 22, map[string]any{"email": "b2@x", "phone": "123"})
	w.Forget("a")
	w.Accept("d", 4, map[string]any{"phone": "456"})
	must(t, w.Commit())
	hashes, values = contents(t, load(t, s, "users"))
	wantHashes = map[string]uint64{"b": 22, "c": 33, "d": 4, "zz": 9}
	wantValues = map[string]map[string]any{
		"b":  {"email": "b2@x", "phone": "123"},
		"c":  {"email": "c@x"},
		"d":  {"phone": "456"},
		"zz": {"email": strings.Repeat("long", 200)},
	}
	if !reflect.DeepEqual(hashes, wantHashes) || !reflect.DeepEqual(values, wantValues) {
		t.Errorf("after second apply: %v %v", hashes, values)
	}
	syncs, err := s.Syncs()
	if err != nil || !reflect.DeepEqual(syncs, []string{"users"}) {
		t.Errorf("Syncs = %v, %v", syncs, err)
	}
}

func TestCommitWithoutChangesCreatesState(t *testing.T) {
	s := newStore(t)
	must(t, begin(t, s, "empty", false).Commit())
	syncs, err := s.Syncs()
	if err != nil || !reflect.DeepEqual(syncs, []string{"empty"}) {
		t.Errorf("Syncs = %v, %v", syncs, err)
	}
	if sn := load(t, s, "empty"); sn.Len() != 0 {
		t.Errorf("Len = %d", sn.Len())
	}
}

func TestUnsupportedValueFailsCommit(t *testing.T) {
	s := newStore(t)
	w := begin(t, s, "users", false)
	w.Accept("a", 1, map[string]any{"when": time.Now()})
	w.Accept("b", 1, map[string]any{"x": "y"})
	if err := w.Checkpoint(); err == nil || !strings.Contains(err.Error(), "when") {
		t.Errorf("Checkpoint = %v, want an error naming the field", err)
	}
	if err := w.Commit(); err == nil {
		t.Error("Commit succeeded after a bad value")
	}
	if sn := load(t, s, "users"); sn.Len() != 0 {
		t.Errorf("snapshot has %d keys", sn.Len())
	}
}

func TestWriterDone(t *testing.T) {
	s := newStore(t)
	w := begin(t, s, "users", false)
	must(t, w.Commit())
	w.Accept("a", 1, nil)
	if err := w.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
	must(t, w.Abort())
}

func TestPermissions(t *testing.T) {
	s := newStore(t)
	w := begin(t, s, "users", false)
	w.Accept("a", 1, map[string]any{"x": "y"})
	w.Fail(Failure{Key: "b", Attempts: 1})
	must(t, w.Checkpoint())
	must(t, w.Abort()) // keep a journal around
	for i := range 2 { // twice: earlier generations too
		w = begin(t, s, "other", false)
		w.Accept("a", uint64(i), nil)
		must(t, w.Commit())
		_, err := s.AppendRun(Run{Sync: "users"}, []RowLog{{Key: "a"}}, 0)
		must(t, err)
	}
	// A file put there by hand, readable by others, does not make a
	// readable previous generation.
	must(t, os.Chmod(filepath.Join(s.Dir(), "runs.jsonl"), 0o644))
	_, err := s.AppendRun(Run{Sync: "users"}, nil, 0)
	must(t, err)
	l, err := s.Lock("apply")
	must(t, err)
	defer l.Unlock()

	seen := map[string]bool{}
	must(t, filepath.WalkDir(s.Dir(), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, info.Mode().Perm(), want)
		}
		rel, _ := filepath.Rel(s.Dir(), path)
		seen[filepath.ToSlash(rel)] = true
		return nil
	}))
	for _, f := range []string{"state.json", "runs.jsonl", "logs/users/1.jsonl", "lock", "lock.flock",
		"syncs/users/journal", "syncs/other/snapshot", "syncs/other/failures.json",
		"state.json.prev", "runs.jsonl.prev", "syncs/other/snapshot.prev", "syncs/other/failures.json.prev", "syncs/other/journal.prev"} {
		if !seen[f] {
			t.Errorf("%s missing; have %v", f, seen)
		}
	}
	for f := range seen {
		if strings.Contains(f, ".tmp-") {
			t.Errorf("temp file left behind: %s", f)
		}
	}
}

func TestLockMakesAnOpenStateFolderPrivate(t *testing.T) {
	s := newStore(t)
	must(t, os.MkdirAll(s.Dir(), 0o755))
	must(t, os.Chmod(s.Dir(), 0o755))
	l, err := s.Lock("apply")
	must(t, err)
	defer l.Unlock()
	info, err := os.Stat(s.Dir())
	must(t, err)
	if info.Mode().Perm() != 0o700 {
		t.Errorf("state folder mode %v after Lock, want 0700", info.Mode().Perm())
	}
}

func TestSerialAndLineage(t *testing.T) {
	s := newStore(t)
	serial := func() Meta {
		t.Helper()
		m, err := s.Meta()
		must(t, err)
		return m
	}
	w := begin(t, s, "users", false)
	m1 := serial()
	if m1.Serial != 1 || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(m1.Lineage) || m1.Version != FormatVersion {
		t.Fatalf("after Begin: %+v", m1)
	}
	w.Accept("a", 1, nil)
	must(t, w.Checkpoint())
	if m := serial(); m.Serial != 1 {
		t.Errorf("Checkpoint changed the serial: %+v", m)
	}
	must(t, w.Commit())
	if m := serial(); m.Serial != 2 || m.Lineage != m1.Lineage {
		t.Errorf("after Commit: %+v", m)
	}
	_, err := s.AppendRun(Run{Sync: "users"}, nil, 0)
	must(t, err)
	must(t, begin(t, s, "users", true).Abort())
	if m := serial(); m.Serial != 4 || m.Lineage != m1.Lineage {
		t.Errorf("after AppendRun and reset Begin: %+v", m)
	}
	// Another Store on the same directory sees the same metadata.
	s2, err := Open(s.Dir())
	must(t, err)
	if m, err := s2.Meta(); err != nil || m != serial() {
		t.Errorf("reopened Meta = %+v, %v", m, err)
	}
}

func TestNewerFormatRefused(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "state.json"), []byte(`{"version":99,"lineage":"x","serial":3}`), 0o600))
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "99") {
		t.Errorf("Open = %v, want a version error", err)
	}
}

func TestFailureAccumulation(t *testing.T) {
	s := newStore(t)
	t1 := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Hour)
	w := begin(t, s, "users", false)
	w.Fail(Failure{Key: "k", Operation: "upsert", Error: "bad email", Attempts: 3, FirstFailed: t1, LastFailed: t1})
	w.Fail(Failure{Key: "gone", Operation: "upsert", Error: "e", Attempts: 1, FirstFailed: t1, LastFailed: t1})
	w.Fail(Failure{Key: "ok", Operation: "upsert", Error: "e", Attempts: 1, FirstFailed: t1, LastFailed: t1})
	must(t, w.Commit())

	w = begin(t, s, "users", false)
	w.Fail(Failure{Key: "k", Operation: "delete", Error: "still bad", Attempts: 2, FirstFailed: t2, LastFailed: t2})
	w.Forget("gone")
	w.Accept("ok", 5, map[string]any{"a": "b"})
	must(t, w.Commit())

	idx, err := s.LoadFailures("users")
	must(t, err)
	want := FailureIndex{"k": {Key: "k", Operation: "delete", Error: "still bad", Attempts: 5, FirstFailed: t1, LastFailed: t2}}
	if len(idx) != 1 || idx["k"] == nil {
		t.Fatalf("failures = %v", idx)
	}
	got := *idx["k"]
	if got.Key != "k" || got.Operation != "delete" || got.Error != "still bad" || got.Attempts != 5 ||
		!got.FirstFailed.Equal(t1) || !got.LastFailed.Equal(t2) {
		t.Errorf("failure = %+v, want %+v", got, *want["k"])
	}
	if sn := load(t, s, "users"); sn.Len() != 1 || sn.Key(0) != "ok" {
		t.Errorf("snapshot keys: %d", sn.Len())
	}
}

func TestReset(t *testing.T) {
	s := newStore(t)
	w := begin(t, s, "users", false)
	w.Accept("a", 1, nil)
	w.Fail(Failure{Key: "f", Attempts: 1})
	must(t, w.Commit())

	// A reset apply that crashes after a checkpoint: loads see only its results.
	w = begin(t, s, "users", true)
	if got := w.Failures(); len(got) != 0 {
		t.Errorf("reset writer starts with failures %v", got)
	}
	w.Accept("b", 2, nil)
	must(t, w.Checkpoint())
	must(t, w.Abort())
	hashes, _ := contents(t, load(t, s, "users"))
	if !reflect.DeepEqual(hashes, map[string]uint64{"b": 2}) {
		t.Errorf("after crashed reset: %v", hashes)
	}
	if idx, err := s.LoadFailures("users"); err != nil || len(idx) != 0 {
		t.Errorf("failures after crashed reset: %v, %v", idx, err)
	}

	// A reset that crashes before any checkpoint changes nothing.
	must(t, begin(t, s, "users", true).Abort())
	hashes, _ = contents(t, load(t, s, "users"))
	if !reflect.DeepEqual(hashes, map[string]uint64{"b": 2}) {
		t.Errorf("after uncheckpointed reset: %v", hashes)
	}

	w = begin(t, s, "users", true)
	w.Accept("c", 3, nil)
	must(t, w.Commit())
	hashes, _ = contents(t, load(t, s, "users"))
	if !reflect.DeepEqual(hashes, map[string]uint64{"c": 3}) {
		t.Errorf("after reset: %v", hashes)
	}
}

func TestManyKeysMerge(t *testing.T) {
	s := newStore(t)
	w := begin(t, s, "users", false)
	for i := range 5000 {
		w.Accept(fmt.Sprintf("k%05d", i), uint64(i), map[string]any{"n": int64(i), "s": fmt.Sprint(i)})
	}
	must(t, w.Commit())
	w = begin(t, s, "users", false)
	for i := 0; i < 5000; i += 3 {
		w.Forget(fmt.Sprintf("k%05d", i))
	}
	for i := 1; i < 5000; i += 7 {
		w.Accept(fmt.Sprintf("k%05d", i), uint64(i)+1e6, map[string]any{"n": int64(-i)})
	}
	must(t, w.Commit())
	hashes, values := contents(t, load(t, s, "users"))
	for i := range 5000 {
		k := fmt.Sprintf("k%05d", i)
		switch {
		case i%7 == 1:
			if hashes[k] != uint64(i)+1e6 || !reflect.DeepEqual(values[k], map[string]any{"n": int64(-i)}) {
				t.Fatalf("%s = %d %v", k, hashes[k], values[k])
			}
		case i%3 == 0:
			if _, ok := hashes[k]; ok {
				t.Fatalf("%s not forgotten", k)
			}
		default:
			if hashes[k] != uint64(i) || !reflect.DeepEqual(values[k], map[string]any{"n": int64(i), "s": fmt.Sprint(i)}) {
				t.Fatalf("%s = %d %v", k, hashes[k], values[k])
			}
		}
	}
}

func TestCorruptSnapshotRefused(t *testing.T) {
	s := newStore(t)
	w := begin(t, s, "users", false)
	for i := range 100 {
		w.Accept(fmt.Sprint(i), uint64(i), nil)
	}
	must(t, w.Commit())
	path := filepath.Join(s.Dir(), "syncs", "users", "snapshot")
	data, err := os.ReadFile(path)
	must(t, err)
	data[len(data)-100] ^= 0xff // inside the index
	must(t, os.WriteFile(path, data, 0o600))
	if _, err := s.LoadSnapshot("users"); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("LoadSnapshot of a corrupt file = %v", err)
	}
}

func TestWriterConcurrentUse(t *testing.T) {
	s := newStore(t)
	w := begin(t, s, "users", false)
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 250 {
				k := fmt.Sprintf("g%d-%03d", g, i)
				if i%10 == 0 {
					w.Fail(Failure{Key: k, Attempts: 1})
					continue
				}
				w.Accept(k, uint64(i), map[string]any{fmt.Sprintf("f%d", g): int64(i)})
				if i%50 == 0 {
					if err := w.Checkpoint(); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	must(t, w.Commit())
	sn := load(t, s, "users")
	if sn.Len() != 4*225 {
		t.Errorf("Len = %d, want %d", sn.Len(), 4*225)
	}
	idx, err := s.LoadFailures("users")
	if err != nil || len(idx) != 4*25 {
		t.Errorf("failures: %d, %v", len(idx), err)
	}
	// Values reads share the file.
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := g; i < sn.Len(); i += 4 {
				if v, err := sn.Values(i); err != nil || len(v) != 1 {
					t.Errorf("Values(%d) = %v, %v", i, v, err)
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
}

func TestLookupAgainstSortedKeys(t *testing.T) {
	// Keys with long shared prefixes, NUL bytes and varied lengths stress the
	// prefix sample that narrows Lookup's search.
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte{0, 1, 'a', 'b', 0xff}
	gen := func() string {
		b := []byte("commonprefix")[:rng.IntN(13)]
		for range rng.IntN(6) {
			b = append(b, alphabet[rng.IntN(len(alphabet))])
		}
		return string(b)
	}
	present := map[string]bool{}
	s := newStore(t)
	w := begin(t, s, "users", false)
	for range 3000 {
		k := gen()
		present[k] = true
		w.Accept(k, uint64(len(k)), nil)
	}
	must(t, w.Commit())
	sn := load(t, s, "users")
	keys := slices.Sorted(maps.Keys(present))
	if sn.Len() != len(keys) {
		t.Fatalf("Len = %d, want %d", sn.Len(), len(keys))
	}
	for i, k := range keys {
		if j, _, ok := sn.Lookup(k); !ok || j != i || sn.Key(j) != k {
			t.Fatalf("Lookup(%q) = %d, %v; want %d", k, j, ok, i)
		}
	}
	for range 3000 {
		k := gen()
		if _, _, ok := sn.Lookup(k); ok != present[k] {
			t.Fatalf("Lookup(%q) found = %v, want %v", k, ok, present[k])
		}
	}
}
