package destination_test

import (
	"context"
	"database/sql"
	"os"
	"regexp"
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
func mysqlHarness(t *testing.T) *sqlHarness {
	ctx := context.Background()
	admin, err := sql.Open("mysql", mysqlDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	serverOrSkip(t, "mysql", admin.PingContext(ctx))
	return &sqlHarness{
		open: func(t *testing.T, timeout time.Duration, initSQL string) destination.Destination {
			t.Helper()
			d, err := destination.OpenMySQL(ctx, config(t, "mysql", "app", "", map[string]any{"dsn": mysqlDSN(), "lock_timeout": timeout, "init_sql": initSQL}))
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
		rows: func(t *testing.T, table string) map[int64][2]any {
			t.Helper()
			rows, err := admin.QueryContext(ctx, `SELECT id, email, name FROM `+table)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			return scanContacts(t, rows)
		},
		lock: func(t *testing.T, table string) func() {
			t.Helper()
			tx, err := admin.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, `SELECT * FROM `+table+` WHERE id = 1 FOR UPDATE`); err != nil {
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
		dataRejects: map[string]*destination.Batch{
			// A too-long value (1406) on a single record is that record's own error.
			"single too-long record": batch(contact(5, destination.OpUpsert, "e@x", "far too long for ten")),
		},
	}
}

func TestMySQLConformance(t *testing.T) { testSQLConformance(t, mysqlHarness) }

func TestMySQLSecretsStayOutOfErrors(t *testing.T) {
	testSecretsStayOut(t, "mysql", destination.OpenMySQL,
		"root:s3cr3t-pw@tcp(127.0.0.1:1)/test?timeout=2s",
		"root:s3cr3t-pw@tcp(127.0.0.1:1)test")
}

// innodb_lock_wait_timeout is in whole seconds: a shorter Timeout is rounded
// up, not down to no wait at all.
func TestMySQLLockWaitRoundsUpToWholeSeconds(t *testing.T) {
	ctx := context.Background()
	h := mysqlHarness(t)
	table := contactsTable(t, h)
	mustExec(t, h, `INSERT INTO `+table+` (id, email) VALUES (1, 'a@x')`)
	d := h.open(t, 200*time.Millisecond, "")
	release := h.lock(t, table)
	defer release()
	start := time.Now()
	o := d.Write(ctx, batchFor(table, contact(1, destination.OpUpsert, "new@x", "N")))
	wantRetryable(t, o, h.lockErr, "write under a held lock")
	if waited := time.Since(start); waited < 900*time.Millisecond {
		t.Fatalf("lock wait of %v: a 200ms timeout should round up to 1s", waited)
	}
}
