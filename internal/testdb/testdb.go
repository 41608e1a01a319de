// Package testdb gives tests the local PostgreSQL and MariaDB servers:
// a connection for the test's own setup and checks, a DSN for backflow, and
// fresh, uniquely named tables or schemas dropped at cleanup. A server that
// cannot be reached skips the test when CI is unset and fails it under CI,
// where the servers are part of the contract.
package testdb

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // database/sql driver "mysql"
	"github.com/jackc/pgx/v5"
)

// DSNs of the local servers (trust auth, database test).
const (
	PostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	MariaDBDSN  = "root@tcp(127.0.0.1:3306)/test"
)

// Unreachable skips t outside CI and fails it under CI.
func Unreachable(t testing.TB, what string, err error) {
	t.Helper()
	if os.Getenv("CI") == "" {
		t.Skipf("%s unreachable (set CI to make this fail): %v", what, err)
	}
	t.Fatalf("%s unreachable in CI: %v", what, err)
}

var seq atomic.Int64

// Name returns an identifier unique to this process and call, starting
// with prefix, for tables and schemas that concurrent test runs must not
// share.
func Name(prefix string) string {
	return fmt.Sprintf("%s_%d_%d_%d", prefix, os.Getpid(), time.Now().UnixNano()%1e9, seq.Add(1))
}

// Postgres connects to the local PostgreSQL server, closed at cleanup.
func Postgres(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, PostgresDSN)
	if err != nil {
		Unreachable(t, "PostgreSQL", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// PostgresExec runs statements on conn, failing the test on error.
func PostgresExec(t testing.TB, conn *pgx.Conn, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		if _, err := conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// PostgresTable creates a table from a column list, dropped at cleanup,
// and returns its name.
func PostgresTable(t testing.TB, conn *pgx.Conn, columns string) string {
	t.Helper()
	name := Name("bf")
	PostgresExec(t, conn, "CREATE TABLE "+name+" ("+columns+")")
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+name) })
	return name
}

// MariaDB connects to the local MariaDB server, closed at cleanup.
func MariaDB(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", MariaDBDSN+"?parseTime=true&multiStatements=true")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		Unreachable(t, "MariaDB", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// MariaDBExec runs statements on db, failing the test on error.
func MariaDBExec(t testing.TB, db *sql.DB, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// MariaDBTable creates a table from a column list, dropped at cleanup, and
// returns its name.
func MariaDBTable(t testing.TB, db *sql.DB, columns string) string {
	t.Helper()
	name := Name("bf")
	MariaDBExec(t, db, "CREATE TABLE "+name+" ("+columns+")")
	t.Cleanup(func() { db.Exec("DROP TABLE IF EXISTS " + name) })
	return name
}

// BlackHole listens on loopback and accepts connections it never answers,
// like a server whose process hangs or a firewall that swallows packets;
// it returns the address. Everything is closed at the test's cleanup.
func BlackHole(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}
