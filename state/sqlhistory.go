package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/backflowhq/backflow/internal/crashpoint"
)

// Meta implements Reader: the schema version, and the lineage and serial
// (empty and 0 before the first write).
func (b *sqlBackend) Meta() (Meta, error) {
	m := Meta{Version: b.latest()}
	ctx, cancel := b.opCtx()
	defer cancel()
	if ok, err := b.present(ctx); err != nil || !ok {
		return m, err
	}
	err := b.db.QueryRowContext(ctx, b.q(`SELECT lineage, serial FROM {meta} WHERE id = 1`)).Scan(&m.Lineage, &m.Serial)
	if errors.Is(err, sql.ErrNoRows) {
		return m, nil
	}
	return m, b.fail("read the state's lineage and serial", err)
}

// bumpSerial records a write in tx: serial +1, and a lineage on the first.
func (b *sqlBackend) bumpSerial(ctx context.Context, tx *sql.Tx) error {
	var err error
	if b.pg {
		_, err = tx.ExecContext(ctx, b.q(`INSERT INTO {meta} AS m (id, lineage, serial) VALUES (1, ?, 1) ON CONFLICT (id) DO UPDATE SET serial = m.serial + 1`), randomHex(16))
	} else {
		_, err = tx.ExecContext(ctx, b.q(`INSERT INTO {meta} (id, lineage, serial) VALUES (1, ?, 1) ON DUPLICATE KEY UPDATE serial = serial + 1`), randomHex(16))
	}
	return err
}

// setMeta sets the lineage and serial (a copy from another backend).
func (b *sqlBackend) setMeta(ctx context.Context, tx *sql.Tx, m Meta) error {
	if _, err := tx.ExecContext(ctx, b.q(`DELETE FROM {meta}`)); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, b.q(`INSERT INTO {meta} (id, lineage, serial) VALUES (1, ?, ?)`), m.Lineage, m.Serial)
	return err
}

// writeTx runs fn in a transaction (READ COMMITTED on MySQL, which takes no
// gap locks that would make runners of different syncs wait for each
// other) and commits it.
func (b *sqlBackend) writeTx(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	var opts *sql.TxOptions
	if !b.pg {
		opts = &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	}
	tx, err := b.db.BeginTx(ctx, opts)
	if err != nil {
		return b.fail(what, err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return b.fail(what, err)
	}
	crashpoint.Hit("sql.open") // everything written, the transaction open
	err = tx.Commit()
	crashpoint.Hit("sql.committed")
	return b.fail(what, err)
}

// readTx runs fn in a read-only transaction that sees one consistent
// state.
func (b *sqlBackend) readTx(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	tx, err := b.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return b.fail(what, err)
	}
	defer tx.Rollback()
	return b.fail(what, fn(tx))
}

// Syncs implements Reader.
func (b *sqlBackend) Syncs() ([]string, error) {
	ctx, cancel := b.opCtx()
	defer cancel()
	if ok, err := b.present(ctx); err != nil || !ok {
		return nil, err
	}
	rows, err := b.db.QueryContext(ctx, b.q(`SELECT name FROM {syncs}`))
	if err != nil {
		return nil, b.fail("list the syncs", err)
	}
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return nil, b.fail("list the syncs", err)
		}
		out = append(out, name)
	}
	if err := rows.Err(); err != nil {
		return nil, b.fail("list the syncs", err)
	}
	slices.Sort(out)
	return out, nil
}

// syncID returns the id of a sync, 0 when it has no state.
func (b *sqlBackend) syncID(ctx context.Context, q querier, sync string) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, b.q(`SELECT id FROM {syncs} WHERE name = ?`), sync).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return id, err
}

// createSync returns the id of a sync, adding it when it has none.
func (b *sqlBackend) createSync(ctx context.Context, tx *sql.Tx, sync string) (int64, error) {
	id, err := b.syncID(ctx, tx, sync)
	if err != nil || id != 0 {
		return id, err
	}
	if b.pg {
		_, err = tx.ExecContext(ctx, b.q(`INSERT INTO {syncs} (name) VALUES (?) ON CONFLICT (name) DO NOTHING`), sync)
	} else {
		_, err = tx.ExecContext(ctx, b.q(`INSERT IGNORE INTO {syncs} (name) VALUES (?)`), sync)
	}
	if err != nil {
		return 0, err
	}
	return b.syncID(ctx, tx, sync)
}

