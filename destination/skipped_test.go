package destination_test

import (
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/backflowhq/backflow/destination"
)

// A trigger (or, on PostgreSQL, a rule) can make the database skip a row
// without an error: a BEFORE trigger returning NULL, SQLite's
// RAISE(IGNORE), a DO INSTEAD NOTHING rule. A record whose row was skipped
// is never reported accepted: a batch whose statement wrote fewer rows
// than it was sent is rolled back and rejected whole, naming the table, a
// record sent alone is rejected on its own, and the records of a batch no
// trigger skipped are accepted as before.

// skippedMsg is the rejection of a statement some of whose rows a trigger
// or rule skipped.
var skippedMsg = regexp.MustCompile(`took \d+ of the \d+ rows sent: a trigger or rule on it skipped the others`)

// skippedOneMsg is the rejection of a record sent alone whose row was
// skipped.
var skippedOneMsg = regexp.MustCompile(`did not take the row: a trigger or rule on it skipped it`)

// skipTriggers installs, on table, an insert trigger skipping even ids, an
// update trigger skipping rows whose new name is 'frozen' or old name
// 'keep', and a delete trigger skipping rows named 'keep'.
type skipTriggers func(t testing.TB, h *sqlHarness, table string)

func pgSkipTriggers(t testing.TB, h *sqlHarness, table string) {
	mustExec(t, h, `CREATE FUNCTION `+table+`_skip() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF TG_OP = 'DELETE' THEN
				IF OLD.name = 'keep' THEN RETURN NULL; END IF;
				RETURN OLD;
			END IF;
			IF TG_OP = 'INSERT' AND NEW.id % 2 = 0 THEN RETURN NULL; END IF;
			IF TG_OP = 'UPDATE' AND (NEW.name = 'frozen' OR OLD.name = 'keep') THEN RETURN NULL; END IF;
			RETURN NEW;
		END $$`)
	t.Cleanup(func() { h.exec(`DROP FUNCTION IF EXISTS ` + table + `_skip() CASCADE`) })
	mustExec(t, h, `CREATE TRIGGER skip_ins BEFORE INSERT ON `+table+` FOR EACH ROW EXECUTE FUNCTION `+table+`_skip()`)
	mustExec(t, h, `CREATE TRIGGER skip_upd BEFORE UPDATE ON `+table+` FOR EACH ROW EXECUTE FUNCTION `+table+`_skip()`)
	mustExec(t, h, `CREATE TRIGGER skip_del BEFORE DELETE ON `+table+` FOR EACH ROW EXECUTE FUNCTION `+table+`_skip()`)
}

func sqliteSkipTriggers(t testing.TB, h *sqlHarness, table string) {
	mustExec(t, h, `CREATE TRIGGER skip_ins BEFORE INSERT ON `+table+` WHEN NEW.id % 2 = 0 BEGIN SELECT RAISE(IGNORE); END`)
	mustExec(t, h, `CREATE TRIGGER skip_upd BEFORE UPDATE ON `+table+` WHEN NEW.name = 'frozen' OR OLD.name = 'keep' BEGIN SELECT RAISE(IGNORE); END`)
	mustExec(t, h, `CREATE TRIGGER skip_del BEFORE DELETE ON `+table+` WHEN OLD.name = 'keep' BEGIN SELECT RAISE(IGNORE); END`)
}

func TestPostgresRowsSkippedByTriggersAreNotAccepted(t *testing.T) {
	for _, bulk := range []bool{false, true} {
		t.Run(map[bool]string{false: "statement", true: "bulk"}[bulk], func(t *testing.T) {
			testRowsSkippedByTriggers(t, postgresHarness(t), pgSkipTriggers, bulk)
		})
	}
}

func TestSQLiteRowsIgnoredByTriggersAreNotAccepted(t *testing.T) {
	testRowsSkippedByTriggers(t, sqliteHarness(t), sqliteSkipTriggers, false)
}

