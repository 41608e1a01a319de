package engine

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/schema"
)

const (
	postgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	mysqlDSN    = "root@tcp(127.0.0.1:3306)/test"
)

// openLive opens a live source; an unreachable server skips the test,
// except in CI (CI set), where it fails.
func openLive(t *testing.T, open func(context.Context, string) (Source, error), dsn string) Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src, err := open(ctx, dsn)
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("database unreachable (set CI to make this fail): %v", err)
		}
		t.Fatalf("database unreachable in CI: %v", err)
	}
	t.Cleanup(func() { _ = src.Close() })
	return src
}

// exec runs a statement through Query, draining its rows.
func execLive(t *testing.T, src Source, stmt string) {
	t.Helper()
	rows, err := src.Query(context.Background(), stmt)
	if err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
	for rows.Next() {
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
	_ = rows.Close()
}

func uniqueTable(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), time.Now().UnixNano()%1_000_000_000)
}

func TestPostgres(t *testing.T) {
	src := openLive(t, OpenPostgres, postgresDSN)
	table := uniqueTable("backflow_engine_pg")
	execLive(t, src, `CREATE TABLE `+table+` (id BIGINT PRIMARY KEY, email TEXT, amount NUMERIC(10,2),
		ok BOOLEAN, at TIMESTAMPTZ, d DATE, doc JSONB, raw BYTEA, f DOUBLE PRECISION, small SMALLINT)`)
	t.Cleanup(func() { execLive(t, src, "DROP TABLE IF EXISTS "+table) })
	execLive(t, src, `INSERT INTO `+table+` VALUES
		(1, 'a@x.io', 10.50, true, '2024-01-02 03:04:05+02', '2024-01-02', '{"a": 1}', '\x6869', 1.5, 3),
		(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`)
	query := "SELECT id, email, amount, ok, at, d, doc, raw, f, small FROM " + table + " ORDER BY id"
	cols, err := src.Schema(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	want := []schema.Type{schema.TypeInt, schema.TypeString, schema.TypeDecimal, schema.TypeBool, schema.TypeTimestamp, schema.TypeTimestamp, schema.TypeJSON, schema.TypeBytes, schema.TypeFloat, schema.TypeInt}
	for i, c := range cols {
		if c.Type != want[i] {
			t.Errorf("column %s: %s (%s), want %s", c.Name, c.Type, c.DBType, want[i])
		}
	}
	_, rows := collect(t, src, query)
	wantRows := [][]any{
		{int64(1), "a@x.io", "10.50", true, time.Date(2024, 1, 2, 1, 4, 5, 0, time.UTC), time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC), `{"a":1}`, []byte("hi"), 1.5, int64(3)},
		{int64(2), nil, nil, nil, nil, nil, nil, nil, nil, nil},
	}
	if !reflect.DeepEqual(rows, wantRows) {
		t.Errorf("rows:\n got %#v\nwant %#v", rows, wantRows)
	}
}

func TestMySQL(t *testing.T) {
	src := openLive(t, OpenMySQL, mysqlDSN)
	table := uniqueTable("backflow_engine_my")
	execLive(t, src, `CREATE TABLE `+table+` (id BIGINT PRIMARY KEY, email VARCHAR(100), amount DECIMAL(10,2),
		at DATETIME, raw VARBINARY(10), f DOUBLE, u INT UNSIGNED)`)
	t.Cleanup(func() { execLive(t, src, "DROP TABLE IF EXISTS "+table) })
	execLive(t, src, `INSERT INTO `+table+` VALUES (1, 'a@x.io', 10.50, '2024-01-02 03:04:05', 'hi', 1.5, 7),
		(2, NULL, NULL, NULL, NULL, NULL, NULL)`)
	query := "SELECT id, email, amount, at, raw, f, u FROM " + table + " ORDER BY id"
	cols, err := src.Schema(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	want := []schema.Type{schema.TypeInt, schema.TypeString, schema.TypeDecimal, schema.TypeTimestamp, schema.TypeBytes, schema.TypeFloat, schema.TypeInt}
	for i, c := range cols {
		if c.Type != want[i] {
			t.Errorf("column %s: %s (%s), want %s", c.Name, c.Type, c.DBType, want[i])
		}
	}
	_, rows := collect(t, src, query)
	wantRows := [][]any{
		{int64(1), "a@x.io", "10.50", time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), []byte("hi"), 1.5, int64(7)},
		{int64(2), nil, nil, nil, nil, nil, nil},
	}
	if !reflect.DeepEqual(rows, wantRows) {
		t.Errorf("rows:\n got %#v\nwant %#v", rows, wantRows)
	}
}

func TestLiveErrorsHideDSN(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tc := range []struct {
		open func(context.Context, string) (Source, error)
		dsn  string
	}{
		{OpenPostgres, "postgres://bob:s3cretpw@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"},
		{OpenMySQL, "bob:s3cretpw@tcp(127.0.0.1:1)/test?timeout=2s"},
		{OpenMySQL, "bob:s3cretpw@nonsense"},
		{OpenPostgres, "postgres://bob:s3cretpw@[::1"},
	} {
		_, err := tc.open(ctx, tc.dsn)
		if err == nil {
			t.Errorf("opening %q succeeded", "<dsn>")
			continue
		}
		if strings.Contains(err.Error(), "s3cretpw") || strings.Contains(err.Error(), tc.dsn) {
			t.Errorf("error leaks the DSN: %v", err)
		}
	}
}
