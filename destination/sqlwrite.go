package destination

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// errClass is how a SQL driver classifies a failed statement.
type errClass int

const (
	// classReject: the database refused what was sent (constraint, data type,
	// unknown column). Sending the same batch again fails the same way.
	classReject errClass = iota
	// classRetry: the failure is about the moment, not the data (lock wait,
	// busy database, lost connection, deadline). Nothing was committed.
	classRetry
)

// sqlDialect is what differs between the SQL databases the drivers write to.
// Everything else — grouping by operation, statement shapes, chunking,
// one transaction per batch, the outcome — is shared by sqlWriter.
type sqlDialect struct {
	// quoteIdent quotes a table or column name for use in a statement.
	quoteIdent func(name string) string
	// placeholder is the n-th (1-based) bind parameter of a statement.
	placeholder func(n int) string
	// upsertTail follows `INSERT ... VALUES (...)` to turn it into an upsert
	// by key that updates fields (which may be empty).
	upsertTail func(key string, fields []string) string
	// maxParams bounds the bind parameters of one statement; larger groups
	// are written in several statements inside the same transaction.
	maxParams int
	// classify says whether err is worth retrying.
	classify func(err error) errClass
}

// sqlWriter writes batches to one SQL database through a sqlConn.
//
// Invariant: a Write runs in exactly one transaction, so its outcome is
// all-or-nothing unless it returns per-record results, in which case every
// record without an error was committed.
type sqlWriter struct {
	conn    sqlConn
	dialect sqlDialect
	// scrub removes connection secrets from an error message before it
	// leaves the driver; nil means there is nothing to scrub.
	scrub func(error) error
}

// sqlConn is a connection (or pool) that can run a batch's transaction.
type sqlConn interface {
	begin(ctx context.Context) (sqlTx, error)
	close() error
}

// sqlTx is one transaction; exec returns the rows affected.
type sqlTx interface {
	exec(ctx context.Context, query string, args ...any) (int64, error)
	commit(ctx context.Context) error
	rollback(ctx context.Context) error
}

// sqlDB adapts database/sql to sqlConn.
type sqlDB struct{ db *sql.DB }

func (c sqlDB) begin(ctx context.Context) (sqlTx, error) {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return sqlDBTx{tx}, nil
}

func (c sqlDB) close() error { return c.db.Close() }

type sqlDBTx struct{ tx *sql.Tx }

func (t sqlDBTx) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := t.tx.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t sqlDBTx) commit(context.Context) error   { return t.tx.Commit() }
func (t sqlDBTx) rollback(context.Context) error { return t.tx.Rollback() }

// opGroup is the records of a batch that share an operation, by index, in
// batch order.
type opGroup struct {
	op  Operation
	idx []int
}

// groupByOp splits records by operation; groups are ordered by the first
// appearance of their operation, records keep their batch order.
func groupByOp(records []Record) []opGroup {
	var groups []opGroup
	pos := map[Operation]int{}
	for i, r := range records {
		g, ok := pos[r.Op]
		if !ok {
			g = len(groups)
			pos[r.Op] = g
			groups = append(groups, opGroup{op: r.Op})
		}
		groups[g].idx = append(groups[g].idx, i)
	}
	return groups
}

// keyValue is the value written to the key column for r.
func keyValue(r Record) any {
	if r.KeyValue != nil {
		return r.KeyValue
	}
	return r.Key
}

