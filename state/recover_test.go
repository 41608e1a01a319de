package state

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// copyDir copies the tree at src to dst (files 0600, folders 0700).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	must(t, filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o600)
	}))
}

// wantCorrupt fails unless err is a *CorruptError about the file named
// name that tells how to recover.
func wantCorrupt(t *testing.T, err error, name string) {
	t.Helper()
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v, want a *CorruptError about %s", err, name)
	}
	if filepath.Base(ce.Path) != name || !strings.Contains(err.Error(), "backflow state recover") {
		t.Fatalf("error %q: want it to name %s and `backflow state recover`", err, name)
	}
}

// twoCommits leaves a sync committed twice, the second changing, removing
// and adding keys and recording failures, and returns its contents.
func twoCommits(t *testing.T, s *Store) (map[string]uint64, map[string]map[string]any, FailureIndex) {
	t.Helper()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	w := begin(t, s, "users", false)
	for i := range 20 {
		w.Accept(key7(i), uint64(i), map[string]any{"external_id": int64(i), "email": key7(i) + "@x"})
	}
	w.Fail(Failure{Key: "old-fail", Operation: "upsert", Error: "e", Attempts: 1, FirstFailed: t0, LastFailed: t0})
	must(t, w.Commit())
	w = begin(t, s, "users", false)
	w.Accept(key7(3), 103, map[string]any{"external_id": int64(3), "email": "changed@x"})
	w.Forget(key7(5))
	w.Accept(key7(30), 30, map[string]any{"external_id": int64(30), "email": "new@x"})
	w.Fail(Failure{Key: "new-fail", Operation: "delete", Error: "refused", Attempts: 1, FirstFailed: t0, LastFailed: t0})
	must(t, w.Commit())
	hashes, values := contents(t, load(t, s, "users"))
	idx, err := s.LoadFailures("users")
	must(t, err)
	return hashes, values, idx
}

func recoverAll(t *testing.T, s *Store) *Recovery {
	t.Helper()
	rs, err := OpenForRecovery(s.Dir())
	must(t, err)
	r, err := rs.PlanRecovery()
	must(t, err)
	if r.Empty() {
		t.Fatal("PlanRecovery found nothing to repair")
	}
	must(t, rs.Recover(r))
	again, err := rs.PlanRecovery()
	must(t, err)
	if !again.Empty() {
		t.Fatalf("after Recover, still to repair: %+v", again.Steps)
	}
	return r
}

func sameFailures(t *testing.T, got, want FailureIndex) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("failures %v, want %v", got, want)
	}
	for k, w := range want {
		g := got[k]
		if g == nil || g.Operation != w.Operation || g.Error != w.Error || g.Attempts != w.Attempts || g.Unknown != w.Unknown {
			t.Fatalf("failure %q = %+v, want %+v", k, g, w)
		}
	}
}

func TestSnapshotValueBitFlipIsDetectedAndRecoveredLosslessly(t *testing.T) {
	s := newStore(t)
	hashes, values, failures := twoCommits(t, s)
	path := filepath.Join(s.syncDir("users"), snapshotFile)
	data, err := os.ReadFile(path)
	must(t, err)
	// Two bits of key 5's neighbour's external_id: before checksums, the
	// removal of one key went to another row.
	i := bytes.Index(data, []byte(key7(6)+"@x"))
	if i < 0 {
		t.Fatal("value not found")
	}
	data[i+1] ^= 0x03
	must(t, os.WriteFile(path, data, 0o600))

	sn := load(t, s, "users") // the index is intact
	j, _, _ := sn.Lookup(key7(6))
	_, err = sn.Values(j)
	wantCorrupt(t, err, snapshotFile)
	_, err = s.Begin("users", false)
	wantCorrupt(t, err, snapshotFile)
	if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
		t.Fatal("Begin rewrote a damaged snapshot")
	}

	r := recoverAll(t, s)
	if len(r.Steps) != 1 || r.Steps[0].Loses != "" || !strings.Contains(r.Steps[0].Action, "snapshot.prev") {
		t.Fatalf("steps %+v, want a lossless restore of snapshot.prev", r.Steps)
	}
	gotH, gotV := contents(t, load(t, s, "users"))
	if !reflect.DeepEqual(gotH, hashes) || !reflect.DeepEqual(gotV, values) {
		t.Fatalf("after recovery: %v %v", gotH, gotV)
	}
	idx, err := s.LoadFailures("users")
	must(t, err)
	sameFailures(t, idx, failures)
	aside, _ := filepath.Glob(path + damagedSuffix + "*")
	if len(aside) != 1 {
		t.Fatalf("damaged snapshot not kept aside: %v", aside)
	}
}

