package state

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var updateBad = flag.Bool("update-bad", false, "regenerate testdata/bad from the cases in badCases")

// The bad-input corpus: testdata/bad/base is an intact state directory (two
// commits of sync users, a crashed third run's journal, runs and row
// logs); every other folder of testdata/bad is one bad input: the files
// that differ from base (files/), what to remove or chmod, the operation
// to run and a substring its error must hold (case.json). TestBadInputs
// checks them all; `go test ./state -run TestBadInputs -update-bad`
// regenerates them from badCases.

type badCase struct {
	Op     string            `json:"op"`   // open, load, values, begin, runs, logs
	Want   string            `json:"want"` // substring of the error
	Remove []string          `json:"remove,omitempty"`
	Chmod  map[string]string `json:"chmod,omitempty"` // path → octal mode, applied before the op
	// StateDirIsFile replaces the state directory with a regular file.
	StateDirIsFile bool `json:"state_dir_is_file,omitempty"`
	// NotRoot marks cases about permissions, which root bypasses.
	NotRoot bool `json:"not_root,omitempty"`

	mutate func(m *mutator) `json:"-"`
}

// mutator edits a copy of the base directory.
type mutator struct {
	t   *testing.T
	dir string
}

func (m *mutator) path(rel string) string { return filepath.Join(m.dir, filepath.FromSlash(rel)) }

func (m *mutator) read(rel string) []byte {
	data, err := os.ReadFile(m.path(rel))
	if err != nil {
		m.t.Fatal(err)
	}
	return data
}

func (m *mutator) write(rel string, data []byte) {
	if err := os.WriteFile(m.path(rel), data, 0o600); err != nil {
		m.t.Fatal(err)
	}
}

func (m *mutator) edit(rel string, f func([]byte) []byte) { m.write(rel, f(bytes.Clone(m.read(rel)))) }

func (m *mutator) replace(rel, old, new string) {
	m.edit(rel, func(b []byte) []byte {
		if !bytes.Contains(b, []byte(old)) {
			m.t.Fatalf("%s holds no %q", rel, old)
		}
		return bytes.Replace(b, []byte(old), []byte(new), 1)
	})
}

func (m *mutator) remove(rel string) {
	if err := os.RemoveAll(m.path(rel)); err != nil {
		m.t.Fatal(err)
	}
}

// jsonReplace replaces the first match of a regexp in a JSON file.
func (m *mutator) jsonReplace(rel, re, repl string) {
	m.edit(rel, func(b []byte) []byte {
		r := regexp.MustCompile(re)
		loc := r.FindIndex(b)
		if loc == nil {
			m.t.Fatalf("%s: no match for %s", rel, re)
		}
		return append(append(bytes.Clone(b[:loc[0]]), repl...), b[loc[1]:]...)
	})
}

func sealedEdit(old, new string) func(m *mutator, rel string) {
	return func(m *mutator, rel string) {
		m.replace(rel, old, new)
		m.edit(rel, resealLines)
	}
}

// frames returns the offsets of the frames of a journal.
func frames(data []byte) []int {
	var out []int
	for pos := len(journalMagic); pos+frameHeader <= len(data); {
		out = append(out, pos)
		pos += frameHeader + int(binary.LittleEndian.Uint32(data[pos:]))
	}
	return out
}

const (
	snap  = "syncs/users/snapshot"
	fails = "syncs/users/failures.json"
	jrnl  = "syncs/users/journal"
	runs  = "runs.jsonl"
	rowlg = "logs/users/1.jsonl"
	meta  = "state.json"
)

