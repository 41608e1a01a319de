package state

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// Copying state between backends (`state push`, `state pull`): the
// destination is replaced by the source, whole, keeping its lineage and
// serial, so that a plan made against one applies against the other.

// CopyReport says what Copy copied.
type CopyReport struct {
	From, To string // the backends' locations
	Lineage  string
	Serial   uint64
	// Replaced is the destination's lineage and serial before the copy
	// (an empty Lineage: it held no state).
	Replaced Meta
	Syncs    int
	Records  int // snapshot entries
	Failures int // failure index entries, unknown outcomes included
	Runs     int
	RowLogs  int // runs whose row logs were copied (older ones aged out)
}

// CopyRefusedError is a copy that would overwrite state it should not.
type CopyRefusedError struct{ Reason string }

func (e *CopyRefusedError) Error() string {
	return e.Reason + "; nothing was copied (--force replaces it)"
}

// importer is a backend that can be replaced by another's state.
type importer interface {
	// replaceWith replaces the whole state by src's, with src's lineage and
	// serial m. The caller holds the locks of both.
	replaceWith(ctx context.Context, src Backend, m Meta) error
}

// Copy replaces the state in dst by the state in src: every sync's
// snapshot (values included) and failure index (records in flight after a
// crash as unknown outcomes), the run history with the row logs kept, the
// lineage and the serial. The caller holds the locks of both on every sync.
//
// Unless force is set, it refuses to overwrite state of another lineage,
// or of the same lineage with a higher serial (newer than the source).
// The copy is checked afterwards: keys, hashes, failures and runs must
// match the source.
func Copy(ctx context.Context, dst, src Backend, force bool) (*CopyReport, error) {
	sm, err := src.Meta()
	if err != nil {
		return nil, err
	}
	if sm.Lineage == "" {
		return nil, fmt.Errorf("there is no state in %s to copy", src.Location())
	}
	dm, err := dst.Meta()
	if err != nil {
		return nil, err
	}
	if !force && dm.Lineage != "" {
		switch {
		case dm.Lineage != sm.Lineage:
			return nil, &CopyRefusedError{fmt.Sprintf("%s holds state of another lineage (%s; the state in %s is lineage %s)",
				dst.Location(), dm.Lineage, src.Location(), sm.Lineage)}
		case dm.Serial > sm.Serial:
			return nil, &CopyRefusedError{fmt.Sprintf("%s holds newer state of the same lineage (serial %d; the state in %s is at serial %d)",
				dst.Location(), dm.Serial, src.Location(), sm.Serial)}
		}
	}
	imp, ok := dst.(importer)
	if !ok {
		return nil, fmt.Errorf("state cannot be copied into %s", dst.Location())
	}
	if err := imp.replaceWith(ctx, src, sm); err != nil {
		return nil, fmt.Errorf("copy the state from %s to %s: %w", src.Location(), dst.Location(), err)
	}
	rep := &CopyReport{From: src.Location(), To: dst.Location(), Lineage: sm.Lineage, Serial: sm.Serial, Replaced: dm}
	if err := verifyCopy(dst, src, rep); err != nil {
		return nil, fmt.Errorf("copy the state from %s to %s: the copy differs from the source: %w", src.Location(), dst.Location(), err)
	}
	return rep, nil
}