// valueFields is b.Fields without the key field and without duplicates:
// the key is always written, once, in its own position.
func valueFields(b *Batch) []string {
	out := make([]string, 0, len(b.Fields))
	seen := map[string]bool{b.KeyField: true}
	for _, f := range b.Fields {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	return out
}

// Write implements Destination for every SQL driver.
func (w *sqlWriter) Write(ctx context.Context, b *Batch) Outcome {
	if len(b.Records) == 0 {
		return AllAccepted(0)
	}
	results := make([]Result, len(b.Records))
	err := w.inTx(ctx, func(tx sqlTx) error {
		for _, g := range groupByOp(b.Records) {
			if err := w.writeGroup(ctx, tx, b, g, results); err != nil {
				return fmt.Errorf("%s %s: %w", g.op, b.Object, err)
			}
		}
		return nil
	})
	if err != nil {
		return w.failure(ctx, b, err)
	}
	return Outcome{Results: results}
}

// failure turns a failed transaction into an outcome. A rejected batch of a
// single record is reported as that record's own error: there is no other
// record it could have been poisoned by.
func (w *sqlWriter) failure(ctx context.Context, b *Batch, err error) Outcome {
	retry := ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		w.dialect.classify(err) == classRetry
	if w.scrub != nil {
		err = w.scrub(err)
	}
	if retry {
		return Retry(err, 0)
	}
	if len(b.Records) == 1 {
		return Outcome{Results: []Result{{Err: err}}}
	}
	return RejectBatch(err)
}

func (w *sqlWriter) inTx(ctx context.Context, fn func(tx sqlTx) error) error {
	tx, err := w.conn.begin(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		// The rollback's own error adds nothing: the transaction is void
		// either way, and err says why.
		_ = tx.rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := tx.commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (w *sqlWriter) writeGroup(ctx context.Context, tx sqlTx, b *Batch, g opGroup, results []Result) error {
	fields := valueFields(b)
	switch g.op {
	case OpUpsert, OpInsert:
		return w.insert(ctx, tx, b, fields, g, g.op == OpUpsert)
	case OpUpdate:
		return w.update(ctx, tx, b, fields, g, results)
	case OpDelete:
		return w.byKeys(ctx, tx, b, g, "DELETE FROM "+w.dialect.quoteIdent(b.Object))
	case OpClear:
		if len(fields) == 0 {
			return nil
		}
		sets := make([]string, len(fields))
		for i, f := range fields {
			sets[i] = w.dialect.quoteIdent(f) + " = NULL"
		}
		return w.byKeys(ctx, tx, b, g, "UPDATE "+w.dialect.quoteIdent(b.Object)+" SET "+strings.Join(sets, ", "))
	default:
		for _, i := range g.idx {
			results[i] = Result{Err: fmt.Errorf("record %q: unknown operation %q", b.Records[i].Key, g.op)}
		}
		return nil
	}
}

// chunkRows is how many rows of width columns fit in one statement.
func (w *sqlWriter) chunkRows(width int) int {
	n := w.dialect.maxParams / max(width, 1)
	return max(n, 1)
}

// insert writes a group as multi-row INSERT statements, upserting by key
// when upsert is set. Fields missing from a record's map are written as NULL.
func (w *sqlWriter) insert(ctx context.Context, tx sqlTx, b *Batch, fields []string, g opGroup, upsert bool) error {
	d := w.dialect
	cols := make([]string, 0, len(fields)+1)
	cols = append(cols, d.quoteIdent(b.KeyField))
	for _, f := range fields {
		cols = append(cols, d.quoteIdent(f))
	}
	head := "INSERT INTO " + d.quoteIdent(b.Object) + " (" + strings.Join(cols, ", ") + ") VALUES "
	tail := ""
	if upsert {
		tail = " " + d.upsertTail(b.KeyField, fields)
	}
	per := w.chunkRows(len(cols))
	for start := 0; start < len(g.idx); start += per {
		chunk := g.idx[start:min(start+per, len(g.idx))]
		var q strings.Builder
		q.WriteString(head)
		args := make([]any, 0, len(chunk)*len(cols))
		for n, i := range chunk {
			if n > 0 {
				q.WriteString(", ")
			}
			r := b.Records[i]
			q.WriteByte('(')
			args = append(args, keyValue(r))
			q.WriteString(d.placeholder(len(args)))
			for _, f := range fields {
				args = append(args, r.Fields[f])
				q.WriteString(", ")
				q.WriteString(d.placeholder(len(args)))
			}
			q.WriteByte(')')
		}
		q.WriteString(tail)
		if _, err := tx.exec(ctx, q.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// update runs one UPDATE per record; a record that matched no row gets its
// own error and the others stay written.
func (w *sqlWriter) update(ctx context.Context, tx sqlTx, b *Batch, fields []string, g opGroup, results []Result) error {
	d := w.dialect
	table := d.quoteIdent(b.Object)
	var q string
	if len(fields) == 0 {
		// Nothing to set: an update of the key alone only checks existence.
		q = "UPDATE " + table + " SET " + d.quoteIdent(b.KeyField) + " = " + d.quoteIdent(b.KeyField) +
			" WHERE " + d.quoteIdent(b.KeyField) + " = " + d.placeholder(1)
	} else {
		sets := make([]string, len(fields))
		for i, f := range fields {
			sets[i] = d.quoteIdent(f) + " = " + d.placeholder(i+1)
		}
		q = "UPDATE " + table + " SET " + strings.Join(sets, ", ") +
			" WHERE " + d.quoteIdent(b.KeyField) + " = " + d.placeholder(len(fields)+1)
	}
	for _, i := range g.idx {
		r := b.Records[i]
		args := make([]any, 0, len(fields)+1)
		for _, f := range fields {
			args = append(args, r.Fields[f])
		}
		args = append(args, keyValue(r))
		n, err := tx.exec(ctx, q, args...)
		if err != nil {
			return err
		}
		if n == 0 {
			results[i] = Result{Err: fmt.Errorf("no record with key %s to update", r.Key)}
		}
	}
	return nil
}

// byKeys runs prefix + ` WHERE key IN (...)` over the group's keys, chunked.
// Keys without a row are not an error: deletes and clears are idempotent.
func (w *sqlWriter) byKeys(ctx context.Context, tx sqlTx, b *Batch, g opGroup, prefix string) error {
	d := w.dialect
	per := w.chunkRows(1)
	for start := 0; start < len(g.idx); start += per {
		chunk := g.idx[start:min(start+per, len(g.idx))]
		var q strings.Builder
		q.WriteString(prefix + " WHERE " + d.quoteIdent(b.KeyField) + " IN (")
		args := make([]any, 0, len(chunk))
		for n, i := range chunk {
			if n > 0 {
				q.WriteString(", ")
			}
			args = append(args, keyValue(b.Records[i]))
			q.WriteString(d.placeholder(len(args)))
		}
		q.WriteByte(')')
		if _, err := tx.exec(ctx, q.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the connection.
func (w *sqlWriter) Close() error { return w.conn.close() }

// checkColumns reports the first of key and fields that columns lacks, in
// the words a user needs to fix the mapping. fold compares names
// case-insensitively (SQLite, MySQL).
func checkColumns(object, key string, fields, columns []string, fold bool) error {
	has := func(name string) bool {
		for _, c := range columns {
			if c == name || (fold && strings.EqualFold(c, name)) {
				return true
			}
		}
		return false
	}
	for _, f := range append([]string{key}, fields...) {
		if !has(f) {
			return fmt.Errorf("column %q not found in table %q (columns: %s)", f, object, strings.Join(columns, ", "))
		}
	}
	return nil
}

// quoteWith quotes name with q, doubling any q inside it.
func quoteWith(q, name string) string {
	return q + strings.ReplaceAll(name, q, q+q) + q
}

// quoteQualified quotes each dot-separated part of name with q, so that
// `schema.table` names a table in a schema.
func quoteQualified(q, name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = quoteWith(q, p)
	}
	return strings.Join(parts, ".")
}