var badCases = map[string]badCase{
	// state.json
	"meta-garbled":      {Op: "open", Want: "state.json is damaged: unreadable", mutate: func(m *mutator) { m.write(meta, []byte(`{"version":2,"lin`)) }},
	"meta-empty":        {Op: "open", Want: "state.json is damaged: unreadable", mutate: func(m *mutator) { m.write(meta, nil) }},
	"meta-not-object":   {Op: "open", Want: "state.json is damaged: unreadable", mutate: func(m *mutator) { m.write(meta, []byte("[1,2]\n")) }},
	"meta-serial-edit":  {Op: "open", Want: "state.json is damaged: checksum mismatch", mutate: func(m *mutator) { m.jsonReplace(meta, `"serial": \d+`, `"serial": 99999`) }},
	"meta-no-checksum":  {Op: "open", Want: "state.json is damaged: unreadable", mutate: func(m *mutator) { m.jsonReplace(meta, `,\s*"checksum": "[^"]*"`, `,"checksum":5`) }},
	"meta-newer":        {Op: "open", Want: "state.json has format version 7; this build of backflow reads versions 1 to 2: upgrade backflow", mutate: func(m *mutator) { m.jsonReplace(meta, `"version": 2`, `"version": 7`) }},
	"meta-version-zero": {Op: "open", Want: "format version 0 is not one backflow ever wrote", mutate: func(m *mutator) { m.write(meta, []byte(`{"version":0,"lineage":"x","serial":1}`)) }},
	"meta-unknown-key":  {Op: "open", Want: `unknown field "extra"`, mutate: func(m *mutator) { m.jsonReplace(meta, `\{`, `{"extra":1,`) }},
	"meta-deleted":      {Op: "open", Want: "state.json is damaged: missing, but the state folder holds syncs", Remove: []string{meta}},
	"meta-v1-checksum":  {Op: "open", Want: "a version 1 state.json has no checksum", mutate: func(m *mutator) { m.jsonReplace(meta, `"version": 2`, `"version": 1`) }},

	// snapshot
	"snapshot-bad-magic":   {Op: "load", Want: "snapshot is damaged: not a backflow snapshot", mutate: func(m *mutator) { m.edit(snap, func(b []byte) []byte { copy(b, "NOTSNAP!"); return b }) }},
	"snapshot-cut-half":    {Op: "load", Want: "snapshot is damaged: cut short or damaged at its end", mutate: func(m *mutator) { m.edit(snap, func(b []byte) []byte { return b[:len(b)/2] }) }},
	"snapshot-cut-4":       {Op: "load", Want: "snapshot is damaged: cut short (4 bytes)", mutate: func(m *mutator) { m.edit(snap, func(b []byte) []byte { return b[:4] }) }},
	"snapshot-empty":       {Op: "begin", Want: "snapshot is damaged: cut short (0 bytes)", mutate: func(m *mutator) { m.write(snap, nil) }},
	"snapshot-newer":       {Op: "load", Want: "snapshot has format version 3; this build of backflow reads versions 1 to 2", mutate: func(m *mutator) { m.edit(snap, func(b []byte) []byte { b[7] = 3; return b }) }},
	"snapshot-footer-flip": {Op: "load", Want: "snapshot is damaged: footer checksum mismatch", mutate: func(m *mutator) { m.edit(snap, func(b []byte) []byte { b[len(b)-footerSize] ^= 1; return b }) }},
	"snapshot-index-flip":  {Op: "load", Want: "snapshot is damaged: index checksum mismatch", mutate: func(m *mutator) { m.edit(snap, func(b []byte) []byte { b[len(b)-footerSize-3] ^= 0x20; return b }) }},
	"snapshot-value-flip-begin": {Op: "begin", Want: "snapshot is damaged: value record of \"1\": corrupt value record: checksum mismatch",
		mutate: func(m *mutator) {
			m.edit(snap, func(b []byte) []byte { b[bytes.Index(b, []byte("a@x"))] ^= 3; return b })
		}},
	"snapshot-value-flip-read": {Op: "values", Want: "fails its checksum",
		mutate: func(m *mutator) {
			m.edit(snap, func(b []byte) []byte { b[bytes.Index(b, []byte("a@x"))+1] ^= 1; return b })
		}},
	"snapshot-keys-unordered": {Op: "load", Want: "snapshot is damaged: keys out of order", mutate: func(m *mutator) {
		m.edit(snap, func(b []byte) []byte {
			// Keys "1", "2" are one byte each at the start of the arena.
			foot := b[len(b)-footerSize:]
			n := binary.LittleEndian.Uint64(foot[0:])
			arenaLen := binary.LittleEndian.Uint64(foot[16:])
			arena := len(b) - footerSize - int(arenaLen+4*(n+1)+16*n) - int(arenaLen)
			arena += int(arenaLen) // the arena follows the field table
			start := len(b) - footerSize - int(arenaLen+4*(n+1)+16*n)
			if b[start] != '1' || b[start+1] != '2' {
				panic(fmt.Sprintf("arena starts %q (%d)", b[start:start+2], arena))
			}
			b[start], b[start+1] = '2', '1'
			return resealSnapshot(b)
		})
	}},
	"snapshot-deleted":             {Op: "load", Want: "snapshot is damaged: missing, though the journal beside it started from snapshot generation", Remove: []string{snap}},
	"snapshot-from-another-commit": {Op: "load", Want: "(from another commit)", mutate: func(m *mutator) { m.write(snap, m.read(snap+".prev")) }},

	// journal
	"journal-bad-magic": {Op: "load", Want: "journal is damaged: not a backflow journal", mutate: func(m *mutator) { m.edit(jrnl, func(b []byte) []byte { copy(b, "JOURNAL!"); return b }) }},
	"journal-newer":     {Op: "begin", Want: "journal has format version 3", mutate: func(m *mutator) { m.edit(jrnl, func(b []byte) []byte { b[7] = 3; return b }) }},
	"journal-damaged-middle": {Op: "load", Want: "journal is damaged: damaged at offset 8, before frame 2 which was written after it", mutate: func(m *mutator) {
		m.edit(jrnl, func(b []byte) []byte { b[frames(b)[0]+frameHeader+2] ^= 0x40; return b })
	}},
	"journal-damaged-header": {Op: "begin", Want: "journal is damaged: damaged at offset", mutate: func(m *mutator) {
		m.edit(jrnl, func(b []byte) []byte { b[frames(b)[1]+9] ^= 0x01; return b })
	}},
	"journal-unknown-kind": {Op: "load", Want: "journal is damaged: record at offset", mutate: func(m *mutator) {
		m.edit(jrnl, func(b []byte) []byte { b[frames(b)[1]+frameHeader+4] = 'Z'; return resealJournal(b) })
	}},
	"journal-record-overruns": {Op: "load", Want: "journal is damaged: malformed record at offset", mutate: func(m *mutator) {
		m.edit(jrnl, func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[frames(b)[1]+frameHeader:], 1<<20)
			return resealJournal(b)
		})
	}},
	"journal-field-gap": {Op: "load", Want: "field 9 defined before field", mutate: func(m *mutator) {
		m.edit(jrnl, func(b []byte) []byte {
			i := bytes.Index(b, []byte{recField})
			for ; i >= 0 && b[i-4] == 0; i = bytes.Index(b[i+1:], []byte{recField}) + i + 1 {
				if binary.LittleEndian.Uint32(b[i-4:]) < 64 {
					break
				}
			}
			b[i+1] = 9
			return resealJournal(b)
		})
	}},

	// failures.json
	"failures-garbled-line":  {Op: "load", Want: "failures.json is damaged: line 2: invalid character", mutate: func(m *mutator) { sealedEdit(`{"key"`, `{key"`)(m, fails) }},
	"failures-checksum":      {Op: "load", Want: "failures.json is damaged: checksum mismatch", mutate: func(m *mutator) { m.replace(fails, "bad email", "bad emaiL") }},
	"failures-cut":           {Op: "load", Want: "failures.json is damaged: cut short (no checksum trailer)", mutate: func(m *mutator) { m.edit(fails, func(b []byte) []byte { return b[:len(b)-10] }) }},
	"failures-cut-at-header": {Op: "begin", Want: "failures.json is damaged: cut short after its header", mutate: func(m *mutator) { m.edit(fails, func(b []byte) []byte { return b[:bytes.IndexByte(b, '\n')] }) }},
	"failures-wrong-kind":    {Op: "load", Want: `failures.json is damaged: holds "runs" data`, mutate: func(m *mutator) { sealedEdit(`"backflow":"failures"`, `"backflow":"runs"`)(m, fails) }},
	"failures-newer":         {Op: "load", Want: "failures.json has format version 4", mutate: func(m *mutator) { m.replace(fails, `"version":2`, `"version":4`) }},
	"failures-deleted":       {Op: "load", Want: "failures.json is damaged: missing, though the snapshot beside it was committed with one", Remove: []string{fails}},
	"failures-duplicate-key": {Op: "begin", Want: `appears twice`, mutate: func(m *mutator) {
		m.edit(fails, func(b []byte) []byte {
			lines := bytes.SplitAfter(b, []byte("\n"))
			dup := append(append(bytes.Join(lines[:2], nil), lines[1]...), bytes.Join(lines[2:], nil)...)
			return resealLines(dup)
		})
	}},
	"failures-unknown-field":       {Op: "load", Want: `unknown field "foo"`, mutate: func(m *mutator) { sealedEdit(`{"key"`, `{"foo":1,"key"`)(m, fails) }},
	"failures-v1-garbled":          {Op: "load", Want: "failures.json is damaged: unreadable", mutate: func(m *mutator) { m.write(fails, []byte(`[{"key":"a",`)) }},
	"failures-from-another-commit": {Op: "load", Want: "(files of different commits)", mutate: func(m *mutator) { m.write(fails, m.read(fails+".prev")) }},

	// run history
	"runs-cut":          {Op: "runs", Want: "runs.jsonl is damaged: cut short (no checksum trailer)", mutate: func(m *mutator) { m.edit(runs, func(b []byte) []byte { return b[:len(b)-5] }) }},
	"runs-checksum":     {Op: "runs", Want: "runs.jsonl is damaged: checksum mismatch", mutate: func(m *mutator) { m.replace(runs, `"succeeded"`, `"succeedxd"`) }},
	"runs-newer":        {Op: "runs", Want: "runs.jsonl has format version 5", mutate: func(m *mutator) { m.replace(runs, `"version":2`, `"version":5`) }},
	"runs-bad-line":     {Op: "runs", Want: "runs.jsonl is damaged: line 3:", mutate: func(m *mutator) { sealedEdit(`"run":2`, `"run":"2"`)(m, runs) }},
	"runs-empty":        {Op: "runs", Want: "runs.jsonl is damaged: empty", mutate: func(m *mutator) { m.write(runs, nil) }},
	"runs-no-sync":      {Op: "runs", Want: "no sync name or run number", mutate: func(m *mutator) { sealedEdit(`"sync":"users"`, `"sync":""`)(m, runs) }},
	"runs-v1-unknown":   {Op: "runs", Want: `runs.jsonl is damaged: line 1: json: unknown field "bogus"`, mutate: func(m *mutator) { m.write(runs, []byte(`{"sync":"users","run":1,"bogus":true}`+"\n")) }},
	"runs-before-apply": {Op: "begin", Want: "runs.jsonl is damaged: checksum mismatch", mutate: func(m *mutator) { m.replace(runs, `"succeeded"`, `"succeedxd"`) }},
	"rowlog-checksum":   {Op: "logs", Want: "1.jsonl is damaged: checksum mismatch", mutate: func(m *mutator) { m.replace(rowlg, `"bad email"`, `"bad emall"`) }},
	"rowlog-cut":        {Op: "logs", Want: "1.jsonl is damaged: cut short", mutate: func(m *mutator) { m.edit(rowlg, func(b []byte) []byte { return b[:len(b)/2] }) }},

	// folders and permissions
	"state-dir-is-file":    {Op: "open", Want: "is a file, not a folder", StateDirIsFile: true},
	"syncs-is-file":        {Op: "begin", Want: "a file, not a folder", Remove: []string{"syncs"}, mutate: func(m *mutator) { m.remove("syncs"); m.write("syncs", []byte("x")) }},
	"snapshot-unreadable":  {Op: "load", Want: "permission denied: the state folder and its files must be readable and writable", Chmod: map[string]string{snap: "000"}, NotRoot: true},
	"state-dir-unwritable": {Op: "begin", Want: "permission denied: the state folder and its files must be readable and writable", Chmod: map[string]string{".": "500"}, NotRoot: true},
}

