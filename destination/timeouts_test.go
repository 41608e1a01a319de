package destination_test

import (
	"context"
	"database/sql"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/internal/testdb"
)

// A server that accepts connections and never answers: Open fails within
// the connect timeout, naming host:port and nothing of the DSN (user,
// database, password, options).
func TestPostgresBlackHoleConnect(t *testing.T) {
	addr := testdb.BlackHole(t)
	dsn := "postgres://bob:s3cr3t-pw@" + addr + "/secretdb?sslmode=prefer&application_name=opt-x"
	err := within(t, "open", func() error {
		_, err := destination.OpenPostgres(context.Background(), config(t, "postgres", "warehouse", "", map[string]any{"dsn": dsn, "connect_timeout": 200 * time.Millisecond}))
		return err
	})
	wantConnectFailure(t, err, addr, "bob", "s3cr3t-pw", "secretdb", "opt-x")
}

func TestMySQLBlackHoleConnect(t *testing.T) {
	addr := testdb.BlackHole(t)
	dsn := "bob:s3cr3t-pw@tcp(" + addr + ")/secretdb?collation=utf8mb4_bin&readTimeout=1h"
	err := within(t, "open", func() error {
		_, err := destination.OpenMySQL(context.Background(), config(t, "mysql", "app", "", map[string]any{"dsn": dsn, "connect_timeout": 200 * time.Millisecond}))
		return err
	})
	wantConnectFailure(t, err, addr, "bob", "s3cr3t-pw", "secretdb", "utf8mb4_bin", "1h")
	// init_sql connects first too.
	err = within(t, "open with init_sql", func() error {
		_, err := destination.OpenMySQL(context.Background(), config(t, "mysql", "app", "", map[string]any{"dsn": dsn, "init_sql": "SELECT 1", "connect_timeout": 200 * time.Millisecond}))
		return err
	})
	wantConnectFailure(t, err, addr, "bob", "s3cr3t-pw", "secretdb", "utf8mb4_bin")
}

func wantConnectFailure(t testing.TB, err error, addr string, secrets ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("connecting to a server that never answers should fail")
	}
	msg := err.Error()
	if !strings.Contains(msg, "connect to "+addr+": no answer within 200ms (connect timeout)") {
		t.Errorf("message should name %s and the connect timeout: %s", addr, msg)
	}
	for _, s := range secrets {
		if strings.Contains(msg, s) {
			t.Errorf("message quotes %q from the DSN: %s", s, msg)
		}
	}
}

// An API that accepts connections and never answers: the Write is
// retryable after Timeout, naming the endpoint without its credentials.
func TestHTTPBlackHoleIsRetryableAfterTimeout(t *testing.T) {
	addr := testdb.BlackHole(t)
	d, err := destination.OpenHTTP(context.Background(), config(t, "http", "api", "", map[string]any{"url": "http://user:pa55@" + addr + "/records?token=t0ken", "timeout": 200 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	o := within(t, "write", func() destination.Outcome { return d.Write(context.Background(), httpBatch()) })
	if o.Err == nil || !o.Retryable || !strings.Contains(o.Err.Error(), addr+"/records") ||
		strings.Contains(o.Err.Error(), "pa55") || strings.Contains(o.Err.Error(), "t0ken") {
		t.Fatalf("outcome %+v", o)
	}
}

// A server that stops answering in the middle of a write: the Write ends
// after Timeout although its context is never cancelled (the caller lets a
// batch in flight finish), the batch is retryable, and the destination
// works again once the link does.
func TestPostgresStallMidWriteIsRetryableAfterTimeout(t *testing.T) {
	h := postgresHarness(t)
	u, err := url.Parse(postgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	proxy := newFaultProxy(t, u.Host)
	u.Host = proxy.addr()
	testStallMidWrite(t, h, proxy, func() (destination.Destination, error) {
		return destination.OpenPostgres(context.Background(), config(t, "postgres", "warehouse", "", map[string]any{"dsn": u.String(), "timeout": 500 * time.Millisecond}))
	})
}

func TestMySQLStallMidWriteIsRetryableAfterTimeout(t *testing.T) {
	h := mysqlHarness(t)
	dsn, proxy := mysqlThroughProxy(t)
	testStallMidWrite(t, h, proxy, func() (destination.Destination, error) {
		return destination.OpenMySQL(context.Background(), config(t, "mysql", "app", "", map[string]any{"dsn": dsn, "timeout": 500 * time.Millisecond}))
	})
}

// mysqlThroughProxy is the test server's DSN with its address replaced by
// a fault proxy's.
func mysqlThroughProxy(t testing.TB) (string, *faultProxy) {
	t.Helper()
	dsn := mysqlDSN()
	start, end := strings.Index(dsn, "tcp("), strings.Index(dsn, ")/")
	if start < 0 || end < start {
		t.Skipf("the mysql test DSN %q has no tcp(host:port) address", dsn)
	}
	target := dsn[start+4 : end]
	if _, _, err := net.SplitHostPort(target); err != nil {
		t.Fatal(err)
	}
	proxy := newFaultProxy(t, target)
	return dsn[:start+4] + proxy.addr() + dsn[end:], proxy
}

func testStallMidWrite(t *testing.T, h *sqlHarness, proxy *faultProxy, open func() (destination.Destination, error)) {
	ctx := context.Background()
	table := contactsTable(t, h)
	d, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	mustAccept(t, d.Write(ctx, batchFor(table, contact(1, destination.OpUpsert, "a@x", "A"))), 1)

	proxy.stall()
	b := batchFor(table, contact(1, destination.OpUpsert, "a2@x", "A2"), contact(2, destination.OpUpsert, "b@x", "B"))
	o := within(t, "write over a stalled link", func() destination.Outcome { return d.Write(ctx, b) })
	wantRetryable(t, o, nil, "write over a stalled link")
	if !strings.Contains(o.Err.Error(), "no answer within 500ms (timeout)") {
		t.Errorf("the error should say the timeout ran out: %v", o.Err)
	}
	proxy.resume()
	mustAccept(t, within(t, "write after the stall", func() destination.Outcome { return d.Write(ctx, b) }), 2)
	wantRows(t, h, table, "after the stall", map[int64][2]any{1: {"a2@x", "A2"}, 2: {"b@x", "B"}})
}

// SQLite: a write waiting for another connection's lock longer than Timeout
// ends at Timeout, retryable.
func TestSQLiteTimeoutBoundsALockWait(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "crm.db")
	withSQLite(t, path, func(db *sql.DB) error {
		_, err := db.ExecContext(ctx, `CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT, name TEXT)`)
		return err
	})
	d, err := destination.OpenSQLite(ctx, config(t, "sqlite", "crm", "", map[string]any{"path": path, "lock_timeout": time.Hour, "timeout": 200 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	holder, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	conn, err := holder.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, "ROLLBACK")
	o := within(t, "write under a held lock", func() destination.Outcome {
		return d.Write(ctx, batch(contact(1, destination.OpUpsert, "a@x", "A")))
	})
	wantRetryable(t, o, nil, "write under a held lock")
	if !strings.Contains(o.Err.Error(), "no answer within 200ms (timeout)") {
		t.Errorf("the error should say the timeout ran out: %v", o.Err)
	}
}
