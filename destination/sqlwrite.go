package destination

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/backflowhq/backflow/schema"
)

// lockWait is how long a batch written without the lock step waits for a
// row lock held elsewhere before it is written again with it (see
// sqlWriter.careful): long enough for the short transactions of an
// application, short against a batch.
const lockWait = 100 * time.Millisecond

// ErrRowLocked is the per-record error of a record whose row another
// transaction holds: the record is retryable, and the rest of its batch was
// written.
var ErrRowLocked = errors.New("row locked by another transaction")

// errClass is how a SQL driver classifies a failed statement.
type errClass int

const (
	// classReject: the database refused what was sent (constraint, data type,
	// unknown column). Sending the same batch again fails the same way.
	classReject errClass = iota
	// classRetry: the failure is about the moment, not the data (lock wait,
	// busy database, lost connection, deadline). Nothing was committed.
	classRetry
	// classFatal: the failure is about the destination, not the data
	// (authentication, permission, unknown table or column): no batch can
	// succeed until someone fixes it.
	classFatal
)

// fatalError marks an error of the driver's own as classFatal.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

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
	// classify says whether err is worth retrying, or fatal; server is
	// false when err is not the database's own answer, which leaves the
	// writer to recognise a lost connection.
	classify func(err error) (c errClass, server bool)
	// keyText is a SQL expression giving the quoted key column as text, the
	// way lockRows reads keys back; nil when the database has no row locks
	// to skip (the writer then never runs lockRows).
	keyText func(quotedKey string) string
	// keysEcho, when set, is a query of the keys of quoted table whose
	// quoted key column (of type dbType) equals an element of $1, a text
	// array of keys as paramText renders them, locking the rows found
	// (skipping those others hold) when lock is set. It returns the
	// elements of $1 found, as sent, so that whatever the server takes as
	// equal (a float's other spelling, a case-insensitive text) matches
	// the batch's own key. lockRows then sends one parameter, not one per
	// key (PostgreSQL parses and plans a 1,000-key IN list ten times
	// slower).
	keysEcho func(quotedTable, quotedKey, dbType string, lock bool) string
	// keysTaken, for a key column c whose keyCheck is set, is a query of
	// the n keys sent as parameters that match a row of quoted table by
	// the column's collation although their bytes differ from its key's:
	// one text per match, the key sent after its length in bytes and
	// ':', then the row's key.
	keysTaken func(quotedTable, quotedKey string, c *column, n int) string
	// keysTwins, when set, is a query of the n keys sent as parameters
	// (distinct bytes) that the column c takes for one among themselves:
	// one text per such group, its keys in the order sent, each after its
	// length in bytes and ':'. For a dialect whose upsert fails when two
	// of its rows are one (PostgreSQL: ON CONFLICT DO UPDATE cannot
	// affect a row twice), the batch's own twins are found before it is
	// written; the first of each group is written.
	keysTwins func(c *column, n int) string
	// lockWaited recognises the error of a statement that waited for a
	// lock as long as the session allows (see sqlWriter.careful).
	lockWaited func(err error) bool
	// duplicateKey, when set, recognises a unique violation: the writer
	// then tries the upserts of new records (Record.New) as plain inserts,
	// and upserts them when one fails with it (see write.insertNew and
	// sqlWriter.upsertNew).
	duplicateKey func(err error) bool
	// boolText is how keyText renders a boolean key.
	boolText func(bool) string
	// timeStyle and fracDigits: how the database takes dates and times.
	timeStyle  timeStyle
	fracDigits int
	// otherAsText: values for column types the driver does not recognise
	// are sent as text (see converter).
	otherAsText bool
	// specialDecimals: decimal columns take 'NaN' and the infinities.
	specialDecimals bool
	// countsRows: the rows an INSERT reports affected are the rows it
	// wrote, one per row sent unless a trigger or rule skipped one
	// without an error (PostgreSQL: a BEFORE ROW trigger returning NULL,
	// a DO INSTEAD rule; SQLite: RAISE(IGNORE)); an upsert's, the rows it
	// inserted or updated. A statement that wrote fewer rows than it was
	// sent then fails its batch (rowsSkippedError), an UPDATE that
	// changed no row of a key that has one says a trigger or rule
	// skipped it (noRowUpdated), and so does a delete or clear that
	// left a row of its keys as it was (keptRows).
	countsRows bool
	// skipHow names, for messages, what of the database skips a row
	// without an error.
	skipHow string
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
	// describe reads a table's columns from the database.
	describe func(ctx context.Context, object string) (*table, error)
	// skipLocked: before writing, take the row locks of the batch's
	// existing rows with FOR UPDATE SKIP LOCKED, and answer records whose
	// row another transaction holds as retryable (ErrRowLocked) instead of
	// waiting for it.
	skipLocked bool
	// careful is set once a batch of the writer found a row lock held
	// elsewhere. Until then, with optimisticBegin, a batch is written
	// without the lock step (one or two statements with every key of the
	// batch, and the locking of every existing row), waiting at most
	// lockWait for a lock; a batch that waited that long is rolled back
	// and written again with the lock step, as are the writer's batches
	// after it, until carefulFor of them in a row found no row held
	// elsewhere. Rows are locked by other transactions rarely, and where
	// they are, they mostly stay so for a while: one wait per carefulFor
	// batches at most.
	careful atomic.Bool
	// clean counts the careful batches in a row that found no row held.
	clean atomic.Int64
	// carefulFor: 0 means defaultCarefulFor.
	carefulFor int64
	// upsertNew counts down the batches with new records that upsert
	// them rather than insert them: set to upsertNewFor when a batch
	// inserting them met a key that existed after all, since the next
	// batches of the same run (a state lost or reset over a full table)
	// likely will too.
	upsertNew atomic.Int64
	// optimisticBegin, when set, is the statement beginning a batch's
	// transaction without the lock step: it bounds the transaction's lock
	// waits to about lockWait. carefulBegin, when set, begins one with the
	// lock step: it sets the lock waits back to the destination's
	// lock_timeout (a session setting optimisticBegin changed).
	optimisticBegin, carefulBegin string
	// timeout bounds every request (Write, Prepare, CheckTypes) whatever
	// the caller's context; 0 means no bound of the writer's own.
	timeout time.Duration
	// bulkMinRows: a group of at least this many upserts or inserts is
	// written by the transaction's bulkInsert, where it has one; 0 never.
	bulkMinRows int

	mu     sync.Mutex
	spare  []*writeBuffers                   // arrays of writes done, for the next (giveBack)
	tables map[string]*table                 // by object, as Prepare or the first Write read it
	models map[string]map[string]schema.Type // by object, what CheckTypes was told

	// statements counts the statements sent (not BEGIN or COMMIT, nor
	// the setting that bounds an optimistic transaction's lock waits), for
	// tests and benchmarks; bulks counts those that were bulkInsert's.
	statements, bulks atomic.Int64
	// bulkAhead counts the bulk statements that sent the parameters
	// PrepareBatch made.
	bulkAhead atomic.Int64
	// insertedNew counts the batches written with their new records
	// inserted rather than upserted.
	insertedNew atomic.Int64
	// described is when a batch with values its columns did not take
	// last made the writer read a table's description again, by object.
	described map[string]time.Time
}

// describeAgainEvery bounds how often values that do not convert make the
// writer read a table's description again: a model whose values never fit
// costs one catalog query per object in that time, not one per batch.
const describeAgainEvery = 5 * time.Second

// mayDescribeAgain reports whether object's description may be read again
// now, and if so notes the time.
func (w *sqlWriter) mayDescribeAgain(object string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if last, ok := w.described[object]; ok && time.Since(last) < describeAgainEvery {
		return false
	}
	if w.described == nil {
		w.described = map[string]time.Time{}
	}
	w.described[object] = time.Now()
	return true
}

// table is what a SQL driver knows of one destination table.
type table struct {
	columns []column // in table order
	// fold: column names compare case-insensitively (SQLite, MySQL).
	fold bool
	// noCopy: inserts must not go by COPY (PostgreSQL: the table has
	// row-level security, which COPY FROM refuses, or rules, which COPY
	// does not apply).
	noCopy bool
	// insertTriggers: a row trigger that may skip an inserted row runs on
	// inserts into the table (PostgreSQL: BEFORE or INSTEAD OF INSERT …
	// FOR EACH ROW, on the table or on one of its partitions): a COPY
	// into it goes in a transaction, never alone (pgTx.bulkInsert).
	insertTriggers bool
	// uniques are the table's unique indexes other than its primary key
	// (MySQL, where an upsert's ON DUPLICATE KEY UPDATE takes any of them:
	// see otherUnique), each as its name and its columns.
	uniques []uniqueIndex
}