// runBadOp runs a case's operation on the state directory dir.
func runBadOp(op, dir string) error {
	s := &Store{dir: dir}
	switch op {
	case "open":
		_, err := Open(dir)
		return err
	case "load":
		sn, err := s.LoadSnapshot("users")
		if err != nil {
			return err
		}
		_ = sn.Close()
		_, err = s.LoadFailures("users")
		return err
	case "values":
		sn, err := s.LoadSnapshot("users")
		if err != nil {
			return err
		}
		defer sn.Close()
		for i := range sn.Len() {
			if _, err := sn.Values(i); err != nil {
				return err
			}
		}
		return nil
	case "begin":
		w, err := s.Begin("users", false)
		if err == nil {
			_ = w.Abort()
		}
		return err
	case "runs":
		_, err := s.Runs("")
		return err
	case "logs":
		_, err := s.RowLogs("users", 1)
		return err
	}
	return fmt.Errorf("unknown op %q", op)
}

func TestBadInputs(t *testing.T) {
	root := filepath.Join("testdata", "bad")
	if *updateBad {
		generateBadInputs(t, root)
	}
	entries, err := os.ReadDir(root)
	must(t, err)
	base := filepath.Join(root, "base")
	// The base itself passes every operation.
	for _, op := range []string{"open", "load", "values", "begin", "runs", "logs"} {
		dir := filepath.Join(t.TempDir(), "state")
		copyDir(t, base, dir)
		if err := runBadOp(op, dir); err != nil {
			t.Fatalf("base: %s: %v", op, err)
		}
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() || e.Name() == "base" {
			continue
		}
		n++
		t.Run(e.Name(), func(t *testing.T) {
			caseDir := filepath.Join(root, e.Name())
			data, err := os.ReadFile(filepath.Join(caseDir, "case.json"))
			must(t, err)
			var c badCase
			must(t, json.Unmarshal(data, &c))
			if c.NotRoot && os.Geteuid() == 0 {
				t.Skip("permissions do not bind root")
			}
			dir := filepath.Join(t.TempDir(), "state")
			copyDir(t, base, dir)
			for _, rel := range c.Remove {
				must(t, os.RemoveAll(filepath.Join(dir, filepath.FromSlash(rel))))
			}
			if files := filepath.Join(caseDir, "files"); exists(files) {
				copyDir(t, files, dir)
			}
			if c.StateDirIsFile {
				must(t, os.RemoveAll(dir))
				must(t, os.WriteFile(dir, []byte("not a folder"), 0o600))
			}
			for rel, mode := range c.Chmod {
				m, err := strconv.ParseUint(mode, 8, 32)
				must(t, err)
				p := filepath.Join(dir, filepath.FromSlash(rel))
				must(t, os.Chmod(p, fs.FileMode(m)))
				t.Cleanup(func() { _ = os.Chmod(p, 0o700) })
			}
			err = runBadOp(c.Op, dir)
			if err == nil {
				t.Fatalf("%s succeeded, want an error holding %q", c.Op, c.Want)
			}
			if !strings.Contains(err.Error(), c.Want) {
				t.Fatalf("%s: error %q\nwant it to hold %q", c.Op, err, c.Want)
			}
			var ce *CorruptError
			if errors.As(err, &ce) && !strings.Contains(err.Error(), "backflow state recover") {
				t.Errorf("error %q does not say how to recover", err)
			}
		})
	}
	if n < 30 {
		t.Errorf("%d bad inputs, want at least 30", n)
	}
}

