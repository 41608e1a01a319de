package destination_test

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"reflect"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/backflowhq/backflow/destination"
)

// pgBulkColumns are the columns of the bulk-vs-statements table after its
// key, with odd names: quotes, spaces, tabs, mixed case.
var pgBulkColumns = []string{
	`Name`, `odd "col", x`, "tab\tcol", "i2", "i4", "i8", "r", "f8", "n", "b", "by", "d", "ts", "tz",
	"j", "jb", "u", "e", "iv", "ip", "v", "arr", "dom",
}

const pgBulkDDL = `CREATE TABLE %s (
	"Key ""k""" text PRIMARY KEY, "Name" text, "odd ""col"", x" text, "tab	col" text,
	i2 smallint, i4 integer, i8 bigint, r real, f8 double precision, n numeric(25,5), b boolean, by bytea,
	d date, ts timestamp, tz timestamptz, j json, jb jsonb, u uuid, e %s, iv interval, ip inet,
	v varchar(10), arr text[], dom %s)`

// pgBulkRecords are records of every value form the bulk path encodes:
// escapes in text, extremes of each integer width, single-precision and
// special floats, exact decimals, bytes with backslashes, times before 1970
// and with nanoseconds, JSON with escapes, enum, interval, inet, array and
// domain values as text, and NULLs.
func pgBulkRecords(version string) []destination.Record {
	t1 := time.Date(2024, 2, 29, 23, 59, 58, 123456789, time.UTC)
	t2 := time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.FixedZone("x", 5*3600))
	rows := []map[string]any{
		{`Name`: "tab\there\nnewline\r\\back\\slash ✓ " + version, `odd "col", x`: `\N`, "tab\tcol": "\\.",
			"i2": int64(-32768), "i4": int64(math.MaxInt32), "i8": int64(math.MinInt64), "r": 0.1, "f8": 1e-300,
			"n": "-12345678901234567890.12345", "b": false, "by": []byte{0, '\\', '\n', 0xff, '\t'},
			"d": time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), "ts": t1, "tz": t1, "j": `{"a":"\\n\t"}`, "jb": `{"b": [1, 2.50]}`,
			"u": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "e": "happy", "iv": "1 day 02:00:00", "ip": "192.168.0.1/24",
			"v": "ten chars!", "arr": `{a,"b c","d\"e"}`, "dom": int64(5)},
		{`Name`: "", `odd "col", x`: "x", "tab\tcol": "y", "i2": int64(32767), "i4": int64(math.MinInt32), "i8": int64(math.MaxInt64),
			"r": math.NaN(), "f8": math.Inf(-1), "n": int64(42), "b": true, "by": []byte{},
			"d": t2, "ts": t2, "tz": t2, "j": `"just a string"`, "jb": `null`, "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12",
			"e": "sad", "iv": "-3 hours", "ip": "::1", "v": "", "arr": `{}`, "dom": "7"},
		{`Name`: "big", "r": 3.4e38, "f8": math.Inf(1), "n": 0.5, "i8": "12", "ts": "2020-01-02T03:04:05.678901Z",
			"tz": "2020-01-02 03:04:05+02:00", "d": "2020-01-02", "by": "AP8=", "b": "true"},
		{}, // every field NULL
	}
	var recs []destination.Record
	for i, f := range rows {
		k := fmt.Sprintf("k%d \"q\"\t\\", i)
		recs = append(recs, destination.Record{Key: k, KeyValue: k, Op: destination.OpUpsert, Fields: f})
	}
	return recs
}

