package destination

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The bulk paths of the postgres driver, for a group of at least
// bulkMinRows upserts or inserts.
//
// Inserts (records new to backflow, or a sync's inserts) are copied
// straight into the target, COPY … FROM STDIN in text format: the server
// parses each value with its column type's input function and writes the
// rows in blocks; a key that exists fails the COPY as it fails an INSERT.
// Tables where COPY would answer otherwise than INSERT (row-level
// security, rules, a GENERATED ALWAYS identity column written) take the
// statement below instead.
//
// Upserts are one statement whose parameters are one array per column,
// in the binary array format:
//
//	INSERT INTO target (key, f1, …) SELECT u.c0::T0, u.c1::T1, …
//	FROM unnest($1::text[], $2::int8[], …) AS u(c0, c1, …) [ON CONFLICT …]
//
// A bigint, double precision or boolean column whose values in the batch
// are all of that type (or NULL) gets an array of it (int8[], float8[],
// bool[]): the server reads each element as it is, where parsing its text
// took a tenth of its CPU for an upsert of 8 columns, three of them such.
// Any other column gets a text array. Each element is the text form of a
// converted value, which the server parses with the input function of Ti (the column's type by its internal
// name, without its modifier; a domain's base type), then assigns to the
// column, which applies the modifier and the domain's checks as an INSERT
// of the value would: a text too long for varchar(5), char(3) or a domain
// over varchar(5) fails the statement, it is not cut (an explicit cast to
// the type with its modifier would cut it). So a bad value fails the batch
// as a bad parameter does, and the target's constraints are checked by the
// INSERT. Whatever the batch's size, the statement has a handful of
// parameters, where the multi-row statement has one per value; it is
// prepared once per session (prepareBulk).
//
// Neither leaves anything in the session (no staging table to create,
// lose or empty; no TEMP privilege needed).

// A COPY FROM of a batch's inserts writes them a row at a time where that
// is cheaper for the server (copyRowByRow): it has a WHERE clause calling
// a volatile function, always true, with which PostgreSQL gives up its
// multi-insert buffer (CopyFrom's CIM_SINGLE, as for a table with a
// BEFORE ROW trigger). Measured on PostgreSQL 15 with the harness's
// apply-postgres (300,000 adds of 8 columns in batches of 1,000, after a
// CHECKPOINT; two runs of two, alternating with a build without the
// clause), the server's CPU time for backflow's COPYs: 0.88–0.92 s with
// one request in flight and 1.56–2.26 s with four, against 1.04–1.36 s
// and 2.34–2.46 s without; the apply's wall time 1.76–1.81 s and
// 1.58–1.81 s against 1.88–2.35 s and 1.96–2.22 s. perf put a third of
// CopyFrom's time in the buffer's bookkeeping of its tuple slots (the
// resource owner's RememberTupleDesc / ForgetTupleDesc, whose lists PostgreSQL 17
// replaced). The harness's own baselines, 1,000,000 rows as COPY text
// made beforehand, a COPY per transaction after a CHECKPOINT, in the same
// run: 2.66 s of server CPU with the clause against 3.76 s on one
// connection, 4.41 s against 4.81 s on four. Not everywhere a gain: the
// same rows sent as COPYs without a transaction of their own, on an
// otherwise idle machine and without a CHECKPOINT between, cost the
// server the same with and without the clause on one connection
// (0.59–0.64 s) and 15% more with it on four (0.86–0.89 s against
// 0.73–0.75 s). From about 5,000 rows a COPY the buffer wins
// (0.48 s against 0.54 s, one connection). A table with an insert row
// trigger is written a row at a time anyway.
const (
	// RowByRowWhere is the clause, exported for the benchmark harness's
	// baselines.
	RowByRowWhere   = " WHERE pg_catalog.random() IS NOT NULL"
	copyRowByRowMax = 2000
)

// copyRowByRow reports whether a server whose server_version is v writes
// small COPYs faster a row at a time: PostgreSQL 12 (COPY's WHERE) to 16.
func copyRowByRow(v string) bool {
	end := 0
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	major, err := strconv.Atoi(v[:end])
	return err == nil && major >= 12 && major <= 16
}