// uniqueIndex is a unique index's name and columns, in index order.
type uniqueIndex struct {
	name string
	// cols are the index's columns; "" for an expression (MySQL 8's
	// functional key parts), taken as one the batch may write.
	cols []string
}

func (u uniqueIndex) equal(v uniqueIndex) bool {
	return u.name == v.name && slices.Equal(u.cols, v.cols)
}

// same reports whether t and u describe the table alike.
func (t *table) same(u *table) bool {
	return t.fold == u.fold && t.noCopy == u.noCopy && t.insertTriggers == u.insertTriggers && slices.Equal(t.columns, u.columns) &&
		slices.EqualFunc(t.uniques, u.uniques, uniqueIndex.equal)
}

// otherUnique is the name of a unique index of t, other than one on the
// key column alone, whose columns the batch all writes (fields and key;
// "" when none). MySQL's INSERT … ON DUPLICATE KEY UPDATE takes a
// duplicate in any unique index: a record whose values another row holds
// in such an index updates that row, and its own key gets none, without
// an error. An index on a column the sync does not write (an
// AUTO_INCREMENT id) cannot be met that way.
func (t *table) otherUnique(key string, fields []string) string {
	for _, u := range t.uniques {
		if len(u.cols) == 1 && strings.EqualFold(u.cols[0], key) {
			continue
		}
		all := true
		for _, c := range u.cols {
			if c != "" && !strings.EqualFold(c, key) && !slices.ContainsFunc(fields, func(f string) bool { return strings.EqualFold(f, c) }) {
				all = false
				break
			}
		}
		if all {
			return u.name
		}
	}
	return ""
}

// rowsSkippedError is a statement that wrote fewer rows than it was sent,
// without an error: a trigger or rule of the table skipped the others.
// Which rows is not known, so the batch's transaction is rolled back and
// the batch rejected whole; split retries narrow it down until a skipped
// record is sent alone, and rejected with this error (one record sent).
type rowsSkippedError struct {
	table      string // as the batch names it
	took, sent int64
	how        string // sqlDialect.skipHow
}

func (e *rowsSkippedError) Error() string {
	if e.sent == 1 {
		return fmt.Sprintf("table %q did not take the row: a trigger or rule on it skipped it without an error (%s); "+
			"the record is not written and is sent again on the next run: change the trigger or rule to keep it, "+
			"or leave the record out of the model (an exclude rule)", e.table, e.how)
	}
	return fmt.Sprintf("table %q took %d of the %d rows sent: a trigger or rule on it skipped the others without an error (%s); "+
		"backflow cannot tell which, so it kept none of them: they are sent again, "+
		"in smaller groups that single out the skipped ones with split_retries = true", e.table, e.took, e.sent, e.how)
}

// checkTaken returns a rowsSkippedError when a statement of wr that sent
// sent rows reports took written, where the dialect counts them. An upsert
// with nothing to update (ON CONFLICT DO NOTHING: a sync mapping only the
// key) writes no row for a key that has one, and is not checked.
func (w *sqlWriter) checkTaken(wr *write, upsert bool, took int64, sent int) error {
	if !w.dialect.countsRows || took >= int64(sent) || (upsert && len(wr.fields) == 0) {
		return nil
	}
	return &rowsSkippedError{table: wr.b.Object, took: took, sent: int64(sent), how: w.dialect.skipHow}
}

// column is one column of a destination table.
type column struct {
	name   string
	dbType string // as the database spells it, for messages
	// castType is the type without its modifier, a domain's base type,
	// which the bulk path casts a value's text to before the column
	// applies the modifier and the domain's checks (PostgreSQL:
	// pg_catalog."varchar" for varchar(5)); "" when there is none, and
	// the statement path writes the column.
	castType string
	// noCopy: an insert writing the column must not go by COPY
	// (PostgreSQL: GENERATED ALWAYS AS IDENTITY, which INSERT refuses to
	// write and COPY writes).
	noCopy  bool
	kind    colKind
	notNull bool // NOT NULL: a clear cannot set it to NULL
	// foldValues: text values compare case-insensitively and ignoring
	// trailing spaces (a MySQL _ci collation).
	foldValues bool
	// keyCheck: as a key, the column takes some keys of different bytes
	// for one (MySQL: any collation but a binary NO PAD one; PostgreSQL:
	// citext, a nondeterministic collation), which keysBefore and
	// keysAfter keep from sharing a row. keyWhy says why, and keyFix what
	// to do, in their messages.
	keyCheck       bool
	keyWhy, keyFix string
	// collation is the column's collation where the dialect's queries
	// name it: MySQL's (a plain word), PostgreSQL's when nondeterministic
	// (quoted, schema-qualified); charset its character set (MySQL).
	collation string
	charset   string
	// unsigned: with bits 8, a MySQL TINYINT(1) UNSIGNED (0..255).
	unsigned bool
	// bits is the width of a narrow integer column whose range the driver
	// checks itself (PostgreSQL smallint and integer: pgx refuses an
	// out-of-range value with a message about encoding), or of a single
	// precision float column (PostgreSQL real: 32); 0 otherwise.
	bits int
}

// colKind is the family of a column's type, which decides how values are
// converted for it.
type colKind int

const (
	kindOther colKind = iota // anything else: values are passed as they come
	kindText
	kindInt
	kindFloat
	kindDecimal
	kindBool
	kindBytes
	kindDate
	kindTimestamp   // without time zone
	kindTimestampTZ // an instant (PostgreSQL timestamptz, MySQL TIMESTAMP)
	kindJSON
	kindUUID
)

// column finds name among t's columns: exactly, or ignoring case where
// the database does.
func (t *table) column(name string) *column {
	for i := range t.columns {
		if t.columns[i].name == name {
			return &t.columns[i]
		}
	}
	if t.fold {
		for i := range t.columns {
			if strings.EqualFold(t.columns[i].name, name) {
				return &t.columns[i]
			}
		}
	}
	return nil
}

// names lists the columns' names in table order.
func (t *table) names() []string {
	out := make([]string, len(t.columns))
	for i, c := range t.columns {
		out[i] = c.name
	}
	return out
}

// sqlConn is a connection (or pool) that can run a batch's transaction.
// begin starts one with the statement setting (no arguments) first,
// unless it is "": in the same round trip as BEGIN where the driver can
// (postgres sends both with the transaction's first statement).
type sqlConn interface {
	begin(ctx context.Context, setting string) (sqlTx, error)
	close() error
}

// sqlTx is one transaction; exec returns the rows affected, strings the
// first column of a query's rows as text.
type sqlTx interface {
	exec(ctx context.Context, query string, args ...any) (int64, error)
	strings(ctx context.Context, query string, args ...any) ([]string, error)
	commit(ctx context.Context) error
	rollback(ctx context.Context) error
}

// bulkTx is implemented by transactions that can write a large group of
// inserts or upserts faster than multi-row statements (PostgreSQL: one
// array of values per column). bulkInsert writes the records of wr at idx
// exactly as sqlWriter.insert would, or returns false, having sent nothing
// that the transaction keeps, when the group needs the statements.
type bulkTx interface {
	bulkInsert(ctx context.Context, w *sqlWriter, wr *write, idx []int, upsert bool) (bool, error)
}

// sqlDB adapts database/sql to sqlConn.
type sqlDB struct {
	db *sql.DB
	// opts are the options of every transaction (nil: the database's own).
	opts *sql.TxOptions
	// stmts keeps the statements of the batches prepared (nil: none kept).
	stmts *stmtCache
}

func (c sqlDB) begin(ctx context.Context, setting string) (sqlTx, error) {
	tx, err := c.db.BeginTx(ctx, c.opts)
	if err != nil {
		return nil, err
	}
	if setting != "" {
		// As text: nothing to gain from preparing a setting.
		if _, err := tx.ExecContext(ctx, setting); err != nil {
			_ = tx.Rollback()
			return nil, err
		}
	}
	return &sqlDBTx{tx: tx, stmts: c.stmts}, nil
}

func (c sqlDB) close() error {
	c.stmts.close()
	return c.db.Close()
}

type sqlDBTx struct {
	tx    *sql.Tx
	stmts *stmtCache
	// want are the statements this transaction ran unprepared, prepared
	// once it ends (a single-connection pool has no connection for it
	// before).
	want []string
}

