package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/backflowhq/backflow/project"
	"github.com/backflowhq/backflow/reconcile"
)

// lockServer is one database of the locked-rows example.
type lockServer struct {
	name     string
	protocol string
	upstream string // host:port
	// dest is the destination block's type and dsn lines, through addr.
	dest   func(addr string) string
	exec   func(ctx context.Context, q string) error
	lock   func(ctx context.Context, table string, keys ...int) (release func(), err error)
	close  func()
	create string
}

func lockServers(ctx context.Context, e *env) ([]*lockServer, error) {
	pgURL, err := url.Parse(e.postgresDSN)
	if err != nil || pgURL.Host == "" {
		return nil, fmt.Errorf("--postgres-dsn: give a postgres:// URL for the locks scenario")
	}
	conn, err := pgx.Connect(ctx, e.postgresDSN)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	pg := &lockServer{
		name: "postgres", protocol: "postgres", upstream: pgURL.Host,
		dest: func(addr string) string {
			u := *pgURL
			u.Host = addr
			return "type = \"postgres\"\n  dsn  = " + hclString(u.String())
		},
		create: "external_id bigint PRIMARY KEY, email text",
		exec:   func(ctx context.Context, q string) error { _, err := conn.Exec(ctx, q); return err },
		lock: func(ctx context.Context, table string, keys ...int) (func(), error) {
			c, err := pgx.Connect(ctx, e.postgresDSN)
			if err != nil {
				return nil, err
			}
			tx, err := c.Begin(ctx)
			if err == nil {
				err = lockedRows(func() (int, error) {
					var n int
					err := tx.QueryRow(ctx, "SELECT count(*) FROM (SELECT external_id FROM "+table+" WHERE external_id = ANY($1) FOR UPDATE) AS l", keys).Scan(&n)
					return n, err
				}, len(keys))
			}
			if err != nil {
				c.Close(context.Background())
				return nil, err
			}
			var once sync.Once
			return func() {
				once.Do(func() { tx.Rollback(context.Background()); c.Close(context.Background()) })
			}, nil
		},
		close: func() { conn.Close(context.Background()) },
	}
	mc, err := mysql.ParseDSN(e.mysqlDSN)
	if err != nil {
		pg.close()
		return nil, fmt.Errorf("--mysql-dsn: %w", err)
	}
	db, err := sql.Open("mysql", e.mysqlDSN)
	if err == nil {
		err = db.PingContext(ctx)
	}
	if err != nil {
		pg.close()
		return nil, fmt.Errorf("connecting to MySQL: %w", err)
	}
	my := &lockServer{
		name: "mariadb", protocol: "mysql", upstream: mc.Addr,
		dest: func(addr string) string {
			c := mc.Clone()
			c.Addr = addr
			return "type = \"mysql\"\n  dsn  = " + hclString(c.FormatDSN())
		},
		create: "external_id BIGINT PRIMARY KEY, email TEXT",
		exec:   func(ctx context.Context, q string) error { _, err := db.ExecContext(ctx, q); return err },
		lock: func(ctx context.Context, table string, keys ...int) (func(), error) {
			c, err := db.Conn(ctx)
			if err != nil {
				return nil, err
			}
			tx, err := c.BeginTx(ctx, nil)
			if err == nil {
				in := make([]string, len(keys))
				for i, k := range keys {
					in[i] = strconv.Itoa(k)
				}
				err = lockedRows(func() (int, error) {
					var n int
					err := tx.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT external_id FROM "+table+" WHERE external_id IN ("+strings.Join(in, ",")+") FOR UPDATE) AS l").Scan(&n)
					return n, err
				}, len(keys))
			}
			if err != nil {
				c.Close()
				return nil, err
			}
			var once sync.Once
			return func() { once.Do(func() { tx.Rollback(); c.Close() }) }, nil
		},
		close: func() { db.Close() },
	}
	return []*lockServer{pg, my}, nil
}

func lockedRows(count func() (int, error), want int) error {
	n, err := count()
	if err == nil && n != want {
		err = fmt.Errorf("locked %d rows, want %d", n, want)
	}
	return err
}

// runLocks is the documented locked-rows example on each server: rows
// records changed, another connection locks 5 target rows when the run
// starts, releases 2 once the first request has answered and holds 3.
// Measured: the apply's statements (counted on the wire) and wall time, as
// built (batch_size 100, the lock step) and with one-row batches.
// lockReleased are the locked rows released once the first request has
// answered; lockHeld stay locked for the whole run.
var lockReleased, lockHeld = []int{1, 2}, []int{3, 4, 5}