// testRowsSkippedByTriggers writes adds (inserts: COPY in bulk on
// PostgreSQL), upserts, updates, deletes, clears and key-only upserts to
// a table with skipTriggers.
func testRowsSkippedByTriggers(t *testing.T, h *sqlHarness, install skipTriggers, bulk bool) {
	ctx := context.Background()
	table := contactsTable(t, h)
	install(t, h, table)
	d := h.open(t, 0, "")
	if bulk {
		destination.SetBulkMinRows(d, 2)
	}
	add := func(id int64, name string) destination.Record {
		r := contact(id, destination.OpUpsert, fmt.Sprintf("u%d@x", id), name)
		r.New = true
		return r
	}
	want := map[int64][2]any{}

	// Adds, two of them skipped: nothing of the batch stays.
	o := d.Write(ctx, batchFor(table, add(1, "a"), add(2, "a"), add(3, "a"), add(4, "a")))
	wantWholeBatchRejection(t, o, skippedMsg, "adds, two skipped")
	if !regexp.MustCompile(`took 2 of the 4 rows sent`).MatchString(o.Err.Error()) || !regexp.MustCompile(regexp.QuoteMeta(`"`+table+`"`)).MatchString(o.Err.Error()) {
		t.Errorf("the rejection does not say how many rows of which table were taken: %v", o.Err)
	}
	wantRows(t, h, table, "after the adds with skipped rows", want)

	// Split as reconcile splits it: the halves are rejected again, each
	// record alone is answered for itself.
	mustAccept(t, d.Write(ctx, batchFor(table, add(1, "a"), add(3, "a"))), 2)
	want[1], want[3] = [2]any{"u1@x", "a"}, [2]any{"u3@x", "a"}
	wantPerRecordRejection(t, d.Write(ctx, batchFor(table, add(2, "a"))), skippedOneMsg, "an add skipped, alone")
	wantRows(t, h, table, "after the split", want)

	// Upserts of existing rows (ON CONFLICT DO UPDATE), one made
	// 'frozen', which the update trigger skips; then one of a new key,
	// which the insert trigger skips.
	up := func(id int64, name string) destination.Record {
		return contact(id, destination.OpUpsert, fmt.Sprintf("u%d@x", id), name)
	}
	wantWholeBatchRejection(t, d.Write(ctx, batchFor(table, up(1, "b"), up(3, "frozen"))), skippedMsg, "upserts, one skipped")
	wantWholeBatchRejection(t, d.Write(ctx, batchFor(table, up(1, "b"), up(3, "b"), up(6, "b"))), skippedMsg, "upserts, a new key skipped")
	wantRows(t, h, table, "after the upserts with skipped rows", want)
	mustAccept(t, d.Write(ctx, batchFor(table, up(1, "b"), up(3, "b"), up(5, "b"))), 3)
	want[1], want[3], want[5] = [2]any{"u1@x", "b"}, [2]any{"u3@x", "b"}, [2]any{"u5@x", "b"}
	wantRows(t, h, table, "after the upserts", want)

	// Updates go one statement per record: the skipped one is answered
	// for itself, the other is written.
	o = d.Write(ctx, batchFor(table, contact(1, destination.OpUpdate, "u1@x", "frozen"), contact(3, destination.OpUpdate, "u3@x", "c")))
	if o.Err != nil || len(o.Results) != 2 || o.Results[1].Err != nil || o.Results[0].Err == nil ||
		!regexp.MustCompile(`did not update the row of key 1: a trigger or rule on it skipped the update`).MatchString(o.Results[0].Err.Error()) {
		t.Fatalf("updates, one skipped: %+v", o)
	}
	want[3] = [2]any{"u3@x", "c"}
	wantRows(t, h, table, "after the updates", want)

	// Deletes: the row named 'keep' stays, its record is answered for
	// itself; a key without a row is no error.
	mustExec(t, h, `UPDATE `+table+` SET name = 'keep' WHERE id = 3`)
	want[3] = [2]any{"u3@x", "keep"}
	del := func(id int64) destination.Record { return contact(id, destination.OpDelete, nil, nil) }
	o = d.Write(ctx, batchFor(table, del(3), del(5), del(7)))
	if o.Err != nil || len(o.Results) != 3 || o.Results[1].Err != nil || o.Results[2].Err != nil || o.Results[0].Err == nil ||
		!regexp.MustCompile(`kept the row of key 3: a trigger or rule on it skipped the delete`).MatchString(o.Results[0].Err.Error()) {
		t.Fatalf("deletes, one skipped: %+v", o)
	}
	delete(want, 5)
	wantRows(t, h, table, "after the deletes", want)

	// Clears of name: the row named 'keep' is left as it was, which
	// rejects the batch; alone, the record.
	clears := func(ids ...int64) *destination.Batch {
		b := batchFor(table)
		for _, id := range ids {
			b.Records = append(b.Records, contact(id, destination.OpClear, nil, nil))
		}
		b.ClearFields = []string{"name"}
		return b
	}
	wantWholeBatchRejection(t, d.Write(ctx, clears(1, 3, 9)), skippedMsg, "clears, one skipped")
	wantRows(t, h, table, "after the clears with a skipped row", want)
	wantPerRecordRejection(t, d.Write(ctx, clears(3)), skippedOneMsg, "a clear skipped, alone")
	mustAccept(t, d.Write(ctx, clears(1, 9)), 2)
	want[1] = [2]any{"u1@x", nil}
	wantRows(t, h, table, "after the clears", want)

	// A sync mapping only the key upserts with ON CONFLICT DO NOTHING,
	// which writes no row for a key that has one: not a skipped row.
	keyOnly := func(id int64) destination.Record {
		return destination.Record{Key: fmt.Sprint(id), KeyValue: id, Op: destination.OpUpsert}
	}
	keys := newTable(t, h, "id bigint PRIMARY KEY, email text, name text")
	mustExec(t, h, `INSERT INTO `+keys+` (id) VALUES (1), (3)`)
	mustAccept(t, d.Write(ctx, &destination.Batch{Object: keys, KeyField: "id", Records: []destination.Record{keyOnly(1), keyOnly(3)}}), 2)
	mustAccept(t, d.Write(ctx, &destination.Batch{Object: keys, KeyField: "id", Records: []destination.Record{keyOnly(3), keyOnly(5)}}), 2)
	wantRows(t, h, keys, "after the key-only upserts", map[int64][2]any{1: {nil, nil}, 3: {nil, nil}, 5: {nil, nil}})
}