// stmt returns query prepared for the transaction, or nil: a statement
// is prepared once a transaction ran it, so later batches of the same
// shape skip parsing and planning it (and, on MySQL, a round trip).
func (t *sqlDBTx) stmt(ctx context.Context, query string) *sql.Stmt {
	if t.stmts == nil {
		return nil
	}
	if st := t.stmts.get(query); st != nil {
		return t.tx.StmtContext(ctx, st)
	}
	t.want = append(t.want, query)
	return nil
}

func (t *sqlDBTx) exec(ctx context.Context, query string, args ...any) (int64, error) {
	var res sql.Result
	var err error
	if st := t.stmt(ctx, query); st != nil {
		res, err = st.ExecContext(ctx, args...)
	} else {
		res, err = t.tx.ExecContext(ctx, query, args...)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t *sqlDBTx) strings(ctx context.Context, query string, args ...any) ([]string, error) {
	var rows *sql.Rows
	var err error
	if st := t.stmt(ctx, query); st != nil {
		rows, err = st.QueryContext(ctx, args...)
	} else {
		rows, err = t.tx.QueryContext(ctx, query, args...)
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func (t *sqlDBTx) commit(ctx context.Context) error {
	err := t.tx.Commit()
	if err == nil {
		t.stmts.prepare(ctx, t.want)
	}
	return err
}

func (t *sqlDBTx) rollback(context.Context) error { return t.tx.Rollback() }

// stmtCache holds the prepared statements of the last few batch shapes
// of a destination (a statement per operation, object and row count).
type stmtCache struct {
	db    *sql.DB
	hits  atomic.Int64 // statements run prepared
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
	order []string // oldest first
	// once holds the hashes of statements run unprepared once (not the
	// statements: a batch's can be megabytes): a statement is prepared the
	// second time it runs, so that one-off shapes (a lookup of the few keys
	// a lock step left) are not prepared to be thrown away. A collision
	// only prepares a statement on its first run.
	once map[uint64]bool
	seed maphash.Seed
}

// maxStmts bounds the statements a destination keeps prepared: a sync's
// full batches, its last short one and the lock steps fit.
const maxStmts = 16

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, stmts: map[string]*sql.Stmt{}, once: map[uint64]bool{}, seed: maphash.MakeSeed()}
}

func (c *stmtCache) get(query string) *sql.Stmt {
	c.mu.Lock()
	st := c.stmts[query]
	c.mu.Unlock()
	if st != nil {
		c.hits.Add(1)
	}
	return st
}

// prepare prepares queries not kept yet that ran before, evicting the
// oldest past maxStmts. A statement that fails to prepare is not kept: its
// batches run unprepared and report their own errors.
func (c *stmtCache) prepare(ctx context.Context, queries []string) {
	if c == nil {
		return
	}
	for _, q := range queries {
		c.mu.Lock()
		_, ok := c.stmts[q]
		h := maphash.String(c.seed, q)
		second := c.once[h]
		if !ok && !second {
			if len(c.once) >= 4*maxStmts {
				clear(c.once)
			}
			c.once[h] = true
		}
		c.mu.Unlock()
		if ok || !second {
			continue
		}
		st, err := c.db.PrepareContext(ctx, q)
		if err != nil {
			continue
		}
		c.mu.Lock()
		if _, ok := c.stmts[q]; ok {
			c.mu.Unlock()
			st.Close()
			continue
		}
		c.stmts[q] = st
		delete(c.once, maphash.String(c.seed, q))
		c.order = append(c.order, q)
		var old *sql.Stmt
		if len(c.order) > maxStmts {
			old = c.stmts[c.order[0]]
			delete(c.stmts, c.order[0])
			c.order = c.order[1:]
		}
		c.mu.Unlock()
		if old != nil {
			old.Close()
		}
	}
}

func (c *stmtCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.stmts {
		st.Close()
	}
	clear(c.stmts)
	c.order = nil
}

// opGroup is the records of a batch that share an operation, by index, in
// batch order.
type opGroup struct {
	op  Operation
	idx []int
}

// groupByOp splits the records at idx by operation; groups are ordered by
// the first appearance of their operation, records keep their batch order.
//
// A batch mostly has one operation: the first group has room for every
// record, and groups are found by a scan (there are a handful of
// operations) rather than a map.
func groupByOp(records []Record, idx []int) []opGroup {
	var groups []opGroup
	for k, i := range idx {
		op := records[i].Op
		g := 0
		for g < len(groups) && groups[g].op != op {
			g++
		}
		if g == len(groups) {
			room := 0
			if g == 0 {
				room = len(idx) - k
			}
			groups = append(groups, opGroup{op: op, idx: make([]int, 0, room)})
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

// rowState is what lockRows learnt of a record's row.
type rowState uint8

const (
	rowUnknown  rowState = iota // not looked up (no lock step)
	rowNew                      // no row with the key
	rowOurs                     // the row exists and this transaction holds its lock
	rowLocked                   // the row exists and another transaction holds it
	rowTaken                    // the row the key would write belongs to another key (keysAfter)
	rowInserted                 // written by a plain INSERT: a row of its own
)

// write is one Write in progress: the batch and what is known of each
// record so far.
type write struct {
	b       *Batch
	tbl     *table
	keyCol  *column
	fields  []string // valueFields(b)
	results []Result
	state   []rowState
	// key and vals are each record's key and field values (in fields
	// order) converted to their columns' types.
	key  []any
	vals [][]any
	// sent are the records that went into statements, by index.
	sent []int
	// unreached counts the records to write whose operation's statement
	// was not reached: a failure before them leaves them unanswered.
	unreached int
	// bulk is the bulk statement's parameters for the records at
	// bulk.idx, made by PrepareBatch for the group the batch most likely
	// writes whole.
	bulk *bulkRows
	// insertNew: an upsert group of records all new (Record.New) is
	// written as plain inserts; inserted: one was.
	insertNew, inserted bool
	// last is set while the last operation's statements are written:
	// none follows them in the transaction.
	last bool
	// taken holds the records found to write a row of another key
	// (keysAfter, or keysBefore's twins of the batch), with that key: they
	// are rejected when the batch goes again (keysBefore). It outlives
	// reset, and so does twinsDone: the batch's twins were looked for.
	taken     map[int]string
	twinsDone bool
	// bufs, when set, holds key, vals, the values they slice and bulk's
	// body: arrays the writer takes back once the write is done
	// (sqlWriter.giveBack).
	bufs *writeBuffers
}

// valueErrors reports whether a record's value did not convert to its
// column.
func (wr *write) valueErrors() bool {
	for _, r := range wr.results {
		if r.Err != nil && isValueError(r.Err) {
			return true
		}
	}
	return false
}

// isValueError reports whether err is a valueError (a function of its own:
// the target errors.As fills escapes, and is allocated where it is
// declared).
func isValueError(err error) bool {
	var ve *valueError
	return errors.As(err, &ve)
}

// Write implements Destination for every SQL driver.
func (w *sqlWriter) Write(ctx context.Context, b *Batch) Outcome {
	if len(b.Records) == 0 {
		return AllAccepted(0)
	}
	ctx, cancel := w.bound(ctx)
	defer cancel()
	tbl, err := w.table(ctx, b.Object)
	if err != nil {
		return w.failure(ctx, b, nil, err)
	}
	p, ok := b.prepared.(*preparedWrite)
	if ok && p.wr.tbl != tbl {
		w.giveBack(p.wr)
		ok = false
	}
	if !ok {
		p = w.prepare(b, tbl, false)
	}
	if p.wr.valueErrors() && w.mayDescribeAgain(b.Object) {
		// A value its column, as described, does not take: the table may
		// have changed since it was read (ALTER TABLE during the run).
		// Read it again, and convert the batch again if it did.
		if t, err := w.describe(ctx, b.Object); err == nil && !t.same(tbl) {
			w.forget(b.Object)
			w.remember(b.Object, t)
			tbl = t
			w.giveBack(p.wr)
			p = w.prepare(b, tbl, false)
		}
	}
	b.prepared = nil
	wr, live, groups := p.wr, p.live, p.groups
	// Once the outcome is made, nothing reads the write's arrays.
	defer w.giveBack(wr)
	wr.unreached = len(live)
	if w.dialect.duplicateKey != nil && anyNew(b.Records) {
		if wr.insertNew = w.insertsNew(); !wr.insertNew {
			w.upsertNew.Add(-1)
		}
	}
	// The settings are part of beginning the transaction: not counted as
	// statements.
	setting := func(optimistic bool) string {
		switch {
		case optimistic:
			return w.optimisticBegin
		case w.careful.Load():
			return w.carefulBegin
		}
		return ""
	}
	body := func(optimistic bool) func(tx sqlTx) error {
		return func(tx sqlTx) error {
			if !optimistic && w.skipLocked && len(live) > 0 {
				if err := w.lockRows(ctx, tx, wr, live); err != nil {
					return fmt.Errorf("lock rows of %s: %w", b.Object, err)
				}
			}
			if err := w.keysBefore(ctx, tx, wr, live); err != nil {
				return fmt.Errorf("look up keys of %s: %w", b.Object, err)
			}
			for i, g := range groups {
				wr.last = i == len(groups)-1
				if err := w.writeGroup(ctx, tx, wr, g); err != nil {
					return fmt.Errorf("%s %s: %w", g.op, b.Object, err)
				}
			}
			if err := w.keysAfter(ctx, tx, wr, live); err != nil {
				return fmt.Errorf("look up keys of %s: %w", b.Object, err)
			}
			return nil
		}
	}
	// run writes the batch, again without the records keysAfter found
	// writing another key's row (each time one more at least).
	run := func(optimistic bool) error {
		for {
			err := w.inTx(ctx, setting(optimistic), body(optimistic))
			if !errors.Is(err, errKeysTaken) || ctx.Err() != nil {
				return err
			}
			wr.reset(live)
		}
	}
	optimistic := w.skipLocked && w.optimisticBegin != "" && len(live) > 0 && !w.careful.Load()
	err = run(optimistic)
	if err != nil && wr.inserted && w.dialect.duplicateKey(err) && ctx.Err() == nil {
		// A record new to backflow had a row: nothing was written. The
		// batch goes again, upserting.
		w.upsertNew.Store(upsertNewFor)
		wr.insertNew = false
		wr.reset(live)
		err = run(optimistic)
	}
	if err != nil && optimistic && w.dialect.lockWaited(err) && ctx.Err() == nil {
		// A row lock held elsewhere: nothing was written. The batch goes
		// again, locked rows first.
		w.careful.Store(true)
		w.clean.Store(0)
		wr.reset(live)
		err = run(false)
	} else if err == nil && !optimistic && w.careful.Load() {
		w.countClean(wr)
	}
	if err != nil {
		return w.failure(ctx, b, wr, err)
	}
	if wr.inserted {
		w.insertedNew.Add(1)
	}
	return Outcome{Results: wr.results}
}

// upsertNewFor is how many batches with new records upsert them after one
// whose inserts met an existing key.
const upsertNewFor = 100

// insertsNew reports whether the upserts of new records go as inserts
// now: the dialect tells a duplicate key, and no recent batch met one.
func (w *sqlWriter) insertsNew() bool {
	return w.dialect.duplicateKey != nil && w.upsertNew.Load() <= 0
}

// defaultCarefulFor is how many batches in a row must find no row held
// elsewhere before a careful writer goes without the lock step again.
const defaultCarefulFor = 100

// countClean counts a careful batch that was written: one that found no
// row held elsewhere adds to the run of clean ones, which turns the writer
// optimistic again once long enough; one that found some starts it over.
func (w *sqlWriter) countClean(wr *write) {
	for _, st := range wr.state {
		if st == rowLocked {
			w.clean.Store(0)
			return
		}
	}
	limit := w.carefulFor
	if limit <= 0 {
		limit = defaultCarefulFor
	}
	if w.clean.Add(1) >= limit {
		w.clean.Store(0)
		w.careful.Store(false)
	}
}

func newWrite(b *Batch, tbl *table, bufs *writeBuffers) *write {
	n := len(b.Records)
	wr := &write{
		b: b, tbl: tbl, keyCol: tbl.column(b.KeyField), fields: valueFields(b),
		results: make([]Result, n), state: make([]rowState, n), bufs: bufs,
	}
	if bufs == nil {
		wr.key, wr.vals = make([]any, n), make([][]any, n)
	} else {
		wr.key, wr.vals = grown(bufs.key, n), grown(bufs.rows, n)
		bufs.key, bufs.rows = wr.key, wr.vals
	}
	return wr
}

// writeBuffers are the arrays a prepared write is made in (its converted
// values and the body of its bulk statement), kept by the writer once the
// write is done for the next batch's: a batch's arrays are about a third
// of a megabyte for 1,000 records of 8 columns, which the collector would
// otherwise be handed anew at every batch.
type writeBuffers struct {
	key  []any   // write.key
	rows [][]any // write.vals
	vals []any   // the values write.vals slices
	text []byte  // write.bulk's COPY text or parameters
}

// grown is s emptied to length n, reallocated when it holds fewer.
func grown[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// maxSpareBuffers bounds the writeBuffers a writer keeps: as many as
// batches are prepared or written at once, at most. With max_in_flight 4,
// reconcile prepares up to 16 batches ahead of the 4 out (its deepAhead),
// and a bound of 8 sent most of them back to the collector: the
// BenchmarkApplyPostgres/in-flight-4 apply of 300,000 adds allocated 242
// MB with 8, 201 MB with 24 (each spare is about a third of a megabyte
// for 1,000 records of 8 columns). Its CPU time did not change beyond
// the noise of the machine.
const maxSpareBuffers = 24

// takeBuffers returns spare arrays for a prepared write, or nil.
func (w *sqlWriter) takeBuffers() *writeBuffers {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(w.spare)
	if n == 0 {
		return &writeBuffers{}
	}
	bufs := w.spare[n-1]
	w.spare[n-1] = nil
	w.spare = w.spare[:n-1]
	return bufs
}

// giveBack keeps wr's arrays for a later write. wr is done with: nothing
// refers to them any more (its results, which the outcome holds, are not
// among them).
func (w *sqlWriter) giveBack(wr *write) {
	bufs := wr.bufs
	if bufs == nil {
		return
	}
	wr.bufs, wr.key, wr.vals, wr.bulk = nil, nil, nil, nil
	// No value of the batch is kept alive by a spare array.
	clear(bufs.key[:cap(bufs.key)])
	clear(bufs.rows[:cap(bufs.rows)])
	clear(bufs.vals[:cap(bufs.vals)])
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.spare) < maxSpareBuffers {
		w.spare = append(w.spare, bufs)
	}
}

// preparedWrite is a batch made ready to write against wr.tbl: its values
// converted, the records to write (live) grouped by operation.
type preparedWrite struct {
	wr     *write
	live   []int
	groups []opGroup
}

// prepare converts b's values against tbl and groups the records to
// write. ahead (PrepareBatch, while the request before is out) also makes
// the bulk statement's parameters of a batch of one upsert (or insert)
// group, as most are, which goes whole unless a row is held elsewhere.
func (w *sqlWriter) prepare(b *Batch, tbl *table, ahead bool) *preparedWrite {
	wr := newWrite(b, tbl, w.takeBuffers())
	live := w.convert(wr)
	p := &preparedWrite{wr: wr, live: live, groups: groupByOp(b.Records, live)}
	if g := p.groups; ahead && w.bulkMinRows > 0 && len(g) == 1 && len(g[0].idx) >= w.bulkMinRows &&
		(g[0].op == OpUpsert || g[0].op == OpInsert) {
		if cols, ok := bulkColumns(wr); ok {
			insert := g[0].op == OpInsert || (w.insertsNew() && allNew(b.Records, g[0].idx))
			var buf *[]byte
			if wr.bufs != nil {
				buf = &wr.bufs.text
			}
			wr.bulk = makeBulkRows(wr, g[0].idx, cols, insert && copyable(tbl, cols), buf)
		}
	}
	return p
}

// PrepareBatch implements BatchPreparer: once the table's description is
// known, the batch is prepared ahead of Write.
func (w *sqlWriter) PrepareBatch(b *Batch) {
	if len(b.Records) == 0 {
		return
	}
	w.mu.Lock()
	tbl := w.tables[b.Object]
	w.mu.Unlock()
	if tbl != nil {
		b.prepared = w.prepare(b, tbl, true)
	}
}

// ReadsValues implements ValuesReader: convert reads Record.Values.
func (w *sqlWriter) ReadsValues() bool { return true }

// reset forgets what a rolled back attempt learnt of the live records.
func (wr *write) reset(live []int) {
	for _, i := range live {
		wr.results[i], wr.state[i] = Result{}, rowUnknown
	}
	wr.sent = wr.sent[:0]
	wr.unreached = len(live)
	wr.inserted = false
}

// convert fills wr.key and wr.vals for every record with a known
// operation, converting values to their columns' types, and returns the
// records to write. A record with an unknown operation or a value its column
// cannot take is rejected alone and not sent.
func (w *sqlWriter) convert(wr *write) (live []int) {
	b := wr.b
	models := w.modelTypes(b.Object)
	conv := func(field string) *converter {
		c := &converter{col: wr.tbl.column(field), style: w.dialect.timeStyle, fracDigits: w.dialect.fracDigits, otherAsText: w.dialect.otherAsText, specialDecimals: w.dialect.specialDecimals}
		c.model, c.known = models[field]
		return c
	}
	keyConv := conv(b.KeyField)
	convs := make([]*converter, len(wr.fields))
	// at[j] is where wr.fields[j] is in b.Fields, for Record.Values.
	at := make([]int, len(wr.fields))
	for j, f := range wr.fields {
		convs[j] = conv(f)
		at[j] = slices.Index(b.Fields, f)
	}
	live = make([]int, 0, len(b.Records))
	// The records' converted values, taken from one array for the batch
	// rather than allocated one record at a time.
	nf := len(wr.fields)
	var slab []any
	if wr.bufs != nil {
		slab = grown(wr.bufs.vals, nf*len(b.Records))
		wr.bufs.vals = slab
	} else {
		slab = make([]any, nf*len(b.Records))
	}
	for i, r := range b.Records {
		switch r.Op {
		case OpUpsert, OpInsert, OpUpdate, OpDelete, OpClear:
		default:
			wr.results[i] = Result{Err: fmt.Errorf("record %q: unknown operation %q", r.Key, r.Op)}
			continue
		}
		k, err := keyConv.convert(keyValue(r))
		if err != nil {
			wr.results[i] = Result{Err: &valueError{field: b.KeyField, col: keyConv.col, err: err}}
			continue
		}
		wr.key[i] = k
		if r.Op != OpDelete && r.Op != OpClear {
			vals := slab[i*nf : (i+1)*nf : (i+1)*nf]
			inOrder := r.Fields == nil && r.Values != nil
			for j, f := range wr.fields {
				var v any
				if inOrder {
					v = r.Values[at[j]]
				} else {
					v = r.Fields[f]
				}
				if vals[j], err = convs[j].convert(v); err != nil {
					err = &valueError{field: f, col: convs[j].col, err: err}
					break
				}
			}
			if err != nil {
				wr.results[i] = Result{Err: err}
				continue
			}
			wr.vals[i] = vals
		}
		live = append(live, i)
	}
	return live
}

// classify decides what err, which ended a Write under ctx, means: a
// deadline or a lost connection is retryable whatever else it says, then
// the database's own error decides.
func (w *sqlWriter) classify(ctx context.Context, err error) errClass {
	var fe *fatalError
	switch {
	case errors.As(err, &fe):
		return classFatal
	case ctx.Err() != nil, errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return classRetry
	}
	c, server := w.dialect.classify(err)
	if !server && c == classReject && isConnectionError(err) {
		return classRetry
	}
	return c
}

// bound returns ctx limited to the writer's timeout.
func (w *sqlWriter) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if w.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, w.timeout)
}

// table returns what is known of object, reading it on first use.
func (w *sqlWriter) table(ctx context.Context, object string) (*table, error) {
	w.mu.Lock()
	t := w.tables[object]
	w.mu.Unlock()
	if t != nil {
		return t, nil
	}
	return w.refresh(ctx, object)
}

// refresh reads object's columns again and remembers them.
func (w *sqlWriter) refresh(ctx context.Context, object string) (*table, error) {
	t, err := w.describe(ctx, object)
	if err != nil {
		return nil, err
	}
	w.remember(object, t)
	return t, nil
}

// forget drops object's description: the next write reads it again.
func (w *sqlWriter) forget(object string) {
	w.mu.Lock()
	delete(w.tables, object)
	w.mu.Unlock()
	if c, ok := w.conn.(describedConn); ok {
		c.tablesChanged()
	}
}

// describedConn is a sqlConn whose prepared statements do not follow a
// table that changes under them: forget tells it.
type describedConn interface {
	tablesChanged()
}

func (w *sqlWriter) remember(object string, t *table) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.tables == nil {
		w.tables = map[string]*table{}
	}
	w.tables[object] = t
}

// failure turns a failed transaction into an outcome. A rejected batch of
// which a single record was sent is reported as that record's own error:
// there is no other record it could have been poisoned by. wr is nil when
// the failure came before any record was looked at.
func (w *sqlWriter) failure(ctx context.Context, b *Batch, wr *write, err error) Outcome {
	class := w.classify(ctx, err)
	if w.scrub != nil {
		err = w.scrub(err)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && w.timeout > 0 {
		err = fmt.Errorf("no answer within %v (timeout): %w", w.timeout, err)
	}
	switch class {
	case classFatal:
		return Fatal(err)
	case classRetry:
		return Retry(err, 0)
	}
	if wr != nil && len(wr.sent) == 1 && wr.unreached == 0 && len(b.Records) > 1 {
		// Records not sent already have their answer (locked, or refused
		// before sending), and none of them was written. Not so when a
		// later operation's statement was never reached: its records have
		// no answer, and the batch is rejected whole.
		wr.results[wr.sent[0]] = Result{Err: err}
		return Outcome{Results: wr.results}
	}
	if len(b.Records) == 1 {
		return Outcome{Results: []Result{{Err: err}}}
	}
	return RejectBatch(err)
}

// inTx runs fn in a transaction, which begins with the statement setting
// unless it is "" (sqlConn.begin).
func (w *sqlWriter) inTx(ctx context.Context, setting string, fn func(tx sqlTx) error) error {
	tx, err := w.conn.begin(ctx, setting)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		// The rollback's own error adds nothing: the transaction is void
		// either way, and err says why. It gets a deadline of its own, as
		// ctx may be the one that expired.
		rctx, cancel := w.bound(context.WithoutCancel(ctx))
		_ = tx.rollback(rctx)
		cancel()
		return err
	}
	if err := tx.commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (w *sqlWriter) exec(ctx context.Context, tx sqlTx, query string, args ...any) (int64, error) {
	w.statements.Add(1)
	return tx.exec(ctx, query, args...)
}

func (w *sqlWriter) query(ctx context.Context, tx sqlTx, query string, args ...any) ([]string, error) {
	w.statements.Add(1)
	return tx.strings(ctx, query, args...)
}

// Where the key column tells keys apart by less than their bytes
// (keyCheck), some keys are one row: 'a' where the table holds 'A' (a _ci
// collation), 'a ' where it holds 'a' (PAD SPACE), 'ß' where it holds 's'.
// A record written to such a row would overwrite another record's values
// (an upsert or an update), and a removal of one would delete both. No
// record may write a row whose key has other bytes than its own:
// keysAfter finds, once the batch's statements ran and before its
// transaction commits, the records whose row holds another key (the
// server matching them by the column's collation, the transaction seeing
// its own writes and the rows of those committed before them); the batch
// goes again without them, rejected (keysBefore). Records written by a
// plain INSERT (mode "insert"), which fails on a key that has a row, are
// not looked up. A delete or clear of a key whose row is another's has no
// row of its own: nothing is written for it. One statement more per batch
// with upserts or updates for such a table (on MariaDB here about 7 ms for
// 1,000 keys, against 9 for the batch's upsert: the IN list's lookups),
// one with removals; none for any other table.

// errKeysTaken: keysAfter found records writing another key's row; the
// transaction is rolled back and the batch goes again.
var errKeysTaken = errors.New("records wrote rows of other keys")

// checksKeys says whether wr's key column may take keys of different
// bytes for one, and keysBefore and keysAfter must look.
func (w *sqlWriter) checksKeys(wr *write) bool {
	return wr.keyCol != nil && wr.keyCol.keyCheck && w.dialect.keysTaken != nil
}

// keysBefore rejects the records keysAfter found writing another key's
// row, and leaves alone the deletes and clears of keys whose row is
// another's.
func (w *sqlWriter) keysBefore(ctx context.Context, tx sqlTx, wr *write, live []int) error {
	for i, other := range wr.taken {
		if other == "" { // rowsAfter: another row took its values
			wr.state[i] = rowTaken
			wr.results[i] = Result{Err: &uniqueTakenError{key: wr.b.Records[i].Key, table: wr.b.Object, index: wr.tbl.otherUnique(wr.b.KeyField, wr.fields)}}
		}
	}
	if !w.checksKeys(wr) {
		return nil
	}
	if !wr.twinsDone && w.dialect.keysTwins != nil {
		if err := w.keysTwins(ctx, tx, wr, live); err != nil {
			return err
		}
		wr.twinsDone = true
	}
	for i, other := range wr.taken {
		if other != "" {
			wr.state[i] = rowTaken
			wr.results[i] = Result{Err: &keyCollisionError{key: wr.b.Records[i].Key, other: other, table: wr.b.Object, col: wr.keyCol}}
		}
	}
	removal := func(i int) bool {
		op := wr.b.Records[i].Op
		return (op == OpDelete || op == OpClear) && wr.state[i] != rowLocked
	}
	taken, err := w.keysTakenOf(ctx, tx, wr, live, removal, false)
	if err != nil {
		return err
	}
	for i := range taken {
		wr.state[i] = rowNew // no row of its own
	}
	return nil
}

// keysTwins records, in wr.taken, the records of live that would write
// (not removals, not plain inserts, which fail on a key that has a row)
// whose key the column takes for that of such a record before them in the
// batch, with that record's key.
func (w *sqlWriter) keysTwins(ctx context.Context, tx sqlTx, wr *write, live []int) error {
	byText := map[string][]int{}
	var args []any
	for _, i := range live {
		switch wr.b.Records[i].Op {
		case OpDelete, OpClear, OpInsert:
			continue
		}
		if wr.results[i].Err != nil {
			continue
		}
		t := w.paramText(wr.key[i])
		if _, seen := byText[t]; !seen {
			args = append(args, wr.key[i])
		}
		byText[t] = append(byText[t], i)
	}
	if len(args) < 2 {
		return nil
	}
	// Twins in different chunks are left to keysAfter, which sees the
	// first's row once it is written (a chunk holds tens of thousands of
	// keys: a batch larger than that).
	per := w.chunkRows(1)
	for start := 0; start < len(args); start += per {
		chunk := args[start:min(start+per, len(args))]
		groups, err := w.query(ctx, tx, w.dialect.keysTwins(wr.keyCol, len(chunk)), chunk...)
		if err != nil {
			return err
		}
		for _, g := range groups {
			keys := splitSized(g)
			for _, k := range keys[min(1, len(keys)):] {
				for _, i := range byText[k] {
					if wr.taken == nil {
						wr.taken = map[int]string{}
					}
					wr.taken[i] = keys[0]
				}
			}
		}
	}
	return nil
}

// splitSized splits s, texts each after its length in bytes and ':'; it
// stops at the first that is not.
func splitSized(s string) []string {
	var out []string
	for s != "" {
		text, rest, ok := cutSized(s)
		if !ok {
			break
		}
		out = append(out, text)
		s = rest
	}
	return out
}

// cutSized cuts s after its first text, written after its length in bytes
// and ':' (the form the key queries return), and returns that text and the
// rest.
func cutSized(s string) (text, rest string, ok bool) {
	n, rest, ok := strings.Cut(s, ":")
	size, err := strconv.Atoi(n)
	if !ok || err != nil || size < 0 || size > len(rest) {
		return "", "", false
	}
	return rest[:size], rest[size:], true
}

// keysAfter records, in wr.taken, the records written whose row holds
// another key, and then returns errKeysTaken.
func (w *sqlWriter) keysAfter(ctx context.Context, tx sqlTx, wr *write, live []int) error {
	written := func(i int) bool {
		op := wr.b.Records[i].Op
		st := wr.state[i]
		return op != OpDelete && op != OpClear && st != rowLocked && st != rowTaken && st != rowInserted && wr.results[i].Err == nil
	}
	if err := w.rowsAfter(ctx, tx, wr, live, written); err != nil || !w.checksKeys(wr) {
		return err
	}
	taken, err := w.keysTakenOf(ctx, tx, wr, live, written, true)
	if err != nil || len(taken) == 0 {
		return err
	}
	if wr.taken == nil {
		wr.taken = map[int]string{}
	}
	maps.Copy(wr.taken, taken)
	return errKeysTaken
}

// rowsAfter, for a MySQL table with another unique index (otherUnique),
// looks up the keys of the upserts written: one with no row had its values
// taken by another row through that index (ON DUPLICATE KEY UPDATE updated
// it). Such records are rejected (wr.taken, with no other key) and the
// batch goes again without them: the other row keeps its own values. One
// statement more per batch of upserts for such tables only.
func (w *sqlWriter) rowsAfter(ctx context.Context, tx sqlTx, wr *write, live []int, written func(i int) bool) error {
	if wr.tbl == nil || wr.tbl.otherUnique(wr.b.KeyField, wr.fields) == "" {
		return nil
	}
	upsert := func(i int) bool { return wr.b.Records[i].Op == OpUpsert && written(i) }
	args := w.distinctKeys(wr, live, upsert)
	if len(args) == 0 {
		return nil
	}
	table, key := w.dialect.quoteIdent(wr.b.Object), w.dialect.quoteIdent(wr.b.KeyField)
	have := map[string]bool{}
	per := w.chunkRows(1)
	for start := 0; start < len(args); start += per {
		rows, err := w.keysInList(ctx, tx, table, key, false, args[start:min(start+per, len(args))])
		if err != nil {
			return err
		}
		for _, r := range rows {
			have[r] = true
		}
	}
	missing := false
	for _, i := range live {
		if upsert(i) && !have[w.paramText(wr.key[i])] {
			if wr.taken == nil {
				wr.taken = map[int]string{}
			}
			wr.taken[i] = ""
			missing = true
		}
	}
	if missing {
		return errKeysTaken
	}
	return nil
}

// distinctKeys is the keys of the records of live that pick selects, each
// once (by its parameter text), as a statement's parameters.
func (w *sqlWriter) distinctKeys(wr *write, live []int, pick func(i int) bool) []any {
	seen := map[string]bool{}
	var args []any
	for _, i := range live {
		if !pick(i) {
			continue
		}
		if t := w.paramText(wr.key[i]); !seen[t] {
			seen[t] = true
			args = append(args, wr.key[i])
		}
	}
	return args
}

// keysTakenOf looks up the keys of the records of live that pick selects
// and returns those whose row holds a key of other bytes, with that key.
//
// With written, every key picked has a row (the batch just wrote it): the
// rows of a plain IN list, by the column's index, are first compared with
// the keys, and the costlier query that pairs each key with its row
// (dialect.keysTaken, 20 ms for 1,000 keys on MariaDB here, where the IN
// list takes a few) runs only when they differ. As many rows as distinct
// keys, each with the bytes of one, is no key sharing a row: a row holding
// another key's bytes, or two keys sharing one (fewer rows), shows.
func (w *sqlWriter) keysTakenOf(ctx context.Context, tx sqlTx, wr *write, live []int, pick func(i int) bool, written bool) (map[int]string, error) {
	b, d, c := wr.b, w.dialect, wr.keyCol
	args := w.distinctKeys(wr, live, pick)
	if len(args) == 0 {
		return nil, nil
	}
	table, key := d.quoteIdent(b.Object), d.quoteIdent(b.KeyField)
	rows := map[string]string{} // a key sent: the key of the row it matched
	per := w.chunkRows(1)
	for start := 0; start < len(args); start += per {
		chunk := args[start:min(start+per, len(args))]
		if written {
			same, err := w.ownRows(ctx, tx, table, key, chunk)
			if err != nil {
				return nil, err
			}
			if same {
				continue
			}
		}
		pairs, err := w.query(ctx, tx, d.keysTaken(table, key, c, len(chunk)), chunk...)
		if err != nil {
			return nil, err
		}
		for _, pair := range pairs {
			if key, row, ok := cutSized(pair); ok {
				rows[key] = row
			}
		}
	}
	var taken map[int]string
	for _, i := range live {
		if !pick(i) {
			continue
		}
		if other, ok := rows[w.paramText(wr.key[i])]; ok {
			if taken == nil {
				taken = map[int]string{}
			}
			taken[i] = other
		}
	}
	return taken, nil
}

// ownRows reports whether the rows of quoted table whose key equals one
// of keys (texts, each once) are as many as the keys, and each holds the
// bytes of one of them.
func (w *sqlWriter) ownRows(ctx context.Context, tx sqlTx, table, key string, keys []any) (bool, error) {
	rows, err := w.keysInList(ctx, tx, table, key, false, keys)
	if err != nil || len(rows) != len(keys) {
		return false, err
	}
	sent := make(map[string]bool, len(keys))
	for _, k := range keys {
		sent[w.paramText(k)] = true
	}
	for _, r := range rows {
		if !sent[r] {
			return false, nil
		}
	}
	return true, nil
}

// lockRows takes, in the batch's transaction, the row locks of the records'
// existing rows that no other transaction holds
// (SELECT key ... FOR UPDATE SKIP LOCKED), then looks up which of the other
// keys have a row at all (a plain read, which waits for no lock). Records
// whose row is held elsewhere get ErrRowLocked, retryable, and are not
// written; the others go on knowing whether their row exists.
//
// Two statements per batch at most (more only when a batch has more keys
// than a statement has parameters); the second only when a key came back
// missing from the first.
func (w *sqlWriter) lockRows(ctx context.Context, tx sqlTx, wr *write, live []int) error {
	b, d := wr.b, w.dialect
	if wr.keyCol == nil {
		return &fatalError{fmt.Errorf("column %q not found in table %q", b.KeyField, b.Object)}
	}
	// Records by the normalised text of their key; a key may appear in
	// several records (a delete and a re-add, or twice).
	byKey := make(map[string][]int, len(live))
	var keys []string
	var args []any
	for _, i := range live {
		v := wr.key[i]
		k := w.normKey(wr.keyCol, w.paramText(v))
		if _, seen := byKey[k]; !seen {
			keys = append(keys, k)
			args = append(args, v)
		}
		byKey[k] = append(byKey[k], i)
	}
	table, key := d.quoteIdent(b.Object), d.quoteIdent(b.KeyField)
	got, err := w.keysIn(ctx, tx, table, key, true, args, wr.keyCol)
	if err != nil {
		return err
	}
	var restKeys []string
	var restArgs []any
	for n, k := range keys {
		if got[k] {
			for _, i := range byKey[k] {
				wr.state[i] = rowOurs
			}
			continue
		}
		restKeys = append(restKeys, k)
		restArgs = append(restArgs, args[n])
	}
	if len(restKeys) == 0 {
		return nil
	}
	exists, err := w.keysIn(ctx, tx, table, key, false, restArgs, wr.keyCol)
	if err != nil {
		return err
	}
	for _, k := range restKeys {
		st := rowNew
		if exists[k] {
			st = rowLocked
		}
		for _, i := range byKey[k] {
			wr.state[i] = st
			if st == rowLocked {
				wr.results[i] = Result{Err: ErrRowLocked, Retryable: true}
			}
		}
	}
	return nil
}

// keysIn reads which of the keys args the quoted key column of table
// holds, locking their rows (skipping those held elsewhere) when lock is
// set, and returns them normalised: one statement with a text array where
// the dialect has keysEcho and every key has a text form the database
// parses back (strings, numbers, booleans), otherwise
// `SELECT key … WHERE key IN (placeholders)`, chunked.
func (w *sqlWriter) keysIn(ctx context.Context, tx sqlTx, table, key string, lock bool, args []any, keyCol *column) (map[string]bool, error) {
	out := make(map[string]bool, len(args))
	if texts, ok := w.keyTexts(args); ok {
		keys, err := w.query(ctx, tx, w.dialect.keysEcho(table, key, keyCol.dbType, lock), texts)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			out[w.normKey(keyCol, k)] = true
		}
		return out, nil
	}
	per := w.chunkRows(1)
	for start := 0; start < len(args); start += per {
		keys, err := w.keysInList(ctx, tx, table, key, lock, args[start:min(start+per, len(args))])
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			out[w.normKey(keyCol, k)] = true
		}
	}
	return out, nil
}