// generateBadInputs writes testdata/bad from a fresh seed store and
// badCases.
func generateBadInputs(t *testing.T, root string) {
	must(t, os.RemoveAll(root))
	base := filepath.Join(root, "base")
	copyDir(t, seedStore(t).Dir(), base)
	for _, junk := range []string{"lock", "lock.flock"} {
		_ = os.Remove(filepath.Join(base, junk))
	}
	for name, c := range badCases {
		dir := filepath.Join(t.TempDir(), "state")
		copyDir(t, base, dir)
		if c.mutate != nil {
			c.mutate(&mutator{t: t, dir: dir})
		}
		caseDir := filepath.Join(root, name)
		must(t, os.MkdirAll(caseDir, 0o755))
		must(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(dir, path)
			got, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if want, err := os.ReadFile(filepath.Join(base, rel)); err == nil && bytes.Equal(got, want) {
				return nil
			}
			out := filepath.Join(caseDir, "files", rel)
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return err
			}
			return os.WriteFile(out, got, 0o644)
		}))
		// Files the mutation removed (beyond c.Remove).
		must(t, filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(base, path)
			if !exists(filepath.Join(dir, rel)) && !slicesContains(c.Remove, filepath.ToSlash(rel)) && !slicesContains(c.Remove, strings.Split(filepath.ToSlash(rel), "/")[0]) {
				c.Remove = append(c.Remove, filepath.ToSlash(rel))
			}
			return nil
		}))
		data, err := json.MarshalIndent(c, "", "  ")
		must(t, err)
		must(t, os.WriteFile(filepath.Join(caseDir, "case.json"), append(data, '\n'), 0o644))
	}
}

func slicesContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