func TestSnapshotSalvageWithoutAnEarlierGeneration(t *testing.T) {
	s := newStore(t)
	w := begin(t, s, "users", false)
	for i := range 10 {
		w.Accept(key7(i), uint64(i), map[string]any{"email": key7(i) + "@x"})
	}
	must(t, w.Commit())
	path := filepath.Join(s.syncDir("users"), snapshotFile)
	data, err := os.ReadFile(path)
	must(t, err)
	data[bytes.Index(data, []byte(key7(4)+"@x"))] ^= 0x40
	must(t, os.WriteFile(path, data, 0o600))
	must(t, os.Remove(filepath.Join(s.syncDir("users"), journalFile+prevSuffix)))

	r := recoverAll(t, s)
	if !strings.Contains(r.Steps[0].Loses, "1 records") {
		t.Fatalf("steps %+v", r.Steps)
	}
	hashes, _ := contents(t, load(t, s, "users"))
	if _, ok := hashes[key7(4)]; ok || len(hashes) != 9 {
		t.Fatalf("snapshot after salvage %v, want the 9 intact keys", hashes)
	}
	idx, err := s.LoadFailures("users")
	must(t, err)
	if f := idx[key7(4)]; f == nil || !f.Unknown {
		t.Fatalf("the dropped key is not retried: %v", idx)
	}
}

func TestFailureIndexDamageRecoveredLosslessly(t *testing.T) {
	s := newStore(t)
	_, _, failures := twoCommits(t, s)
	path := filepath.Join(s.syncDir("users"), failuresFile)
	data, err := os.ReadFile(path)
	must(t, err)
	must(t, os.WriteFile(path, bytes.Replace(data, []byte("refused"), []byte("refusal"), 1), 0o600))
	_, err = s.LoadFailures("users")
	wantCorrupt(t, err, failuresFile)
	r := recoverAll(t, s)
	if r.Steps[0].Loses != "" {
		t.Fatalf("steps %+v", r.Steps)
	}
	idx, err := s.LoadFailures("users")
	must(t, err)
	sameFailures(t, idx, failures)
}

func TestJournalDamagedInTheMiddleIsRefusedThenRetried(t *testing.T) {
	s := newStore(t)
	w := begin(t, s, "users", false)
	w.Accept("base", 1, map[string]any{"v": "x"})
	must(t, w.Commit())
	w = begin(t, s, "users", false)
	must(t, w.InFlight([]InFlightRecord{{Key: "a", Operation: "upsert"}, {Key: "b", Operation: "upsert"}}))
	w.Accept("a", 1, map[string]any{"v": "a"})
	w.Accept("b", 2, map[string]any{"v": "b"})
	must(t, w.Checkpoint())
	must(t, w.InFlight([]InFlightRecord{{Key: "c", Operation: "delete"}}))
	w.Forget("c")
	must(t, w.Checkpoint())
	must(t, w.Abort())
	path := journalPath(s, "users")
	data, err := os.ReadFile(path)
	must(t, err)
	// Damage the group holding the accepts of a and b; the groups after it
	// must not be silently dropped.
	i := bytes.Index(data, []byte{'A', 1, 'a'})
	data[i+2] = 'z'
	must(t, os.WriteFile(path, data, 0o600))

	_, err = s.LoadSnapshot("users")
	wantCorrupt(t, err, journalFile)
	_, err = s.LoadFailures("users")
	wantCorrupt(t, err, journalFile)
	_, err = s.Begin("users", false)
	wantCorrupt(t, err, journalFile)

	r := recoverAll(t, s)
	if !strings.Contains(r.Steps[0].Loses, "outcome unknown") {
		t.Fatalf("steps %+v", r.Steps)
	}
	idx, err := s.LoadFailures("users")
	must(t, err)
	for _, k := range []string{"a", "b", "c"} {
		if f := idx[k]; f == nil || !f.Unknown {
			t.Errorf("key %s after recovery: %+v, want an unknown outcome to retry", k, f)
		}
	}
}

func TestStateJSONDamageAndDeletion(t *testing.T) {
	for name, damage := range map[string]func(path string) error{
		"garbled": func(path string) error { return os.WriteFile(path, []byte(`{"version":2,"lineage":"x`), 0o600) },
		"flipped": func(path string) error {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(path, bytes.Replace(data, []byte(`"serial": `), []byte(`"serial": 9`), 1), 0o600)
		},
		"deleted": os.Remove,
	} {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			twoCommits(t, s)
			before, err := s.Meta()
			must(t, err)
			path := filepath.Join(s.Dir(), metaFile)
			must(t, damage(path))
			_, err = Open(s.Dir())
			wantCorrupt(t, err, metaFile)
			_, err = s.Begin("users", false)
			wantCorrupt(t, err, metaFile)
			recoverAll(t, s)
			after, err := s.Meta()
			must(t, err)
			// Recover itself commits the sync afresh (+2 more writes).
			if after.Lineage != before.Lineage || after.Serial <= before.Serial {
				t.Fatalf("meta %+v after recovery, before %+v: lineage kept, serial forward", after, before)
			}
		})
	}
}