// keysInList is the keys of quoted table's rows whose quoted key column
// equals one of keys (at most chunkRows(1)), as the rows hold them, read
// with one IN list; lock takes their row locks, skipping rows others hold.
func (w *sqlWriter) keysInList(ctx context.Context, tx sqlTx, table, key string, lock bool, keys []any) ([]string, error) {
	sel := key // read as text by database/sql (SQLite, without keyText)
	if w.dialect.keyText != nil {
		sel = w.dialect.keyText(key)
	}
	var q strings.Builder
	q.WriteString("SELECT " + sel + " FROM " + table + " WHERE " + key + " IN (")
	for n := range keys {
		if n > 0 {
			q.WriteString(", ")
		}
		q.WriteString(w.dialect.placeholder(n + 1))
	}
	q.WriteString(")")
	if lock {
		q.WriteString(" FOR UPDATE SKIP LOCKED")
	}
	return w.query(ctx, tx, q.String(), keys...)
}

// keyTexts is args as text for dialect.keysEcho; false when the dialect has
// none or a key is of a type whose text form is not the database's.
func (w *sqlWriter) keyTexts(args []any) ([]string, bool) {
	if w.dialect.keysEcho == nil {
		return nil, false
	}
	texts := make([]string, len(args))
	for i, v := range args {
		switch x := v.(type) {
		case string, int64, bool:
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, false
			}
		default:
			return nil, false
		}
		texts[i] = w.paramText(v)
	}
	return texts, true
}

