package destination_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
)

// wantFatal checks that o says the sync cannot proceed, with a message
// matching msg.
func wantFatal(t testing.TB, o destination.Outcome, msg, what string) {
	t.Helper()
	if o.Err == nil || !o.Fatal || o.Retryable || o.Results != nil {
		t.Fatalf("%s: want a fatal outcome, got %+v", what, o)
	}
	if !strings.Contains(o.Err.Error(), msg) {
		t.Fatalf("%s: the error should say %q: %v", what, msg, o.Err)
	}
}

// A table that does not exist, or is dropped mid-run, and a column dropped
// mid-run, are fatal: no batch can succeed, and the records are not at
// fault.
func conformUnknownTableOrColumnIsFatal(t *testing.T, h *sqlHarness) {
	ctx := context.Background()
	table, d := contactsDest(t, h)
	b := batchFor(table, contact(1, destination.OpUpsert, "a@x", "A"), contact(2, destination.OpUpsert, "b@x", "B"))
	wantFatal(t, d.Write(ctx, batchFor(table+"_missing", contact(1, destination.OpUpsert, "a@x", "A"))), "not found", "a missing table")
	noKey := batchFor(table, contact(1, destination.OpUpsert, "a@x", "A"))
	noKey.KeyField = "uid"
	wantFatal(t, d.Write(ctx, noKey), "uid", "a missing key column")

	if err := d.(destination.Preparer).Prepare(ctx, table, "id", b.Fields); err != nil {
		t.Fatal(err)
	}
	mustAccept(t, d.Write(ctx, b), 2)
	mustExec(t, h, `ALTER TABLE `+table+` DROP COLUMN name`)
	wantFatal(t, d.Write(ctx, b), "name", "a dropped column")
	wantFatal(t, d.Write(ctx, batchFor(table, contact(1, destination.OpUpsert, "a@x", "A"))), "name", "a dropped column, one record")
	mustExec(t, h, `DROP TABLE `+table)
	wantFatal(t, d.Write(ctx, b), table, "a dropped table")
	mustExec(t, h, fmt.Sprintf(h.contactsDDL, table)) // for the cleanup's DROP
}

// Permission denied is fatal: a role that may read the table but not write
// it.
func TestPostgresPermissionDeniedIsFatal(t *testing.T) {
	ctx := context.Background()
	h := postgresHarness(t)
	table := contactsTable(t, h)
	role := fmt.Sprintf("bf_reader_%d", time.Now().UnixNano())
	mustExec(t, h, `CREATE ROLE `+role+` LOGIN`)
	t.Cleanup(func() {
		if err := h.exec(`DROP OWNED BY ` + role + `; DROP ROLE ` + role); err != nil {
			t.Errorf("drop role: %v", err)
		}
	})
	mustExec(t, h, `GRANT SELECT ON `+table+` TO `+role)
	d := postgresAs(t, role, "")
	wantFatal(t, d.Write(ctx, batchFor(table, contact(1, destination.OpUpsert, "a@x", "A"))), "permission denied", "a read-only role")
}

func TestMySQLPermissionDeniedIsFatal(t *testing.T) {
	ctx := context.Background()
	h := mysqlHarness(t)
	table := contactsTable(t, h)
	user := fmt.Sprintf("bf_r%d", time.Now().UnixNano()%1e9)
	mustExec(t, h, `CREATE USER '`+user+`'@'127.0.0.1'`)
	t.Cleanup(func() {
		if err := h.exec(`DROP USER '` + user + `'@'127.0.0.1'`); err != nil {
			t.Errorf("drop user: %v", err)
		}
	})
	mustExec(t, h, `GRANT SELECT ON test.`+table+` TO '`+user+`'@'127.0.0.1'`)
	dsn := mysqlDSN()
	dsn = user + dsn[strings.Index(dsn, "@"):]
	d, err := destination.OpenMySQL(ctx, config(t, "mysql", "app", "", map[string]any{"dsn": dsn}))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	wantFatal(t, d.Write(ctx, batchFor(table, contact(1, destination.OpUpsert, "a@x", "A"))), "denied", "a read-only user")
}

