package destination_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
)

// This file is the conformance suite of the SQL drivers (sqlite, postgres,
// mysql): the behaviour they share through sqlwrite.go, written once and run
// against each driver through a sqlHarness. What only one driver does stays
// in that driver's own test file.

// sqlHarness is what the suite needs from one SQL driver, set up for one test
// (a fresh database file, or an admin session on a server, released at the
// test's cleanup).
type sqlHarness struct {
	// open opens the destination under test, closed at cleanup. lockTimeout
	// is Config.LockTimeout (0: the driver's default), initSQL is
	// Config.InitSQL.
	open func(t testing.TB, lockTimeout time.Duration, initSQL string) destination.Destination
	// exec runs one statement outside the destination, in an admin session.
	exec func(query string) error
	// rows reads table back as id -> (email, name), nil for NULL.
	rows func(t testing.TB, table string) map[int64][2]any
	// lock holds, from another session, write locks on the rows of table
	// with ids (or on the whole database, where there are no row locks),
	// until release is called.
	lock func(t testing.TB, table string, ids ...int64) (release func())
	// rowLocks: the database locks rows, and the driver answers records
	// whose row another transaction holds as retryable while the rest of the
	// batch lands. Otherwise a lock fails the whole batch, retryably.
	rowLocks bool
	// holdNew inserts, from another session, a row of table with id and
	// holds it uncommitted until release is called (rowLocks only).
	holdNew func(t testing.TB, table string, id int64) (release func())

	// contactsDDL is a format (%s: the table's name, %% doubled) that
	// creates a table with the columns id (primary key), email (NOT NULL,
	// CHECK (email LIKE '%@%')), name and age, in that order.
	contactsDDL string
	// textType is a text column type that can carry a unique index.
	textType string
	// where is how the driver's messages name the database.
	where string
	// schema, when set, is a schema Prepare accepts as `schema.table`.
	schema string
	// foldCase: Prepare matches column names case-insensitively.
	foldCase bool
	// lockTimeout is the Config.LockTimeout under which a held lock fails
	// fast.
	lockTimeout time.Duration
	// lockErr, checkErr and uniqueErr match the database's messages for a
	// lock timeout, a CHECK violation and a duplicate key.
	lockErr, checkErr, uniqueErr *regexp.Regexp
	// optimistic: batches go without the lock step until one meets a row
	// lock held elsewhere.
	optimistic bool
	// dataRejects are single-record batches (Object left empty) that the
	// database refuses for their data, beyond the CHECK violation.
	dataRejects map[string]*destination.Batch
}

// testSQLConformance runs the conformance suite; setup builds the harness of
// one driver for one (sub)test, or skips it.
func testSQLConformance(t *testing.T, setup func(t testing.TB) *sqlHarness) {
	t.Run("RoundTrip", func(t *testing.T) { conformRoundTrip(t, setup(t)) })
	t.Run("WholeBatchRejections", func(t *testing.T) { conformWholeBatchRejections(t, setup(t)) })
	t.Run("SingleRecordRejections", func(t *testing.T) { conformSingleRecordRejections(t, setup(t)) })
	t.Run("LockIsRetryable", func(t *testing.T) { conformLockIsRetryable(t, setup(t)) })
	t.Run("LockedRowsPerOperation", func(t *testing.T) { conformLockedRowsPerOperation(t, setup(t)) })
	t.Run("CancelledContextIsRetryable", func(t *testing.T) { conformCancelledContext(t, setup(t)) })
	t.Run("Prepare", func(t *testing.T) { conformPrepare(t, setup(t)) })
	t.Run("UnknownTableOrColumnIsFatal", func(t *testing.T) { conformUnknownTableOrColumnIsFatal(t, setup(t)) })
	t.Run("PreparedStatementsFollowTheTable", func(t *testing.T) { conformPreparedStatements(t, setup(t)) })
	t.Run("PreparedBatchesFollowTheTable", func(t *testing.T) { conformPreparedBatches(t, setup(t)) })
	t.Run("TableChangedDuringTheRun", func(t *testing.T) { conformTableChangedDuringTheRun(t, setup(t)) })
	t.Run("ValuesInOrder", func(t *testing.T) { conformValuesInOrder(t, setup(t)) })
}