func TestRunHistoryDamageStopsBeforeSending(t *testing.T) {
	s := newStore(t)
	for range 3 {
		_, err := s.AppendRun(Run{Sync: "users", Status: "succeeded"}, []RowLog{{Key: "a"}}, 0)
		must(t, err)
	}
	path := filepath.Join(s.Dir(), runsFile)
	data, err := os.ReadFile(path)
	must(t, err)
	damaged := data[:len(data)-20]
	must(t, os.WriteFile(path, damaged, 0o600))
	_, err = s.Runs("")
	wantCorrupt(t, err, runsFile)
	_, err = s.Begin("users", false) // before apply sends anything
	wantCorrupt(t, err, runsFile)
	_, err = s.AppendRun(Run{Sync: "users"}, nil, 0)
	wantCorrupt(t, err, runsFile)
	if after, _ := os.ReadFile(path); !bytes.Equal(after, damaged) {
		t.Fatal("a damaged runs.jsonl was rewritten")
	}
	r := recoverAll(t, s)
	if !strings.Contains(r.Steps[0].Loses, "last run") {
		t.Fatalf("steps %+v", r.Steps)
	}
	runs, err := s.Runs("")
	must(t, err)
	if len(runs) != 2 || runs[1].Run != 2 {
		t.Fatalf("runs after recovery %+v, want the first two", runs)
	}
}

func TestRowLogDamageIsReportedAndMovedAside(t *testing.T) {
	s := newStore(t)
	_, err := s.AppendRun(Run{Sync: "users"}, []RowLog{{Key: "a", Status: "accepted"}}, 0)
	must(t, err)
	path := filepath.Join(s.Dir(), logsDir, "users", "1.jsonl")
	data, err := os.ReadFile(path)
	must(t, err)
	must(t, os.WriteFile(path, bytes.Replace(data, []byte(`"a"`), []byte(`"b"`), 1), 0o600))
	_, err = s.RowLogs("users", 1)
	wantCorrupt(t, err, "1.jsonl")
	recoverAll(t, s)
	if _, err := s.RowLogs("users", 1); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("RowLogs after recovery = %v", err)
	}
}

func TestEveryCommitKeepsThePreviousGeneration(t *testing.T) {
	s := newStore(t)
	w := begin(t, s, "users", false)
	w.Accept("a", 1, map[string]any{"v": "1"})
	must(t, w.Commit())
	dir := s.syncDir("users")
	first, err := os.ReadFile(filepath.Join(dir, snapshotFile))
	must(t, err)
	firstFailures, err := os.ReadFile(filepath.Join(dir, failuresFile))
	must(t, err)
	meta, err := os.ReadFile(filepath.Join(s.Dir(), metaFile))
	must(t, err)
	w = begin(t, s, "users", false)
	w.Accept("b", 2, map[string]any{"v": "2"})
	must(t, w.Commit())
	for file, want := range map[string][]byte{
		filepath.Join(dir, snapshotFile+prevSuffix): first,
		filepath.Join(dir, failuresFile+prevSuffix): firstFailures,
	} {
		if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not the previous generation (%v)", file, err)
		}
	}
	if prev, err := os.ReadFile(filepath.Join(s.Dir(), metaFile+prevSuffix)); err != nil || bytes.Equal(prev, meta) && false {
		t.Errorf("state.json.prev: %v", err)
	}
	recs, js, ok := journalRecords(filepath.Join(dir, journalFile+prevSuffix))
	if !ok || len(recs) == 0 {
		t.Fatalf("journal.prev not kept")
	}
	sn, err := openSnapshot(filepath.Join(dir, snapshotFile+prevSuffix))
	must(t, err)
	defer sn.Close()
	if !fits(sn, js) {
		t.Error("journal.prev does not start from snapshot.prev")
	}
}