func runLocks(ctx context.Context, e *env) (*result, error) {
	rows := e.pick(1_000, 10_000)
	servers, err := lockServers(ctx, e)
	if err != nil {
		return nil, err
	}
	r := newResult("locks").set("rows", rows).set("locked", len(lockReleased)+len(lockHeld)).set("released_during_run", len(lockReleased))
	for _, srv := range servers {
		defer srv.close()
		sr := &result{vals: map[string]any{}}
		var built, single lockFigures
		for _, batch := range []int{100, 1} {
			f, err := lockRun(ctx, e, srv, rows, batch)
			if err != nil {
				return nil, fmt.Errorf("%s, batch_size %d: %w", srv.name, batch, err)
			}
			if batch == 1 {
				single = f
			} else {
				built = f
			}
		}
		sr.set("built_statements", built.statements).set("built_requests", built.requests).set("built_s", secs(built.wall)).
			set("one_row_statements", single.statements).set("one_row_requests", single.requests).set("one_row_s", secs(single.wall)).
			set("built_vs_one_row_statements", ratio(float64(built.statements), float64(single.statements))).
			set("built_vs_one_row_wall", ratio(built.wall.Seconds(), single.wall.Seconds()))
		r.set(srv.name, sr)
	}
	return r.set("note", "statements exclude BEGIN/COMMIT/ROLLBACK and include the apply's table inspection; lower ratios are better"), nil
}

type lockFigures struct {
	statements int64
	requests   int
	wall       time.Duration
}

func lockRun(ctx context.Context, e *env, srv *lockServer, rows, batch int) (lockFigures, error) {
	var f lockFigures
	proxy, err := newStatementProxy(srv.upstream, srv.protocol)
	if err != nil {
		return f, err
	}
	defer proxy.close()
	table := benchName("bench_locks")
	if err := srv.exec(ctx, "CREATE TABLE "+table+" ("+srv.create+")"); err != nil {
		return f, err
	}
	defer srv.exec(context.Background(), "DROP TABLE IF EXISTS "+table)
	dir := filepath.Join(e.tmp, "locks-"+srv.name)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return f, err
	}
	defer os.RemoveAll(dir)
	users := func(domain string) error {
		var b strings.Builder
		b.WriteString("id,email\n")
		for i := 1; i <= rows; i++ {
			fmt.Fprintf(&b, "%d,u%d@%s\n", i, i, domain)
		}
		return os.WriteFile(filepath.Join(dir, "data", "users.csv"), []byte(b.String()), 0o644)
	}
	cfg := `source "w" {
  type     = "embedded"
  fixtures = "data"
}
model "users" {
  source      = source.w
  query       = "SELECT id, email FROM users"
  primary_key = "id"
}
destination "crm" {
  ` + srv.dest(proxy.addr()) + `
  batch_size = ` + strconv.Itoa(batch) + `
  retry {
    max_attempts    = 4
    initial_backoff = "20ms"
    max_backoff     = "100ms"
  }
}
sync "users" {
  model       = model.users
  destination = destination.crm
  object      = ` + hclString(table) + `
  key         = "external_id"
  mapping     = { email = "email" }
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg), 0o644); err != nil {
		return f, err
	}
	apply := func(release func()) (*reconcile.SyncResult, time.Duration, int64, error) {
		w, err := project.OpenWorkspace(ctx, dir, project.Options{Lock: "apply"})
		if err != nil {
			return nil, 0, 0, err
		}
		defer w.Close()
		plan, err := w.Plan(ctx, project.PlanOptions{})
		if err != nil {
			return nil, 0, 0, err
		}
		before := proxy.stmts.Load()
		start := time.Now()
		res, err := w.Apply(ctx, plan, project.ApplyOptions{Progress: func(string, int, int) { release() }})
		wall := time.Since(start)
		if err != nil {
			return nil, 0, 0, err
		}
		return res[0], wall, proxy.stmts.Load() - before, nil
	}
	if err := users("old.example.com"); err != nil {
		return f, err
	}
	e.logf("locks: %s, batch_size %d: first sync of %d rows", srv.name, batch, rows)
	if res, _, _, err := apply(func() {}); err != nil || res.Counts.Accepted != rows {
		if err == nil {
			err = fmt.Errorf("first sync: %+v", res.Counts)
		}
		return f, err
	}
	if err := users("new.example.com"); err != nil {
		return f, err
	}
	releaseEarly, err := srv.lock(ctx, table, lockReleased...)
	if err != nil {
		return f, err
	}
	defer releaseEarly()
	releaseHeld, err := srv.lock(ctx, table, lockHeld...)
	if err != nil {
		return f, err
	}
	defer releaseHeld()
	e.logf("locks: %s, batch_size %d: %d changes, %d rows locked", srv.name, batch, rows, len(lockReleased)+len(lockHeld))
	res, wall, stmts, err := apply(releaseEarly)
	if err != nil {
		return f, err
	}
	if held := len(lockHeld); res.Counts.Accepted != rows-held || res.Counts.Rejected != held {
		return f, fmt.Errorf("%d accepted, %d rejected; want %d and the %d rows still locked", res.Counts.Accepted, res.Counts.Rejected, rows-held, held)
	}
	e.logf("locks: %s, batch_size %d: %s, %d requests, %d statements", srv.name, batch, wall.Round(time.Millisecond), res.Requests, stmts)
	return lockFigures{statements: stmts, requests: res.Requests, wall: wall}, nil
}
