package destination_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
	"github.com/jackc/pgx/v5"
)

func postgresDSN() string {
	if dsn := os.Getenv("BACKFLOW_TEST_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// pgAdmin connects an admin session, closed at cleanup, or skips the test
// when the server is unreachable (outside CI).
func pgAdmin(t testing.TB) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), postgresDSN())
	serverOrSkip(t, "postgres", err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// postgresAs opens a postgres destination, closed at cleanup, as role on
// database ("": the test database's).
// pgExec runs each statement on conn, failing the test at the first error.
func pgExec(t testing.TB, conn *pgx.Conn, statements ...string) {
	t.Helper()
	for _, q := range statements {
		if _, err := conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func postgresAs(t testing.TB, role, database string) destination.Destination {
	t.Helper()
	u, err := url.Parse(postgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	if database != "" {
		u.Path = "/" + database
	}
	d, err := destination.OpenPostgres(context.Background(), config(t, "postgres", "warehouse", "", map[string]any{"dsn": u.String()}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func pgRows(t testing.TB, conn *pgx.Conn, table string) map[int64][2]any {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT id, email, name FROM `+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	return scanContacts(t, rows)
}

// postgresHarness is the postgres driver for the conformance suite.
func postgresHarness(t testing.TB) *sqlHarness {
	ctx := context.Background()
	admin := pgAdmin(t)
	return &sqlHarness{
		open: func(t testing.TB, lockTimeout time.Duration, initSQL string) destination.Destination {
			t.Helper()
			d, err := destination.OpenPostgres(ctx, config(t, "postgres", "warehouse", "", map[string]any{"dsn": postgresDSN(), "lock_timeout": lockTimeout, "init_sql": initSQL}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			return d
		},
		exec: func(query string) error {
			_, err := admin.Exec(ctx, query)
			return err
		},
		rows:     func(t testing.TB, table string) map[int64][2]any { return pgRows(t, admin, table) },
		lock:     pgLock,
		rowLocks: true,
		holdNew: func(t testing.TB, table string, id int64) func() {
			t.Helper()
			holder, err := pgx.Connect(ctx, postgresDSN())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { holder.Close(context.Background()) })
			tx, err := holder.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO `+table+` (id, email) VALUES ($1, 'held@x')`, id); err != nil {
				t.Fatal(err)
			}
			return func() {
				if err := tx.Rollback(ctx); err != nil {
					t.Fatal(err)
				}
			}
		},
		contactsDDL: `CREATE TABLE %s (id bigint PRIMARY KEY, email text NOT NULL CHECK (email LIKE '%%@%%'), name text, age int)`,
		textType:    "text",
		where:       `database "test" on 127.0.0.1:5432`,
		schema:      "public",
		lockTimeout: 100 * time.Millisecond,
		lockErr:     regexp.MustCompile(`lock`),
		checkErr:    regexp.MustCompile(`violates check constraint`),
		uniqueErr:   regexp.MustCompile(`duplicate key value violates unique constraint`),
		optimistic:  true,
		dataRejects: map[string]*destination.Batch{
			// A data error (22xxx) on a single record is that record's own error.
			"single out-of-range record": {KeyField: "id", Fields: []string{"email", "age"}, Records: []destination.Record{
				{Key: "5", KeyValue: int64(5), Op: destination.OpUpsert, Fields: map[string]any{"email": "e@x", "age": int64(1) << 40}},
			}},
		},
	}
}

// pgLock holds, from a session of its own, FOR UPDATE locks on the rows of
// table with ids until release is called.
func pgLock(t testing.TB, table string, ids ...int64) (release func()) {
	t.Helper()
	ctx := context.Background()
	holder, err := pgx.Connect(ctx, postgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Close(context.Background()) })
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM `+table+` WHERE id = ANY($1) FOR UPDATE) l`, ids).Scan(&n); err != nil || n != len(ids) {
		t.Fatalf("lock %v: locked %d rows, %v", ids, n, err)
	}
	return func() {
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPostgresConformance(t *testing.T) { testSQLConformance(t, postgresHarness) }

// postgresBulkHarness is the postgres driver with every group of upserts
// or inserts, however small, written with the bulk statement.
func postgresBulkHarness(t testing.TB) *sqlHarness {
	h := postgresHarness(t)
	open := h.open
	h.open = func(t testing.TB, lockTimeout time.Duration, initSQL string) destination.Destination {
		d := open(t, lockTimeout, initSQL)
		destination.SetBulkMinRows(d, 1)
		return d
	}
	return h
}

// The conformance suite again, with the batches' upserts and inserts
// written with the bulk statement: rejections (CHECK, unique, data errors
// raised by parsing a value's text or by the INSERT), lock handling and
// cancellation come out as they do for the multi-row statement.
func TestPostgresConformanceInBulk(t *testing.T) {
	testSQLConformance(t, postgresBulkHarness)
}

func TestPostgresSecretsStayOutOfErrors(t *testing.T) {
	testSecretsStayOut(t, "postgres", destination.OpenPostgres,
		"postgres://postgres:s3cr3t-pw@127.0.0.1:1/test?sslmode=disable&connect_timeout=2",
		"postgres://u:s3cr3t-pw@host:notaport/db")
}

func TestPostgresLostConnectionIsRetryableThenReconnects(t *testing.T) {
	ctx := context.Background()
	h := postgresHarness(t)
	table := contactsTable(t, h)
	app := fmt.Sprintf("backflow_test_%d", time.Now().UnixNano())
	d, err := destination.OpenPostgres(ctx, config(t, "postgres", "warehouse", "", map[string]any{"dsn": postgresDSN() + "&application_name=" + app}))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var killed int
	admin := pgAdmin(t)
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminate destination backend: killed %d, %v", killed, err)
	}
	b := batchFor(table, contact(1, destination.OpUpsert, "a@x", "A"))
	o := d.Write(ctx, b)
	if o.Err == nil || !o.Retryable {
		t.Fatalf("write on a terminated connection: want retryable, got %+v", o)
	}
	mustAccept(t, d.Write(ctx, b), 1)
	if got := h.rows(t, table); len(got) != 1 {
		t.Fatalf("rows after reconnect: %v", got)
	}
}

func TestPostgresLockTimeoutIsTheSessions(t *testing.T) {
	pgAdmin(t) // skips without a server
	for _, tc := range []struct {
		lockTimeout time.Duration
		want        string
	}{
		{250 * time.Millisecond, "250"},
		{0, fmt.Sprint(destination.PostgresDefaultLockTimeout.Milliseconds())},
	} {
		d, err := destination.OpenPostgres(context.Background(), config(t, "postgres", "warehouse", "", map[string]any{"dsn": postgresDSN(), "lock_timeout": tc.lockTimeout}))
		if err != nil {
			t.Fatal(err)
		}
		got, err := destination.SessionSetting(d, `SELECT (extract(epoch FROM current_setting('lock_timeout')::interval) * 1000)::bigint::text`)
		d.Close()
		if err != nil || got != tc.want {
			t.Errorf("LockTimeout %v: lock_timeout = %q (%v), want %s", tc.lockTimeout, got, err, tc.want)
		}
	}
}
