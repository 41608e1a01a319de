package destination_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
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
	mysqlHarness(t) // skips without a server
	admin, err := sql.Open("mysql", mysqlDSN())
	if err != nil {
		t.Fatal(err)
	}
	table := fmt.Sprintf("strict_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		admin.Exec("DROP TABLE IF EXISTS " + table)
		admin.Close()
	})
	if _, err := admin.Exec("CREATE TABLE " + table + " (id BIGINT PRIMARY KEY, n TINYINT, s VARCHAR(3))"); err != nil {
		t.Fatal(err)
	}
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
