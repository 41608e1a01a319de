package destination

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// The COPY path of the postgres driver. A group of upserts (or inserts)
// is sent as COPY … FROM STDIN, in text format, into a temporary staging
// table of the session whose columns have the types of the target's, then
// written with one INSERT INTO target … SELECT … FROM staging, followed by
// the ON CONFLICT clause the statement path uses. Both run in the batch's
// transaction, after the lock step, so the outcome is the statement path's:
// the server parses each value with its column type's input function (a
// bad value fails the batch, as a bad parameter does), and the target's
// constraints are checked by the INSERT.
//
// A staging table is created once per connection and shape (the column
// types, and whether the group upserts), in the transaction of the first
// batch that needs it (ON COMMIT DELETE ROWS empties it at every commit).
// Its name is derived from its shape, so that one left by an earlier
// session of the same name has the same columns.

// stageLostError is a COPY into a staging table the session no longer has
// (dropped, DISCARD TEMP, a pooler that changed the server session), or
// one whose types a column of the target no longer has (ALTER TABLE during
// the run): the driver forgets it, or the target's description, and the
// batch is retryable; the next attempt stages again.
type stageLostError struct{ err error }

func (e *stageLostError) Error() string { return "staging table lost: " + e.err.Error() }
func (e *stageLostError) Unwrap() error { return e.err }

// bulkInsert implements bulkTx.
func (t *pgTx) bulkInsert(ctx context.Context, w *sqlWriter, wr *write, idx []int, upsert bool) (bool, error) {
	if t.pool.noCopy.Load() {
		return false, nil
	}
	b := wr.b
	cols, ok := bulkColumns(wr)
	if !ok {
		return false, nil // the statement names the missing column
	}
	shape := fnv.New64a()
	if upsert {
		shape.Write([]byte("upsert"))
	}
	for _, c := range cols {
		shape.Write([]byte{0})
		shape.Write([]byte(c.dbType))
	}
	var data []byte
	if c := wr.copied; c != nil && slices.Equal(c.idx, idx) {
		data, ok = c.data, c.ok // made by PrepareBatch
		if ok {
			w.copiedAhead.Add(1)
		}
	} else {
		data, ok = copyText(wr, idx, cols)
	}
	if !ok {
		return false, nil
	}
	stage := `pg_temp."backflow_stage_` + strconv.FormatUint(shape.Sum64(), 16) + `"`
	if ok, err := t.ensureStage(ctx, w, stage, cols); !ok || err != nil {
		return ok, err
	}
	names := make([]string, len(cols))
	for i := range cols {
		names[i] = "c" + strconv.Itoa(i)
	}
	list := strings.Join(names, ", ")
	w.statements.Add(1)
	w.copies.Add(1)
	if _, err := t.s.conn.PgConn().CopyFrom(ctx, bytes.NewReader(data), "COPY "+stage+" ("+list+") FROM STDIN"); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42P01" {
			delete(t.s.stages, stage)
			return true, &stageLostError{err}
		}
		return true, err
	}
	d := w.dialect
	target := make([]string, len(cols))
	target[0] = d.quoteIdent(b.KeyField)
	for i, f := range wr.fields {
		target[i+1] = d.quoteIdent(f)
	}
	q := "INSERT INTO " + d.quoteIdent(b.Object) + " (" + strings.Join(target, ", ") + ") SELECT " + list + " FROM " + stage
	if upsert {
		q += " " + d.upsertTail(b.KeyField, wr.fields)
	}
	_, err := w.exec(ctx, t, q)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42804" {
		// The staging table has the types the target's columns had when
		// it was described: a column whose type changed since mismatches.
		// The description is read again on the next attempt, which
		// stages with the new types.
		w.forget(b.Object)
		return true, &stageLostError{err}
	}
	return true, err
}