// copyWhereRefused reports whether err is a server refusing RowByRowWhere:
// an engine that reports a PostgreSQL version it has not every feature
// of.
func copyWhereRefused(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "42601", "0A000", "42883", "3F000": // syntax, not supported, no such function or schema
		return true
	case "42501": // the role may not call random(), not a permission on the table
		return strings.Contains(pe.Message, "random")
	}
	return false
}

// copyWhereError is a COPY in a transaction whose WHERE clause the server
// refused (copyWhereRefused): retryable, the next attempt goes without.
type copyWhereError struct{ err error }

func (e *copyWhereError) Error() string {
	return "the server refused COPY … WHERE (it is sent without from now on): " + e.err.Error()
}
func (e *copyWhereError) Unwrap() error { return e.err }

// staleTypesError is a bulk statement whose casts name the types a column
// of the target no longer has (ALTER TABLE during the run): the driver
// forgets the target's description, and the batch is retryable; the next
// attempt casts to the new types. (A statement the session lost is
// retryable like any other: pgSession.lostStatement.)
type staleTypesError struct{ err error }

func (e *staleTypesError) Error() string { return "column types changed: " + e.err.Error() }
func (e *staleTypesError) Unwrap() error { return e.err }

// copiedShortError is a COPY the server committed on its own (a batch of
// adds alone) that wrote fewer rows than it was sent: a trigger created
// after the table was described skipped the others. Retryable: the next
// attempt goes in a transaction.
type copiedShortError struct {
	table      string
	took, sent int64
}

func (e *copiedShortError) Error() string {
	return fmt.Sprintf("table %q took %d of the %d rows copied: a trigger on it, created since backflow read the table, "+
		"skipped the others without an error; that COPY committed on its own, so the batch is sent again in a transaction "+
		"(the rows it wrote are written again, the same)", e.table, e.took, e.sent)
}

// bulkRows is the records at idx made ready for bulkInsert by
// PrepareBatch, for the group the batch most likely writes whole: as COPY
// text (copyText) when they are to be inserted by COPY, else as the
// statement's parameters (bulkParams). ok is false when a value has no
// text form.
type bulkRows struct {
	idx    []int
	insert bool     // by COPY
	data   []byte   // insert
	params [][]byte // !insert
	elems  []uint32 // !insert: params' element types (bulkParams)
	ok     bool
}

// makeBulkRows is the records at idx made ready for bulkInsert.
//
// With buf set, the body is made in (*buf)'s array, and *buf is set to the
// array it was made in; otherwise in an array of its own.
func makeBulkRows(wr *write, idx []int, cols []*column, insert bool, buf *[]byte) *bulkRows {
	r := &bulkRows{idx: idx, insert: insert}
	var dst []byte
	if buf != nil {
		dst = (*buf)[:0]
	}
	if insert {
		r.data, r.ok = copyText(dst, wr, idx, cols)
		dst = r.data
	} else {
		r.params, r.elems, dst, r.ok = bulkParams(dst, wr, idx, cols)
	}
	if buf != nil && r.ok {
		*buf = dst
	}
	return r
}

// The element types of bulkInsert's arrays, and the arrays' types.
const (
	pgBoolOID   = 16
	pgInt8OID   = 20
	pgTextOID   = 25
	pgFloat8OID = 701
)

var pgArrays = map[uint32]struct {
	name string
	oid  uint32
}{
	pgTextOID:   {"text[]", 1009},
	pgInt8OID:   {"int8[]", 1016},
	pgFloat8OID: {"float8[]", 1022},
	pgBoolOID:   {"bool[]", 1000},
}

// elemType is the element type of column c's array in a bulk statement:
// c's own for a bigint, double precision or boolean column, text
// otherwise. bulkParams falls back to text for a column holding a value
// of another Go type than int64, float64 or bool.
func elemType(c *column) uint32 {
	switch {
	case c.kind == kindInt && c.bits == 0:
		return pgInt8OID
	case c.kind == kindFloat && c.bits == 0:
		return pgFloat8OID
	case c.kind == kindBool:
		return pgBoolOID
	}
	return pgTextOID
}

// appendBinaryElem appends v as an element of type elem in binary (its
// length, then its bytes); ok is false when v is not of elem's Go type.
func appendBinaryElem(buf []byte, elem uint32, v any) ([]byte, bool) {
	switch x := v.(type) {
	case int64:
		if elem == pgInt8OID {
			return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(buf, 8), uint64(x)), true
		}
	case float64:
		if elem == pgFloat8OID {
			return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(buf, 8), math.Float64bits(x)), true
		}
	case bool:
		if elem == pgBoolOID {
			b := byte(0)
			if x {
				b = 1
			}
			return append(binary.BigEndian.AppendUint32(buf, 1), b), true
		}
	}
	return buf, false
}

