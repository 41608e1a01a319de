package destination_test

import (
	"context"
	"fmt"
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
func pgAdmin(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), postgresDSN())
	serverOrSkip(t, "postgres", err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func pgRows(t *testing.T, conn *pgx.Conn, table string) map[int64][2]any {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT id, email, name FROM `+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	return scanContacts(t, rows)
}

// postgresHarness is the postgres driver for the conformance suite.
func postgresHarness(t *testing.T) *sqlHarness {
	ctx := context.Background()
	admin := pgAdmin(t)
	return &sqlHarness{
		open: func(t *testing.T, timeout time.Duration, initSQL string) destination.Destination {
			t.Helper()
			d, err := destination.OpenPostgres(ctx, config(t, "postgres", "warehouse", "", map[string]any{"dsn": postgresDSN(), "lock_timeout": timeout, "init_sql": initSQL}))
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
		rows: func(t *testing.T, table string) map[int64][2]any { return pgRows(t, admin, table) },
		lock: func(t *testing.T, table string) func() {
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
			if _, err := tx.Exec(ctx, `SELECT * FROM `+table+` WHERE id = 1 FOR UPDATE`); err != nil {
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
		dataRejects: map[string]*destination.Batch{
			// A data error (22xxx) on a single record is that record's own error.
			"single out-of-range record": {KeyField: "id", Fields: []string{"email", "age"}, Records: []destination.Record{
				{Key: "5", KeyValue: int64(5), Op: destination.OpUpsert, Fields: map[string]any{"email": "e@x", "age": int64(1) << 40}},
			}},
		},
	}
}

func TestPostgresConformance(t *testing.T) { testSQLConformance(t, postgresHarness) }

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