// conformPreparedBatches converts a batch ahead (PrepareBatch), then
// changes the table under it: Write converts again against the new
// description rather than sending what was converted for the old one.
func conformPreparedBatches(t *testing.T, h *sqlHarness) {
	ctx := context.Background()
	table, d := contactsDest(t, h)
	p, ok := d.(destination.BatchPreparer)
	if !ok {
		t.Fatalf("%T converts no batch ahead", d)
	}
	aged := func(id int64, age any) *destination.Batch {
		b := batchFor(table, contact(id, destination.OpUpsert, "a@x", "Ann"))
		b.Fields = []string{"email", "name", "age"}
		b.Records[0].Fields["age"] = age
		return b
	}
	// Converted ahead and written: the same outcome as without.
	b := aged(1, int64(42))
	p.PrepareBatch(b)
	mustAccept(t, d.Write(ctx, b), 1)
	// age becomes text: "12 years" was no integer for the old table.
	b = aged(2, "12 years")
	p.PrepareBatch(b)
	mustExec(t, h, `DROP TABLE `+table)
	mustExec(t, h, `CREATE TABLE `+table+` (id BIGINT PRIMARY KEY, email `+h.textType+`, name `+h.textType+`, age `+h.textType+`)`)
	destination.ForgetTable(d, table)
	mustAccept(t, d.Write(ctx, b), 1)
	if got := h.rows(t, table); !reflect.DeepEqual(got, map[int64][2]any{2: {"a@x", "Ann"}}) {
		t.Fatalf("rows %v after the table changed", got)
	}
}

// conformPreparedStatements writes batches of one shape, which drivers
// with a statement cache run prepared after the first, then recreates the
// table under them: the next batch lands in the new table.
func conformPreparedStatements(t *testing.T, h *sqlHarness) {
	ctx := context.Background()
	table, d := contactsDest(t, h)
	three := func(from int64) *destination.Batch {
		return batchFor(table,
			contact(from, destination.OpUpsert, "a@x", "Ann"),
			contact(from+1, destination.OpUpsert, "b@x", "Bob"),
			contact(from+2, destination.OpUpsert, "c@x", nil),
		)
	}
	for _, from := range []int64{1, 4, 7} {
		mustAccept(t, d.Write(ctx, three(from)), 3)
	}
	// A shape is prepared the second time it runs: the third batch runs
	// prepared, and one-off statements never are.
	hits := destination.PreparedHits(d)
	if hits == 0 {
		t.Fatal("three batches of one shape, none run prepared")
	}
	mustAccept(t, d.Write(ctx, batchFor(table, contact(10, destination.OpUpsert, "j@x", "Jo"))), 1)
	if h := destination.PreparedHits(d); h != hits {
		t.Fatalf("a batch of a shape never run before ran prepared (%d hits, then %d)", hits, h)
	}
	want := map[int64][2]any{10: {"j@x", "Jo"}}
	for id := int64(1); id <= 9; id++ {
		want[id] = [2]any{[]string{"a@x", "b@x", "c@x"}[(id-1)%3], []any{"Ann", "Bob", nil}[(id-1)%3]}
	}
	wantRows(t, h, table, "after three batches", want)

	mustExec(t, h, `DROP TABLE `+table)
	mustExec(t, h, fmt.Sprintf(h.contactsDDL, table))
	hits = destination.PreparedHits(d)
	mustAccept(t, d.Write(ctx, three(20)), 3)
	wantRows(t, h, table, "after the table was recreated", map[int64][2]any{
		20: {"a@x", "Ann"}, 21: {"b@x", "Bob"}, 22: {"c@x", nil},
	})
	if hits >= 0 && destination.PreparedHits(d) <= hits {
		t.Fatal("the batch after the table was recreated did not run prepared")
	}
}

var tableSeq atomic.Int64

// uniqueTable returns a table name no other test uses.
func uniqueTable() string {
	return fmt.Sprintf("contacts_%d_%d", time.Now().UnixNano(), tableSeq.Add(1))
}

