package state

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultKeepRowLogs is how many runs of a sync keep their row logs when
// AppendRun is given keep 0.
const DefaultKeepRowLogs = 20

// Kinds of sealed run history files.
const (
	runsKind   = "runs"
	rowLogKind = "row-log"
)

// AppendRun stores a run and its row logs, numbering the run, and keeps row
// logs of the last `keep` runs of the sync only (0 = default 20). A run
// whose number is set replaces the record of that run: an apply records
// its run as RunIncomplete when it starts and its outcome when it ends, so
// a run killed in between stays in the history as incomplete.
//
// The rows' Run fields are set to the run's number. runs.jsonl is rewritten
// atomically, keeping the file it replaces as runs.jsonl.prev; the row logs
// are written before the run is listed, so a listed run always has its row
// logs until they age out. A damaged runs.jsonl is refused, not rewritten.
func (s *Store) AppendRun(r Run, rows []RowLog, keep int) (Run, error) {
	if err := checkName(r.Sync); err != nil {
		return r, err
	}
	if err := s.checkSyncDirs(r.Sync); err != nil {
		return r, err
	}
	if keep <= 0 {
		keep = DefaultKeepRowLogs
	}
	// The serial first: state.json exists before any file it vouches for.
	if err := s.bumpSerial(); err != nil {
		return r, err
	}
	err := func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		runs, err := s.readRuns()
		if err != nil {
			return err
		}
		replace := -1
		if r.Run > 0 {
			for i, old := range runs {
				if old.Sync == r.Sync && old.Run == r.Run {
					replace = i
				}
			}
		} else {
			r.Run = 1
			for _, old := range runs {
				if old.Sync == r.Sync && old.Run >= r.Run {
					r.Run = old.Run + 1
				}
			}
		}
		logDir := filepath.Join(s.dir, logsDir, r.Sync)
		err = writeAtomic(logDir, strconv.Itoa(r.Run)+".jsonl", func(w *bufio.Writer) error {
			sw, err := newSealWriter(w, sealHeader{Kind: rowLogKind})
			if err != nil {
				return err
			}
			for _, row := range rows {
				row.Run = r.Run
				if err := sw.put(row); err != nil {
					return err
				}
			}
			return sw.close()
		})
		if err != nil {
			return fileErr(err)
		}
		if replace >= 0 {
			runs[replace] = r
		} else {
			runs = append(runs, r)
		}
		err = writeKeepingPrev(s.dir, runsFile, func(w *bufio.Writer) error {
			sw, err := newSealWriter(w, sealHeader{Kind: runsKind})
			if err != nil {
				return err
			}
			for _, run := range runs {
				if err := sw.put(run); err != nil {
					return err
				}
			}
			return sw.close()
		})
		if err != nil {
			return fileErr(err)
		}
		return pruneRowLogs(logDir, r.Run-keep)
	}()
	if err != nil {
		return r, fmt.Errorf("record run of sync %s: %w", r.Sync, err)
	}
	return r, nil
}

// pruneRowLogs removes the row logs of runs up to and including last.
func pruneRowLogs(dir string, last int) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	removed := false
	for _, e := range entries {
		n, err := strconv.Atoi(strings.TrimSuffix(e.Name(), ".jsonl"))
		if err != nil || !strings.HasSuffix(e.Name(), ".jsonl") || n > last {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		removed = true
	}
	if removed {
		return syncDir(dir)
	}
	return nil
}

// readRuns reads and checks runs.jsonl (missing: no runs).
func (s *Store) readRuns() ([]Run, error) {
	path := filepath.Join(s.dir, runsFile)
	data, err := readFile(path)
	if err != nil || data == nil {
		return nil, err
	}
	return parseRuns(path, data)
}

func parseRuns(path string, data []byte) ([]Run, error) {
	sf, err := openSealed(path, runsKind, data)
	if err != nil {
		return nil, err
	}
	if sf.legacy && len(sf.lines) == 0 {
		return nil, corrupt(path, "empty")
	}
	first := 2 // line number of the first run
	if sf.legacy {
		first = 1
	}
	runs := make([]Run, 0, len(sf.lines))
	for i, line := range sf.lines {
		var r Run
		if err := strictUnmarshal(line, &r); err != nil {
			return nil, corrupt(path, "line %d: %v", first+i, err)
		}
		if !validName(r.Sync) || r.Run < 1 {
			return nil, corrupt(path, "line %d: no sync name or run number", first+i)
		}
		runs = append(runs, r)
	}
	return runs, nil
}

// Runs lists a sync's runs ("" = every sync), oldest first.
func (s *Store) Runs(sync string) ([]Run, error) {
	if sync != "" {
		if err := checkName(sync); err != nil {
			return nil, err
		}
	}
	runs, err := s.readRuns()
	if err != nil || sync == "" {
		return runs, err
	}
	out := runs[:0]
	for _, r := range runs {
		if r.Sync == sync {
			out = append(out, r)
		}
	}
	return out, nil
}

// RowLogs returns the row logs of one run of a sync (0 = the latest run).
//
// A sync without runs has none (nil, nil). Row logs of a run that does not
// exist or aged out are an error wrapping os.ErrNotExist.
func (s *Store) RowLogs(sync string, run int) ([]RowLog, error) {
	if err := checkName(sync); err != nil {
		return nil, err
	}
	if err := s.checkSyncDirs(sync); err != nil {
		return nil, err
	}
	if run == 0 {
		runs, err := s.Runs(sync)
		if err != nil || len(runs) == 0 {
			return nil, err
		}
		run = runs[len(runs)-1].Run
	}
	path := filepath.Join(s.dir, logsDir, sync, strconv.Itoa(run)+".jsonl")
	data, err := readStateFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, &NoRowLogsError{Sync: sync, Run: run}
	}
	if err != nil {
		return nil, fileErr(err)
	}
	return parseRowLogs(path, data)
}

func parseRowLogs(path string, data []byte) ([]RowLog, error) {
	sf, err := openSealed(path, rowLogKind, data)
	if err != nil {
		return nil, err
	}
	first := 2
	if sf.legacy {
		first = 1
	}
	rows := make([]RowLog, 0, len(sf.lines))
	for i, line := range sf.lines {
		var row RowLog
		if err := strictUnmarshal(line, &row); err != nil {
			return nil, corrupt(path, "line %d: %v", first+i, err)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// NoRowLogsError reports a run whose row logs are not kept: expired, or
// of a run that never was. It is an os.ErrNotExist.
type NoRowLogsError struct {
	Sync string
	Run  int
}

func (e *NoRowLogsError) Error() string {
	return fmt.Sprintf("no row logs for run %d of sync %s: only the most recent runs keep them (backflow runs lists the runs; apply --log-retention N keeps more)", e.Run, e.Sync)
}

// Is makes the error an os.ErrNotExist.
func (e *NoRowLogsError) Is(target error) bool { return target == os.ErrNotExist }