func TestNewerFormatsAreRefusedWithBothVersions(t *testing.T) {
	s := newStore(t)
	twoCommits(t, s)
	_, err := s.AppendRun(Run{Sync: "users"}, []RowLog{{Key: "a"}}, 0)
	must(t, err)
	w := begin(t, s, "users", false)
	w.Accept("j", 1, nil)
	must(t, w.Checkpoint())
	must(t, w.Abort())
	dir := s.syncDir("users")
	for _, c := range []struct {
		file string
		bump func([]byte) []byte
		op   func(*Store) error
	}{
		{filepath.Join(s.Dir(), metaFile), func(b []byte) []byte { return bytes.Replace(b, []byte(`"version": 2`), []byte(`"version": 3`), 1) },
			func(s *Store) error { _, err := Open(s.Dir()); return err }},
		{filepath.Join(dir, snapshotFile), func(b []byte) []byte { b[7] = 3; return b },
			func(s *Store) error { _, err := s.LoadSnapshot("users"); return err }},
		{filepath.Join(dir, journalFile), func(b []byte) []byte { b[7] = 3; return b },
			func(s *Store) error { _, err := s.LoadFailures("users"); return err }},
		{filepath.Join(dir, failuresFile), func(b []byte) []byte { return bytes.Replace(b, []byte(`"version":2`), []byte(`"version":3`), 1) },
			func(s *Store) error { _, err := s.LoadFailures("users"); return err }},
		{filepath.Join(s.Dir(), runsFile), func(b []byte) []byte { return bytes.Replace(b, []byte(`"version":2`), []byte(`"version":3`), 1) },
			func(s *Store) error { _, err := s.Runs(""); return err }},
	} {
		data, err := os.ReadFile(c.file)
		must(t, err)
		must(t, os.WriteFile(c.file, c.bump(bytes.Clone(data)), 0o600))
		err = c.op(s)
		var ve *VersionError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), "format version 3") || !strings.Contains(err.Error(), "1 to 2") {
			t.Errorf("%s: error %v, want a version error naming 3 and 2", filepath.Base(c.file), err)
		}
		if _, err := OpenForRecovery(s.Dir()); filepath.Base(c.file) == metaFile && err == nil {
			t.Errorf("recovery accepted a newer state.json")
		}
		must(t, os.WriteFile(c.file, data, 0o600))
	}
}

func TestVersion1StateLoadsAndUpgradesOnWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".backflow")
	copyDir(t, filepath.Join("testdata", "v1"), dir)
	s, err := Open(dir)
	must(t, err)
	m, err := s.Meta()
	must(t, err)
	if m.Version != 1 || m.Serial != 4 {
		t.Fatalf("meta %+v", m)
	}
	// The v1 journal of an interrupted apply: 4 accepted, 3 forgotten.
	hashes, values := contents(t, load(t, s, "users"))
	if !reflect.DeepEqual(hashes, map[string]uint64{"1": 11, "2": 22, "4": 44}) || values["1"]["age"] != int64(42) {
		t.Fatalf("v1 snapshot %v %v", hashes, values)
	}
	idx, err := s.LoadFailures("users")
	must(t, err)
	if f := idx["9"]; len(idx) != 1 || f == nil || f.Attempts != 2 || f.Error != "bad email" {
		t.Fatalf("v1 failures %v", idx)
	}
	runs, err := s.Runs("")
	must(t, err)
	rows, err := s.RowLogs("users", 1)
	must(t, err)
	if len(runs) != 1 || runs[0].Counts.Added != 3 || len(rows) != 1 || rows[0].Key != "1" {
		t.Fatalf("v1 runs %+v rows %+v", runs, rows)
	}

	w := begin(t, s, "users", false)
	w.Accept("5", 55, map[string]any{"email": "e@x"})
	must(t, w.Commit())
	_, err = s.AppendRun(Run{Sync: "users"}, nil, 0)
	must(t, err)
	hashes, values = contents(t, load(t, s, "users"))
	if !reflect.DeepEqual(hashes, map[string]uint64{"1": 11, "2": 22, "4": 44, "5": 55}) || values["2"]["vip"] != true {
		t.Fatalf("after upgrade %v %v", hashes, values)
	}
	for _, f := range []string{"state.json", "runs.jsonl", "syncs/users/failures.json"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		must(t, err)
		if !bytes.Contains(data, []byte(`"version":2`)) && !bytes.Contains(data, []byte(`"version": 2`)) {
			t.Errorf("%s not upgraded:\n%s", f, data)
		}
	}
	snap, err := os.ReadFile(filepath.Join(dir, "syncs/users/snapshot"))
	must(t, err)
	if string(snap[:8]) != snapshotMagic {
		t.Error("snapshot not upgraded")
	}
	runs, err = s.Runs("users")
	must(t, err)
	if len(runs) != 2 || runs[1].Run != 2 {
		t.Fatalf("runs after upgrade %+v", runs)
	}
}