// verifyCopy compares dst with src (keys and hashes, failures, runs) and
// counts what was copied.
func verifyCopy(dst, src Backend, rep *CopyReport) error {
	dm, err := dst.Meta()
	if err != nil {
		return err
	}
	if dm.Lineage != rep.Lineage || dm.Serial != rep.Serial {
		return fmt.Errorf("lineage %s serial %d, want %s serial %d", dm.Lineage, dm.Serial, rep.Lineage, rep.Serial)
	}
	ss, err := src.Syncs()
	if err != nil {
		return err
	}
	ds, err := dst.Syncs()
	if err != nil {
		return err
	}
	if !slices.Equal(ss, ds) {
		return fmt.Errorf("syncs %v, want %v", ds, ss)
	}
	for _, sync := range ss {
		n, err := sameSnapshot(dst, src, sync)
		if err != nil {
			return fmt.Errorf("sync %s: %w", sync, err)
		}
		sf, err := src.LoadFailures(sync)
		if err != nil {
			return err
		}
		df, err := dst.LoadFailures(sync)
		if err != nil {
			return err
		}
		for k, f := range sf {
			g := df[k]
			if g == nil || g.Attempts != f.Attempts || g.Unknown != f.Unknown || g.Operation != f.Operation {
				return fmt.Errorf("sync %s: failure entry %q differs", sync, k)
			}
		}
		if len(df) != len(sf) {
			return fmt.Errorf("sync %s: %d failure entries, want %d", sync, len(df), len(sf))
		}
		rep.Syncs++
		rep.Records += n
		rep.Failures += len(sf)
	}
	sr, err := src.Runs("")
	if err != nil {
		return err
	}
	dr, err := dst.Runs("")
	if err != nil {
		return err
	}
	if len(sr) != len(dr) {
		return fmt.Errorf("%d runs, want %d", len(dr), len(sr))
	}
	for i := range sr {
		if sr[i].Sync != dr[i].Sync || sr[i].Run != dr[i].Run {
			return fmt.Errorf("run %d is %s/%d, want %s/%d", i, dr[i].Sync, dr[i].Run, sr[i].Sync, sr[i].Run)
		}
		if _, err := dst.RowLogs(dr[i].Sync, dr[i].Run); err == nil {
			rep.RowLogs++
		}
	}
	rep.Runs = len(sr)
	return nil
}

// sameSnapshot checks that two snapshots hold the same keys and hashes.
func sameSnapshot(a, b Backend, sync string) (int, error) {
	sa, err := a.LoadSnapshot(sync)
	if err != nil {
		return 0, err
	}
	defer sa.Close()
	sb, err := b.LoadSnapshot(sync)
	if err != nil {
		return 0, err
	}
	defer sb.Close()
	if sa.Len() != sb.Len() {
		return 0, fmt.Errorf("%d snapshot entries, want %d", sa.Len(), sb.Len())
	}
	for i := range sa.Len() {
		if sa.Key(i) != sb.Key(i) || hashOf(sa, i) != hashOf(sb, i) {
			return 0, fmt.Errorf("snapshot entry %q differs", sb.Key(i))
		}
	}
	return sa.Len(), nil
}

// sortedFailures lists a failure index by key.
func sortedFailures(idx FailureIndex) []*Failure {
	out := make([]*Failure, 0, len(idx))
	for _, k := range slices.Sorted(maps.Keys(idx)) {
		out = append(out, idx[k])
	}
	return out
}

// rowLogsOf returns a run's row logs, and whether they are kept.
func rowLogsOf(src Backend, r Run) ([]RowLog, bool, error) {
	rows, err := src.RowLogs(r.Sync, r.Run)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	return rows, err == nil, err
}

// replaceWith implements importer for the local folder: each sync is
// rewritten as a reset (committed all or nothing, the files it replaces
// kept as their previous generation), syncs the source lacks are removed,
// then the run history and state.json are rewritten.
func (b localBackend) replaceWith(ctx context.Context, src Backend, m Meta) error {
	s := b.Store
	syncs, err := src.Syncs()
	if err != nil {
		return err
	}
	for _, sync := range syncs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.importSync(src, sync); err != nil {
			return err
		}
	}
	have, err := s.Syncs()
	if err != nil {
		return err
	}
	for _, sync := range have {
		if !slices.Contains(syncs, sync) {
			if err := os.RemoveAll(s.syncDir(sync)); err != nil {
				return fileErr(err)
			}
		}
	}
	if err := s.importRuns(src); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writeMeta(Meta{Version: FormatVersion, Lineage: m.Lineage, Serial: m.Serial})
}

func (s *Store) importSync(src Backend, sync string) error {
	sn, err := src.LoadSnapshot(sync)
	if err != nil {
		return err
	}
	defer sn.Close()
	fails, err := src.LoadFailures(sync)
	if err != nil {
		return err
	}
	w, err := s.Begin(sync, true)
	if err != nil {
		return err
	}
	for i := range sn.Len() {
		v, err := sn.Values(i)
		if err != nil {
			w.Abort()
			return err
		}
		w.Accept(sn.Key(i), hashOf(sn, i), v)
	}
	for _, f := range sortedFailures(fails) {
		w.Fail(*f)
	}
	return w.Commit()
}

