package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestQuerySharedReadsOneSnapshot: every query of QueryShared reads the
// snapshot the leader exported, on a connection of its own, with the
// transaction's settings; a write committed after the export is seen by
// none, though they begin after it.
func TestQuerySharedReadsOneSnapshot(t *testing.T) {
	db := postgresDB(t)
	ctx := guard(t)
	tbl := idTable(t, db, "bf_shared")
	db.admin(t, "INSERT INTO "+tbl+" SELECT generate_series(1, 100)")
	defer func(f func()) { afterExport = f }(afterExport)
	afterExport = func() { db.admin(t, "INSERT INTO "+tbl+" SELECT generate_series(101, 200)") }

	src := db.source(t, LiveOptions{})
	var queries []string
	for i := range 3 {
		queries = append(queries, fmt.Sprintf("SELECT %d AS part, (SELECT count(*) FROM %s) AS n, pg_backend_pid() AS pid, current_setting('work_mem') AS wm, current_setting('transaction_read_only') AS ro, current_setting('TimeZone') AS tz FROM generate_series(1, 50)", i, tbl))
	}
	rows, err := QueryShared(ctx, src, queries, Tuning{Settings: []Setting{{Name: "work_mem", Value: "17MB"}}})
	if err != nil {
		t.Fatal(err)
	}
	perPart := map[int64]int{}
	pids := map[int64]bool{}
	for rows.Next() {
		r := rows.Row()
		part, n, pid := r[0].(int64), r[1].(int64), r[2].(int64)
		if n != 100 {
			t.Fatalf("part %d counted %d rows, want the 100 of the exported snapshot", part, n)
		}
		if r[3] != "17MB" || r[4] != "on" || r[5] != "UTC" {
			t.Fatalf("part %d ran with work_mem %v, read only %v, TimeZone %v; want 17MB, on, UTC", part, r[3], r[4], r[5])
		}
		perPart[part]++
		pids[pid] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if len(perPart) != 3 || perPart[0] != 50 || perPart[1] != 50 || perPart[2] != 50 {
		t.Fatalf("rows per part %v, want 50 of each of 3", perPart)
	}
	if len(pids) != 3 {
		t.Fatalf("the parts ran on %d connections, want 3", len(pids))
	}
	// The source's own connection is free again, and sees the write.
	_, got, err := collectLive(ctx, src, "SELECT count(*) FROM "+tbl)
	if err != nil {
		t.Fatal(err)
	}
	if got[0][0] != int64(200) {
		t.Fatalf("after the shared queries the source counts %v rows, want 200", got[0][0])
	}
	// The parts' connections are closed (the source's own led them).
	var list []string
	for pid := range pids {
		list = append(list, fmt.Sprint(pid))
	}
	waitFor(t, ctx, func() bool {
		return db.query(t, "SELECT count(*) FROM pg_stat_activity WHERE pid IN ("+strings.Join(list, ", ")+")") == "0"
	}, "the parts' connections to close")
}

// TestQuerySharedFirstErrorStopsTheOthers: a query failing before its
// first row fails the whole, and the others are cancelled rather than left
// to run.
func TestQuerySharedFirstErrorStopsTheOthers(t *testing.T) {
	db := postgresDB(t)
	ctx := guard(t)
	src := db.source(t, LiveOptions{})
	start := time.Now()
	_, err := QueryShared(ctx, src, []string{"SELECT pg_sleep(40)", "SELECT 1 / (random() * 0)::int"}, Tuning{})
	if err == nil || !strings.Contains(err.Error(), "division by zero") {
		t.Fatalf("QueryShared returned %v, want the division by zero", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("QueryShared returned after %v: the sleeping query was not cancelled", d)
	}
	waitFor(t, ctx, func() bool {
		return db.query(t, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(40)' AND state = 'active'") == "0"
	}, "the sleeping query to end")
	if _, _, err := collectLive(ctx, src, "SELECT 1"); err != nil {
		t.Fatalf("the source after a failed QueryShared: %v", err)
	}
}

// TestQuerySharedConnectionLimit: a role allowed one connection (the
// source's, which leads) cannot open the parts': ErrNotShared, nothing
// ran, and the source is usable.
func TestQuerySharedConnectionLimit(t *testing.T) {
	db := postgresDB(t)
	ctx := guard(t)
	role := uniqueTable("bf_one")
	db.admin(t, "CREATE ROLE "+role+" LOGIN CONNECTION LIMIT 1")
	t.Cleanup(func() { db.admin(t, "DROP ROLE IF EXISTS "+role) })
	src, err := OpenPostgres(ctx, strings.Replace(postgresDSN, "postgres@", role+"@", 1), LiveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	_, err = QueryShared(ctx, src, []string{"SELECT 1", "SELECT 2"}, Tuning{})
	if !errors.Is(err, ErrNotShared) {
		t.Fatalf("QueryShared as a role of one connection returned %v, want ErrNotShared", err)
	}
	if strings.Contains(err.Error(), role) {
		t.Fatalf("the error names the role: %v", err)
	}
	if _, _, err := collectLive(ctx, src, "SELECT 1"); err != nil {
		t.Fatalf("the source after ErrNotShared: %v", err)
	}
}

// TestQuerySharedLostConnection: a connection ended while the rows are
// read (the server terminated its session) fails the whole result, rows of
// the others read or not: a result missing a part's rows must not pass for
// a whole one.
func TestQuerySharedLostConnection(t *testing.T) {
	db := postgresDB(t)
	ctx := guard(t)
	src := db.source(t, LiveOptions{})
	marker := uniqueTable("bf_lost")
	rows, err := QueryShared(ctx, src, []string{
		"SELECT g FROM generate_series(1, 100) g",
		// Rows enough to be sent before the sleep (a server sends its
		// rows as its buffer fills, or at the end).
		"SELECT g /* " + marker + " */ FROM generate_series(1, 100000) g UNION ALL SELECT 0 FROM pg_sleep(40)",
	}, Tuning{})
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if got := db.query(t, "SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity WHERE query LIKE '%"+marker+"%' AND pid <> pg_backend_pid()"); got != "1" {
		t.Fatalf("terminated %s sessions, want 1", got)
	}
	n := 0
	for rows.Next() {
		n++
	}
	err = rows.Err()
	if err == nil {
		t.Fatalf("read %d rows and no error after a part's connection was terminated", n)
	}
	t.Logf("after %d rows: %v", n, err)
	if n > 100100 {
		t.Fatalf("read %d rows: more than the parts returned", n)
	}
	if err := rows.Close(); err == nil {
		t.Fatal("Close after a lost part returned no error")
	}
}

// TestQuerySharedCloseStopsTheOthers: closing a result not read to its end
// cancels the parts still running, promptly.
func TestQuerySharedCloseStopsTheOthers(t *testing.T) {
	db := postgresDB(t)
	ctx := guard(t)
	src := db.source(t, LiveOptions{})
	start0 := time.Now()
	rows, err := QueryShared(ctx, src, []string{
		"SELECT g FROM generate_series(1, 100000) g UNION ALL SELECT 0 FROM pg_sleep(40)",
		"SELECT g FROM generate_series(1, 100000) g UNION ALL SELECT 0 FROM pg_sleep(40)",
	}, Tuning{})
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatalf("no first row: %v", rows.Err())
	}
	start := time.Now()
	if d := time.Since(start0); d > 30*time.Second {
		t.Fatalf("the first row came after %v, past the sleep", d)
	}
	if err := rows.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("Close took %v: the parts were not cancelled", d)
	}
	t.Logf("Close took %v", time.Since(start))
	waitFor(t, ctx, func() bool {
		return db.query(t, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%UNION ALL SELECT 0 FROM pg_sleep(40)%' AND state = 'active' AND pid <> pg_backend_pid()") == "0"
	}, "the sleeping parts to end")
	if _, _, err := collectLive(ctx, src, "SELECT 1"); err != nil {
		t.Fatalf("the source after Close: %v", err)
	}
}

// holdLock runs stmt in a transaction on a connection of its own, from a
// goroutine, and returns once the server has it waiting for a lock (or has
// run it); the returned function commits it and waits for it to end.
func holdLock(t *testing.T, ctx context.Context, stmt string) (finish func() error) {
	t.Helper()
	conn, err := pgx.Connect(ctx, postgresDSN)
	if err != nil {
		t.Fatal(err)
	}
	var pid int64
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "BEGIN; "+stmt+"; COMMIT")
		done <- err
	}()
	probe, err := pgx.Connect(ctx, postgresDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close(context.Background())
	waitFor(t, ctx, func() bool {
		var state string
		if err := probe.QueryRow(ctx, "SELECT COALESCE(wait_event_type, '') || '/' || state FROM pg_stat_activity WHERE pid = $1", pid).Scan(&state); err != nil {
			t.Fatal(err)
		}
		return state == "Lock/active" || strings.HasSuffix(state, "/idle")
	}, "the other session to wait for its lock or finish")
	return func() error {
		defer conn.Close(context.Background())
		return <-done
	}
}

// TestQuerySharedTableRefreshedMeanwhile: a table the queries read,
// truncated and filled again by another session (neither is MVCC-safe: a
// snapshot taken before it reads the table empty) as the snapshot is
// exported, is not read empty: the leader holds the queries' locks before
// it exports, so the refresh waits; the queries, waiting behind it in
// turn, give up the sharing (ErrNotShared) instead of waiting for each
// other through the client; the refresh then goes through.
func TestQuerySharedTableRefreshedMeanwhile(t *testing.T) {
	db := postgresDB(t)
	ctx := guard(t)
	tbl := idTable(t, db, "bf_refresh")
	db.admin(t, "INSERT INTO "+tbl+" SELECT generate_series(1, 100)")
	var finish func() error
	defer func(f func()) { afterExport = f }(afterExport)
	afterExport = func() {
		finish = holdLock(t, ctx, "TRUNCATE "+tbl+"; INSERT INTO "+tbl+" SELECT generate_series(1, 100)")
	}
	src := db.source(t, LiveOptions{})
	start := time.Now()
	rows, err := QueryShared(ctx, src, []string{"SELECT count(*) FROM " + tbl, "SELECT count(*) FROM " + tbl}, Tuning{})
	if err == nil {
		for rows.Next() {
			if n := rows.Row()[0].(int64); n != 100 {
				t.Errorf("a part counted %d rows; the table held 100 before and after the refresh", n)
			}
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
	} else if !errors.Is(err, ErrNotShared) {
		t.Fatalf("QueryShared with a refresh waiting: %v, want rows or ErrNotShared", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("QueryShared took %v with a refresh waiting", d)
	}
	if err := finish(); err != nil {
		t.Fatalf("the refresh: %v", err)
	}
	if got := db.query(t, "SELECT count(*)::text FROM "+tbl); got != "100" {
		t.Fatalf("after the refresh the table holds %s rows", got)
	}
}

// TestQuerySharedExclusiveLockQueued: an exclusive lock requested on a
// guarded table once the leader locked it makes the parts' locks wait
// behind it, which waits for the leader: they give up after partLockWait
// (ErrNotShared) rather than after the guard's wait, or never.
func TestQuerySharedExclusiveLockQueued(t *testing.T) {
	db := postgresDB(t)
	ctx := guard(t)
	tbl := idTable(t, db, "bf_queued")
	var finish func() error
	defer func(f func()) { afterExport = f }(afterExport)
	afterExport = func() { finish = holdLock(t, ctx, "LOCK TABLE "+tbl+" IN ACCESS EXCLUSIVE MODE") }
	src := db.source(t, LiveOptions{})
	start := time.Now()
	_, err := QueryShared(ctx, src, []string{"SELECT count(*) FROM " + tbl, "SELECT count(*) FROM " + tbl},
		Tuning{Guard: []Table{{Schema: "public", Name: tbl}}, GuardWait: 40 * time.Second})
	if !errors.Is(err, ErrNotShared) {
		t.Fatalf("QueryShared with an exclusive lock queued: %v, want ErrNotShared", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("QueryShared gave up after %v, want about partLockWait", d)
	}
	if err := finish(); err != nil {
		t.Fatalf("the exclusive lock: %v", err)
	}
	if _, _, err := collectLive(ctx, src, "SELECT count(*) FROM "+tbl); err != nil {
		t.Fatalf("the source afterwards: %v", err)
	}
}

// idTable creates a table of one integer column, id, dropped with the test.
func idTable(t *testing.T, db liveDB, prefix string) string {
	t.Helper()
	tbl := uniqueTable(prefix)
	db.admin(t, "CREATE TABLE "+tbl+" (id integer)")
	t.Cleanup(func() { db.admin(t, "DROP TABLE IF EXISTS "+tbl) })
	return tbl
}