// mustExec runs query through the harness's admin session.
func mustExec(t testing.TB, h *sqlHarness, query string) {
	t.Helper()
	if err := h.exec(query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// dropAtCleanup drops table when the test ends.
func dropAtCleanup(t testing.TB, h *sqlHarness, table string) {
	t.Cleanup(func() {
		if err := h.exec(`DROP TABLE IF EXISTS ` + table); err != nil {
			t.Errorf("drop %s: %v", table, err)
		}
	})
}

// newTable creates a uniquely named table of these columns, dropped at
// cleanup.
func newTable(t testing.TB, h *sqlHarness, columns string) string {
	t.Helper()
	table := uniqueTable()
	mustExec(t, h, "CREATE TABLE "+table+" ("+columns+")")
	dropAtCleanup(t, h, table)
	return table
}

// contactsTable creates a uniquely named contacts table, dropped at cleanup.
func contactsTable(t testing.TB, h *sqlHarness) string {
	t.Helper()
	table := uniqueTable()
	mustExec(t, h, fmt.Sprintf(h.contactsDDL, table))
	dropAtCleanup(t, h, table)
	return table
}

// contactsDest creates a contacts table and opens the destination with its
// default timeout.
func contactsDest(t testing.TB, h *sqlHarness) (string, destination.Destination) {
	t.Helper()
	table := contactsTable(t, h)
	return table, h.open(t, 0, "")
}

// batchFor is batch(records...) aimed at table.
func batchFor(table string, records ...destination.Record) *destination.Batch {
	b := batch(records...)
	b.Object = table
	return b
}

func wantRows(t testing.TB, h *sqlHarness, table, when string, want map[int64][2]any) {
	t.Helper()
	if got := h.rows(t, table); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: rows %v, want %v", when, got, want)
	}
}

// wantWholeBatchRejection checks that o rejects its batch as a whole,
// not retryably, with a message matching msg.
func wantWholeBatchRejection(t testing.TB, o destination.Outcome, msg *regexp.Regexp, what string) {
	t.Helper()
	if o.Err == nil || o.Retryable || o.Results != nil {
		t.Fatalf("%s: want a whole-batch rejection, got %+v", what, o)
	}
	if !msg.MatchString(o.Err.Error()) {
		t.Fatalf("%s: rejection should carry the database's message (%s): %v", what, msg, o.Err)
	}
}

// wantPerRecordRejection checks that o answers its single record with a
// non-retryable error of its own, matching msg when msg is set.
func wantPerRecordRejection(t testing.TB, o destination.Outcome, msg *regexp.Regexp, what string) {
	t.Helper()
	if o.Err != nil || len(o.Results) != 1 || o.Results[0].Err == nil || o.Results[0].Retryable {
		t.Fatalf("%s: want one non-retryable per-record error, got %+v", what, o)
	}
	if msg != nil && !msg.MatchString(o.Results[0].Err.Error()) {
		t.Fatalf("%s: error should be the database's (%s): %v", what, msg, o.Results[0].Err)
	}
}

// wantRetryable checks that o is a retryable failure of the whole batch.
func wantRetryable(t testing.TB, o destination.Outcome, msg *regexp.Regexp, what string) {
	t.Helper()
	if o.Err == nil || !o.Retryable || o.Results != nil {
		t.Fatalf("%s: want a retryable batch error, got %+v", what, o)
	}
	if msg != nil && !msg.MatchString(o.Err.Error()) {
		t.Fatalf("%s: error should match %s: %v", what, msg, o.Err)
	}
}

// conformRoundTrip writes every operation and reads the table back:
// upsert and insert create, upsert and update change (an update that writes
// the values a row already has still finds it, one of a missing key is that
// record's own error), delete removes (a missing key, or the same key twice,
// is fine) and clear sets the mapped fields to NULL.
func conformRoundTrip(t *testing.T, h *sqlHarness) {
	ctx := context.Background()
	table, d := contactsDest(t, h)

	mustAccept(t, d.Write(ctx, batchFor(table,
		contact(1, destination.OpUpsert, "a@x", "Ann"),
		contact(2, destination.OpInsert, "b@x", "Bob"),
		contact(3, destination.OpUpsert, "c@x", "Cy"),
		contact(5, destination.OpInsert, "e@x", "Eve"),
	)), 4)
	wantRows(t, h, table, "after upsert/insert", map[int64][2]any{
		1: {"a@x", "Ann"}, 2: {"b@x", "Bob"}, 3: {"c@x", "Cy"}, 5: {"e@x", "Eve"},
	})

	o := d.Write(ctx, batchFor(table,
		contact(1, destination.OpUpsert, "a2@x", "Ann2"),
		contact(2, destination.OpUpdate, "b2@x", nil),
		contact(5, destination.OpUpdate, "e@x", "Eve"), // unchanged values: still found
		contact(9, destination.OpUpdate, "z@x", "Zed"),
		contact(3, destination.OpDelete, nil, nil),
		contact(4, destination.OpDelete, nil, nil),
	))
	if o.Err != nil || len(o.Results) != 6 {
		t.Fatalf("mixed batch: %+v", o)
	}
	for _, i := range []int{0, 1, 2, 4, 5} {
		if o.Results[i].Err != nil {
			t.Fatalf("mixed batch: unexpected error for record %d: %+v", i, o.Results)
		}
	}
	if e := o.Results[3].Err; e == nil || e.Error() != "no record with key 9 to update" || o.Results[3].Retryable {
		t.Fatalf("update of missing key 9: got %+v", o.Results[3])
	}
	wantRows(t, h, table, "after mixed batch", map[int64][2]any{
		1: {"a2@x", "Ann2"}, 2: {"b2@x", nil}, 5: {"e@x", "Eve"},
	})

	// clear sets mapped fields to NULL; email is NOT NULL, so clear only
	// name. A clear's Fields may be empty or name the cleared fields.
	clear := &destination.Batch{Object: table, KeyField: "id", Fields: []string{"name"}, Records: []destination.Record{
		{Key: "1", KeyValue: int64(1), Op: destination.OpClear},
		{Key: "5", KeyValue: int64(5), Op: destination.OpClear, Fields: map[string]any{"name": nil}},
	}}
	mustAccept(t, d.Write(ctx, clear), 2)
	mustAccept(t, d.Write(ctx, batchFor(table, contact(2, destination.OpDelete, nil, nil), contact(2, destination.OpDelete, nil, nil))), 2)
	wantRows(t, h, table, "after clear/delete", map[int64][2]any{1: {"a2@x", nil}, 5: {"e@x", nil}})
}

// conformWholeBatchRejections: one bad record among several poisons the
// batch, which is rejected as a whole, not retryably, and writes nothing.
func conformWholeBatchRejections(t *testing.T, h *sqlHarness) {
	ctx := context.Background()
	table, d := contactsDest(t, h)
	mustAccept(t, d.Write(ctx, batchFor(table,
		contact(1, destination.OpInsert, "a@x", "A"),
		contact(2, destination.OpUpsert, "b@x", "B"),
	)), 2)
	before := map[int64][2]any{1: {"a@x", "A"}, 2: {"b@x", "B"}}

	// One CHECK violation fails the whole multi-row upsert.
	var recs []destination.Record
	for i := int64(10); i < 110; i++ {
		email := fmt.Sprintf("u%d@x", i)
		if i == 57 {
			email = "not-an-email"
		}
		recs = append(recs, contact(i, destination.OpUpsert, email, nil))
	}
	wantWholeBatchRejection(t, d.Write(ctx, batchFor(table, recs...)), h.checkErr, "multi-row check violation")
	wantRows(t, h, table, "after rejected check violation", before)

	// An insert of an existing key fails the whole batch.
	o := d.Write(ctx, batchFor(table, contact(3, destination.OpInsert, "c@x", "C"), contact(1, destination.OpInsert, "a@x", "A")))
	wantWholeBatchRejection(t, o, h.uniqueErr, "insert conflict")
	wantRows(t, h, table, "after rejected insert conflict", before)

	// Operations are written one statement each: when the statement of
	// the first operation, with a single record, fails, the records of the
	// others were never written; the batch is rejected whole, not answered
	// as that record's error with the others accepted.
	o = d.Write(ctx, batchFor(table,
		contact(4, destination.OpUpsert, "not-an-email", "D"),
		contact(5, destination.OpInsert, "e@x", "E"),
		contact(6, destination.OpInsert, "f@x", "F"),
		contact(2, destination.OpDelete, nil, nil),
	))
	wantWholeBatchRejection(t, o, h.checkErr, "mixed operations, the first one's single record refused")
	wantRows(t, h, table, "after the rejected mixed batch", before)
}

// conformSingleRecordRejections: a batch of one record the database refuses
// answers with that record's own error: nothing else could have poisoned it.
func conformSingleRecordRejections(t *testing.T, h *sqlHarness) {
	ctx := context.Background()
	table, d := contactsDest(t, h)
	wantPerRecordRejection(t, d.Write(ctx, batchFor(table, contact(7, destination.OpUpsert, "bad", "x"))), h.checkErr, "single check violation")
	for what, b := range h.dataRejects {
		b.Object = table
		wantPerRecordRejection(t, d.Write(ctx, b), nil, what)
	}
	wantRows(t, h, table, "after rejections", map[int64][2]any{})
}

// conformLockIsRetryable: a write blocked by another session's lock is
// retryable, never rejected (even for a single record: that is not the
// record's fault), and succeeds once the lock is released. Where the
// database locks rows, only the records whose row is held are retryable and
// the rest of the batch lands; otherwise the whole batch is retryable.
func conformLockIsRetryable(t *testing.T, h *sqlHarness) {
	ctx := context.Background()
	table := contactsTable(t, h)
	mustExec(t, h, `INSERT INTO `+table+` (id, email) VALUES (1, 'a@x')`)
	d := h.open(t, h.lockTimeout, "")
	release := h.lock(t, table, 1)

	b := batchFor(table, contact(1, destination.OpUpsert, "new@x", "N"), contact(2, destination.OpUpsert, "b@x", "B"))
	single := batchFor(table, contact(1, destination.OpUpsert, "n@x", "N"))
	if h.rowLocks {
		o := d.Write(ctx, b)
		wantLockedRecords(t, o, 2, []int{0}, "batch with one held row")
		wantLockedRecords(t, d.Write(ctx, single), 1, []int{0}, "single held row")
		wantRows(t, h, table, "under the lock", map[int64][2]any{1: {"a@x", nil}, 2: {"b@x", "B"}})
	} else {
		wantRetryable(t, d.Write(ctx, b), h.lockErr, "batch under a held lock")
		wantRetryable(t, d.Write(ctx, single), h.lockErr, "single record under a held lock")
	}

	release()
	mustAccept(t, d.Write(ctx, b), 2)
	wantRows(t, h, table, "after the lock", map[int64][2]any{1: {"new@x", "N"}, 2: {"b@x", "B"}})
}

// conformLockedRowsPerOperation: where the database locks rows, updates,
// deletes and clears of held rows are retryable records too, inserts of new
// keys and operations on free rows land, and a delete, clear or update of a
// key without a row needs no row lock.
func conformLockedRowsPerOperation(t *testing.T, h *sqlHarness) {
	if !h.rowLocks {
		t.Skip("the database has no row locks")
	}
	ctx := context.Background()
	table := contactsTable(t, h)
	for id := 1; id <= 8; id++ {
		mustExec(t, h, fmt.Sprintf(`INSERT INTO %s (id, email, name) VALUES (%d, 'u%d@x', 'n%d')`, table, id, id, id))
	}
	d := h.open(t, h.lockTimeout, "")
	release := h.lock(t, table, 1, 3, 5, 7)
	defer release()
	b := batchFor(table,
		contact(1, destination.OpUpdate, "x1@x", "X"), // held
		contact(2, destination.OpUpdate, "x2@x", "X"),
		contact(3, destination.OpDelete, nil, nil), // held
		contact(4, destination.OpDelete, nil, nil),
		contact(7, destination.OpUpsert, "x7@x", "X"), // held
		contact(8, destination.OpUpsert, "x8@x", "X"),
		contact(9, destination.OpInsert, "x9@x", "X"),
		contact(10, destination.OpDelete, nil, nil), // no row
	)
	wantLockedRecords(t, d.Write(ctx, b), len(b.Records), []int{0, 2, 4}, "mixed operations")
	// Clears set the batch's fields to NULL: here name alone (email is NOT NULL).
	clearName := func(id int64) destination.Record {
		return destination.Record{Key: fmt.Sprint(id), KeyValue: id, Op: destination.OpClear, Fields: map[string]any{"name": nil}}
	}
	clears := &destination.Batch{Object: table, KeyField: "id", Fields: []string{"name"}, Records: []destination.Record{
		clearName(5), clearName(6), clearName(11), // 5 held, 11 without a row
	}}
	wantLockedRecords(t, d.Write(ctx, clears), 3, []int{0}, "clears")
	wantRows(t, h, table, "after the mixed batch", map[int64][2]any{
		1: {"u1@x", "n1"}, 2: {"x2@x", "X"}, 3: {"u3@x", "n3"}, 5: {"u5@x", "n5"},
		6: {"u6@x", nil}, 7: {"u7@x", "n7"}, 8: {"x8@x", "X"}, 9: {"x9@x", "X"},
	})
	// An update of a key without a row is that record's own error, held
	// rows or not.
	o := d.Write(ctx, batchFor(table, contact(1, destination.OpUpdate, "y@x", "Y"), contact(12, destination.OpUpdate, "y@x", "Y")))
	if o.Err != nil || len(o.Results) != 2 || !errors.Is(o.Results[0].Err, destination.ErrRowLocked) ||
		o.Results[1].Err == nil || o.Results[1].Retryable || o.Results[1].Err.Error() != "no record with key 12 to update" {
		t.Fatalf("update of a held and a missing key: %+v", o)
	}
}

// wantLockedRecords checks that o answers its n records per record, the
// ones at locked retryable with ErrRowLocked and every other one accepted.
func wantLockedRecords(t testing.TB, o destination.Outcome, n int, locked []int, what string) {
	t.Helper()
	if o.Err != nil || len(o.Results) != n {
		t.Fatalf("%s: want %d per-record results, got %+v", what, n, o)
	}
	held := map[int]bool{}
	for _, i := range locked {
		held[i] = true
	}
	for i, r := range o.Results {
		switch {
		case held[i] && (!r.Retryable || !errors.Is(r.Err, destination.ErrRowLocked)):
			t.Fatalf("%s: record %d should be retryable as locked, got %+v", what, i, r)
		case !held[i] && r.Err != nil:
			t.Fatalf("%s: record %d should be accepted, got %v", what, i, r.Err)
		}
	}
}

// conformCancelledContext: a write whose context is done is retryable, and
// the destination still works afterwards.
func conformCancelledContext(t *testing.T, h *sqlHarness) {
	table, d := contactsDest(t, h)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := batchFor(table, contact(1, destination.OpUpsert, "a@x", "A"), contact(2, destination.OpUpsert, "b@x", "B"))
	wantRetryable(t, d.Write(ctx, b), nil, "cancelled context")
	mustAccept(t, d.Write(context.Background(), b), 2)
	wantRows(t, h, table, "after cancelled write", map[int64][2]any{1: {"a@x", "A"}, 2: {"b@x", "B"}})
}

// prepareCase is one Prepare call and the error it should give.
type prepareCase struct {
	object, key string
	fields      []string
	wantErr     string // empty: no error
}

// conformPrepare: Prepare finds tables (also ones init_sql created), their
// columns and a unique key, and names what is missing and where.
func conformPrepare(t *testing.T, h *sqlHarness) {
	ctx := context.Background()
	table := contactsTable(t, h)
	mustExec(t, h, `CREATE TABLE `+table+`_nokey (email `+h.textType+`, name `+h.textType+`)`)
	dropAtCleanup(t, h, table+"_nokey")
	dropAtCleanup(t, h, table+"_init")
	d := h.open(t, 0, `CREATE TABLE IF NOT EXISTS `+table+`_init (k `+h.textType+`, v `+h.textType+`);
		CREATE UNIQUE INDEX IF NOT EXISTS `+table+`_init_k ON `+table+`_init (k);`)
	p, ok := d.(destination.Preparer)
	if !ok {
		t.Fatal("destination should implement Preparer")
	}
	noKey := func(key, object string) string {
		return `key column "` + key + `" of table "` + object + `" in ` + h.where + ` has no PRIMARY KEY or UNIQUE constraint`
	}
	tests := []prepareCase{
		{table, "id", []string{"email", "name"}, ""},
		{table + "_init", "k", []string{"v"}, ""},
		{table + "_missing", "id", nil, `table "` + table + `_missing" not found in ` + h.where},
		{table, "id", []string{"email", "phone"}, `column "phone" not found in table "` + table + `" (columns: id, email, name, age) in ` + h.where},
		{table, "uid", nil, `column "uid" not found in table "` + table + `"`},
		{table, "email", []string{"name"}, noKey("email", table)},
		{table + "_nokey", "email", []string{"name"}, noKey("email", table+"_nokey")},
	}
	key, field := "id", "email"
	if h.foldCase {
		key, field = "ID", "Email"
		tests = append(tests, prepareCase{table, key, []string{field}, ""})
	} else {
		tests = append(tests, prepareCase{table, "ID", []string{"Email"}, `column "ID" not found in table "` + table + `"`})
	}
	if h.schema != "" {
		tests = append(tests, prepareCase{h.schema + "." + table, key, []string{field}, ""})
	}
	for _, tt := range tests {
		t.Run(tt.object+"/"+tt.key, func(t *testing.T) {
			err := p.Prepare(ctx, tt.object, tt.key, tt.fields)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// testSecretsStayOut checks that open fails without quoting the DSN or its
// password (s3cr3t-pw in both), for an unreachable server and for a DSN that
// does not parse.
func testSecretsStayOut(t *testing.T, typ string, open func(context.Context, destination.Config) (destination.Destination, error), unreachable, invalid string) {
	t.Helper()
	ctx := context.Background()
	_, err := open(ctx, config(t, typ, "warehouse", "", map[string]any{"dsn": unreachable}))
	t.Logf("connect failure: %v", err)
	if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") || strings.Contains(err.Error(), unreachable) {
		t.Fatalf("connection failure should fail without the secret: %v", err)
	}
	_, err = open(ctx, config(t, typ, "warehouse", "", map[string]any{"dsn": invalid}))
	if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("invalid dsn should fail without the secret: %v", err)
	}
}

// rowScanner is what *sql.Rows and pgx.Rows share.
type rowScanner interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// scanContacts reads (id, email, name) rows as id -> (email, name).
func scanContacts(t testing.TB, rows rowScanner) map[int64][2]any {
	t.Helper()
	out := map[int64][2]any{}
	for rows.Next() {
		var id int64
		var email, name *string
		if err := rows.Scan(&id, &email, &name); err != nil {
			t.Fatal(err)
		}
		v := [2]any{nil, nil}
		if email != nil {
			v[0] = *email
		}
		if name != nil {
			v[1] = *name
		}
		out[id] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// serverOrSkip skips a test when the server behind dsn is unreachable,
// unless CI is set: there the servers are part of the job and a missing one
// must fail loudly.
func serverOrSkip(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s unreachable under CI: %v", what, err)
	}
	t.Skipf("%s unreachable (set CI to make this fail): %v", what, err)
}

func contact(id int64, op destination.Operation, email, name any) destination.Record {
	r := destination.Record{Key: fmt.Sprint(id), KeyValue: id, Op: op}
	if op != destination.OpDelete {
		r.Fields = map[string]any{"email": email, "name": name}
	}
	return r
}

// conformValuesInOrder: records that carry Record.Values (in the order of
// Batch.Fields, the key field among them or not) in place of Fields are
// written as the same records by field name are, prepared ahead or not,
// in a batch large enough for a bulk path and in a small one.
func conformValuesInOrder(t *testing.T, h *sqlHarness) {
	ctx := context.Background()
	table, d := contactsDest(t, h)
	if r, ok := d.(destination.ValuesReader); !ok || !r.ReadsValues() {
		t.Fatal("a SQL destination does not read Record.Values")
	}
	want := map[int64][2]any{}
	for step, fields := range [][]string{{"email", "name"}, {"name", "id", "email"}, {"name", "email"}} {
		for _, n := range []int64{3, 600} {
			var recs []destination.Record
			for i := range n {
				id := int64(step)*10_000 + n*10 + i
				email, name := fmt.Sprintf("u%d@x", id), any(fmt.Sprint("N", id))
				if i%5 == 0 {
					name = nil
				}
				vals := map[string]any{"email": email, "name": name, "id": id}
				r := destination.Record{Key: fmt.Sprint(id), KeyValue: id, Op: destination.OpUpsert, New: i%2 == 0}
				for _, f := range fields {
					r.Values = append(r.Values, vals[f])
				}
				recs = append(recs, r)
				want[id] = [2]any{email, name}
			}
			b := &destination.Batch{Object: table, KeyField: "id", Fields: fields, Records: recs}
			if step == 1 {
				if p, ok := d.(destination.BatchPreparer); ok {
					p.PrepareBatch(b)
				}
			}
			mustAccept(t, d.Write(ctx, b), len(recs))
		}
	}
	wantRows(t, h, table, "written from values in order", want)
}

func batch(records ...destination.Record) *destination.Batch {
	return &destination.Batch{Object: "contacts", KeyField: "id", Fields: []string{"email", "name"}, Records: records}
}

func mustAccept(t testing.TB, o destination.Outcome, n int) {
	t.Helper()
	if o.Err != nil {
		t.Fatalf("batch failed (retryable=%v): %v", o.Retryable, o.Err)
	}
	if len(o.Results) != n {
		t.Fatalf("got %d results, want %d", len(o.Results), n)
	}
	for i, r := range o.Results {
		if r.Err != nil {
			t.Fatalf("record %d rejected: %v", i, r.Err)
		}
	}
}

// conformTableChangedDuringTheRun changes a column's type under a writer
// that has written to the table (ALTER TABLE during a run, with no hook
// telling the writer): a value the old type did not take, and the new one
// does, is written rather than rejected, on the statement path.
func conformTableChangedDuringTheRun(t *testing.T, h *sqlHarness) {
	ctx := context.Background()
	table, d := contactsDest(t, h)
	aged := func(id int64, age any) *destination.Batch {
		b := batchFor(table, contact(id, destination.OpUpsert, "a@x", "Ann"), contact(id+1, destination.OpUpsert, "b@x", "Bob"))
		b.Fields = []string{"email", "name", "age"}
		b.Records[0].Fields["age"] = age
		b.Records[1].Fields["age"] = age
		return b
	}
	mustAccept(t, d.Write(ctx, aged(1, int64(42))), 2)
	mustAccept(t, d.Write(ctx, aged(3, int64(43))), 2) // prepared statements, where the driver has them
	mustExec(t, h, `DROP TABLE `+table)
	mustExec(t, h, `CREATE TABLE `+table+` (id BIGINT PRIMARY KEY, email `+h.textType+`, name `+h.textType+`, age `+h.textType+`)`)
	mustAccept(t, d.Write(ctx, aged(5, "12 years")), 2)
	if got := h.rows(t, table); !reflect.DeepEqual(got, map[int64][2]any{5: {"a@x", "Ann"}, 6: {"b@x", "Bob"}}) {
		t.Fatalf("rows %v after the table changed", got)
	}
	// A value the table, read again and unchanged, does not take is
	// rejected as before.
	other, d2 := contactsDest(t, h)
	aged = func(id int64, age any) *destination.Batch {
		b := batchFor(other, contact(id, destination.OpUpsert, "a@x", "Ann"))
		b.Fields = []string{"email", "name", "age"}
		b.Records[0].Fields["age"] = age
		return b
	}
	mustAccept(t, d2.Write(ctx, aged(1, int64(42))), 1)
	o := d2.Write(ctx, aged(2, "twelve"))
	if o.Err == nil && (len(o.Results) != 1 || o.Results[0].Err == nil) {
		t.Fatalf("an age of %q was written to an integer column: %+v", "twelve", o)
	}
}
