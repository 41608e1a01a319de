package state

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// failuresKind names failure index files in their seal header.
const failuresKind = "failures"

// failHeader is what the failure index file says of itself.
type failHeader struct {
	exists   bool
	legacy   bool   // version 1: a JSON list, no checksum, no generation
	snapshot uint64 // generation of the snapshot it was committed with
}

// readFailures reads a failure index file (failures.json); a missing file
// is an empty index.
func readFailures(path string) (FailureIndex, failHeader, error) {
	data, err := readFile(path)
	if err != nil || data == nil {
		return FailureIndex{}, failHeader{}, err
	}
	return parseFailures(path, data)
}

// parseFailures decodes and checks data, the content of the failure index
// file at path.
func parseFailures(path string, data []byte) (FailureIndex, failHeader, error) {
	idx := FailureIndex{}
	sf, err := openSealed(path, failuresKind, data)
	if err != nil {
		return nil, failHeader{}, err
	}
	fh := failHeader{exists: true, legacy: sf.legacy}
	if sf.legacy {
		var list []*Failure
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&list); err != nil {
			return nil, fh, corrupt(path, "unreadable (%v)", err)
		}
		if dec.More() {
			return nil, fh, corrupt(path, "unexpected data after the failure list")
		}
		for _, f := range list {
			if f == nil {
				return nil, fh, corrupt(path, "null entry in the failure list")
			}
			idx[f.Key] = f
		}
		return idx, fh, nil
	}
	if fh.snapshot, err = parseGen(sf.header.Snapshot); err != nil {
		return nil, fh, corrupt(path, "unreadable snapshot generation %q", sf.header.Snapshot)
	}
	for i, line := range sf.lines {
		f := &Failure{}
		if err := strictUnmarshal(line, f); err != nil {
			return nil, fh, corrupt(path, "line %d: %v", i+2, err)
		}
		if _, dup := idx[f.Key]; dup {
			return nil, fh, corrupt(path, "line %d: key %q appears twice", i+2, f.Key)
		}
		idx[f.Key] = f
	}
	return idx, fh, nil
}

// failuresHeader reads only the header of a failure index file.
func failuresHeader(path string) (failHeader, error) {
	f, err := openStateFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return failHeader{}, nil
	}
	if err != nil {
		return failHeader{}, fileErr(err)
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(io.LimitReader(f, 4096), 4096).ReadSlice('\n')
	if !bytes.HasPrefix(line, sealPrefix) {
		return failHeader{exists: true, legacy: true}, nil
	}
	if err != nil {
		return failHeader{}, corrupt(path, "cut short after its header")
	}
	var h sealHeader
	if err := strictUnmarshal(line, &h); err != nil {
		return failHeader{}, corrupt(path, "unreadable header: %v", err)
	}
	if h.Kind != failuresKind {
		return failHeader{}, corrupt(path, "holds %q data, not %s", h.Kind, failuresKind)
	}
	if h.Version > FormatVersion {
		return failHeader{}, &VersionError{Path: path, Version: h.Version}
	}
	gen, err := parseGen(h.Snapshot)
	if err != nil {
		return failHeader{}, corrupt(path, "unreadable snapshot generation %q", h.Snapshot)
	}
	return failHeader{exists: true, snapshot: gen}, nil
}

func formatGen(g uint64) string { return fmt.Sprintf("%016x", g) }

func parseGen(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.ParseUint(s, 16, 64)
}

// writeFailures writes the failure index sorted by key, naming the
// generation of the snapshot it goes with, and keeps the file it replaces
// as failures.json.prev.
func writeFailures(dir string, idx FailureIndex, snapshotGen uint64) error {
	keys := slices.Sorted(maps.Keys(idx))
	return writeKeepingPrev(dir, failuresFile, func(w *bufio.Writer) error {
		sw, err := newSealWriter(w, sealHeader{Kind: failuresKind, Snapshot: formatGen(snapshotGen)})
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := sw.put(idx[k]); err != nil {
				return err
			}
		}
		return sw.close()
	})
}

// gens is what the files of a sync say of the snapshot generation.
type gens struct {
	path    string
	exists  bool
	version int
	gen     uint64
	parent  uint64
}

func (sn *Snapshot) gens() gens {
	return gens{path: sn.path, exists: sn.f != nil, version: sn.version, gen: sn.gen, parent: sn.parent}
}

// snapshotGens reads only the generations of a snapshot file.
func snapshotGens(path string) (gens, error) {
	f, err := openStateFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return gens{path: path, version: FormatVersion}, nil
	}
	if err != nil {
		return gens{}, fileErr(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return gens{}, fileErr(err)
	}
	version, foot, err := snapshotHead(path, f, st.Size())
	if err != nil {
		return gens{}, err
	}
	g := gens{path: path, exists: true, version: version}
	if version >= 2 {
		g.gen, g.parent = binary.LittleEndian.Uint64(foot[32:]), binary.LittleEndian.Uint64(foot[40:])
	}
	return g, nil
}

// checkGenerations refuses a snapshot, failure index and journal that do
// not belong together: files of different commits, or a file deleted
// while the others remain.
//
// A journal records the snapshot generation it started from (B). While
// it exists a Commit may have replaced the snapshot (its parent is then B)
// and the failure index (which then names the new snapshot); otherwise
// the failure index names the snapshot beside it.
func checkGenerations(dir string, sg gens, fh failHeader, hasJournal bool, js journalScan) error {
	if err := generationsAgree(dir, sg, fh, hasJournal, js); err != nil {
		err.mixed = true
		return err
	}
	return nil
}

func generationsAgree(dir string, sg gens, fh failHeader, hasJournal bool, js journalScan) *CorruptError {
	fpath := filepath.Join(dir, failuresFile)
	legacySnap := sg.exists && sg.version < 2
	if js.version == 1 || (legacySnap && (fh.legacy || !fh.exists)) {
		return nil // version 1 state carries no generations
	}
	if hasJournal && js.hasBase {
		b := js.base
		if !legacySnap && sg.gen != b && sg.parent != b {
			if !sg.exists {
				return corrupt(sg.path, "missing, though the journal beside it started from snapshot generation %s", formatGen(b))
			}
			return corrupt(filepath.Join(dir, journalFile), "started from snapshot generation %s, but the snapshot is generation %s (from another commit)", formatGen(b), formatGen(sg.gen))
		}
		switch {
		case fh.exists && !fh.legacy && fh.snapshot != b && fh.snapshot != sg.gen:
			return corrupt(fpath, "was committed with snapshot generation %s, but the journal started from generation %s (files of different commits)", formatGen(fh.snapshot), formatGen(b))
		case !fh.exists && b != 0:
			return corrupt(fpath, "missing, though the snapshot beside it was committed with one")
		}
		return nil
	}
	if !fh.exists {
		if sg.exists {
			return corrupt(fpath, "missing, though the snapshot beside it was committed with one")
		}
		for _, name := range []string{snapshotFile + prevSuffix, failuresFile + prevSuffix, journalFile + prevSuffix} {
			if exists(filepath.Join(dir, name)) {
				return corrupt(sg.path, "missing, and so is the failure index, though earlier generations (%s) are beside them", name)
			}
		}
		return nil
	}
	if fh.legacy {
		return nil
	}
	if fh.snapshot != sg.gen {
		if !sg.exists {
			return corrupt(sg.path, "missing, though the failure index beside it was committed with snapshot generation %s", formatGen(fh.snapshot))
		}
		return corrupt(fpath, "was committed with snapshot generation %s, but the snapshot beside it is generation %s (files of different commits)", formatGen(fh.snapshot), formatGen(sg.gen))
	}
	return nil
}
