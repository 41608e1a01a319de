package state

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// RecoveryStep is one repair that Recover makes.
type RecoveryStep struct {
	File    string `json:"file"`    // the damaged or missing file
	Problem string `json:"problem"` // what is wrong with it
	Action  string `json:"action"`  // what Recover does
	// Loses says what the repair loses ("": nothing). Lost outcomes are
	// re-derived by the next plan: records are sent again, never forgotten,
	// except where Loses says otherwise.
	Loses string `json:"loses,omitempty"`
}

// Recovery is what PlanRecovery found and Recover would do.
type Recovery struct {
	Steps []RecoveryStep
	fixes []func() error
}

// Empty reports whether the state needs no repair.
func (r *Recovery) Empty() bool { return len(r.Steps) == 0 }

// damagedSuffix names a damaged file moved aside by Recover (never deleted,
// never overwritten).
const damagedSuffix = ".damaged-"

// PlanRecovery checks every file of the state directory and plans how to
// restore the last good generation of each damaged one, saying what that
// loses. It changes nothing. State of a newer format version is refused.
func (s *Store) PlanRecovery() (*Recovery, error) {
	r := &Recovery{}
	if err := s.planMeta(r); err != nil {
		return nil, err
	}
	if err := s.planRuns(r); err != nil {
		return nil, err
	}
	syncs, err := s.Syncs()
	if err != nil {
		return nil, err
	}
	for _, sync := range syncs {
		if err := s.planSync(r, sync); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Recover carries out a recovery planned by PlanRecovery; the caller holds
// the Lock. Damaged files are moved aside as name.damaged-TIME, not
// deleted. Each sync repaired is committed afresh, so that the state it
// ends with passes every check.
func (s *Store) Recover(r *Recovery) error {
	for _, fix := range r.fixes {
		if err := fix(); err != nil {
			return fmt.Errorf("recover state in %s: %w", s.dir, err)
		}
	}
	return nil
}

func moveAside(path string) error {
	if !exists(path) {
		return nil
	}
	if err := os.Rename(path, path+damagedSuffix+time.Now().UTC().Format("20060102T150405.000000000")); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func problem(err error) string {
	var ce *CorruptError
	if errors.As(err, &ce) {
		return ce.Problem
	}
	return err.Error()
}

func (s *Store) planMeta(r *Recovery) error {
	_, err := s.Meta()
	var ce *CorruptError
	if err == nil || !errors.As(err, &ce) {
		return err
	}
	path := filepath.Join(s.dir, metaFile)
	step := RecoveryStep{File: path, Problem: ce.Problem}
	var m Meta
	prevData, perr := readStateFile(path + prevSuffix)
	if perr == nil {
		m, perr = decodeMeta(path+prevSuffix, prevData)
	}
	if perr == nil {
		// The damaged file was one write ahead of its previous generation;
		// one more keeps the serial from ever going back.
		m.Serial += 2
		step.Action = fmt.Sprintf("restore it from %s (lineage %s), with serial %d", metaFile+prevSuffix, m.Lineage, m.Serial)
		step.Loses = "nothing (plans saved before the damage are refused as stale)"
	} else {
		m = Meta{Lineage: randomHex(16), Serial: 1}
		step.Action = "write a new one with a new lineage (" + metaFile + prevSuffix + " is missing or damaged too)"
		step.Loses = "the lineage: plans saved before are refused"
	}
	m.Version = FormatVersion
	r.Steps = append(r.Steps, step)
	r.fixes = append(r.fixes, func() error {
		if err := moveAside(path); err != nil {
			return err
		}
		data := fmt.Appendf(nil, "{\n  \"version\": %d,\n  \"lineage\": %q,\n  \"serial\": %d,\n  \"checksum\": %q\n}\n", m.Version, m.Lineage, m.Serial, metaChecksum(m))
		return writeFileAtomic(s.dir, metaFile, data)
	})
	return nil
}

func (s *Store) planRuns(r *Recovery) error {
	path := filepath.Join(s.dir, runsFile)
	_, err := s.readRuns()
	var ce *CorruptError
	switch {
	case err == nil:
	case !errors.As(err, &ce):
		return err
	default:
		step := RecoveryStep{File: path, Problem: ce.Problem}
		prev, perr := readStateFile(path + prevSuffix)
		if perr == nil {
			_, perr = parseRuns(path+prevSuffix, prev)
		}
		if perr == nil {
			step.Action = "restore it from " + runsFile + prevSuffix
			step.Loses = "the history entry of the last run recorded (run history only)"
		} else {
			prev = nil
			step.Action = "start an empty run history (" + runsFile + prevSuffix + " is missing or damaged too)"
			step.Loses = "the run history (run history only; row logs left are kept until they age out)"
		}
		r.Steps = append(r.Steps, step)
		r.fixes = append(r.fixes, func() error {
			if err := moveAside(path); err != nil {
				return err
			}
			if prev == nil {
				return nil
			}
			return writeFileAtomic(s.dir, runsFile, prev)
		})
	}
	// Row logs.
	syncDirs, err := os.ReadDir(filepath.Join(s.dir, logsDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fileErr(err)
	}
	for _, d := range syncDirs {
		if !d.IsDir() {
			continue
		}
		dir := filepath.Join(s.dir, logsDir, d.Name())
		files, err := os.ReadDir(dir)
		if err != nil {
			return fileErr(err)
		}
		for _, f := range files {
			run, ok := strings.CutSuffix(f.Name(), ".jsonl")
			if _, err := strconv.Atoi(run); !ok || err != nil {
				continue
			}
			p := filepath.Join(dir, f.Name())
			data, err := readStateFile(p)
			if err != nil {
				return fileErr(err)
			}
			if _, err := parseRowLogs(p, data); err != nil {
				r.Steps = append(r.Steps, RecoveryStep{File: p, Problem: problem(err), Action: "move it aside",
					Loses: fmt.Sprintf("the per-record log of run %s of sync %s (logs only)", run, d.Name())})
				r.fixes = append(r.fixes, func() error { return moveAside(p) })
			}
		}
	}
	return nil
}

// checkSync runs the checks Begin runs on a sync's files.
func checkSync(dir string) error {
	base, err := openSnapshot(filepath.Join(dir, snapshotFile))
	if err != nil {
		return err
	}
	defer base.Close()
	if err := base.Verify(); err != nil {
		return err
	}
	_, fh, err := readFailures(filepath.Join(dir, failuresFile))
	if err != nil {
		return err
	}
	jpath := filepath.Join(dir, journalFile)
	data, err := readFile(jpath)
	if err != nil {
		return err
	}
	r := &replayer{fields: newFieldTable(base.fields), failures: FailureIndex{}, inflight: map[string]inFlight{}}
	js, err := scanJournal(jpath, data, r.apply)
	if gerr := checkGenerations(dir, base.gens(), fh, data != nil, js); gerr != nil {
		return gerr
	}
	return err
}

// openChecked opens a snapshot file and verifies every value record.
func openChecked(path string) (*Snapshot, error) {
	sn, err := openSnapshot(path)
	if err != nil {
		return nil, err
	}
	if err := sn.Verify(); err != nil {
		_ = sn.Close()
		return nil, err
	}
	return sn, nil
}

// journalRecords returns the records of an intact journal file (nil when
// missing or not intact) and its base.
func journalRecords(path string) (recs [][]byte, js journalScan, ok bool) {
	data, err := readStateFile(path)
	if err != nil {
		return nil, js, false
	}
	js, err = scanJournal(path, data, func(_ int, rec []byte) error {
		recs = append(recs, rec)
		return nil
	})
	return recs, js, err == nil && js.version == 2 && js.hasBase
}

func fits(sn *Snapshot, js journalScan) bool {
	return sn.gen == js.base || (sn.gen != 0 && sn.parent == js.base)
}

// planSync plans the repair of one sync: it rebuilds the sync's state from
// its best intact parts (in order: the current files, the previous
// generation with the journal that led from it, a salvage of the damaged
// snapshot's intact records), then commits it afresh.
func (s *Store) planSync(r *Recovery, sync string) error {
	dir := s.syncDir(sync)
	err := checkSync(dir)
	var ce *CorruptError
	if err == nil {
		return nil
	}
	if !errors.As(err, &ce) {
		return err
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	var steps []RecoveryStep
	var aside []string // damaged files moved aside

	prevRecs, prevJS, prevOK := journalRecords(path(journalFile + prevSuffix))

	// The snapshot.
	snap, snapErr := openChecked(path(snapshotFile))
	var snapFrom string // file to restore as the snapshot ("": keep, or salvage)
	var salvaged []string
	usePrevJournal := false
	if snapErr == nil {
		usePrevJournal = prevOK && fits(snap, prevJS)
		_ = snap.Close()
	} else {
		var ve *VersionError
		if errors.As(snapErr, &ve) {
			return snapErr
		}
		step := RecoveryStep{File: path(snapshotFile), Problem: problem(snapErr)}
		aside = append(aside, path(snapshotFile))
		prev, perr := openChecked(path(snapshotFile + prevSuffix))
		switch {
		case perr == nil && prevOK && fits(prev, prevJS):
			snapFrom, usePrevJournal = path(snapshotFile+prevSuffix), true
			step.Action = "restore " + snapshotFile + prevSuffix + " and replay " + journalFile + prevSuffix + " onto it (the last run's results)"
			if prev.f == nil {
				// The first commit's journal leads from an empty snapshot.
				step.Action = "replay " + journalFile + prevSuffix + " (the only run so far) onto an empty snapshot"
			}
		default:
			keys, ok := salvageSnapshot(path(snapshotFile))
			switch {
			case ok:
				salvaged = keys
				step.Action = "keep its intact records, dropping the value records that fail their checksum"
				step.Loses = fmt.Sprintf("the last accepted values of %d records, which are sent again on the next apply", len(keys))
			case perr == nil:
				snapFrom = path(snapshotFile + prevSuffix)
				step.Action = "restore " + snapshotFile + prevSuffix
				step.Loses = "what the last run changed in the snapshot: records it sent are planned again (re-sent); a record it added whose row has since left the model is not removed from the destination"
			default:
				step.Action = "start from an empty snapshot (no intact earlier generation)"
				step.Loses = "the whole snapshot: every record is planned as an add, and records that left the model are not removed from the destination"
			}
		}
		if perr == nil {
			_ = prev.Close()
		}
		steps = append(steps, step)
	}

	// The failure index.
	failures, _, failErr := readFailures(path(failuresFile))
	if failErr != nil {
		var ve *VersionError
		if errors.As(failErr, &ve) {
			return failErr
		}
		step := RecoveryStep{File: path(failuresFile), Problem: problem(failErr)}
		aside = append(aside, path(failuresFile))
		prev, _, perr := readFailures(path(failuresFile + prevSuffix))
		switch {
		case perr == nil && usePrevJournal:
			failures = prev
			step.Action = "restore " + failuresFile + prevSuffix + " and replay " + journalFile + prevSuffix + " onto it"
		case perr == nil:
			failures = prev
			step.Action = "restore " + failuresFile + prevSuffix
			step.Loses = "the failure entries of the last run: its rejected records are planned again by their state in the snapshot"
		default:
			failures = FailureIndex{}
			step.Action = "start from an empty failure index"
			step.Loses = "every failure entry: rejected records are planned again by their state in the snapshot, attempt counts restart, and records whose outcome was unknown may be left in the destination"
		}
		steps = append(steps, step)
	}

	// The current journal: its intact records, and the keys of what
	// follows a damaged frame, whose outcomes become unknown.
	jpath := path(journalFile)
	jdata, err := readFile(jpath)
	if err != nil {
		return err
	}
	var curRecs [][]byte
	js, jerr := scanJournal(jpath, jdata, func(_ int, rec []byte) error {
		curRecs = append(curRecs, rec)
		return nil
	})
	var unknown map[string]string
	if jerr != nil {
		var ve *VersionError
		if errors.As(jerr, &ve) {
			return jerr
		}
		curRecs = nil
		unknown = map[string]string{}
		valid := salvageJournal(jdata, &curRecs, unknown)
		aside = append(aside, jpath)
		steps = append(steps, RecoveryStep{File: jpath, Problem: problem(jerr),
			Action: fmt.Sprintf("keep its first %d intact bytes", valid),
			Loses:  fmt.Sprintf("the outcomes recorded after that: %d records are marked outcome unknown and sent again", len(unknown))})
	} else if js.version == 2 && js.hasBase && !usePrevJournal && snapErr == nil && failErr == nil {
		// Only generations disagree.
		steps = append(steps, RecoveryStep{File: jpath, Problem: ce.Problem, Action: "replay it onto the snapshot and failure index as they are"})
	}
	if len(steps) == 0 {
		// A mismatch of generations between intact files.
		steps = append(steps, RecoveryStep{File: ce.Path, Problem: ce.Problem,
			Action: "commit the snapshot, failure index and journal as they are, as one generation",
			Loses:  "nothing the files hold; if one was restored from elsewhere, its difference from the others is taken as it is"})
	}
	r.Steps = append(r.Steps, steps...)

	var recs [][]byte
	if usePrevJournal {
		recs = append(recs, prevRecs...)
	}
	// The current journal's field ids extend the current snapshot's field
	// table: its records replay onto that snapshot, or onto the previous
	// one with the journal that led to it. Onto anything else its keys
	// only become outcome unknown.
	if snapErr == nil || salvaged != nil || usePrevJournal {
		recs = append(recs, curRecs...)
	} else if len(curRecs) > 0 {
		if unknown == nil {
			unknown = map[string]string{}
		}
		noteKeys(curRecs, unknown)
		steps[len(steps)-1].Loses += fmt.Sprintf("; the %d records of the interrupted run's journal are marked outcome unknown and sent again", len(unknown))
	}
	r.fixes = append(r.fixes, func() error {
		return s.rebuildSync(sync, aside, snapFrom, salvaged, failures, recs, unknown)
	})
	return nil
}

// rebuildSync writes a sync's repaired state: the snapshot chosen, the
// failure index with a journal of recs on top (unknown keys failed with an
// unknown outcome), then commits it afresh.
func (s *Store) rebuildSync(sync string, aside []string, snapFrom string, salvaged []string, failures FailureIndex, recs [][]byte, unknown map[string]string) error {
	dir := s.syncDir(sync)
	snapPath := filepath.Join(dir, snapshotFile)
	var restored []byte
	if snapFrom != "" {
		var err error
		// A missing file is the empty snapshot of a sync's first commit.
		if restored, err = readStateFile(snapFrom); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	var rewritten []byte
	if salvaged != nil {
		var err error
		if rewritten, err = salvagedSnapshot(snapPath); err != nil {
			return err
		}
	}
	for _, p := range aside {
		if err := moveAside(p); err != nil {
			return err
		}
	}
	switch {
	case restored != nil:
		if err := writeFileAtomic(dir, snapshotFile, restored); err != nil {
			return err
		}
	case rewritten != nil:
		if err := writeFileAtomic(dir, snapshotFile, rewritten); err != nil {
			return err
		}
	}
	gs, err := snapshotGens(snapPath)
	if err != nil {
		return err
	}
	if err := writeAtomic(dir, failuresFile, func(w *bufio.Writer) error {
		sw, err := newSealWriter(w, sealHeader{Kind: failuresKind, Snapshot: formatGen(gs.gen)})
		if err != nil {
			return err
		}
		for _, k := range slices.Sorted(mapKeys(failures)) {
			if err := sw.put(failures[k]); err != nil {
				return err
			}
		}
		return sw.close()
	}); err != nil {
		return err
	}
	j := &SyncWriter{log: append([]byte(nil), journalMagic...), open: -1}
	start := j.beginRecord(recBase)
	j.log = binary.LittleEndian.AppendUint64(j.log, gs.gen)
	j.endRecord(start)
	for _, rec := range recs {
		start := j.beginRecord(rec[0])
		j.log = append(j.log, rec[1:]...)
		j.endRecord(start)
	}
	now := time.Now().UTC()
	keys := append(slices.Sorted(mapKeys(unknown)), salvaged...)
	for _, k := range keys {
		op := unknown[k]
		f := unknownFailure(k, inFlight{op: op, at: now}, failures[k])
		j.appendFail(f)
	}
	j.sealFrame(true)
	if err := writeFileAtomic(dir, journalFile, j.log); err != nil {
		return err
	}
	w, err := s.Begin(sync, false)
	if err != nil {
		return err
	}
	return w.Commit()
}

// salvageJournal collects the intact records of a damaged journal (the
// prefix of complete groups) into recs and, into unknown, the keys of the
// records it can read past the damage, with their operation where known.
// It returns the length of the intact prefix.
func salvageJournal(data []byte, recs *[][]byte, unknown map[string]string) int {
	js, _ := scanJournal("", data, func(_ int, rec []byte) error {
		*recs = append(*recs, rec)
		return nil
	})
	// Every frame whose header is intact past the prefix, its payload
	// read as far as it goes.
	for q := js.valid; q+frameHeader <= len(data); q++ {
		f, ok := parseFrameHeader(data[q:])
		if !ok {
			continue
		}
		end := min(q+frameHeader+f.n, len(data))
		p := q + frameHeader
		for p+4 <= end {
			l := int(binary.LittleEndian.Uint32(data[p:]))
			if l == 0 || l > end-p-4 {
				break
			}
			noteKeys([][]byte{data[p+4 : p+4+l]}, unknown)
			p += 4 + l
		}
		// Go on after what was read, so that every byte is read once.
		q = max(q, p-1)
	}
	return js.valid
}

// noteKeys adds the keys recs are about to unknown, with their operation
// where the records say it.
func noteKeys(recs [][]byte, unknown map[string]string) {
	for _, rec := range recs {
		d := decoder{b: rec[1:]}
		switch rec[0] {
		case recAccept, recForget:
			if key := d.bytes(); !d.bad {
				if _, ok := unknown[string(key)]; !ok {
					unknown[string(key)] = "upsert"
				}
			}
		case recFail:
			if f, err := decodeFailure(rec[1:]); err == nil {
				unknown[f.Key] = f.Operation
			}
		case recInFlight:
			_ = decodeInFlight(rec[1:], func(key, op []byte, _ time.Time) { unknown[string(key)] = string(op) })
		}
	}
}

// salvageSnapshot reads a damaged snapshot whose index is intact: it
// returns the keys whose value records fail their checksum.
func salvageSnapshot(path string) ([]string, bool) {
	sn, err := openSnapshot(path)
	if err != nil {
		return nil, false
	}
	defer sn.Close()
	bad := []string{}
	for i := range sn.n {
		if _, err := sn.readValue(sn.valOff[i]); err != nil {
			bad = append(bad, string(sn.key(i)))
		}
	}
	return bad, true
}

// salvagedSnapshot returns a copy of the snapshot at path without the keys
// whose value records fail their checksum, as a new generation.
func salvagedSnapshot(path string) ([]byte, error) {
	sn, err := openSnapshot(path)
	if err != nil {
		return nil, err
	}
	defer sn.Close()
	ch := &changes{}
	for i := range sn.n {
		if _, err := sn.readValue(sn.valOff[i]); err != nil {
			if err := ch.add(0, 0, sn.key(i), true); err != nil {
				return nil, err
			}
		}
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".salvage-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if _, err := writeSnapshot(tmp, sn, ch, sn.fields); err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(tmp, snapshotFile))
}