// importRuns rewrites the run history and row logs with src's.
func (s *Store) importRuns(src Backend) error {
	runs, err := src.Runs("")
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	logs := filepath.Join(s.dir, logsDir)
	if err := os.RemoveAll(logs); err != nil {
		return fileErr(err)
	}
	for _, r := range runs {
		rows, kept, err := rowLogsOf(src, r)
		if err != nil {
			return err
		}
		if !kept {
			continue
		}
		err = writeAtomic(filepath.Join(logs, r.Sync), strconv.Itoa(r.Run)+".jsonl", func(w *bufio.Writer) error {
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
	}
	return fileErr(writeKeepingPrev(s.dir, runsFile, func(w *bufio.Writer) error {
		sw, err := newSealWriter(w, sealHeader{Kind: runsKind})
		if err != nil {
			return err
		}
		for _, r := range runs {
			if err := sw.put(r); err != nil {
				return err
			}
		}
		return sw.close()
	}))
}

// replaceWith implements importer for the database backends: one
// transaction deletes the state and writes src's.
func (b *sqlBackend) replaceWith(ctx context.Context, src Backend, m Meta) error {
	if err := b.ensure(); err != nil {
		return err
	}
	syncs, err := src.Syncs()
	if err != nil {
		return err
	}
	runs, err := src.Runs("")
	if err != nil {
		return err
	}
	return b.writeTx(ctx, "replace the state", func(tx *sql.Tx) error {
		for _, t := range []string{"snapshot", "failures", "inflight", "syncs", "row_logs", "runs"} {
			if _, err := tx.ExecContext(ctx, b.q(`DELETE FROM {`+t+`}`)); err != nil {
				return err
			}
		}
		for _, sync := range syncs {
			if err := b.importSync(ctx, tx, src, sync); err != nil {
				return fmt.Errorf("sync %s: %w", sync, err)
			}
		}
		for _, r := range runs {
			rows, kept, err := rowLogsOf(src, r)
			if err != nil {
				return err
			}
			if err := b.insertRun(ctx, tx, r, rows, kept); err != nil {
				return err
			}
		}
		return b.setMeta(ctx, tx, m)
	})
}

// importBatch is how many snapshot entries are read and written at once.
const importBatch = 5000

func (b *sqlBackend) importSync(ctx context.Context, tx *sql.Tx, src Backend, sync string) error {
	id, err := b.createSync(ctx, tx, sync)
	if err != nil {
		return err
	}
	sn, err := src.LoadSnapshot(sync)
	if err != nil {
		return err
	}
	defer sn.Close()
	bi := bulkInsert{table: "snapshot", cols: []string{"sync_id", "k", "hash", "vals"}, kinds: []colKind{colInt, colBytes, colInt, colBytes}}
	keys, hashes, vals := make([][]byte, 0, importBatch), make([]int64, 0, importBatch), make([][]byte, 0, importBatch)
	for start := 0; start < sn.Len(); start += importBatch {
		keys, hashes, vals = keys[:0], hashes[:0], vals[:0]
		for i := start; i < min(start+importBatch, sn.Len()); i++ {
			v, err := sn.Values(i)
			if err != nil {
				return err
			}
			enc, err := appendNamedValues(nil, v)
			if err != nil {
				return fmt.Errorf("key %q: %w", sn.Key(i), err)
			}
			if len(sn.Key(i)) > MaxSQLKeyBytes {
				return fmt.Errorf("key %.40q… is %d bytes long; the database state backends store keys of up to %d bytes", sn.Key(i), len(sn.Key(i)), MaxSQLKeyBytes)
			}
			keys, hashes, vals = append(keys, []byte(sn.Key(i))), append(hashes, int64(hashOf(sn, i))), append(vals, enc)
		}
		if err := b.insert(ctx, tx, bi, len(keys), func(i int, dst []any) {
			dst[0], dst[1], dst[2], dst[3] = id, keys[i], hashes[i], vals[i]
		}); err != nil {
			return err
		}
	}
	fails, err := src.LoadFailures(sync)
	if err != nil {
		return err
	}
	return b.insertFailures(ctx, tx, id, sortedFailures(fails), false)
}
