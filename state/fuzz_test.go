package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zeebo/xxh3"
)

// seedStore builds a state directory with every kind of file: a snapshot
// with values of each type, a failure index with an unknown outcome, a
// crashed apply's journal with records in flight, runs and row logs.
func seedStore(tb testing.TB) *Store {
	tb.Helper()
	s, err := Open(filepath.Join(tb.TempDir(), ".backflow"))
	if err != nil {
		tb.Fatal(err)
	}
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	w, err := s.Begin("users", false)
	if err != nil {
		tb.Fatal(err)
	}
	w.Accept("1", 11, map[string]any{"email": "a@x", "age": int64(42), "score": 1.5, "vip": true, "note": nil, "off": false})
	w.Accept("2", 22, map[string]any{"email": strings.Repeat("é", 100)})
	w.Accept("3", 33, nil)
	w.Fail(Failure{Key: "9", Operation: "upsert", Error: "bad email", Attempts: 2, FirstFailed: t0, LastFailed: t0})
	if err := w.InFlight([]InFlightRecord{{Key: "7", Operation: "insert"}}); err != nil {
		tb.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		tb.Fatal(err)
	}
	w, err = s.Begin("users", false)
	if err != nil {
		tb.Fatal(err)
	}
	w.Accept("6", 66, map[string]any{"email": "f@x"})
	w.Fail(Failure{Key: "8", Operation: "delete", Error: "refused", Attempts: 1, FirstFailed: t0, LastFailed: t0})
	if err := w.Commit(); err != nil {
		tb.Fatal(err)
	}
	w, err = s.Begin("users", false)
	if err != nil {
		tb.Fatal(err)
	}
	if err := w.InFlight([]InFlightRecord{{Key: "4", Operation: "upsert"}, {Key: "2", Operation: "delete"}}); err != nil {
		tb.Fatal(err)
	}
	w.Accept("4", 44, map[string]any{"email": "d@x", "new": int64(-7)})
	w.Forget("3")
	if err := w.Checkpoint(); err != nil {
		tb.Fatal(err)
	}
	w.Fail(Failure{Key: "5", Operation: "update", Error: "locked", Attempts: 1, FirstFailed: t0, LastFailed: t0})
	if err := w.Checkpoint(); err != nil {
		tb.Fatal(err)
	}
	_ = w.Abort() // a crash: the journal stays
	for i := range 2 {
		if _, err := s.AppendRun(Run{Sync: "users", Status: "succeeded", Started: t0, Counts: Counts{Added: i}, ByAction: map[string]Outcomes{"add": {Accepted: 1}}},
			[]RowLog{{Key: "1", Operation: "upsert", Status: "accepted", Attempts: 1}, {Key: "9", Status: "rejected", Error: "bad email"}}, 0); err != nil {
			tb.Fatal(err)
		}
	}
	return s
}

// seedFiles returns the content of a seed store's file, plus variants cut
// short and with a flipped bit, for the fuzz corpora.
func seedFiles(f *testing.F, rel ...string) {
	s := seedStore(f)
	for _, r := range rel {
		data, err := os.ReadFile(filepath.Join(s.Dir(), r))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		f.Add(data[:len(data)/2])
		flipped := bytes.Clone(data)
		flipped[len(flipped)/3] ^= 0x10
		f.Add(flipped)
	}
	f.Add([]byte{})
	f.Add([]byte("\x00\x01\xff"))
}

// checkDecodeError fails unless err is nil or names the file it is about.
func checkDecodeError(t *testing.T, err error) {
	t.Helper()
	var ce *CorruptError
	var ve *VersionError
	if err != nil && !errors.As(err, &ce) && !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *CorruptError or *VersionError", err, err)
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// resealSnapshot recomputes the index checksum and footer CRC of a
// version 2 snapshot, so that fuzzing reaches the checks behind them.
func resealSnapshot(data []byte) []byte {
	if len(data) < len(snapshotMagic)+footerSize || string(data[:8]) != snapshotMagic {
		return nil
	}
	data = bytes.Clone(data)
	foot := data[len(data)-footerSize:]
	indexOff := binary.LittleEndian.Uint64(foot[8:])
	if indexOff < 8 || indexOff > uint64(len(data)-footerSize) {
		return nil
	}
	binary.LittleEndian.PutUint64(foot[24:], xxh3.Hash(data[indexOff:len(data)-footerSize]))
	binary.LittleEndian.PutUint32(foot[48:], crc32.Checksum(foot[:48], castagnoli))
	return data
}

// resealJournal recomputes the checksums of every frame of a version 2
// journal whose length fits.
func resealJournal(data []byte) []byte {
	if len(data) < len(journalMagic) || string(data[:8]) != journalMagic {
		return nil
	}
	data = bytes.Clone(data)
	for pos := len(journalMagic); pos+frameHeader <= len(data); {
		n := int(binary.LittleEndian.Uint32(data[pos:]))
		if n > len(data)-pos-frameHeader {
			break
		}
		binary.LittleEndian.PutUint32(data[pos+4:], crc32.Checksum(data[pos+frameHeader:pos+frameHeader+n], castagnoli))
		binary.LittleEndian.PutUint32(data[pos+28:], crc32.Checksum(data[pos:pos+28], castagnoli))
		pos += frameHeader + n
	}
	return data
}

// resealLines recomputes the trailer of a sealed file.
func resealLines(data []byte) []byte {
	if !bytes.HasPrefix(data, sealPrefix) {
		return nil
	}
	body := bytes.TrimSuffix(data, []byte("\n"))
	if i := bytes.LastIndexByte(body, '\n'); i >= 0 {
		body = body[:i+1]
	} else {
		return nil
	}
	lines := bytes.Count(body, []byte("\n")) - 1
	return fmt.Appendf(bytes.Clone(body), `{"crc32c":"%08x","size":%d,"lines":%d}`+"\n", crc32.Checksum(body, castagnoli), len(body), lines)
}

func FuzzSnapshot(f *testing.F) {
	seedFiles(f, "syncs/users/snapshot", "syncs/users/snapshot.prev")
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzSnapshot(t, data)
		if resealed := resealSnapshot(data); resealed != nil {
			fuzzSnapshot(t, resealed)
		}
		_, _ = decodeValues(data, []string{"a", "b", "c"})
	})
}

