package destination_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
)

// Rows held by another transaction, at the scale of a real sync: one batch
// of 10,000 changed rows, 5 of them held with SELECT ... FOR UPDATE by two
// other sessions. The 5 come back retryable, the 9,995 others (and new keys)
// are committed at once; once one session lets go of its 2 rows, a second
// Write of the 5 accepts those 2 and still answers the 3 others retryable.
func TestPostgresLockedRowsAtScale(t *testing.T) { testLockedRowsAtScale(t, postgresHarness(t)) }
func TestMySQLLockedRowsAtScale(t *testing.T)    { testLockedRowsAtScale(t, mysqlHarness(t)) }

// A destination that met a held row takes the lock step first until
// enough batches in a row found none, then goes without it again.
func TestPostgresCarefulWritesEnd(t *testing.T) { testCarefulWritesEnd(t, postgresHarness(t)) }
func TestMySQLCarefulWritesEnd(t *testing.T)    { testCarefulWritesEnd(t, mysqlHarness(t)) }

func testCarefulWritesEnd(t *testing.T, h *sqlHarness) {
	ctx := context.Background()
	table := contactsTable(t, h)
	mustExec(t, h, seedContacts(table, 10))
	d := h.open(t, h.lockTimeout, "")
	destination.SetCarefulFor(d, 2)
	write := func(what string, held ...int) int64 {
		before := destination.Statements(d)
		var recs []destination.Record
		for id := int64(1); id <= 10; id++ {
			recs = append(recs, contact(id, destination.OpUpsert, fmt.Sprintf("%s-%d@x", what, id), "v"))
		}
		wantLockedRecords(t, d.Write(ctx, batchFor(table, recs...)), len(recs), held, what)
		return destination.Statements(d) - before
	}
	if n := write("plain"); n != 1 || destination.Careful(d) {
		t.Fatalf("no row held: %d statements, careful %v; want the upsert alone", n, destination.Careful(d))
	}
	release := h.lock(t, table, 3)
	write("held", 2)
	if !destination.Careful(d) {
		t.Fatal("a batch met a held row: not careful")
	}
	write("still held", 2) // starts the count of clean batches over
	release()
	for i, what := range []string{"clean 1", "clean 2"} {
		if !destination.Careful(d) {
			t.Fatalf("optimistic again after %d clean batches, want 2", i)
		}
		if n := write(what); n != 2 {
			t.Fatalf("%s: %d statements, want the lock step and the upsert", what, n)
		}
	}
	if destination.Careful(d) {
		t.Fatal("still careful after 2 clean batches")
	}
	if n := write("optimistic again"); n != 1 {
		t.Fatalf("%d statements, want the upsert alone", n)
	}
}

// A batch's transaction bounds its lock waits from its first statement:
// optimistic ones to about 100 ms (PostgreSQL, begun in the same round
// trip as BEGIN) or MySQL's least (MariaDB: none), careful ones to
// lock_timeout.
func TestPostgresBatchesBeginWithTheirLockWait(t *testing.T) {
	d := postgresHarness(t).open(t, 3*time.Second, "")
	wantSetting(t, d, true, "SHOW lock_timeout", "100ms")
	wantSetting(t, d, false, "SHOW lock_timeout", "3s")
}

func TestMySQLBatchesBeginWithTheirLockWait(t *testing.T) {
	d := mysqlHarness(t).open(t, 3*time.Second, "")
	wantSetting(t, d, true, "SELECT @@innodb_lock_wait_timeout", "0")
	wantSetting(t, d, false, "SELECT @@innodb_lock_wait_timeout", "3")
}

func wantSetting(t *testing.T, d destination.Destination, optimistic bool, query, want string) {
	t.Helper()
	got, err := destination.SettingInBatch(context.Background(), d, optimistic, query)
	if err != nil || got != want {
		t.Errorf("optimistic %v: %s = %q (%v), want %q", optimistic, query, got, err, want)
	}
}

// A key another transaction is inserting has no row to skip: the upsert
// waits for it, up to LockTimeout, and then the whole batch is retryable
// (nothing of it was written).
func TestPostgresConcurrentInsertWaitIsRetryable(t *testing.T) {
	testConcurrentInsertWait(t, postgresHarness(t))
}
func TestMySQLConcurrentInsertWaitIsRetryable(t *testing.T) {
	testConcurrentInsertWait(t, mysqlHarness(t))
}