// bulkInsert implements bulkTx.
func (t *pgTx) bulkInsert(ctx context.Context, w *sqlWriter, wr *write, idx []int, upsert bool) (bool, error) {
	b := wr.b
	cols, ok := bulkColumns(wr)
	if !ok {
		return false, nil // the statement names the missing column
	}
	byCopy := !upsert && copyable(wr.tbl, cols)
	rows := wr.bulk // made by PrepareBatch
	if rows != nil && rows.insert == byCopy && slices.Equal(rows.idx, idx) {
		if rows.ok {
			w.bulkAhead.Add(1)
		}
	} else {
		rows = makeBulkRows(wr, idx, cols, byCopy, nil)
	}
	if !rows.ok {
		return false, nil
	}
	d := w.dialect
	if byCopy {
		names := make([]string, len(cols))
		for i, c := range cols {
			names[i] = d.quoteIdent(c.name)
		}
		q := "COPY " + d.quoteIdent(b.Object) + " (" + strings.Join(names, ", ") + ") FROM STDIN"
		plain := q
		where := t.s.rowByRow && len(idx) <= copyRowByRowMax && !wr.tbl.insertTriggers && !t.pool.noCopyWhere.Load()
		if where {
			q += RowByRowWhere
		}
		alone := t.tx == nil && !t.alone && wr.last && !wr.tbl.insertTriggers
		if alone {
			// The batch is this COPY and nothing else: the setting and
			// the COPY go as one simple query, which the server runs
			// as one implicit transaction (SET LOCAL holds until its
			// end), committed when the COPY ends or rolled back with
			// it. One round trip where BEGIN, the COPY and COMMIT take
			// three. Not for a table with a row trigger that may skip
			// an inserted row: a COPY that wrote fewer rows than it
			// was sent must be rolled back (checkTaken), which one the
			// server committed cannot.
			if t.setting != "" {
				q, plain = t.setting+"; "+q, t.setting+"; "+plain
			}
			t.alone = true
		} else if err := t.start(ctx); err != nil {
			return true, err
		}
		w.statements.Add(1)
		w.bulks.Add(1)
		tag, err := t.s.conn.PgConn().CopyFrom(ctx, bytes.NewReader(rows.data), q)
		if err != nil && where && copyWhereRefused(err) {
			// An engine speaking the protocol without COPY's WHERE: no
			// COPY of the destination has it from now on. Nothing was
			// written. Alone, the server's implicit transaction ended
			// with the error, and the COPY goes again at once; in a
			// transaction, which the error aborted, the batch is
			// retried.
			t.pool.noCopyWhere.Store(true)
			if !alone {
				return true, &copyWhereError{err}
			}
			tag, err = t.s.conn.PgConn().CopyFrom(ctx, bytes.NewReader(rows.data), plain)
		}
		if err != nil {
			return true, err
		}
		if alone && tag.RowsAffected() < int64(len(idx)) {
			// A trigger created since the table was described skipped
			// rows of a COPY the server committed. The batch is
			// retryable: the table is described again, and the next
			// attempt goes in a transaction (its adds, whose rows now
			// exist, as upserts of the same values), which a short
			// count rolls back and rejects. The rows written here are
			// not reported accepted; a record written but not recorded
			// is sent again, never lost.
			w.forget(b.Object)
			return true, &copiedShortError{table: b.Object, took: tag.RowsAffected(), sent: int64(len(idx))}
		}
		return true, w.checkTaken(wr, false, tag.RowsAffected(), len(idx))
	}
	if err := t.start(ctx); err != nil {
		return true, err
	}
	target := make([]string, len(cols))
	casts := make([]string, len(cols))
	arrays := make([]string, len(cols))
	names := make([]string, len(cols))
	for i, c := range cols {
		target[i] = d.quoteIdent(c.name)
		names[i] = "c" + strconv.Itoa(i)
		casts[i] = "u.c" + strconv.Itoa(i) + "::" + c.castType
		arrays[i] = "$" + strconv.Itoa(i+1) + "::" + pgArrays[rows.elems[i]].name
	}
	q := "INSERT INTO " + d.quoteIdent(b.Object) + " (" + strings.Join(target, ", ") + ") SELECT " + strings.Join(casts, ", ") +
		" FROM unnest(" + strings.Join(arrays, ", ") + ") AS u(" + strings.Join(names, ", ") + ")"
	if upsert {
		q += " " + d.upsertTail(b.KeyField, wr.fields)
	}
	oids := make([]uint32, len(cols))
	formats := make([]int16, len(cols))
	for i := range cols {
		oids[i], formats[i] = pgArrays[rows.elems[i]].oid, 1
	}
	w.statements.Add(1)
	w.bulks.Add(1)
	var err error
	var tag pgconn.CommandTag
	if name, perr := t.s.prepareBulk(ctx, q, oids); perr != nil {
		err = perr
	} else if name != "" {
		tag, err = t.s.conn.PgConn().ExecPrepared(ctx, name, rows.params, formats, nil).Close()
	} else {
		tag, err = t.s.conn.PgConn().ExecParams(ctx, q, rows.params, oids, formats, nil).Close()
	}
	if err == nil {
		return true, w.checkTaken(wr, upsert, tag.RowsAffected(), len(idx))
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42804" {
		// The casts are to the types the target's columns had when it
		// was described: a column whose type changed since may take no
		// value of the old one. The description is read again on the
		// next attempt, which casts to the new types.
		w.forget(b.Object)
		return true, &staleTypesError{err}
	}
	return true, t.s.lostStatement(err)
}