// The bulk path writes exactly the rows the multi-row statement writes:
// every portable type and the text forms of others, NULLs, a
// schema-qualified table, quoted and odd column names; first as inserts of
// records new to backflow (COPY in bulk), then as updates of existing ones
// (ON CONFLICT), then with a value only pgx can encode (a five-digit
// year), which sends the group through the statement instead.
func TestPostgresBulkWritesWhatStatementsWrite(t *testing.T) {
	ctx := context.Background()
	admin := pgAdmin(t)
	schema := fmt.Sprintf("bulk_%d", time.Now().UnixNano())
	pgExec(t, admin,
		`CREATE SCHEMA `+schema,
		`CREATE TYPE `+schema+`.mood AS ENUM ('sad', 'happy')`,
		`CREATE DOMAIN `+schema+`.small AS integer CHECK (VALUE < 100)`,
	)
	t.Cleanup(func() { admin.Exec(context.Background(), `DROP SCHEMA `+schema+` CASCADE`) })
	tables := map[string]int{schema + ".via_bulk": 1, schema + ".via_statements": 0}
	dests := map[string]destination.Destination{}
	for table, bulkMin := range tables {
		if _, err := admin.Exec(ctx, fmt.Sprintf(pgBulkDDL, table, schema+".mood", schema+".small")); err != nil {
			t.Fatal(err)
		}
		// A session time zone other than UTC: timestamptz values still
		// mean their instant, timestamp values their UTC wall clock.
		d, err := destination.OpenPostgres(ctx, config(t, "postgres", "warehouse", "", map[string]any{"dsn": postgresDSN() + "&timezone=Pacific/Chatham"}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		destination.SetBulkMinRows(d, bulkMin)
		if err := d.(destination.Preparer).Prepare(ctx, table, `Key "k"`, pgBulkColumns); err != nil {
			t.Fatal(err)
		}
		dests[table] = d
	}
	read := func(table string) []string {
		rows, err := admin.Query(ctx, `SELECT row_to_json(t)::text FROM `+table+` t ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	for step, version := range []string{"v1", "v2", "year 12000"} {
		recs := pgBulkRecords(version)
		if version == "year 12000" {
			recs[3].Fields = map[string]any{"d": time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)}
		}
		for i := range recs {
			recs[i].New = step == 0 // adds: inserted (COPY in bulk)
		}
		stmts := map[string]int64{}
		ahead := destination.BulkAhead(dests[schema+".via_bulk"])
		for table, d := range dests {
			before := destination.Statements(d)
			b := &destination.Batch{Object: table, KeyField: `Key "k"`, Fields: pgBulkColumns, Records: recs}
			if step < 2 {
				// Converted, and its COPY text or parameters made, as an
				// apply does while the request before is out.
				d.(destination.BatchPreparer).PrepareBatch(b)
			}
			mustAccept(t, d.Write(ctx, b), len(recs))
			stmts[table] = destination.Statements(d) - before
		}
		if got := destination.BulkAhead(dests[schema+".via_bulk"]) - ahead; got != map[int]int64{0: 1, 1: 1}[step] {
			t.Errorf("%s: %d bulk statements sent what was made ahead, want %d", version, got, map[int]int64{0: 1, 1: 1}[step])
		}
		got, want := read(schema+".via_bulk"), read(schema+".via_statements")
		if len(want) != len(recs) || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: in bulk:\n%q\nthrough statements:\n%q", version, got, want)
		}
		// Through statements: the insert or upsert (no row lock is held
		// elsewhere, so no lock step). In bulk, one COPY or the one bulk
		// statement; a year the text form cannot say goes through the
		// multi-row statement.
		wantStmts := [2]int64{1, 1}
		if stmts[schema+".via_statements"] != wantStmts[0] || stmts[schema+".via_bulk"] != wantStmts[1] {
			t.Errorf("%s: statements %v, want %d through statements and %d in bulk", version, stmts, wantStmts[0], wantStmts[1])
		}
	}
}

// Values the server refuses while it parses or assigns them (too long for
// varchar(5), char(3), a domain over varchar(5) or the elements of a
// varchar(2)[]; not bit(3); not an interval), and rows the target's
// constraints refuse (NOT NULL, CHECK, the domain's CHECK): each fails its
// batch as a whole, not retryably and not fatally, writing nothing and
// cutting nothing; alone in a batch, the record gets the error as its own.
// Both as upserts (the unnest statement) and as adds (COPY). That is what
// the split retries of an apply need to isolate it (cmd/backflow's
// TestPostgresBulkIsolatesBadRows runs one). A domain over a domain has no
// cast of its own: its batches take the multi-row statement.
func TestPostgresBulkRejections(t *testing.T) {
	ctx := context.Background()
	h := postgresHarness(t)
	table := uniqueTable()
	short, nested := table+"_short", table+"_nested"
	mustExec(t, h, `CREATE DOMAIN `+short+` AS varchar(5) CHECK (VALUE <> 'bad')`)
	mustExec(t, h, `CREATE DOMAIN `+nested+` AS `+short)
	mustExec(t, h, `CREATE TABLE `+table+` (id bigint PRIMARY KEY, code varchar(5), span interval, note text NOT NULL, score int CHECK (score >= 0),
		ch char(3), bits bit(3), dom `+short+`, arr varchar(2)[], nest `+nested+`)`)
	t.Cleanup(func() {
		admin := pgAdmin(t)
		admin.Exec(context.Background(), `DROP TABLE IF EXISTS `+table)
		admin.Exec(context.Background(), `DROP DOMAIN IF EXISTS `+nested)
		admin.Exec(context.Background(), `DROP DOMAIN IF EXISTS `+short)
	})
	d := h.open(t, 0, "")
	admin := pgAdmin(t)
	count := func() int {
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	fields := []string{"code", "span", "note", "score", "ch", "bits", "dom", "arr"}
	good := func(id int64, isNew bool) destination.Record {
		return destination.Record{Key: fmt.Sprint(id), KeyValue: id, Op: destination.OpUpsert, New: isNew,
			Fields: map[string]any{"code": "ok", "span": "1 hour", "note": "n", "score": id, "ch": "abc", "bits": "101", "dom": "fine", "arr": "{ab,cd}"}}
	}
	for _, isNew := range []bool{false, true} {
		path := map[bool]string{false: "upserts", true: "adds"}[isNew]
		for _, tt := range []struct {
			what  string
			field string
			value any
			msg   *regexp.Regexp
		}{
			{"too long for varchar(5)", "code", "toolong", regexp.MustCompile(`value too long for type character varying\(5\)`)},
			{"too long for char(3)", "ch", "abcdef", regexp.MustCompile(`value too long for type character\(3\)`)},
			{"too long for a domain over varchar(5)", "dom", "toolong", regexp.MustCompile(`value too long for type character varying\(5\)`)},
			{"an element too long for varchar(2)[]", "arr", "{ab,cde}", regexp.MustCompile(`value too long for type character varying\(2\)`)},
			{"five bits for bit(3)", "bits", "10101", regexp.MustCompile(`bit string length 5 does not match type bit\(3\)`)},
			{"not an interval", "span", "soon", regexp.MustCompile(`invalid input syntax for type interval`)},
			{"NULL into NOT NULL", "note", nil, regexp.MustCompile(`null value in column "note"`)},
			{"CHECK", "score", int64(-1), regexp.MustCompile(`violates check constraint`)},
			{"the domain's CHECK", "dom", "bad", regexp.MustCompile(`violates check constraint`)},
		} {
			what := path + ": " + tt.what
			var recs []destination.Record
			for id := int64(1); id <= destination.PostgresBulkMinRows; id++ {
				recs = append(recs, good(id, isNew))
			}
			recs[122].Fields[tt.field] = tt.value
			before := destination.Bulks(d)
			wantWholeBatchRejection(t, d.Write(ctx, &destination.Batch{Object: table, KeyField: "id", Fields: fields, Records: recs}), tt.msg, what)
			if n := destination.Bulks(d) - before; n != 1 {
				t.Fatalf("%s: %d bulk statements: the batch did not go in bulk", what, n)
			}
			if n := count(); n != 0 {
				t.Fatalf("%s: %d rows written", what, n)
			}
			// Alone (in bulk, forced for a batch of one), the record has the error.
			destination.SetBulkMinRows(d, 1)
			wantPerRecordRejection(t, d.Write(ctx, &destination.Batch{Object: table, KeyField: "id", Fields: fields, Records: recs[122:123]}), tt.msg, what+", alone")
			destination.SetBulkMinRows(d, destination.PostgresBulkMinRows)
		}
	}
	// The connection is still good; a value at each limit is written
	// whole, as adds then as upserts.
	for _, isNew := range []bool{true, false} {
		var recs []destination.Record
		for id := int64(1); id <= 600; id++ {
			recs = append(recs, good(id, isNew))
		}
		mustAccept(t, d.Write(ctx, &destination.Batch{Object: table, KeyField: "id", Fields: fields, Records: recs}), 600)
	}
	var ch, bits, dom, arr string
	if err := admin.QueryRow(ctx, `SELECT ch, bits::text, dom, arr::text FROM `+table+` WHERE id = 7`).Scan(&ch, &bits, &dom, &arr); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 600 || ch != "abc" || bits != "101" || dom != "fine" || arr != "{ab,cd}" {
		t.Fatalf("%d rows (want 600); row 7: %q %q %q %q", n, ch, bits, dom, arr)
	}
	// A domain over a domain: the multi-row statement, which refuses a
	// value too long as well.
	nestFields := []string{"note", "nest"}
	var recs []destination.Record
	for id := int64(1000); id < 1000+destination.PostgresBulkMinRows; id++ {
		recs = append(recs, destination.Record{Key: fmt.Sprint(id), KeyValue: id, Op: destination.OpUpsert, Fields: map[string]any{"note": "n", "nest": "fine"}})
	}
	before := destination.Bulks(d)
	mustAccept(t, d.Write(ctx, &destination.Batch{Object: table, KeyField: "id", Fields: nestFields, Records: recs}), len(recs))
	recs[3].Fields["nest"] = "toolong"
	wantWholeBatchRejection(t, d.Write(ctx, &destination.Batch{Object: table, KeyField: "id", Fields: nestFields, Records: recs}),
		regexp.MustCompile(`value too long for type character varying\(5\)`), "a domain over a domain")
	if n := destination.Bulks(d) - before; n != 0 {
		t.Fatalf("a domain over a domain: %d bulk statements, want none", n)
	}
}

// With max_in_flight 4, concurrent Writes overlap on connections of their
// own (one waits on a lock while another completes), all land (run with
// -race), and no more than 4 connections are ever opened.
func TestPostgresTakesConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	h := postgresHarness(t)
	table := contactsTable(t, h)
	app := fmt.Sprintf("backflow_conc_%d", time.Now().UnixNano())
	u, err := url.Parse(postgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	d, err := destination.OpenPostgres(ctx, config(t, "postgres", "warehouse", "", map[string]any{"dsn": u.String(), "max_in_flight": 4}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if _, ok := d.(destination.ConcurrentWriter); !ok {
		t.Fatal("the postgres driver does not take concurrent writes")
	}
	if err := d.(destination.Preparer).Prepare(ctx, table, "id", []string{"email", "name"}); err != nil {
		t.Fatal(err)
	}
	admin := pgAdmin(t)

	// A Write waiting for a key another session is inserting holds its
	// connection; a second Write still goes through on another.
	release := h.holdNew(t, table, 1000)
	blocked := make(chan destination.Outcome)
	go func() { blocked <- d.Write(ctx, batchFor(table, contact(1000, destination.OpUpsert, "w@x", "W"))) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, app).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first Write never waited for the held key")
		}
	}
	mustAccept(t, d.Write(ctx, batchFor(table, contact(999, destination.OpUpsert, "v@x", "V"))), 1)
	release()
	mustAccept(t, <-blocked, 1)

	// 16 Writes at once, 100 records each (in bulk): half of them adds
	// (COPY), the others upserts.
	destination.SetBulkMinRows(d, 100)
	writeAtOnce(t, d, table, 16, 100, func(g int) bool { return g%2 == 0 })
	if got := h.rows(t, table); len(got) != 1600 {
		t.Fatalf("%d rows, want 1600", len(got))
	}
	var conns int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&conns); err != nil {
		t.Fatal(err)
	}
	if conns < 2 || conns > 4 {
		t.Fatalf("%d connections open, want 2 to 4 (max_in_flight)", conns)
	}
}

// The lock step finds the rows of keys of every common key type from one
// text array parameter (uuids in another case, decimals in another scale
// than the database prints them): the
// row another session holds is answered retryable, the others are written,
// and a new key is inserted.
func TestPostgresLockStepKeyTypes(t *testing.T) {
	ctx := context.Background()
	admin := pgAdmin(t)
	for _, tt := range []struct {
		typ     string
		seed    []string // SQL literals of existing keys
		keys    []any    // the same keys as records carry them, then a new one
		heldLit string   // the key another session holds
	}{
		{"bigint", []string{"1", "2", "3"}, []any{int64(1), int64(2), int64(3), int64(4)}, "2"},
		{"text", []string{"'a'", "'b \"q\"'", "'c'"}, []any{"a", `b "q"`, "c", "d"}, `'b "q"'`},
		{"varchar(20)", []string{"'a'", "'b'", "'c'"}, []any{"a", "b", "c", "d"}, "'c'"},
		{"uuid", []string{"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13'"},
			[]any{"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a14"},
			"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"},
		{"numeric(10,2)", []string{"1.5", "2", "3.25"}, []any{"1.5", int64(2), 3.25, "4"}, "1.50"},
	} {
		t.Run(tt.typ, func(t *testing.T) {
			table := uniqueTable()
			if _, err := admin.Exec(ctx, `CREATE TABLE `+table+` (k `+tt.typ+` PRIMARY KEY, v text)`); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { admin.Exec(context.Background(), `DROP TABLE `+table) })
			for _, lit := range tt.seed {
				if _, err := admin.Exec(ctx, `INSERT INTO `+table+` VALUES (`+lit+`, 'v1')`); err != nil {
					t.Fatal(err)
				}
			}
			holder := pgAdmin(t)
			tx, err := holder.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, `SELECT 1 FROM `+table+` WHERE k = `+tt.heldLit+` FOR UPDATE`); err != nil {
				t.Fatal(err)
			}
			d := postgresHarness(t).open(t, 100*time.Millisecond, "")
			var recs []destination.Record
			for _, k := range tt.keys {
				recs = append(recs, destination.Record{Key: fmt.Sprint(k), KeyValue: k, Op: destination.OpUpsert, Fields: map[string]any{"v": "v2"}})
			}
			o := d.Write(ctx, &destination.Batch{Object: table, KeyField: "k", Fields: []string{"v"}, Records: recs})
			if o.Err != nil || len(o.Results) != 4 {
				t.Fatalf("outcome %+v", o)
			}
			var held int
			for i, r := range o.Results {
				if r.Err != nil && r.Retryable {
					held++
				} else if r.Err != nil {
					t.Fatalf("record %d: %v", i, r.Err)
				}
			}
			var v2, v1 int
			if err := admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE v = 'v2'), count(*) FILTER (WHERE v = 'v1') FROM `+table).Scan(&v2, &v1); err != nil {
				t.Fatal(err)
			}
			if held != 1 || v2 != 3 || v1 != 1 {
				t.Fatalf("%d records held (want 1), %d rows written (want 3), %d rows kept (want 1)", held, v2, v1)
			}
		})
	}
}