func testLockedRowsAtScale(t *testing.T, h *sqlHarness) {
	ctx := context.Background()
	table := contactsTable(t, h)
	const n = 10000
	mustExec(t, h, seedContacts(table, n))
	d := h.open(t, h.lockTimeout, "")

	released := []int64{17, 4242}  // held by a session that lets go
	held := []int64{1, 5000, 9999} // held by a session that does not
	releaseA := h.lock(t, table, released...)
	releaseB := h.lock(t, table, held...)
	defer releaseB()
	locked := append(slices.Clone(released), held...)

	// Every existing row changes, and 100 new keys come along.
	var recs []destination.Record
	for id := int64(1); id <= n+100; id++ {
		recs = append(recs, contact(id, destination.OpUpsert, fmt.Sprintf("v2-%d@x", id), "v2"))
	}
	var lockedIdx []int
	for _, id := range locked {
		lockedIdx = append(lockedIdx, int(id-1))
	}
	write := func(what string) int64 {
		before := destination.Statements(d)
		o := d.Write(ctx, batchFor(table, recs...))
		wantLockedRecords(t, o, len(recs), lockedIdx, what)
		return destination.Statements(d) - before
	}
	stmts := write("10,100 records, 5 held")
	// One SELECT ... FOR UPDATE SKIP LOCKED, one plain SELECT of the keys
	// it did not return, one upsert (multi-row, or the bulk statement).
	want := int64(3)
	t.Logf("statements for the batch: %d", stmts)
	if h.optimistic {
		// The first batch was tried without the lock step, waited for a
		// held row, was rolled back and written with it: from then on the
		// destination takes the lock step first.
		if !destination.Careful(d) || stmts <= want {
			t.Errorf("statements for the first batch: %d, want more than %d (tried without the lock step); careful afterwards: %v", stmts, want, destination.Careful(d))
		}
		stmts = write("the same batch again")
	}
	if stmts != want {
		t.Errorf("statements for the batch: %d, want %d", stmts, want)
	}
	got := h.rows(t, table)
	if len(got) != n+100 {
		t.Fatalf("%d rows after the batch, want %d", len(got), n+100)
	}
	for id, v := range got {
		want := [2]any{fmt.Sprintf("v2-%d@x", id), "v2"}
		if slices.Contains(locked, id) {
			want = [2]any{fmt.Sprintf("v1-%d@x", id), "v1"}
		}
		if v != want {
			t.Fatalf("row %d: %v, want %v", id, v, want)
		}
	}

	releaseA()
	var again []destination.Record
	for _, id := range locked {
		again = append(again, contact(id, destination.OpUpsert, fmt.Sprintf("v2-%d@x", id), "v2"))
	}
	o := d.Write(ctx, batchFor(table, again...))
	wantLockedRecords(t, o, len(again), []int{2, 3, 4}, "the 5 again, 2 released")
	got = h.rows(t, table)
	for _, id := range released {
		if want := [2]any{fmt.Sprintf("v2-%d@x", id), "v2"}; got[id] != want {
			t.Fatalf("released row %d: %v, want %v", id, got[id], want)
		}
	}
	for _, id := range held {
		if want := [2]any{fmt.Sprintf("v1-%d@x", id), "v1"}; got[id] != want {
			t.Fatalf("held row %d: %v, want %v", id, got[id], want)
		}
	}
}

// seedContacts is an INSERT of rows 1..n with version 1 values.
func seedContacts(table string, n int) string {
	var q strings.Builder
	q.WriteString("INSERT INTO " + table + " (id, email, name) VALUES ")
	for id := 1; id <= n; id++ {
		if id > 1 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "(%d, 'v1-%d@x', 'v1')", id, id)
	}
	return q.String()
}

func testConcurrentInsertWait(t *testing.T, h *sqlHarness) {
	ctx := context.Background()
	table := contactsTable(t, h)
	mustExec(t, h, `INSERT INTO `+table+` (id, email) VALUES (1, 'a@x')`)
	d := h.open(t, h.lockTimeout, "")
	release := h.holdNew(t, table, 2)
	b := batchFor(table, contact(1, destination.OpUpsert, "a2@x", "A"), contact(2, destination.OpUpsert, "b@x", "B"))
	wantRetryable(t, d.Write(ctx, b), h.lockErr, "upsert of a key being inserted elsewhere")
	wantRows(t, h, table, "after the wait", map[int64][2]any{1: {"a@x", nil}})
	release()
	mustAccept(t, d.Write(ctx, b), 2)
	wantRows(t, h, table, "after the release", map[int64][2]any{1: {"a2@x", "A"}, 2: {"b@x", "B"}})
}