// 401, 403 and 404 are fatal after one request; 400 still rejects the
// batch.
func TestHTTPAuthAndNotFoundAreFatal(t *testing.T) {
	for _, status := range []int{401, 403, 404} {
		api := &fakeAPI{reply: func(w http.ResponseWriter, _ []map[string]any) {
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(map[string]string{"error": "invalid token"})
		}}
		d := openHTTP(t, api, map[string]string{"Authorization": "Bearer s3cret"})
		o := d.Write(context.Background(), httpBatch())
		wantFatal(t, o, fmt.Sprintf("%d %s: invalid token", status, http.StatusText(status)), fmt.Sprint(status))
		if strings.Contains(o.Err.Error(), "s3cret") || len(api.requests) != 1 {
			t.Fatalf("%d: %d requests, error %v", status, len(api.requests), o.Err)
		}
	}
}

// A connection reset at any point of a write — while it sends the lock
// query, the rows, or the commit — is retryable, leaves nothing of the
// batch behind, and the next write reconnects and lands.
func TestPostgresConnectionResetIsRetryable(t *testing.T) {
	h := postgresHarness(t)
	u, err := url.Parse(postgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	proxy := newFaultProxy(t, u.Host)
	u.Host = proxy.addr()
	admin := pgAdmin(t)
	testConnectionReset(t, h, proxy, func() (destination.Destination, error) {
		return destination.OpenPostgres(context.Background(), config(t, "postgres", "warehouse", "", map[string]any{"dsn": u.String()}))
	}, `SELECT pg_backend_pid()::text`, func(id string) bool {
		var n int
		if err := admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
}

func TestMySQLConnectionResetIsRetryable(t *testing.T) {
	h := mysqlHarness(t)
	dsn, proxy := mysqlThroughProxy(t)
	admin, err := sql.Open("mysql", mysqlDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	testConnectionReset(t, h, proxy, func() (destination.Destination, error) {
		return destination.OpenMySQL(context.Background(), config(t, "mysql", "app", "", map[string]any{"dsn": dsn}))
	}, `SELECT CONNECTION_ID()`, func(id string) bool {
		var n int
		if err := admin.QueryRow(`SELECT COUNT(*) FROM information_schema.processlist WHERE id = ?`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
}

// testConnectionReset: sessionQuery gives the id of the destination's
// session, alive says whether the server still has a session of that id.
// Before writing again the test waits for the server to have ended the
// session the reset cut off: until then its transaction still holds the
// rows (which a write would rightly answer as locked).
func testConnectionReset(t *testing.T, h *sqlHarness, proxy *faultProxy, open func() (destination.Destination, error),
	sessionQuery string, alive func(id string) bool) {
	ctx := context.Background()
	table := contactsTable(t, h)
	d, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const n = 2000
	version := func(v int) (*destination.Batch, map[int64][2]any) {
		recs := make([]destination.Record, n)
		rows := map[int64][2]any{}
		for i := range recs {
			id := int64(i + 1)
			email, name := fmt.Sprintf("v%d-%d@x", v, id), fmt.Sprintf("v%d", v)
			recs[i] = contact(id, destination.OpUpsert, email, name)
			rows[id] = [2]any{email, name}
		}
		return batchFor(table, recs...), rows
	}
	b, _ := version(0)
	mustAccept(t, d.Write(ctx, b), n) // inserts, then the updates measured,
	b, _ = version(8)
	mustAccept(t, d.Write(ctx, b), n) // once the statements are prepared
	b, rows := version(9)             // as long as the versions below
	start := proxy.forwarded()
	mustAccept(t, d.Write(ctx, b), n)
	size := proxy.forwarded() - start
	t.Logf("a write of %d rows sends %d bytes", n, size)
	for v, at := range []int64{1, 20, size / 4, size / 2, size * 3 / 4, size - 8, size - 1} {
		next, nextRows := version(v + 1)
		session, err := destination.SessionSetting(d, sessionQuery)
		if err != nil {
			t.Fatal(err)
		}
		proxy.resetAfter(at)
		o := within(t, "write cut off", func() destination.Outcome { return d.Write(ctx, next) })
		if o.Err == nil || !o.Retryable || o.Fatal {
			t.Fatalf("reset after %d of %d bytes: want a retryable outcome, got err=%v fatal=%v (%d results)", at, size, o.Err, o.Fatal, len(o.Results))
		}
		t.Logf("reset after %d of %d bytes: %v", at, size, o.Err)
		within(t, "the server ending the session", func() bool {
			for alive(session) {
				time.Sleep(10 * time.Millisecond) // polling a condition, not waiting for one
			}
			return true
		})
		wantRows(t, h, table, fmt.Sprintf("after a reset at byte %d", at), rows)
		mustAccept(t, within(t, "write after the reset", func() destination.Outcome { return d.Write(ctx, next) }), n)
		rows = nextRows
	}
	wantRows(t, h, table, "at the end", rows)
}