// scoreBatch is PostgresBulkMinRows upserts of keys from on, each with
// score: a batch the bulk statement writes.
func scoreBatch(table string, from int64, score any) *destination.Batch {
	var recs []destination.Record
	for id := from; id < from+destination.PostgresBulkMinRows; id++ {
		recs = append(recs, destination.Record{Key: fmt.Sprint(id), KeyValue: id, Op: destination.OpUpsert, Fields: map[string]any{"score": score}})
	}
	return &destination.Batch{Object: table, KeyField: "id", Fields: []string{"score"}, Records: recs}
}

// rowsWhere counts the rows of table where cond holds.
func rowsWhere(t *testing.T, conn *pgx.Conn, table, cond string) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table+" WHERE "+cond).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// acceptedOnRetry writes b, which must be accepted whole, at once or on a
// second attempt after a retryable answer (what says when).
func acceptedOnRetry(t *testing.T, d destination.Destination, b *destination.Batch, what string) {
	t.Helper()
	ctx := context.Background()
	o := d.Write(ctx, b)
	if o.Err != nil {
		if !o.Retryable || o.Fatal {
			t.Fatalf("%s: %v (retryable %v, fatal %v), want retryable", what, o.Err, o.Retryable, o.Fatal)
		}
		o = d.Write(ctx, b)
	}
	mustAccept(t, o, len(b.Records))
}

