package state

import (
	"bufio"
	"bytes"
	"encoding/json"
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

// AppendRun stores a run and its row logs, numbering the run, and keeps row
// logs of the last `keep` runs of the sync only (0 = default 20).
//
// The rows' Run fields are set to the run's number. runs.jsonl is rewritten
// atomically; the row logs are written before the run is listed, so a
// listed run always has its row logs until they age out.
func (s *Store) AppendRun(r Run, rows []RowLog, keep int) (Run, error) {
	if err := checkName(r.Sync); err != nil {
		return r, err
	}
	if keep <= 0 {
		keep = DefaultKeepRowLogs
	}
	err := func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		data, err := os.ReadFile(filepath.Join(s.dir, runsFile))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		runs, err := parseRuns(data)
		if err != nil {
			return err
		}
		r.Run = 1
		for _, old := range runs {
			if old.Sync == r.Sync && old.Run >= r.Run {
				r.Run = old.Run + 1
			}
		}
		logDir := filepath.Join(s.dir, logsDir, r.Sync)
		err = writeAtomic(logDir, strconv.Itoa(r.Run)+".jsonl", func(w *bufio.Writer) error {
			enc := json.NewEncoder(w)
			for _, row := range rows {
				row.Run = r.Run
				if err := enc.Encode(row); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		line, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			data = append(data, '\n')
		}
		data = append(append(data, line...), '\n')
		if err := writeFileAtomic(s.dir, runsFile, data); err != nil {
			return err
		}
		return pruneRowLogs(logDir, r.Run-keep)
	}()
	if err != nil {
		return r, fmt.Errorf("record run of sync %s: %w", r.Sync, err)
	}
	return r, s.bumpSerial()
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

func parseRuns(data []byte) ([]Run, error) {
	var runs []Run
	for i, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var r Run
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", runsFile, i+1, err)
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
	data, err := os.ReadFile(filepath.Join(s.dir, runsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	runs, err := parseRuns(data)
	if err != nil {
		return nil, err
	}
	if sync == "" {
		return runs, nil
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
	if run == 0 {
		runs, err := s.Runs(sync)
		if err != nil || len(runs) == 0 {
			return nil, err
		}
		run = runs[len(runs)-1].Run
	}
	path := filepath.Join(s.dir, logsDir, sync, strconv.Itoa(run)+".jsonl")
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no row logs for run %d of sync %s (only the most recent runs keep them): %w", run, sync, os.ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows := []RowLog{}
	dec := json.NewDecoder(bufio.NewReader(f))
	for dec.More() {
		var row RowLog
		if err := dec.Decode(&row); err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		rows = append(rows, row)
	}
	return rows, nil
}