// A rule DO INSTEAD NOTHING on insert makes the server drop the rows it
// matches without an error; the command tag counts the rows the table
// took. Adds to such a table (never copied: COPY ignores rules) are
// rejected, through the multi-row statement and in bulk.
func TestPostgresRowsDroppedByARuleAreNotAccepted(t *testing.T) {
	ctx := context.Background()
	for _, bulk := range []bool{false, true} {
		t.Run(map[bool]string{false: "statement", true: "bulk"}[bulk], func(t *testing.T) {
			h := postgresHarness(t)
			table := contactsTable(t, h)
			mustExec(t, h, `CREATE RULE no_even AS ON INSERT TO `+table+` WHERE NEW.id % 2 = 0 DO INSTEAD NOTHING`)
			d := h.open(t, 0, "")
			if bulk {
				destination.SetBulkMinRows(d, 2)
			}
			var recs []destination.Record
			for id := int64(1); id <= 4; id++ {
				r := contact(id, destination.OpUpsert, fmt.Sprintf("u%d@x", id), "a")
				r.New = true
				recs = append(recs, r)
			}
			wantWholeBatchRejection(t, d.Write(ctx, batchFor(table, recs...)), skippedMsg, "adds, two dropped by the rule")
			wantRows(t, h, table, "after the adds", map[int64][2]any{})
			wantPerRecordRejection(t, d.Write(ctx, batchFor(table, recs[3])), skippedOneMsg, "an add dropped by the rule, alone")
			mustAccept(t, d.Write(ctx, batchFor(table, recs[0], recs[2])), 2)
			wantRows(t, h, table, "after the split", map[int64][2]any{1: {"u1@x", "a"}, 3: {"u3@x", "a"}})
		})
	}
}

