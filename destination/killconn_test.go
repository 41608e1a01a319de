package destination_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/internal/testdb"
)

// killRecords are n upserts of keys from, with value v.
func killRecords(from, n int, v string) []destination.Record {
	recs := make([]destination.Record, 0, n)
	for i := from; i < from+n; i++ {
		recs = append(recs, destination.Record{Key: fmt.Sprint(i), KeyValue: int64(i), Op: destination.OpUpsert, Fields: map[string]any{"v": v}})
	}
	return recs
}

// allWritten reports whether an outcome accepted every record.
func allWritten(o destination.Outcome, n int) bool {
	if o.Err != nil || len(o.Results) != n {
		return false
	}
	for _, r := range o.Results {
		if r.Err != nil {
			return false
		}
	}
	return true
}

// A PostgreSQL session killed by an admin (pg_terminate_backend) while
// idle in the pool, or while its batch's bulk statement or its adds' COPY
// runs, answers that batch retryable with none of its rows written, or
// (the kill came too late) accepted with all of them; the next Write opens
// a new session and writes every record, the adds sent again included
// (upserted if the COPY had landed). The adds' COPY is the batch's only
// statement, committed by the server as it ends: a kill during that commit
// may also answer retryable with every row written (an outcome unknown,
// as a connection lost during a COMMIT leaves it), never with some.
func TestPostgresKilledSessionLosesNothing(t *testing.T) {
	ctx := context.Background()
	admin := pgAdmin(t)
	table := testdb.PostgresTable(t, admin, "id bigint PRIMARY KEY, v text")
	app := testdb.Name("victim")
	d := openPrepared(t, table, []string{"v"}, func(ctx context.Context) (destination.Destination, error) {
		return destination.OpenPostgres(ctx, config(t, "postgres", "warehouse", "", map[string]any{"dsn": postgresDSN() + "&application_name=" + app}))
	})
	write := func(from, n int, v string) destination.Outcome {
		return d.Write(ctx, &destination.Batch{Object: table, KeyField: "id", Fields: []string{"v"}, Records: killRecords(from, n, v)})
	}
	// Adds, as an apply sends them (and sends them again after a kill,
	// whether or not the server had committed them).
	add := func(from, n int, v string) destination.Outcome {
		recs := killRecords(from, n, v)
		for i := range recs {
			recs[i].New = true
		}
		return d.Write(ctx, &destination.Batch{Object: table, KeyField: "id", Fields: []string{"v"}, Records: recs})
	}
	kill := func() {
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, app); err != nil {
			t.Fatal(err)
		}
	}
	count := func(from, n int) int {
		var c int
		if err := admin.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s WHERE id >= %d AND id < %d`, table, from, from+n)).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if o := write(0, 600, "a"); !allWritten(o, 600) {
		t.Fatalf("first batch: %+v", o.Err)
	}
	kill() // idle in the pool
	if o := write(600, 600, "a"); o.Err == nil || !o.Retryable || count(600, 600) != 0 {
		t.Fatalf("batch on a killed idle session: err %v, retryable %v, %d rows", o.Err, o.Retryable, count(600, 600))
	}
	if o := write(600, 600, "a"); !allWritten(o, 600) || count(600, 600) != 600 {
		t.Fatalf("batch after the kill: %v, %d rows", o.Err, count(600, 600))
	}
	const n = 50_000
	for i, phase := range []string{"INSERT %", "COPY %"} {
		from := 10_000 + i*n
		send := write
		if phase == "COPY %" {
			send = add
		}
		done := make(chan destination.Outcome, 1)
		go func() { done <- send(from, n, fmt.Sprintf("%0300d", i)) }()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			var active bool
			if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND query LIKE '%' || $2)`, app, phase).Scan(&active); err != nil {
				t.Fatal(err)
			}
			if active {
				kill()
				break
			}
			select {
			case o := <-done:
				done <- o
				deadline = time.Time{} // ended before the phase was seen
			default:
			}
		}
		o := <-done
		switch got := count(from, n); {
		case allWritten(o, n) && got == n:
			t.Logf("%s: landed before the kill", phase)
		case o.Err != nil && o.Retryable && got == 0:
			t.Logf("%s: killed, nothing written", phase)
		case o.Err != nil && o.Retryable && got == n && phase == "COPY %":
			t.Logf("%s: killed as the server committed it", phase)
		default:
			t.Fatalf("killed during %s: err %v, retryable %v, %d results, %d of %d rows written", phase, o.Err, o.Retryable, len(o.Results), got, n)
		}
		if o := send(from, n, "again"); !allWritten(o, n) || count(from, n) != n {
			t.Fatalf("after the kill during %s: %v, %d rows", phase, o.Err, count(from, n))
		}
		var again int
		if err := admin.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s WHERE id >= %d AND id < %d AND v = 'again'`, table, from, from+n)).Scan(&again); err != nil || again != n {
			t.Fatalf("after the kill during %s: %d rows with the values sent again, want %d (%v)", phase, again, n, err)
		}
	}
}

// MariaDB connections killed (KILL CONNECTION) after the statements of a
// batch shape were prepared: the next batches write, prepared again on a
// new connection, as do those after ALTER TABLE changes the table under
// the prepared statements (a column dropped, added, its type changed).
func TestMySQLKilledConnectionKeepsPreparedWrites(t *testing.T) {
	ctx := context.Background()
	admin := testdb.MariaDB(t)
	table := testdb.MariaDBTable(t, admin, "id bigint PRIMARY KEY, v varchar(50), w int")
	d := openPrepared(t, table, []string{"v"}, openMySQL(t))
	write := func(from int, v string) destination.Outcome {
		return d.Write(ctx, &destination.Batch{Object: table, KeyField: "id", Fields: []string{"v"}, Records: killRecords(from, 10, v)})
	}
	from := 0
	for range 3 {
		if o := write(from, "5"); !allWritten(o, 10) {
			t.Fatalf("warm-up: %v", o.Err)
		}
		from += 10
	}
	hits := destination.PreparedHits(d)
	if hits <= 0 {
		t.Fatalf("no statement ran prepared (%d)", hits)
	}
	// The destination's own connection (its writes run one at a time, so
	// its pool holds one): other tests' connections to the same database,
	// running at the same time, are not touched.
	id, err := destination.SessionSetting(d, `SELECT CONNECTION_ID()`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("KILL CONNECTION " + id); err != nil {
		t.Fatal(err)
	}
	for _, alter := range []string{"", "DROP COLUMN w", "MODIFY v int", "ADD COLUMN z int FIRST"} {
		if alter != "" {
			testdb.MariaDBExec(t, admin, "ALTER TABLE "+table+" "+alter)
		}
		o := write(from, "7")
		if !allWritten(o, 10) && !(o.Err != nil && o.Retryable) {
			t.Fatalf("after %q: %v (retryable %v)", alter, o.Err, o.Retryable)
		}
		if o := write(from, "7"); !allWritten(o, 10) {
			t.Fatalf("after %q, again: %v", alter, o.Err)
		}
		from += 10
	}
	var n int
	if err := admin.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil || n != from {
		t.Fatalf("%d rows (%v), want %d", n, err, from)
	}
	if after := destination.PreparedHits(d); after <= hits {
		t.Fatalf("no statement ran prepared after the kill (%d, %d before)", after, hits)
	}
}