// maxBulkStatements is how many bulk statements a session keeps
// prepared; others are parsed and planned at each batch.
const maxBulkStatements = 32

// prepareBulk returns the name of q prepared in the session, preparing it
// the first time: parsed and planned once per session rather than at every
// batch (a sixth of the statement's time for batches of 1,000 rows of 8
// columns). It returns "" when the session does not keep prepared
// statements (a connection configured for a pooler that cannot: another
// default_query_exec_mode) or already keeps maxBulkStatements. A session's
// prepared statements are dropped with pgx's own when a table's
// description is forgotten or it loses one (pgPool.acquire).
func (s *pgSession) prepareBulk(ctx context.Context, q string, oids []uint32) (string, error) {
	if name, ok := s.bulk[q]; ok {
		return name, nil
	}
	if s.conn.Config().DefaultQueryExecMode != pgx.QueryExecModeCacheStatement || len(s.bulk) >= maxBulkStatements {
		return "", nil
	}
	name := "backflow_bulk_" + strconv.Itoa(len(s.bulk)+1)
	if _, err := s.conn.PgConn().Prepare(ctx, name, q, oids); err != nil {
		return "", err
	}
	if s.bulk == nil {
		s.bulk = map[string]string{}
	}
	s.bulk[q] = name
	return name, nil
}

// copyable reports whether inserts into t writing cols may go by COPY.
func copyable(t *table, cols []*column) bool {
	if t.noCopy {
		return false
	}
	for _, c := range cols {
		if c.noCopy {
			return false
		}
	}
	return true
}

// bulkColumns is the columns the bulk statement of wr writes: the key's, then those
// of wr.fields. ok is false when the table lacks one, or one has no cast
// type (a domain over a domain).
func bulkColumns(wr *write) (cols []*column, ok bool) {
	cols = make([]*column, 0, len(wr.fields)+1)
	cols = append(cols, wr.keyCol)
	for _, f := range wr.fields {
		cols = append(cols, wr.tbl.column(f))
	}
	for _, c := range cols {
		if c == nil || c.castType == "" {
			return nil, false
		}
	}
	return cols, true
}

// bulkParams is the records at idx as bulkInsert's parameters: per column
// (the key, then wr.fields) an array in the binary array format, of the
// element type elemType gives, or text when a value is not of its Go
// type (elems), NULL elements for nil values. ok
// is false when a value has no text form the driver can vouch for, which
// the statement path (pgx's own encoding) then writes.
//
// The arrays are made in dst's array when it has room; buf is the array
// they were made in.
func bulkParams(dst []byte, wr *write, idx []int, cols []*column) (params [][]byte, elems []uint32, buf []byte, ok bool) {
	buf = dst[:0]
	if n := len(cols) * (20 + len(idx)*16); cap(buf) < n {
		buf = make([]byte, 0, n)
	}
	starts := make([]int, len(cols)+1)
	elems = make([]uint32, len(cols))
	for j, c := range cols {
		starts[j] = len(buf)
		elems[j] = elemType(c)
		var typed bool
		if buf, typed, ok = appendArray(buf, wr, idx, j, c, elems[j]); ok && !typed {
			// A value of another Go type: the column goes as text.
			elems[j] = pgTextOID
			buf, _, ok = appendArray(buf[:starts[j]], wr, idx, j, c, pgTextOID)
		}
		if !ok {
			return nil, nil, nil, false
		}
	}
	starts[len(cols)] = len(buf)
	params = make([][]byte, len(cols))
	for j := range cols {
		params[j] = buf[starts[j]:starts[j+1]:starts[j+1]]
	}
	return params, elems, buf, true
}