func fuzzSnapshot(t *testing.T, data []byte) {
	{
		sn, err := readIndex("snapshot", nopCloser{bytes.NewReader(data)}, int64(len(data)))
		checkDecodeError(t, err)
		if err != nil {
			return
		}
		checkDecodeError(t, sn.Verify())
		for i := range sn.Len() {
			if j, _, ok := sn.Lookup(sn.Key(i)); !ok || j != i {
				t.Fatalf("Lookup(Key(%d)) = %d, %v", i, j, ok)
			}
			if _, err := sn.Values(i); err != nil && !errors.Is(err, errCorruptValues) {
				checkDecodeError(t, err)
			}
		}
	}
}

func FuzzJournal(f *testing.F) {
	seedFiles(f, "syncs/users/journal", "syncs/users/journal.prev")
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzJournal(t, data)
		if resealed := resealJournal(data); resealed != nil {
			fuzzJournal(t, resealed)
		}
	})
}

func fuzzJournal(t *testing.T, data []byte) {
	unknown := map[string]string{}
	var recs [][]byte
	if salvageJournal(data, &recs, unknown) > len(data) {
		t.Fatal("salvage beyond the data")
	}
	{
		fields := newFieldTable(nil)
		ch := &changes{src: bytes.NewReader(data)}
		r := &replayer{fields: fields, failures: FailureIndex{}, changes: ch, inflight: map[string]inFlight{}}
		js, err := scanJournal("journal", data, r.apply)
		checkDecodeError(t, err)
		if err != nil {
			return
		}
		if js.valid > len(data) {
			t.Fatalf("valid prefix %d of %d bytes", js.valid, len(data))
		}
		r.settle()
		ch.sortLatest()
		sn, err := overlay(&Snapshot{keyOff: []uint32{0}}, ch, fields.names)
		if err != nil {
			t.Fatal(err)
		}
		for i := range sn.Len() {
			_, _ = sn.Values(i)
		}
	}
}

func FuzzFailures(f *testing.F) {
	seedFiles(f, "syncs/users/failures.json", "syncs/users/failures.json.prev")
	f.Add([]byte(`[{"key":"a","operation":"upsert","error":"e","attempts":1,"first_failed":"2025-01-01T00:00:00Z","last_failed":"2025-01-01T00:00:00Z"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, d := range [][]byte{data, resealLines(data)} {
			idx, _, err := parseFailures("failures.json", d)
			checkDecodeError(t, err)
			for k, f := range idx {
				if f == nil || f.Key != k {
					t.Fatalf("entry %q = %+v", k, f)
				}
			}
		}
	})
}

func FuzzRunHistory(f *testing.F) {
	seedFiles(f, "runs.jsonl", "runs.jsonl.prev", "logs/users/1.jsonl")
	f.Add([]byte(`{"sync":"users","run":1,"status":"succeeded"}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, d := range [][]byte{data, resealLines(data)} {
			_, err := parseRuns("runs.jsonl", d)
			checkDecodeError(t, err)
			_, err = parseRowLogs("1.jsonl", d)
			checkDecodeError(t, err)
		}
		_, err := decodeMeta("state.json", data)
		checkDecodeError(t, err)
	})
}

// TestResealIsIdentityOnIntactFiles checks the fuzz harness: resealing an
// intact file changes nothing, so resealed inputs are files a writer could
// have produced from the mutated content.
func TestResealIsIdentityOnIntactFiles(t *testing.T) {
	s := seedStore(t)
	for rel, reseal := range map[string]func([]byte) []byte{
		"syncs/users/snapshot":      resealSnapshot,
		"syncs/users/journal":       resealJournal,
		"syncs/users/failures.json": resealLines,
		"runs.jsonl":                resealLines,
		"logs/users/1.jsonl":        resealLines,
	} {
		data, err := os.ReadFile(filepath.Join(s.Dir(), rel))
		must(t, err)
		if got := reseal(data); !bytes.Equal(got, data) {
			t.Errorf("%s: resealing an intact file changed it", rel)
		}
	}
}