// paramText renders a key parameter the way the database renders the key
// column as text (dialect.keyText), so the keys lockRows reads back can be
// matched to the records.
func (w *sqlWriter) paramText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		if w.dialect.boolText != nil {
			return w.dialect.boolText(x)
		}
		return strconv.FormatBool(x)
	case []byte:
		return string(x)
	default:
		return fmt.Sprint(x)
	}
}

// normKey makes the text of a key comparable the way the database compares
// keys of column c: decimals and floats by value, UUIDs and case-insensitive text
// without regard to case (and, for MySQL's PAD SPACE collations, trailing
// spaces).
func (w *sqlWriter) normKey(c *column, s string) string {
	switch {
	case c.kind == kindDecimal:
		if r, ok := new(big.Rat).SetString(s); ok {
			return r.RatString()
		}
	case c.kind == kindFloat:
		// The server prints 1000000 or 1e+21 where Go prints 1e+06 or
		// 1e+21: both read back as the column's float, printed one way.
		bits := 64
		if c.bits == 32 {
			bits = 32
		}
		if f, err := strconv.ParseFloat(s, bits); err == nil {
			return strconv.FormatFloat(f, 'g', -1, bits)
		}
	case c.kind == kindUUID:
		return strings.ToLower(s)
	case c.foldValues:
		return strings.ToLower(strings.TrimRight(s, " "))
	}
	return s
}