// LoadFailures implements Reader: the failure index, with the records in
// flight without an outcome as entries whose outcome is unknown.
func (b *sqlBackend) LoadFailures(sync string) (FailureIndex, error) {
	if err := checkName(sync); err != nil {
		return nil, err
	}
	ctx, cancel := b.opCtx()
	defer cancel()
	idx := FailureIndex{}
	if ok, err := b.present(ctx); err != nil || !ok {
		return idx, err
	}
	var inflight map[string]inFlight
	err := b.readTx(ctx, fmt.Sprintf("read the failure index of sync %s", sync), func(tx *sql.Tx) error {
		id, err := b.syncID(ctx, tx, sync)
		if err != nil || id == 0 {
			return err
		}
		if err := b.readFailures(ctx, tx, id, idx); err != nil {
			return err
		}
		inflight, err = b.readInFlight(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	for k, m := range inflight {
		idx[k] = unknownFailure(k, m, idx[k])
	}
	return idx, nil
}

func (b *sqlBackend) readFailures(ctx context.Context, tx *sql.Tx, id int64, idx FailureIndex) error {
	rows, err := tx.QueryContext(ctx, b.q(`SELECT k, operation, error, attempts, first_failed, last_failed, unknown FROM {failures} WHERE sync_id = ?`), id)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k []byte
		f := &Failure{}
		if err := rows.Scan(&k, &f.Operation, &f.Error, &f.Attempts, &f.FirstFailed, &f.LastFailed, &f.Unknown); err != nil {
			return err
		}
		f.Key = string(k)
		f.FirstFailed, f.LastFailed = f.FirstFailed.UTC(), f.LastFailed.UTC()
		idx[f.Key] = f
	}
	return rows.Err()
}

func (b *sqlBackend) readInFlight(ctx context.Context, tx *sql.Tx, id int64) (map[string]inFlight, error) {
	reqs, err := b.readRequests(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	out := map[string]inFlight{}
	for _, r := range reqs {
		for _, rec := range r.recs {
			if old, ok := out[rec.Key]; !ok || r.at.After(old.at) {
				out[rec.Key] = inFlight{op: rec.Operation, at: r.at}
			}
		}
	}
	return out, nil
}

// readRequests reads the in-flight requests of a sync.
func (b *sqlBackend) readRequests(ctx context.Context, tx *sql.Tx, id int64) ([]*flightReq, error) {
	rows, err := tx.QueryContext(ctx, b.q(`SELECT req, sent_at, recs FROM {inflight} WHERE sync_id = ?`), id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*flightReq
	for rows.Next() {
		r := &flightReq{saved: true}
		var packed []byte
		if err := rows.Scan(&r.id, &r.at, &packed); err != nil {
			return nil, err
		}
		r.at = r.at.UTC()
		if r.recs, err = unpackRecords(packed); err != nil {
			return nil, fmt.Errorf("in-flight request %d in %s is unreadable", r.id, b.where)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// AppendRun implements History: the run is numbered after the sync's last
// (or, when r.Run is set, replaces the record and row logs of that run:
// an apply records its start as RunIncomplete and its outcome at the end),
// its row logs stored with it, and row logs of runs older than the last
// keep (0: DefaultKeepRowLogs) dropped, all in one transaction.
func (b *sqlBackend) AppendRun(r Run, rows []RowLog, keep int) (Run, error) {
	if err := checkName(r.Sync); err != nil {
		return r, err
	}
	if keep <= 0 {
		keep = DefaultKeepRowLogs
	}
	if err := b.ensure(); err != nil {
		return r, err
	}
	ctx, cancel := b.opCtx()
	defer cancel()
	err := b.writeTx(ctx, fmt.Sprintf("record run of sync %s", r.Sync), func(tx *sql.Tx) error {
		replaced := false
		if r.Run > 0 {
			var err error
			if replaced, err = b.replaceRun(ctx, tx, r, rows); err != nil {
				return err
			}
		} else {
			var last sql.NullInt64
			if err := tx.QueryRowContext(ctx, b.q(`SELECT MAX(run) FROM {runs} WHERE sync = ?`), r.Sync).Scan(&last); err != nil {
				return err
			}
			r.Run = int(last.Int64) + 1
		}
		if !replaced {
			if err := b.insertRun(ctx, tx, r, rows, true); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, b.q(`DELETE FROM {row_logs} WHERE sync = ? AND run <= ?`), r.Sync, r.Run-keep); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, b.q(`UPDATE {runs} SET row_logs = ? WHERE sync = ? AND run <= ? AND row_logs`), false, r.Sync, r.Run-keep); err != nil {
			return err
		}
		return b.bumpSerial(ctx, tx)
	})
	return r, err
}

// replaceRun replaces the record and row logs of run r.Run, keeping its
// place in the history; false when there is no such run.
func (b *sqlBackend) replaceRun(ctx context.Context, tx *sql.Tx, r Run, rows []RowLog) (bool, error) {
	record, err := json.Marshal(r)
	if err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, b.q(`UPDATE {runs} SET status = ?, started = ?, row_logs = ?, record = ? WHERE sync = ? AND run = ?`),
		string(r.Status), dbTime(r.Started), true, string(record), r.Sync, r.Run); err != nil {
		return false, err
	}
	// MySQL counts rows changed, not matched: look the run up instead.
	var n int
	if err := tx.QueryRowContext(ctx, b.q(`SELECT COUNT(*) FROM {runs} WHERE sync = ? AND run = ?`), r.Sync, r.Run).Scan(&n); err != nil || n == 0 {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, b.q(`DELETE FROM {row_logs} WHERE sync = ? AND run = ?`), r.Sync, r.Run); err != nil {
		return false, err
	}
	return true, b.insertRowLogs(ctx, tx, r, rows)
}

// insertRun stores a run, numbered already, and (withLogs) its row logs.
func (b *sqlBackend) insertRun(ctx context.Context, tx *sql.Tx, r Run, rows []RowLog, withLogs bool) error {
	record, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, b.q(`INSERT INTO {runs} (sync, run, status, started, row_logs, record) VALUES (?, ?, ?, ?, ?, ?)`),
		r.Sync, r.Run, string(r.Status), dbTime(r.Started), withLogs, string(record)); err != nil {
		return err
	}
	return b.insertRowLogs(ctx, tx, r, rows)
}

// insertRowLogs stores the row logs of run r.
func (b *sqlBackend) insertRowLogs(ctx context.Context, tx *sql.Tx, r Run, rows []RowLog) error {
	return b.insert(ctx, tx, bulkInsert{table: "row_logs", cols: []string{"sync", "run", "seq", "k", "operation", "status", "error", "attempts"},
		kinds: []colKind{colText, colInt, colInt, colBytes, colText, colText, colText, colInt}}, len(rows), func(i int, dst []any) {
		row := rows[i]
		dst[0], dst[1], dst[2], dst[3] = r.Sync, int64(r.Run), int64(i), []byte(row.Key)
		dst[4], dst[5], dst[6], dst[7] = sanitizeText(row.Operation), sanitizeText(string(row.Status)), sanitizeText(row.Error), int64(row.Attempts)
	})
}

// Runs implements History: a sync's runs ("" = every sync), oldest first.
func (b *sqlBackend) Runs(sync string) ([]Run, error) {
	if sync != "" {
		if err := checkName(sync); err != nil {
			return nil, err
		}
	}
	ctx, cancel := b.opCtx()
	defer cancel()
	if ok, err := b.present(ctx); err != nil || !ok {
		return nil, err
	}
	stmt, args := `SELECT record FROM {runs} ORDER BY id`, []any(nil)
	if sync != "" {
		stmt, args = `SELECT record FROM {runs} WHERE sync = ? ORDER BY id`, []any{sync}
	}
	rows, err := b.db.QueryContext(ctx, b.q(stmt), args...)
	if err != nil {
		return nil, b.fail("read the run history", err)
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		var record []byte
		if err := rows.Scan(&record); err != nil {
			return nil, b.fail("read the run history", err)
		}
		var r Run
		if err := json.Unmarshal(record, &r); err != nil {
			return nil, fmt.Errorf("read the run history in %s: a run record is unreadable (%v)", b.where, err)
		}
		out = append(out, r)
	}
	return out, b.fail("read the run history", rows.Err())
}

// RowLogs implements History: the row logs of one run of a sync (0 = the
// latest run). A sync without runs has none (nil, nil); row logs of a run
// that does not exist or aged out are an error wrapping os.ErrNotExist.
func (b *sqlBackend) RowLogs(sync string, run int) ([]RowLog, error) {
	if err := checkName(sync); err != nil {
		return nil, err
	}
	ctx, cancel := b.opCtx()
	defer cancel()
	if ok, err := b.present(ctx); err != nil || !ok {
		return nil, err
	}
	var out []RowLog
	var missing error
	err := b.readTx(ctx, fmt.Sprintf("read the row logs of sync %s", sync), func(tx *sql.Tx) error {
		if run == 0 {
			var last sql.NullInt64
			if err := tx.QueryRowContext(ctx, b.q(`SELECT MAX(run) FROM {runs} WHERE sync = ?`), sync).Scan(&last); err != nil {
				return err
			}
			if !last.Valid {
				return nil
			}
			run = int(last.Int64)
		}
		var kept bool
		err := tx.QueryRowContext(ctx, b.q(`SELECT row_logs FROM {runs} WHERE sync = ? AND run = ?`), sync, run).Scan(&kept)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && !kept) {
			missing = &NoRowLogsError{Sync: sync, Run: run}
			return nil
		}
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, b.q(`SELECT k, operation, status, error, attempts FROM {row_logs} WHERE sync = ? AND run = ? ORDER BY seq`), sync, run)
		if err != nil {
			return err
		}
		defer rows.Close()
		out = []RowLog{}
		for rows.Next() {
			var k []byte
			var status string
			row := RowLog{Run: run}
			if err := rows.Scan(&k, &row.Operation, &status, &row.Error, &row.Attempts); err != nil {
				return err
			}
			row.Key, row.Status = string(k), RowStatus(status)
			out = append(out, row)
		}
		return rows.Err()
	})
	if err == nil && missing != nil {
		return nil, missing
	}
	return out, err
}