// ensureStage creates the staging table stage for cols unless the session
// has it. A server that refuses to (no TEMP privilege on the database, an
// engine without temporary tables) turns the COPY path off for the
// destination: false, and the transaction goes on as if nothing was tried.
func (t *pgTx) ensureStage(ctx context.Context, w *sqlWriter, stage string, cols []*column) (bool, error) {
	if t.s.stages[stage] {
		return true, nil
	}
	for _, c := range t.created {
		if c == stage {
			return true, nil
		}
	}
	defs := make([]string, len(cols))
	for i, c := range cols {
		defs[i] = "c" + strconv.Itoa(i) + " " + c.dbType
	}
	// A savepoint, so that a refusal leaves the batch's transaction usable.
	sp, err := t.tx.Begin(ctx)
	if err != nil {
		return false, err
	}
	w.statements.Add(1)
	_, err = sp.Exec(ctx, "CREATE TEMPORARY TABLE IF NOT EXISTS "+stage+" ("+strings.Join(defs, ", ")+") ON COMMIT DELETE ROWS")
	if err != nil {
		if w.classify(ctx, err) == classRetry {
			return false, err
		}
		if rerr := sp.Rollback(ctx); rerr != nil {
			return false, fmt.Errorf("create a staging table: %w", errors.Join(err, rerr))
		}
		t.pool.noCopy.Store(true)
		return false, nil
	}
	if err := sp.Commit(ctx); err != nil {
		return false, err
	}
	t.created = append(t.created, stage)
	return true, nil
}

// bulkColumns is the columns a COPY of wr writes: the key's, then those
// of wr.fields. ok is false when the table lacks one.
func bulkColumns(wr *write) (cols []*column, ok bool) {
	cols = make([]*column, 0, len(wr.fields)+1)
	cols = append(cols, wr.keyCol)
	for _, f := range wr.fields {
		cols = append(cols, wr.tbl.column(f))
	}
	for _, c := range cols {
		if c == nil {
			return nil, false
		}
	}
	return cols, true
}

// copyText is the records at idx as COPY's text format: tab-separated
// columns (the key, then wr.fields), \N for NULL. ok is false when a value
// has no text form the driver can vouch for, which the statement path
// (pgx's own encoding) then writes.
func copyText(wr *write, idx []int, cols []*column) (data []byte, ok bool) {
	buf := make([]byte, 0, len(idx)*len(cols)*16)
	for _, i := range idx {
		if buf, ok = appendCopyValue(buf, wr.key[i], cols[0]); !ok {
			return nil, false
		}
		for j, v := range wr.vals[i] {
			buf = append(buf, '\t')
			if buf, ok = appendCopyValue(buf, v, cols[j+1]); !ok {
				return nil, false
			}
		}
		buf = append(buf, '\n')
	}
	return buf, true
}

// appendCopyValue appends v, a converted value of column c, in COPY's
// text format: what the column type's input function reads as the value
// pgx would have sent.
func appendCopyValue(buf []byte, v any, c *column) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return append(buf, `\N`...), true
	case string:
		return appendCopyString(buf, x), true
	case int64:
		return strconv.AppendInt(buf, x, 10), true
	case bool:
		if x {
			return append(buf, 't'), true
		}
		return append(buf, 'f'), true
	case float64:
		bits := 64
		if c.kind == kindFloat && c.bits == 32 {
			f := float32(x)
			if math.IsInf(float64(f), 0) && !math.IsInf(x, 0) {
				return buf, false // out of range: say it as pgx does
			}
			x, bits = float64(f), 32
		}
		switch {
		case math.IsNaN(x):
			return append(buf, "NaN"...), true
		case math.IsInf(x, 1):
			return append(buf, "Infinity"...), true
		case math.IsInf(x, -1):
			return append(buf, "-Infinity"...), true
		}
		return strconv.AppendFloat(buf, x, 'g', -1, bits), true
	case []byte:
		if c.kind != kindBytes {
			return buf, false
		}
		buf = append(buf, `\\x`...)
		return hex.AppendEncode(buf, x), true
	case time.Time:
		x = x.UTC()
		if y := x.Year(); y < 1 || y > 9999 {
			return buf, false // BC and five-digit years: pgx's encoding
		}
		switch c.kind {
		case kindDate:
			return x.AppendFormat(buf, "2006-01-02"), true
		case kindTimestamp:
			// Truncated to microseconds, as pgx does.
			return x.AppendFormat(buf, "2006-01-02 15:04:05.999999"), true
		case kindTimestampTZ:
			return append(x.AppendFormat(buf, "2006-01-02 15:04:05.999999"), "+00"...), true
		}
	}
	return buf, false
}

// appendCopyString appends s with the backslash escapes of COPY's text
// format.
func appendCopyString(buf []byte, s string) []byte {
	if !strings.ContainsAny(s, "\\\n\r\t") {
		return append(buf, s...)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			buf = append(buf, `\\`...)
		case '\n':
			buf = append(buf, `\n`...)
		case '\r':
			buf = append(buf, `\r`...)
		case '\t':
			buf = append(buf, `\t`...)
		default:
			buf = append(buf, c)
		}
	}
	return buf
}