func (w *sqlWriter) writeGroup(ctx context.Context, tx sqlTx, wr *write, g opGroup) error {
	b := wr.b
	wr.unreached -= len(g.idx)
	// Records whose row another transaction holds are not written; deletes,
	// clears and updates of keys known to have no row need no statement.
	idx := make([]int, 0, len(g.idx))
	for _, i := range g.idx {
		switch st := wr.state[i]; {
		case st == rowLocked, st == rowTaken:
		case st == rowNew && (g.op == OpDelete || g.op == OpClear):
		case st == rowNew && g.op == OpUpdate:
			wr.results[i] = Result{Err: noRowToUpdate(b.Records[i])}
		default:
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return nil
	}
	g.idx = idx
	wr.sent = append(wr.sent, idx...)
	switch g.op {
	case OpUpsert, OpInsert:
		upsert := g.op == OpUpsert
		if upsert && wr.insertNew && allNew(b.Records, idx) {
			upsert, wr.inserted = false, true
		}
		if !upsert {
			// A plain INSERT writes rows of their own or fails: nothing
			// for keysAfter to look up.
			for _, i := range idx {
				wr.state[i] = rowInserted
			}
		}
		if bt, ok := tx.(bulkTx); ok && w.bulkMinRows > 0 && len(idx) >= w.bulkMinRows {
			if done, err := bt.bulkInsert(ctx, w, wr, idx, upsert); done || err != nil {
				return err
			}
		}
		return w.insert(ctx, tx, wr, g, upsert)
	case OpUpdate:
		return w.update(ctx, tx, wr, g)
	case OpDelete:
		return w.byKeys(ctx, tx, wr, g, "DELETE FROM "+w.dialect.quoteIdent(b.Object), false)
	default: // OpClear
		fields := wr.fields
		if b.ClearFields != nil {
			fields = nil
			for _, f := range b.ClearFields {
				if f != b.KeyField {
					fields = append(fields, f)
				}
			}
		}
		if len(fields) == 0 {
			return nil
		}
		sets := make([]string, len(fields))
		for i, f := range fields {
			sets[i] = w.dialect.quoteIdent(f) + " = NULL"
		}
		return w.byKeys(ctx, tx, wr, g, "UPDATE "+w.dialect.quoteIdent(b.Object)+" SET "+strings.Join(sets, ", "), true)
	}
}

// anyNew reports whether a record is new to backflow.
func anyNew(records []Record) bool {
	for i := range records {
		if records[i].New {
			return true
		}
	}
	return false
}

// allNew reports whether every record at idx is new to backflow.
func allNew(records []Record, idx []int) bool {
	for _, i := range idx {
		if !records[i].New {
			return false
		}
	}
	return true
}

// uniqueTakenError rejects an upsert whose values another row holds in a
// unique index other than the key's (MySQL): ON DUPLICATE KEY UPDATE would
// update that row and give the record's key none.
type uniqueTakenError struct {
	key, table, index string
}

func (e *uniqueTakenError) Error() string {
	return fmt.Sprintf("key %q has no row of its own in %s: its values are another row's in unique index %s, so the upsert would update that row instead (MySQL's ON DUPLICATE KEY UPDATE takes any unique index); make the values differ, or remove or change the other row", e.key, e.table, e.index)
}

// keyCollisionError rejects a record whose key differs from another's only
// where the key column does not look: two records that would write one
// row, the later overwriting the earlier, which a removal of either would
// then delete.
type keyCollisionError struct {
	key, other, table string
	col               *column
}

func (e *keyCollisionError) Error() string {
	return fmt.Sprintf("key %q is the same row as key %q in %s: its key column %s takes the two for one (%s), so the two records would share one row; %s, or make the model's keys differ otherwise",
		e.key, e.other, e.table, e.col.name, e.col.keyWhy, e.col.keyFix)
}

func noRowToUpdate(r Record) error { return fmt.Errorf("no record with key %s to update", r.Key) }

// noRowUpdated is the error of the record at i of wr whose UPDATE changed
// no row: where the dialect counts rows, a trigger or rule may have
// skipped it. Whether the key has a row tells which: known when the lock
// step found the row, looked up otherwise (a statement only for such a
// record, rare).
func (w *sqlWriter) noRowUpdated(ctx context.Context, tx sqlTx, wr *write, i int) (Result, error) {
	r := wr.b.Records[i]
	if !w.dialect.countsRows {
		return Result{Err: noRowToUpdate(r)}, nil
	}
	if wr.state[i] != rowOurs {
		d := w.dialect
		found, err := w.query(ctx, tx, "SELECT 'x' FROM "+d.quoteIdent(wr.b.Object)+" WHERE "+d.quoteIdent(wr.b.KeyField)+" = "+d.placeholder(1), wr.key[i])
		if err != nil {
			return Result{}, err
		}
		if len(found) == 0 {
			return Result{Err: noRowToUpdate(r)}, nil
		}
	}
	return Result{Err: fmt.Errorf("table %q did not update the row of key %s: a trigger or rule on it skipped the update without an error (%s); "+
		"the record is sent again on the next run: change the trigger or rule to keep it", wr.b.Object, r.Key, w.dialect.skipHow)}, nil
}

// chunkRows is how many rows of width columns fit in one statement.
func (w *sqlWriter) chunkRows(width int) int {
	n := w.dialect.maxParams / max(width, 1)
	return max(n, 1)
}

// insert writes a group as multi-row INSERT statements, upserting by key
// when upsert is set. Fields missing from a record's map are written as NULL.
func (w *sqlWriter) insert(ctx context.Context, tx sqlTx, wr *write, g opGroup, upsert bool) error {
	d, b, fields := w.dialect, wr.b, wr.fields
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
			q.WriteByte('(')
			args = append(args, wr.key[i])
			q.WriteString(d.placeholder(len(args)))
			for _, v := range wr.vals[i] {
				args = append(args, v)
				q.WriteString(", ")
				q.WriteString(d.placeholder(len(args)))
			}
			q.WriteByte(')')
		}
		q.WriteString(tail)
		n, err := w.exec(ctx, tx, q.String(), args...)
		if err != nil {
			return err
		}
		if err := w.checkTaken(wr, upsert, n, len(chunk)); err != nil {
			return err
		}
	}
	return nil
}