// A column's type changed under a running apply (ALTER TABLE … TYPE): the
// bulk statement casts to the old type, so the batch is answered
// retryable and the next attempt, with the table described again, lands.
func TestPostgresBulkFollowsAColumnTypeChange(t *testing.T) {
	ctx := context.Background()
	h := postgresHarness(t)
	admin := pgAdmin(t)
	table := newTable(t, h, "id bigint PRIMARY KEY, score text")
	d := h.open(t, 0, "")
	mustAccept(t, d.Write(ctx, scoreBatch(table, 1, "7")), destination.PostgresBulkMinRows)
	if _, err := admin.Exec(ctx, "ALTER TABLE "+table+" ALTER COLUMN score TYPE integer USING score::integer"); err != nil {
		t.Fatal(err)
	}
	// Described again before the statement: accepted at once, fine too.
	acceptedOnRetry(t, d, scoreBatch(table, 1000, int64(8)), "after the type change")
	if n := rowsWhere(t, admin, table, "score = 8"); n != destination.PostgresBulkMinRows {
		t.Fatalf("%d rows with the new scores, want %d", n, destination.PostgresBulkMinRows)
	}
}

// The bulk statement is prepared once per session, not parsed and planned
// at every batch; a session that lost it (DEALLOCATE ALL run in it, a
// pooler's other server connection) answers retryable, and the next
// attempt prepares it again.
func TestPostgresBulkStatementIsPreparedOnce(t *testing.T) {
	ctx := context.Background()
	h := postgresHarness(t)
	admin := pgAdmin(t)
	table := newTable(t, h, "id bigint PRIMARY KEY, score bigint")
	d := h.open(t, 0, "")
	for i := range int64(3) {
		mustAccept(t, d.Write(ctx, scoreBatch(table, 1+i*1000, int64(1))), destination.PostgresBulkMinRows)
	}
	if n := destination.Bulks(d); n != 3 {
		t.Fatalf("%d bulk statements, want 3", n)
	}
	const prepared = "SELECT count(*) || ' ' || coalesce(sum(generic_plans + custom_plans), 0) FROM pg_prepared_statements WHERE name LIKE 'backflow_bulk_%'"
	if got, err := destination.SessionSetting(d, prepared); err != nil || got != "1 3" {
		t.Fatalf("prepared bulk statements and their runs: %q, %v; want one statement run 3 times", got, err)
	}
	if err := destination.SessionExec(d, "DEALLOCATE ALL"); err != nil {
		t.Fatal(err)
	}
	acceptedOnRetry(t, d, scoreBatch(table, 1, int64(2)), "with the prepared statement gone")
	if n := rowsWhere(t, admin, table, "score = 2"); n != destination.PostgresBulkMinRows {
		t.Fatalf("%d rows written again, want %d", n, destination.PostgresBulkMinRows)
	}
	// The same for the statements of small batches, which pgx prepares.
	small := &destination.Batch{Object: table, KeyField: "id", Fields: []string{"score"}, Records: []destination.Record{
		{Key: "1", KeyValue: int64(1), Op: destination.OpUpsert, Fields: map[string]any{"score": int64(3)}}}}
	mustAccept(t, d.Write(ctx, small), 1)
	if err := destination.SessionExec(d, "DEALLOCATE ALL"); err != nil {
		t.Fatal(err)
	}
	small.Records[0].Fields["score"] = int64(4)
	acceptedOnRetry(t, d, small, "a small batch with its prepared statement gone")
	if n := rowsWhere(t, admin, table, "id = 1 AND score = 4"); n != 1 {
		t.Fatalf("the small batch's row: %d rows, want 1", n)
	}
}

