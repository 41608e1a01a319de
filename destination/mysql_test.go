package destination_test

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/internal/testdb"
	_ "github.com/go-sql-driver/mysql"
)

func mysqlDSN() string {
	if dsn := os.Getenv("BACKFLOW_TEST_MYSQL_DSN"); dsn != "" {
		return dsn
	}
	return "root@tcp(127.0.0.1:3306)/test"
}

// mysqlHarness is the mysql driver (on MySQL or MariaDB) for the
// conformance suite.
func mysqlHarness(t testing.TB) *sqlHarness {
	ctx := context.Background()
	admin, err := sql.Open("mysql", mysqlDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	serverOrSkip(t, "mysql", admin.PingContext(ctx))
	return &sqlHarness{
		open: func(t testing.TB, lockTimeout time.Duration, initSQL string) destination.Destination {
			t.Helper()
			d, err := destination.OpenMySQL(ctx, config(t, "mysql", "app", "", map[string]any{"dsn": mysqlDSN(), "lock_timeout": lockTimeout, "init_sql": initSQL}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			return d
		},
		exec: func(query string) error {
			_, err := admin.ExecContext(ctx, query)
			return err
		},
		rows: func(t testing.TB, table string) map[int64][2]any {
			t.Helper()
			rows, err := admin.QueryContext(ctx, `SELECT id, email, name FROM `+table)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			return scanContacts(t, rows)
		},
		lock: func(t testing.TB, table string, ids ...int64) func() {
			return mysqlLock(t, admin, table, ids...)
		},
		rowLocks: true,
		holdNew: func(t testing.TB, table string, id int64) func() {
			t.Helper()
			tx, err := admin.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO `+table+` (id, email) VALUES (?, 'held@x')`, id); err != nil {
				t.Fatal(err)
			}
			return func() {
				if err := tx.Rollback(); err != nil {
					t.Fatal(err)
				}
			}
		},
		contactsDDL: `CREATE TABLE %s (id BIGINT PRIMARY KEY, email VARCHAR(100) NOT NULL CHECK (email LIKE '%%@%%'), name VARCHAR(10), age INT) ENGINE=InnoDB`,
		textType:    "VARCHAR(50)",
		where:       `database "test" on 127.0.0.1:3306`,
		schema:      "test",
		foldCase:    true,
		lockTimeout: time.Second, // innodb_lock_wait_timeout has a 1s floor
		lockErr:     regexp.MustCompile(`Lock wait timeout`),
		checkErr:    regexp.MustCompile(`(?i)constraint`),
		uniqueErr:   regexp.MustCompile(`Duplicate entry`),
		optimistic:  true,
		dataRejects: map[string]*destination.Batch{
			// A too-long value (1406) on a single record is that record's own error.
			"single too-long record": batch(contact(5, destination.OpUpsert, "e@x", "far too long for ten")),
		},
	}
}

// mysqlLock holds, in a transaction of db, FOR UPDATE locks on the rows of
// table with ids until release is called.
func mysqlLock(t testing.TB, db *sql.DB, table string, ids ...int64) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	// One equality per row takes the row's lock alone; an IN list the
	// optimiser reads as a scan of a small table would lock more.
	for _, id := range ids {
		var got int64
		if err := tx.QueryRowContext(ctx, `SELECT id FROM `+table+` WHERE id = ? FOR UPDATE`, id).Scan(&got); err != nil {
			t.Fatalf("lock row %d: %v", id, err)
		}
	}
	return func() {
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMySQLConformance(t *testing.T) { testSQLConformance(t, mysqlHarness) }

func TestMySQLSecretsStayOutOfErrors(t *testing.T) {
	testSecretsStayOut(t, "mysql", destination.OpenMySQL,
		"root:s3cr3t-pw@tcp(127.0.0.1:1)/test?timeout=2s",
		"root:s3cr3t-pw@tcp(127.0.0.1:1)test")
}

// innodb_lock_wait_timeout is in whole seconds: a shorter LockTimeout is
// rounded up, not down to no wait at all; the default replaces the
// server's 50 seconds.
func TestMySQLLockWaitIsWholeSeconds(t *testing.T) {
	mysqlHarness(t) // skips without a server
	for _, tc := range []struct {
		lockTimeout time.Duration
		want        string
	}{
		{200 * time.Millisecond, "1"},
		{2500 * time.Millisecond, "3"},
		{0, fmt.Sprint(int(destination.MySQLDefaultLockTimeout / time.Second))},
	} {
		d, err := destination.OpenMySQL(context.Background(), config(t, "mysql", "app", "", map[string]any{"dsn": mysqlDSN(), "lock_timeout": tc.lockTimeout}))
		if err != nil {
			t.Fatal(err)
		}
		got, err := destination.SessionSetting(d, `SELECT @@SESSION.innodb_lock_wait_timeout`)
		d.Close()
		if err != nil || got != tc.want {
			t.Errorf("LockTimeout %v: innodb_lock_wait_timeout = %q (%v), want %s", tc.lockTimeout, got, err, tc.want)
		}
	}
}

// TestMySQLWritesInStrictMode: a value the column cannot hold is refused,
// whatever sql_mode the server or the DSN would give the session. Outside
// strict mode MySQL and MariaDB write it clamped or cut (300 into a
// TINYINT as 127, "abcdef" into VARCHAR(3) as "abc") with a warning only,
// and the record would count as written.
func TestMySQLWritesInStrictMode(t *testing.T) {
	admin := testdb.MariaDB(t)
	table := testdb.MariaDBTable(t, admin, "id BIGINT PRIMARY KEY, n TINYINT, s VARCHAR(3)")
	ctx := context.Background()
	for i, params := range []string{"sql_mode=%27%27", "sql_mode=NO_ENGINE_SUBSTITUTION", "sql_mode=%27NO_ENGINE_SUBSTITUTION%2CANSI_QUOTES%27", ""} {
		dsn := mysqlDSN()
		if params != "" {
			dsn += "?" + params
		}
		d, err := destination.OpenMySQL(ctx, config(t, "mysql", "app", "", map[string]any{"dsn": dsn}))
		if err != nil {
			t.Fatalf("%s: %v", params, err)
		}
		if mode, err := destination.SessionSetting(d, `SELECT @@SESSION.sql_mode`); err != nil || !strings.Contains(mode, "STRICT_ALL_TABLES") {
			t.Errorf("%s: sql_mode %q (%v), want it strict", params, mode, err)
		}
		if err := d.(destination.Preparer).Prepare(ctx, table, "id", []string{"n", "s"}); err != nil {
			t.Fatal(err)
		}
		for j, fields := range []map[string]any{{"n": int64(300), "s": "ab"}, {"n": int64(1), "s": "abcdef"}} {
			id := int64(10*i + j)
			o := d.Write(ctx, &destination.Batch{Object: table, KeyField: "id", Fields: []string{"n", "s"}, Records: []destination.Record{
				{Key: fmt.Sprint(id), KeyValue: id, Op: destination.OpUpsert, Fields: fields},
			}})
			rejected := o.Err != nil || (len(o.Results) == 1 && o.Results[0].Err != nil)
			if !rejected {
				t.Errorf("%s: %v written without an error: %+v", params, fields, o)
			}
			var n int
			if err := admin.QueryRow("SELECT COUNT(*) FROM "+table+" WHERE id = ?", id).Scan(&n); err != nil || n != 0 {
				t.Errorf("%s: %v: %d rows written (%v), want none", params, fields, n, err)
			}
		}
		d.Close()
	}
}

// TestMySQLKeysOneRowApart: a key column whose collation ignores case
// takes 'A' and 'a' for one row. Neither record may overwrite the other's
// row, in one batch or in later ones (a retry, an add of a run after), and
// the row written keeps its record's values.
func TestMySQLKeysOneRowApart(t *testing.T) {
	admin := testdb.MariaDB(t)
	table := testdb.MariaDBTable(t, admin, "k VARCHAR(20) COLLATE utf8mb4_general_ci PRIMARY KEY, v VARCHAR(20)")
	ctx := context.Background()
	d, err := destination.OpenMySQL(ctx, config(t, "mysql", "app", "", map[string]any{"dsn": mysqlDSN()}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { d.Close() }() // the last one opened
	rec := func(key string, op destination.Operation, isNew bool) destination.Record {
		return destination.Record{Key: key, KeyValue: key, Op: op, New: isNew, Fields: map[string]any{"v": "of " + key}}
	}
	write := func(recs ...destination.Record) destination.Outcome {
		t.Helper()
		o := d.Write(ctx, &destination.Batch{Object: table, KeyField: "k", Fields: []string{"v"}, Records: recs})
		if o.Err != nil {
			t.Fatalf("batch failed whole: %v", o.Err)
		}
		return o
	}
	rows := func() map[string]string {
		t.Helper()
		out := map[string]string{}
		r, err := admin.Query("SELECT k, v FROM " + table)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for r.Next() {
			var k, v string
			if err := r.Scan(&k, &v); err != nil {
				t.Fatal(err)
			}
			out[k] = v
		}
		return out
	}
	// One batch: the first of the two is written, the second rejected.
	o := write(rec("A", destination.OpUpsert, true), rec("b", destination.OpUpsert, true), rec("a", destination.OpUpsert, true))
	if o.Results[0].Err != nil || o.Results[1].Err != nil {
		t.Fatalf("A and b: %+v", o.Results)
	}
	if err := o.Results[2].Err; err == nil || !strings.Contains(err.Error(), `key "a" is the same row as key "A"`) || !strings.Contains(err.Error(), "utf8mb4_general_ci") {
		t.Errorf("a beside A: %v, want a rejection naming both keys and the collation", err)
	}
	// Later batches: a retry (an upsert), an add and an update of 'a', and
	// 'B ' (trailing space) beside 'b', each find the other's row.
	// and 'Ä' (general_ci ignores accents too),
	for _, r := range []destination.Record{rec("a", destination.OpUpsert, false), rec("a", destination.OpUpsert, true), rec("a", destination.OpUpdate, false), rec("B ", destination.OpUpsert, false), rec("Ä", destination.OpUpsert, true)} {
		o := write(r, rec("c", destination.OpUpsert, true))
		if err := o.Results[0].Err; err == nil || !strings.Contains(err.Error(), "is the same row as key") {
			t.Errorf("%s %q alone: %v, want a rejection", r.Op, r.Key, err)
		}
		if o.Results[1].Err != nil {
			t.Errorf("c beside it: %v", o.Results[1].Err)
		}
	}
	// Two new keys of one batch apart by case and accents only.
	o = write(rec("é", destination.OpUpsert, true), rec("E", destination.OpUpsert, true))
	if o.Results[0].Err != nil || o.Results[1].Err == nil {
		t.Errorf("é and E, both new: %+v, want E rejected", o.Results)
	}
	want := map[string]string{"A": "of A", "b": "of b", "c": "of c", "é": "of é"}
	if got := rows(); !maps.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
	// The same key again, and a removal, go as before.
	o = write(rec("A", destination.OpUpsert, false), destination.Record{Key: "b", KeyValue: "b", Op: destination.OpDelete})
	if o.Results[0].Err != nil || o.Results[1].Err != nil {
		t.Errorf("A again and b removed: %+v", o.Results)
	}
	if got := rows(); !maps.Equal(got, map[string]string{"A": "of A", "c": "of c", "é": "of é"}) {
		t.Errorf("rows %v after b's removal", got)
	}
	// A removal of a key whose row is another's removes nothing: the
	// delete and the clear of 'a' leave A's row as it is.
	o = write(destination.Record{Key: "a", KeyValue: "a", Op: destination.OpDelete}, destination.Record{Key: "a", KeyValue: "a", Op: destination.OpClear, Fields: map[string]any{"v": nil}})
	if o.Results[0].Err != nil || o.Results[1].Err != nil {
		t.Errorf("a deleted and cleared: %+v", o.Results)
	}
	// general_ci takes 'ß' for 's' and 'ı' for 'i': keys of one batch,
	// both new.
	o = write(rec("s", destination.OpUpsert, true), rec("ß", destination.OpUpsert, true), rec("i", destination.OpUpsert, true), rec("ı", destination.OpUpsert, true))
	if o.Results[0].Err != nil || o.Results[1].Err == nil || o.Results[2].Err != nil || o.Results[3].Err == nil {
		t.Errorf("s, ß, i, ı: %+v, want ß and ı rejected", o.Results)
	}
	if got := rows(); !maps.Equal(got, map[string]string{"A": "of A", "c": "of c", "é": "of é", "s": "of s", "i": "of i"}) {
		t.Errorf("rows %v after a's removal and s, ß, i, ı", got)
	}
	// What the lookup costs: one statement for a batch of upserts, none
	// for one of plain inserts (which fail on a key that has a row).
	before := destination.Statements(d)
	write(rec("u1", destination.OpUpsert, true), rec("u2", destination.OpUpsert, true))
	if n := destination.Statements(d) - before; n != 2 {
		t.Errorf("a batch of upserts took %d statements, want 2 (the upsert and the lookup)", n)
	}
	before = destination.Statements(d)
	write(rec("n1", destination.OpInsert, true), rec("n2", destination.OpInsert, true))
	if n := destination.Statements(d) - before; n != 1 {
		t.Errorf("a batch of inserts took %d statements, want 1 (no lookup)", n)
	}
	// utf8mb4_bin tells case apart but not trailing spaces (PAD SPACE).
	if _, err := admin.Exec("ALTER TABLE " + table + " MODIFY k VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if d, err = destination.OpenMySQL(ctx, config(t, "mysql", "app", "", map[string]any{"dsn": mysqlDSN()})); err != nil {
		t.Fatal(err)
	}
	o = write(rec("a", destination.OpUpsert, true), rec("c ", destination.OpUpsert, false))
	if o.Results[0].Err != nil || o.Results[1].Err == nil || !strings.Contains(o.Results[1].Err.Error(), `key "c " is the same row as key "c"`) {
		t.Errorf("a and c beside A and c, utf8mb4_bin: %+v, want a written and c rejected", o.Results)
	}
}

// MySQL's ON DUPLICATE KEY UPDATE takes a duplicate in any unique index:
// an upsert whose email another row holds updated that row, its own key
// got none, and it was reported accepted. It is rejected, naming the
// index; the other row keeps its values; the rest of the batch is written.
// An index on a column the sync does not write costs nothing.
func TestMySQLUpsertMeetingAnotherUniqueIndex(t *testing.T) {
	admin := testdb.MariaDB(t)
	table := testdb.MariaDBTable(t, admin, "k BIGINT PRIMARY KEY, email VARCHAR(40), name VARCHAR(40), UNIQUE KEY email_u (email)")
	testdb.MariaDBExec(t, admin, "INSERT INTO "+table+" VALUES (100, 'a@x', 'Other')")
	ctx := context.Background()
	d, err := destination.OpenMySQL(ctx, config(t, "mysql", "app", "", map[string]any{"dsn": mysqlDSN()}))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rec := func(k int64, email, name string) destination.Record {
		return destination.Record{Key: fmt.Sprint(k), KeyValue: k, Op: destination.OpUpsert, Fields: map[string]any{"email": email, "name": name}}
	}
	for _, isNew := range []bool{true, false} {
		recs := []destination.Record{rec(1, "a@x", "Ann"), rec(2, "b@x", "Bob")}
		for i := range recs {
			recs[i].New = isNew
		}
		o := d.Write(ctx, &destination.Batch{Object: table, KeyField: "k", Fields: []string{"email", "name"}, Records: recs})
		if o.Err != nil || len(o.Results) != 2 {
			t.Fatalf("new=%v: outcome %+v", isNew, o)
		}
		if err := o.Results[0].Err; err == nil || !strings.Contains(err.Error(), `key "1" has no row of its own`) || !strings.Contains(err.Error(), "email_u") {
			t.Errorf("new=%v: key 1, whose email row 100 holds: %v, want a rejection naming the index", isNew, err)
		}
		if o.Results[1].Err != nil {
			t.Errorf("new=%v: key 2: %v", isNew, o.Results[1].Err)
		}
		var n int
		var name string
		if err := admin.QueryRow("SELECT COUNT(*) FROM " + table + " WHERE k = 1").Scan(&n); err != nil || n != 0 {
			t.Errorf("new=%v: key 1 has %d rows (%v)", isNew, n, err)
		}
		if err := admin.QueryRow("SELECT name FROM " + table + " WHERE k = 100").Scan(&name); err != nil || name != "Other" {
			t.Errorf("new=%v: row 100 now named %q (%v), want its own name", isNew, name, err)
		}
	}
}

// The unique indexes are read a column a row: an index whose column names
// add up past 1,024 bytes (GROUP_CONCAT's default length, which cut the
// list mid-name so the index was never met), or whose column's name holds
// a comma, is met like any other.
func TestMySQLUpsertMeetingAWideUniqueIndex(t *testing.T) {
	admin := testdb.MariaDB(t)
	var cols, names []string
	for i := range 15 {
		n := fmt.Sprintf("c%02d_%s", i, strings.Repeat("x", 60))
		names = append(names, n)
		cols = append(cols, "`"+n+"` INT NOT NULL DEFAULT 0")
	}
	wide := append(slices.Clone(names), "e,mail")
	quoted := make([]string, len(wide))
	for i, n := range wide {
		quoted[i] = "`" + n + "`"
	}
	table := testdb.MariaDBTable(t, admin, "k BIGINT PRIMARY KEY, "+strings.Join(cols, ", ")+", `e,mail` VARCHAR(40), UNIQUE KEY wide_u ("+strings.Join(quoted, ", ")+")")
	testdb.MariaDBExec(t, admin, "INSERT INTO "+table+" (k, `e,mail`) VALUES (100, 'a@x')")
	ctx := context.Background()
	d, err := destination.OpenMySQL(ctx, config(t, "mysql", "app", "", map[string]any{"dsn": mysqlDSN()}))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fields := append([]string{"e,mail"}, names...)
	rec := func(k int64, email string) destination.Record {
		f := map[string]any{"e,mail": email}
		for _, n := range names {
			f[n] = int64(0)
		}
		return destination.Record{Key: fmt.Sprint(k), KeyValue: k, Op: destination.OpUpsert, New: true, Fields: f}
	}
	o := d.Write(ctx, &destination.Batch{Object: table, KeyField: "k", Fields: fields, Records: []destination.Record{rec(1, "a@x"), rec(2, "b@x")}})
	if o.Err != nil || len(o.Results) != 2 {
		t.Fatalf("outcome %+v", o)
	}
	if err := o.Results[0].Err; err == nil || !strings.Contains(err.Error(), "wide_u") {
		t.Errorf("key 1, whose values row 100 holds in wide_u: %v, want a rejection naming the index", err)
	}
	if o.Results[1].Err != nil {
		t.Errorf("key 2: %v", o.Results[1].Err)
	}
	var n int
	if err := admin.QueryRow("SELECT COUNT(*) FROM " + table + " WHERE k = 1").Scan(&n); err != nil || n != 0 {
		t.Errorf("key 1 has %d rows (%v)", n, err)
	}
}