// update runs one UPDATE per record; a record that matched no row gets its
// own error and the others stay written.
func (w *sqlWriter) update(ctx context.Context, tx sqlTx, wr *write, g opGroup) error {
	d, b, fields := w.dialect, wr.b, wr.fields
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
		args := make([]any, 0, len(fields)+1)
		args = append(args, wr.vals[i]...)
		args = append(args, wr.key[i])
		n, err := w.exec(ctx, tx, q, args...)
		if err != nil {
			return err
		}
		if n == 0 {
			res, err := w.noRowUpdated(ctx, tx, wr, i)
			if err != nil {
				return err
			}
			wr.results[i] = res
		}
	}
	return nil
}

// byKeys runs prefix + ` WHERE key IN (...)` over the group's keys, chunked:
// a DELETE, or an UPDATE when clearing. Keys without a row are not an
// error: deletes and clears are idempotent.
func (w *sqlWriter) byKeys(ctx context.Context, tx sqlTx, wr *write, g opGroup, prefix string, clearing bool) error {
	d, b := w.dialect, wr.b
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
			args = append(args, wr.key[i])
			q.WriteString(d.placeholder(len(args)))
		}
		q.WriteByte(')')
		n, err := w.exec(ctx, tx, q.String(), args...)
		if err != nil {
			return err
		}
		if w.dialect.countsRows && n < int64(len(chunk)) {
			if err := w.keptRows(ctx, tx, wr, chunk, args, n, clearing); err != nil {
				return err
			}
		}
	}
	return nil
}