// Behind a pooler that keeps no prepared statements, the DSN's
// default_query_exec_mode=exec makes every statement unnamed: the bulk
// statement too.
func TestPostgresBulkStatementUnpreparedOnRequest(t *testing.T) {
	ctx := context.Background()
	h := postgresHarness(t)
	table := newTable(t, h, "id bigint PRIMARY KEY, score bigint")
	u, err := url.Parse(postgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("default_query_exec_mode", "exec")
	u.RawQuery = q.Encode()
	d, err := destination.OpenPostgres(ctx, config(t, "postgres", "warehouse", "", map[string]any{"dsn": u.String()}))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b := scoreBatch(table, 0, int64(1))
	mustAccept(t, d.Write(ctx, b), destination.PostgresBulkMinRows)
	mustAccept(t, d.Write(ctx, b), destination.PostgresBulkMinRows)
	if n := destination.Bulks(d); n != 2 {
		t.Fatalf("%d bulk statements, want 2", n)
	}
	if got, err := destination.SessionSetting(d, "SELECT count(*) FROM pg_prepared_statements"); err != nil || got != "0" {
		t.Fatalf("prepared statements in the session: %q, %v; want none", got, err)
	}
}

// max_in_flight above what the server lets the role open: the requests
// that find no connection wait for one of the pool's instead of failing.
func TestPostgresMaxInFlightAboveTheServersLimitWaits(t *testing.T) {
	ctx := context.Background()
	h := postgresHarness(t)
	admin := pgAdmin(t)
	table := contactsTable(t, h)
	role := fmt.Sprintf("bf_limited_%d", time.Now().UnixNano())
	pgExec(t, admin,
		"CREATE ROLE "+role+" LOGIN CONNECTION LIMIT 2",
		"GRANT ALL ON "+table+" TO "+role,
	)
	t.Cleanup(func() {
		admin.Exec(context.Background(), "DROP OWNED BY "+role)
		admin.Exec(context.Background(), "DROP ROLE "+role)
	})
	u, err := url.Parse(postgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	d, err := destination.OpenPostgres(ctx, config(t, "postgres", "warehouse", "", map[string]any{"dsn": u.String(), "max_in_flight": 8}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	var wg sync.WaitGroup
	outcomes := make([]destination.Outcome, 16)
	for i := range outcomes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := int64(i + 1)
			outcomes[i] = d.Write(ctx, batchFor(table, contact(id, destination.OpUpsert, fmt.Sprintf("u%d@x", id), "N")))
		}()
	}
	wg.Wait()
	for i, o := range outcomes {
		if o.Err != nil {
			t.Fatalf("write %d: %v (retryable %v)", i, o.Err, o.Retryable)
		}
	}
	if n := len(h.rows(t, table)); n != 16 {
		t.Fatalf("%d rows, want 16", n)
	}
}

// A user without the TEMP privilege (which the bulk statement does not
// need) writes large batches in bulk, their parameters made ahead.
func TestPostgresWithoutTempPrivilegeWritesInBulk(t *testing.T) {
	ctx := context.Background()
	admin := pgAdmin(t)
	name := fmt.Sprintf("bf_notemp_%d", time.Now().UnixNano())
	pgExec(t, admin,
		`CREATE DATABASE `+name,
		`REVOKE TEMPORARY ON DATABASE `+name+` FROM PUBLIC`,
		`CREATE ROLE `+name+` LOGIN`,
		`GRANT CONNECT ON DATABASE `+name+` TO `+name,
	)
	t.Cleanup(func() {
		admin.Exec(context.Background(), `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
		admin.Exec(context.Background(), `DROP ROLE IF EXISTS `+name)
	})
	dsn, err := url.Parse(postgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	dsn.Path = "/" + name
	owner, err := pgx.Connect(ctx, dsn.String())
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close(ctx)
	if _, err := owner.Exec(ctx, `CREATE TABLE contacts (id bigint PRIMARY KEY, email text, name text); GRANT ALL ON contacts TO `+name); err != nil {
		t.Fatal(err)
	}
	d := postgresAs(t, name, name)
	if err := d.(destination.Preparer).Prepare(ctx, "contacts", "id", []string{"email", "name"}); err != nil {
		t.Fatal(err)
	}
	want := map[int64][2]any{}
	for round := range 3 {
		var recs []destination.Record
		for i := range destination.PostgresBulkMinRows {
			id := int64(round*10_000 + i)
			recs = append(recs, contact(id, destination.OpUpsert, fmt.Sprintf("u%d@x", id), "N"))
			want[id] = [2]any{fmt.Sprintf("u%d@x", id), "N"}
		}
		b := batchFor("contacts", recs...)
		d.(destination.BatchPreparer).PrepareBatch(b)
		if !destination.PreparedBulk(b) {
			t.Fatalf("round %d: no parameters made ahead", round)
		}
		mustAccept(t, d.Write(ctx, b), len(recs))
	}
	if n, ahead := destination.Bulks(d), destination.BulkAhead(d); n != 3 || ahead != 3 {
		t.Fatalf("%d bulk statements, %d with parameters made ahead; want 3 and 3", n, ahead)
	}
	if got := pgRows(t, owner, "contacts"); !reflect.DeepEqual(got, want) {
		t.Fatalf("%d rows written, want %d", len(got), len(want))
	}
}

// Upserts of records new to backflow (Record.New) go as plain inserts,
// which cost the server less than ON CONFLICT. When one of those keys has
// a row after all (state lost or reset over a full table), nothing of the
// insert stays: the batch is upserted, every value lands, and the batches
// that follow upsert too. A unique violation of another constraint still
// rejects the batch. Through the multi-row statement and in bulk.
func TestPostgresNewRecordsInsertedThenUpsertedOnConflict(t *testing.T) {
	ctx := context.Background()
	for _, bulk := range []bool{false, true} {
		t.Run(map[bool]string{false: "statement", true: "bulk"}[bulk], func(t *testing.T) {
			h := postgresHarness(t)
			table := newTable(t, h, "id bigint PRIMARY KEY, email text UNIQUE, name text")
			open := func() destination.Destination {
				d := h.open(t, 0, "")
				destination.SetBulkMinRows(d, map[bool]int{false: 0, true: 1}[bulk])
				return d
			}
			d := open()
			want := map[int64][2]any{}
			recs := func(from, n int64, name string) []destination.Record {
				var out []destination.Record
				for id := from; id < from+n; id++ {
					r := contact(id, destination.OpUpsert, fmt.Sprintf("u%d@x", id), name)
					r.New = true
					out = append(out, r)
					want[id] = [2]any{fmt.Sprintf("u%d@x", id), name}
				}
				return out
			}
			step := func(what string, rs []destination.Record, inserted, statements int64) {
				t.Helper()
				before, ins := destination.Statements(d), destination.InsertedNew(d)
				mustAccept(t, d.Write(ctx, batchFor(table, rs...)), len(rs))
				if got := destination.InsertedNew(d) - ins; got != inserted {
					t.Errorf("%s: %d batches inserted, want %d", what, got, inserted)
				}
				if got := destination.Statements(d) - before; got != statements {
					t.Errorf("%s: %d statements, want %d", what, got, statements)
				}
				wantRows(t, h, table, what, want)
			}
			step("new keys", recs(1, 20, "a"), 1, 1)
			step("new to backflow, ten of them with rows", recs(11, 20, "b"), 0, 2)
			step("new keys after a conflict", recs(100, 5, "c"), 0, 1)
			// Batches without new records do not count down: the next
			// 100 with some upsert them (one above, 99 here), then they are
			// inserted again.
			for i := range 10 {
				r := contact(1, destination.OpUpsert, "u1@x", "d")
				want[1] = [2]any{"u1@x", "d"}
				step(fmt.Sprintf("no new record (%d)", i), []destination.Record{r}, 0, 1)
			}
			for i := range int64(99) {
				step(fmt.Sprintf("new keys, upserted (%d)", i), recs(200+i, 1, "e"), 0, 1)
			}
			step("new keys, inserted again", recs(400, 3, "f"), 1, 1)

			d = open()
			dup := contact(200, destination.OpUpsert, "u1@x", "dup")
			dup.New = true
			wantPerRecordRejection(t, d.Write(ctx, batchFor(table, dup)), h.uniqueErr, "a duplicate email")
			wantRows(t, h, table, "after the duplicate email", want)
		})
	}
}

// COPY FROM refuses a table with row-level security and ignores its rules,
// where INSERT applies both: adds to such a table are inserted by the bulk
// statement. Here a policy's WITH CHECK refuses a negative score (a
// rejection of the row, not a fatal permission error), and a rule drops
// the rows with one, which rejects their batch (the statement wrote fewer
// rows than it was sent) rather than have it accepted with rows missing.
func TestPostgresAddsWithRowSecurityOrRulesAreNotCopied(t *testing.T) {
	ctx := context.Background()
	admin := pgAdmin(t)
	role := fmt.Sprintf("bf_rls_%d", time.Now().UnixNano())
	secured, ruled := role+"_secured", role+"_ruled"
	pgExec(t, admin,
		"CREATE ROLE "+role+" LOGIN",
		"CREATE TABLE "+secured+" (id bigint PRIMARY KEY, score bigint)",
		"ALTER TABLE "+secured+" ENABLE ROW LEVEL SECURITY",
		"CREATE POLICY p ON "+secured+" USING (true) WITH CHECK (score >= 0)",
		"CREATE TABLE "+ruled+" (id bigint PRIMARY KEY, score bigint)",
		"CREATE RULE no_negative AS ON INSERT TO "+ruled+" WHERE NEW.score < 0 DO INSTEAD NOTHING",
		"GRANT ALL ON "+secured+", "+ruled+" TO "+role,
	)
	t.Cleanup(func() {
		for _, q := range []string{"DROP TABLE IF EXISTS " + secured, "DROP TABLE IF EXISTS " + ruled, "DROP OWNED BY " + role, "DROP ROLE IF EXISTS " + role} {
			admin.Exec(context.Background(), q)
		}
	})
	d := postgresAs(t, role, "")
	count := func(table, where string) int {
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM "+table+where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	adds := func(table string, score func(id int64) int64) *destination.Batch {
		var recs []destination.Record
		for id := int64(1); id <= destination.PostgresBulkMinRows; id++ {
			recs = append(recs, destination.Record{Key: fmt.Sprint(id), KeyValue: id, Op: destination.OpUpsert, New: true,
				Fields: map[string]any{"score": score(id)}})
		}
		return &destination.Batch{Object: table, KeyField: "id", Fields: []string{"score"}, Records: recs}
	}
	before := destination.Bulks(d)
	mustAccept(t, d.Write(ctx, adds(secured, func(id int64) int64 { return id })), destination.PostgresBulkMinRows)
	if n := count(secured, ""); n != destination.PostgresBulkMinRows {
		t.Fatalf("row-level security: %d rows, want %d", n, destination.PostgresBulkMinRows)
	}
	b := adds(secured, func(id int64) int64 { return id })
	b.Records[0].KeyValue, b.Records[0].Key = int64(9999), "9999"
	b.Records[0].Fields["score"] = int64(-1)
	o := d.Write(ctx, b)
	wantWholeBatchRejection(t, o, regexp.MustCompile(`row-level security`), "a row the policy refuses")
	if o.Fatal {
		t.Fatalf("a row the policy refuses halts the sync: %v", o.Err)
	}
	wantWholeBatchRejection(t, d.Write(ctx, adds(ruled, func(id int64) int64 { return id%2*2 - 1 })),
		regexp.MustCompile(`took 250 of the 500 rows sent: a trigger or rule on it skipped the others`), "adds half of which the rule drops")
	if n := count(ruled, ""); n != 0 {
		t.Fatalf("rule: %d rows after the rejected batch, want none", n)
	}
	mustAccept(t, d.Write(ctx, adds(ruled, func(id int64) int64 { return id })), destination.PostgresBulkMinRows)
	if n := count(ruled, ""); n != destination.PostgresBulkMinRows {
		t.Fatalf("rule: %d rows, want %d", n, destination.PostgresBulkMinRows)
	}
	if n := destination.Bulks(d) - before; n != 4 {
		t.Fatalf("%d bulk statements, want 4", n)
	}
}

// A key column GENERATED ALWAYS AS IDENTITY: INSERT refuses to write it,
// where COPY would. Adds are not copied, so they are refused as upserts
// are: the same answer whether a key is new or not.
func TestPostgresAddsToAnIdentityKeyAreNotCopied(t *testing.T) {
	ctx := context.Background()
	h := postgresHarness(t)
	table := newTable(t, h, "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, score bigint")
	d := h.open(t, 0, "")
	var recs []destination.Record
	for id := int64(1); id <= destination.PostgresBulkMinRows; id++ {
		recs = append(recs, destination.Record{Key: fmt.Sprint(id), KeyValue: id, Op: destination.OpUpsert, New: true, Fields: map[string]any{"score": id}})
	}
	before := destination.Bulks(d)
	o := d.Write(ctx, &destination.Batch{Object: table, KeyField: "id", Fields: []string{"score"}, Records: recs})
	wantWholeBatchRejection(t, o, regexp.MustCompile(`cannot insert a non-DEFAULT value into column "id"`), "adds to an identity key")
	if n := destination.Bulks(d) - before; n != 1 {
		t.Fatalf("%d bulk statements, want 1", n)
	}
	var n int
	if err := pgAdmin(t).QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows written (%v)", n, err)
	}
}

// A batch of adds alone (one COPY, nothing before or after it in the
// batch's transaction) is one round trip: the optimistic lock wait and
// the COPY go as one simple query, the server's implicit transaction,
// instead of BEGIN with the setting, the COPY and COMMIT. The COPY still
// runs with the lock wait bounded (a column's default records the
// lock_timeout it saw), the session's own lock_timeout is untouched, and a
// batch with records that have rows still takes the round trips of a
// transaction.
func TestPostgresAddsAloneAreOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	h := postgresHarness(t)
	table := newTable(t, h, "id bigint PRIMARY KEY, email text, name text, seen text DEFAULT current_setting('lock_timeout')")
	admin := pgAdmin(t)
	seen := func(when string, want int) {
		t.Helper()
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM `+table+` WHERE seen = '100ms'`).Scan(&n); err != nil || n != want {
			t.Errorf("%s: %d rows written under a lock_timeout of 100ms (%v), want %d", when, n, err, want)
		}
	}
	d := h.open(t, 3*time.Second, "")
	destination.SetBulkMinRows(d, 1)
	log := destination.LogQueries(d)
	want := map[int64][2]any{}
	adds := func(from, n int64, name string) []destination.Record {
		var out []destination.Record
		for id := from; id < from+n; id++ {
			r := contact(id, destination.OpUpsert, fmt.Sprintf("u%d@x", id), name)
			r.New = true
			out = append(out, r)
			want[id] = [2]any{fmt.Sprintf("u%d@x", id), name}
		}
		return out
	}
	mustAccept(t, d.Write(ctx, batchFor(table, adds(1, 10, "a")...)), 10) // describes the table
	log.Taken()
	mustAccept(t, d.Write(ctx, batchFor(table, adds(11, 10, "b")...)), 10)
	queries, syncs := log.Taken()
	if len(queries) != 1 || syncs != 0 || !regexp.MustCompile(`^SET LOCAL lock_timeout = '100ms'; COPY `).MatchString(queries[0]) {
		t.Errorf("a batch of adds sent queries %q and %d syncs, want one query: the lock wait, then the COPY", queries, syncs)
	}
	wantRows(t, h, table, "after the adds", want)
	seen("after the adds", 20)
	if got, err := destination.SessionSetting(d, "SHOW lock_timeout"); err != nil || got != "3s" {
		t.Errorf("session lock_timeout after the adds: %q (%v), want 3s", got, err)
	}

	// Adds of keys that have rows: the COPY fails whole, and the batch
	// goes again as upserts in a transaction.
	log.Taken()
	mustAccept(t, d.Write(ctx, batchFor(table, adds(15, 10, "c")...)), 10)
	queries, _ = log.Taken()
	if len(queries) < 3 || !regexp.MustCompile(`^SET LOCAL lock_timeout = '100ms'; COPY `).MatchString(queries[0]) ||
		queries[1] != "BEGIN; SET LOCAL lock_timeout = '100ms'" {
		t.Errorf("adds of keys with rows sent queries %q, want the COPY alone, then a transaction", queries)
	}
	wantRows(t, h, table, "after the adds of keys with rows", want)
	seen("after the adds of keys with rows", 24)
}

// A batch of adds alone waits for a key another session is inserting no
// longer than an optimistic batch waits, and is then retryable with
// nothing written; once the other session rolls back, it is written.
func TestPostgresAddsAloneWaitIsRetryable(t *testing.T) {
	ctx := context.Background()
	h := postgresHarness(t)
	table := contactsTable(t, h)
	d := h.open(t, h.lockTimeout, "")
	destination.SetBulkMinRows(d, 1)
	release := h.holdNew(t, table, 2)
	var recs []destination.Record
	for id := int64(1); id <= 3; id++ {
		r := contact(id, destination.OpUpsert, fmt.Sprintf("u%d@x", id), "A")
		r.New = true
		recs = append(recs, r)
	}
	wantRetryable(t, d.Write(ctx, batchFor(table, recs...)), h.lockErr, "adds with a key being inserted elsewhere")
	if !destination.Careful(d) {
		t.Error("not careful after the adds waited for a lock")
	}
	wantRows(t, h, table, "after the wait", map[int64][2]any{})
	release()
	mustAccept(t, d.Write(ctx, batchFor(table, recs...)), 3)
	wantRows(t, h, table, "after the release", map[int64][2]any{1: {"u1@x", "A"}, 2: {"u2@x", "A"}, 3: {"u3@x", "A"}})
}