// A batch of adds alone goes as one COPY the server commits on its own,
// which cannot be rolled back: a table with a BEFORE ROW insert trigger
// (on it or on a partition) never takes that path, its COPY goes in a
// transaction. A trigger created after the table was described (during a
// run) is caught by the COPY's count: the batch is retryable (the rows it
// wrote are written again, the same), the table is described again, and
// the next attempt, in a transaction, is rejected with nothing of it kept.
func TestPostgresAddsAloneWithSkippingTriggers(t *testing.T) {
	ctx := context.Background()
	h := postgresHarness(t)
	adds := func(from, n int64) []destination.Record {
		var out []destination.Record
		for id := from; id < from+n; id++ {
			r := contact(id, destination.OpUpsert, fmt.Sprintf("u%d@x", id), "a")
			r.New = true
			out = append(out, r)
		}
		return out
	}
	aloneCopy := regexp.MustCompile(`^SET LOCAL lock_timeout = '100ms'; COPY `)

	// Partitioned, the trigger on a partition only.
	parted := uniqueTable()
	mustExec(t, h, `CREATE TABLE `+parted+` (id bigint PRIMARY KEY, email text, name text) PARTITION BY RANGE (id)`)
	dropAtCleanup(t, h, parted)
	mustExec(t, h, `CREATE TABLE `+parted+`_low PARTITION OF `+parted+` FOR VALUES FROM (0) TO (100)`)
	mustExec(t, h, `CREATE TABLE `+parted+`_high PARTITION OF `+parted+` FOR VALUES FROM (100) TO (MAXVALUE)`)
	pgSkipTriggers(t, h, parted+"_high")
	d := h.open(t, 0, "")
	destination.SetBulkMinRows(d, 2)
	log := destination.LogQueries(d)
	mustAccept(t, d.Write(ctx, batchFor(parted, adds(1, 4)...)), 4)
	o := d.Write(ctx, batchFor(parted, adds(101, 4)...))
	wantWholeBatchRejection(t, o, skippedMsg, "adds to a partition whose trigger skips two")
	for _, q := range func() []string { q, _ := log.Taken(); return q }() {
		if aloneCopy.MatchString(q) {
			t.Errorf("adds to a table with a skipping trigger went as a COPY alone: %q", q)
		}
	}
	want := map[int64][2]any{}
	for id := int64(1); id <= 4; id++ {
		want[id] = [2]any{fmt.Sprintf("u%d@x", id), "a"}
	}
	wantRows(t, h, parted, "after the adds to the partitioned table", want)

	// The trigger is created once the table was described.
	table := contactsTable(t, h)
	d = h.open(t, 0, "")
	destination.SetBulkMinRows(d, 2)
	log = destination.LogQueries(d)
	mustAccept(t, d.Write(ctx, batchFor(table, adds(1, 4)...)), 4)
	if q, _ := log.Taken(); len(q) != 1 || !aloneCopy.MatchString(q[0]) {
		t.Fatalf("adds to a table without triggers sent %q, want one COPY alone", q)
	}
	pgSkipTriggers(t, h, table)
	b := batchFor(table, adds(11, 4)...)
	wantRetryable(t, d.Write(ctx, b), regexp.MustCompile(`took 2 of the 4 rows copied`), "adds alone, two skipped by a new trigger")
	o = d.Write(ctx, b)
	wantWholeBatchRejection(t, o, skippedMsg, "the adds sent again")
	want = map[int64][2]any{}
	for _, id := range []int64{1, 2, 3, 4, 11, 13} { // 11 and 13: the COPY that committed
		want[id] = [2]any{fmt.Sprintf("u%d@x", id), "a"}
	}
	wantRows(t, h, table, "after the adds sent again", want)
	mustAccept(t, d.Write(ctx, batchFor(table, b.Records[0], b.Records[2])), 2)
	wantRows(t, h, table, "after the split", want)
}