// keptRows tells, where the dialect counts rows, a statement of byKeys
// over the records at chunk (keys args) that wrote n rows, fewer than it
// had keys, from one a trigger or rule skipped rows of: it reads which of
// the keys have a row, in the same transaction, only then (a key without
// a row, or the same key twice, is rare). After a DELETE, a key that has
// a row is one whose delete was skipped: its records are answered with
// their own error, the others stay deleted. After a clear, more keys with
// a row than rows written means one was skipped, not which: the batch is
// rejected (rowsSkippedError), and split retries narrow it down.
func (w *sqlWriter) keptRows(ctx context.Context, tx sqlTx, wr *write, chunk []int, args []any, n int64, clearing bool) error {
	d, b := w.dialect, wr.b
	found, err := w.keysIn(ctx, tx, d.quoteIdent(b.Object), d.quoteIdent(b.KeyField), false, args, wr.keyCol)
	if err != nil {
		return err
	}
	if clearing {
		if n < int64(len(found)) {
			return &rowsSkippedError{table: b.Object, took: n, sent: int64(len(found)), how: d.skipHow}
		}
		return nil
	}
	for _, i := range chunk {
		if found[w.normKey(wr.keyCol, w.paramText(wr.key[i]))] {
			wr.results[i] = Result{Err: fmt.Errorf("table %q kept the row of key %s: a trigger or rule on it skipped the delete without an error (%s); "+
				"the record is sent again on the next run: change the trigger or rule to let the row go", b.Object, b.Records[i].Key, d.skipHow)}
		}
	}
	return nil
}

// Close closes the connection.
func (w *sqlWriter) Close() error { return w.conn.close() }

// checkColumns reports the first of key and fields that t lacks, in the
// words a user needs to fix the mapping.
func checkColumns(object, key string, fields []string, t *table) error {
	for _, f := range append([]string{key}, fields...) {
		if t.column(f) == nil {
			return fmt.Errorf("column %q not found in table %q (columns: %s)", f, object, strings.Join(t.names(), ", "))
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

// connectError is a failed connection attempt. Its message names the
// server by host:port and says what happened, never the DSN's user,
// database, password or options; Unwrap keeps the driver's error for
// classification.
type connectError struct {
	addr string
	msg  string
	err  error
}

func (e *connectError) Error() string { return "connect to " + e.addr + ": " + e.msg }
func (e *connectError) Unwrap() error { return e.err }

// newConnectError describes err, a failure to connect to addr under ctx
// (bounded by timeout); msg is the driver's message without the parts that
// quote the DSN.
func newConnectError(addr string, timeout time.Duration, ctx context.Context, msg string, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		msg = fmt.Sprintf("no answer within %v (connect timeout)", timeout)
	}
	return &connectError{addr: addr, msg: msg, err: err}
}

// durationMillis renders d for a server setting in milliseconds, at least 1.
func durationMillis(d time.Duration) string {
	return strconv.FormatInt(max(d.Milliseconds(), 1), 10)
}