// appendArray appends the values of column j (0: the key) of the records
// at idx as an array of element type elem in the binary array format,
// NULL elements for nil values. typed is false when a value is not of
// elem's Go type (elem not text), and the array is left unfinished; ok is
// false when a value has no text form the driver can vouch for.
func appendArray(buf []byte, wr *write, idx []int, j int, c *column, elem uint32) (_ []byte, typed, ok bool) {
	start := len(buf)
	// One dimension, no NULL yet, the element type; its length and lower
	// bound.
	buf = binary.BigEndian.AppendUint32(buf, 1)
	buf = binary.BigEndian.AppendUint32(buf, 0)
	buf = binary.BigEndian.AppendUint32(buf, elem)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(idx)))
	buf = binary.BigEndian.AppendUint32(buf, 1)
	nulls := false
	for _, i := range idx {
		v := wr.key[i]
		if j > 0 {
			v = wr.vals[i][j-1]
		}
		if v == nil {
			buf = binary.BigEndian.AppendUint32(buf, math.MaxUint32) // -1: NULL
			nulls = true
			continue
		}
		if elem != pgTextOID {
			if buf, typed = appendBinaryElem(buf, elem, v); !typed {
				return buf, false, true
			}
			continue
		}
		at := len(buf)
		buf = append(buf, 0, 0, 0, 0)
		if buf, ok = appendTextValue(buf, v, c); !ok {
			return buf, true, false
		}
		binary.BigEndian.PutUint32(buf[at:], uint32(len(buf)-at-4))
	}
	if nulls {
		binary.BigEndian.PutUint32(buf[start+4:], 1)
	}
	return buf, true, true
}

// copyText is the records at idx as COPY's text format: tab-separated
// columns (the key, then wr.fields), \N for NULL, backslash escapes. ok is
// false when a value has no text form the driver can vouch for.
//
// The text is made in dst's array when it has room.
func copyText(dst []byte, wr *write, idx []int, cols []*column) (data []byte, ok bool) {
	buf := dst[:0]
	if n := len(idx) * len(cols) * 16; cap(buf) < n {
		buf = make([]byte, 0, n)
	}
	for _, i := range idx {
		for j, c := range cols {
			v := wr.key[i]
			if j > 0 {
				buf = append(buf, '\t')
				v = wr.vals[i][j-1]
			}
			switch x := v.(type) {
			case nil:
				buf = append(buf, `\N`...)
			case string:
				buf = appendCopyString(buf, x)
			case []byte:
				// \x and hex digits: the backslash escaped.
				if buf, ok = appendTextValue(append(buf, '\\'), v, c); !ok {
					return nil, false
				}
			default:
				// Numbers, booleans and times: no character COPY
				// escapes.
				if buf, ok = appendTextValue(buf, v, c); !ok {
					return nil, false
				}
			}
		}
		buf = append(buf, '\n')
	}
	return buf, true
}

// appendCopyString appends s with the backslash escapes of COPY's text
// format.
func appendCopyString(buf []byte, s string) []byte {
	if !copyEscapes(s) {
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

// copyEscapes reports whether s holds a character COPY's text format
// escapes (a plain loop: strings.ContainsAny builds its set at each call).
func copyEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\', '\n', '\r', '\t':
			return true
		}
	}
	return false
}

// appendTextValue appends v, a converted value of column c other than nil,
// in its text form: what the column type's input function reads as the
// value pgx would have sent.
func appendTextValue(buf []byte, v any, c *column) ([]byte, bool) {
	switch x := v.(type) {
	case string:
		return append(buf, x...), true
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
		buf = append(buf, `\x`...)
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
