package state

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/internal/testdb"
)

// Behaviour of the database backends only.

func forEachSQL(t *testing.T, fn func(t *testing.T, pg bool)) {
	for _, pg := range []bool{true, false} {
		name := "mysql"
		if pg {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) { fn(t, pg) })
	}
}

// exec runs a statement on the test's own connection to the server.
func sqlExec(t *testing.T, b *sqlBackend, stmt string, args ...any) {
	t.Helper()
	if _, err := b.db.ExecContext(context.Background(), b.q(stmt), args...); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

func tablesExist(t *testing.T, b *sqlBackend) bool {
	t.Helper()
	v, err := b.schemaVersion(context.Background(), b.db)
	must(t, err)
	return v > 0
}

func TestSQLSchemaCreatedOnFirstWriteAndVersioned(t *testing.T) {
	forEachSQL(t, func(t *testing.T, pg bool) {
		b, _ := newSQLState(t, pg, nil)
		// Reading creates nothing: a plan against a new backend writes no state.
		_, _ = b.Meta()
		_, _ = b.Syncs()
		_, _ = b.LoadFailures("s")
		_, _ = b.Runs("")
		_, _ = b.LockStatus()
		sn, err := b.LoadSnapshot("s")
		must(t, err)
		sn.Close()
		if tablesExist(t, b) {
			t.Fatal("reading the state created its tables")
		}
		tx := beginTx(t, b, "s", false)
		tx.Accept("k", 1, nil)
		must(t, tx.Commit())
		if v, err := b.schemaVersion(context.Background(), b.db); err != nil || v != 1 {
			t.Fatalf("schema version after the first write = %d, %v", v, err)
		}

		// A later format: migrations run in order, each recorded.
		later := append(append([]migration{}, builtinMigrations...), migration{version: 2,
			postgres: []string{`CREATE TABLE {extra} (n integer)`, `INSERT INTO {extra} VALUES (2)`},
			mysql:    []string{`CREATE TABLE IF NOT EXISTS {extra} (n INT)`, `INSERT INTO {extra} VALUES (2)`}},
			migration{version: 3, postgres: []string{`UPDATE {extra} SET n = n * 10`}, mysql: []string{`UPDATE {extra} SET n = n * 10`}})
		nb, err := openSQL(context.Background(), sqlConfig(t, pg, dsnOf(pg), b.schema), pg, later)
		must(t, err)
		defer nb.Close()
		var n, v int
		must(t, nb.db.QueryRow(nb.q(`SELECT n FROM {extra}`)).Scan(&n))
		must(t, nb.db.QueryRow(nb.q(`SELECT MAX(version) FROM {schema_version}`)).Scan(&v))
		if n != 20 || v != 3 {
			t.Errorf("after migrating: extra.n = %d, version %d; want 20 and 3", n, v)
		}
		if h, _ := snapshotOf(t, nb, "s"); h["k"] != 1 {
			t.Errorf("state after migrating = %v", h)
		}
		// This build refuses the newer schema, naming both versions.
		_, err = openSQL(context.Background(), sqlConfig(t, pg, dsnOf(pg), b.schema), pg, nil)
		var ve *SchemaVersionError
		if !errors.As(err, &ve) || ve.Version != 3 || ve.Supported != 1 || !strings.Contains(err.Error(), "version 3") || !strings.Contains(err.Error(), "up to 1") {
			t.Errorf("opening a newer schema = %v", err)
		}
		// An open backend that sees the upgrade later refuses it too.
		b.ready.Store(false)
		if _, err := b.Meta(); !errors.As(err, &ve) {
			t.Errorf("Meta of a schema upgraded meanwhile = %v", err)
		}
	})
}

func dsnOf(pg bool) string {
	if pg {
		return testdb.PostgresDSN
	}
	return testdb.MariaDBDSN
}

func TestSQLStateHasNoPublicGrants(t *testing.T) {
	b, _ := newSQLState(t, true, nil)
	tx := beginTx(t, b, "s", false)
	must(t, tx.Commit())
	var schemaUsage bool
	must(t, b.db.QueryRow(`SELECT has_schema_privilege('public', $1, 'USAGE')`, b.schema).Scan(&schemaUsage))
	if schemaUsage {
		t.Error("PUBLIC may use the state schema")
	}
	for _, table := range []string{"schema_version", "meta", "syncs", "snapshot", "failures", "inflight", "runs", "row_logs", "locks"} {
		var any bool
		must(t, b.db.QueryRow(`SELECT has_table_privilege('public', $1, 'SELECT') OR has_table_privilege('public', $1, 'INSERT')`, b.table(table)).Scan(&any))
		if any {
			t.Errorf("PUBLIC may read or write %s", table)
		}
	}
}

// killSession ends a database session from the test's side, as the
// server does when its client dies.
func killSession(t *testing.T, b *sqlBackend, session int64) {
	t.Helper()
	if b.pg {
		var ok bool
		must(t, b.db.QueryRow(`SELECT pg_terminate_backend($1)`, session).Scan(&ok))
		// pg_terminate_backend signals; wait until the session is gone.
		for {
			var n int
			must(t, b.db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, session).Scan(&n))
			if n == 0 {
				return
			}
		}
	}
	sqlExec(t, b, "KILL "+strconv.FormatInt(session, 10))
	for {
		var n int
		must(t, b.db.QueryRow(`SELECT count(*) FROM information_schema.processlist WHERE id = ?`, session).Scan(&n))
		if n == 0 {
			return
		}
	}
}

func TestSQLLockOfADeadSessionIsReleasedAndTakenOver(t *testing.T) {
	forEachSQL(t, func(t *testing.T, pg bool) {
		b, open := newSQLState(t, pg, nil)
		o := open()
		held, err := b.Lock(context.Background(), "apply", []string{"a", "b"})
		must(t, err)
		h := held.(*sqlHeld)
		tx := beginTx(t, b, "a", false)
		tx.Accept("k1", 1, nil)
		must(t, tx.Checkpoint())

		lc, ok := tx.(LockChecker)
		if !ok {
			t.Fatalf("%T is no LockChecker", tx)
		}
		must(t, lc.StillHeld(context.Background(), 0))

		killSession(t, o, h.session) // the holder's session dies

		// An apply asking before it sends learns it: at once when the
		// lock was not seen held within the age it gives.
		if err := lc.StillHeld(context.Background(), time.Hour); err != nil {
			t.Errorf("StillHeld within an hour of a check = %v", err)
		}
		if err := lc.StillHeld(context.Background(), 0); err == nil || !strings.Contains(err.Error(), "lock on sync \"a\" was lost") {
			t.Errorf("StillHeld after the lock was lost = %v", err)
		}
		// Its writer stops rather than write without the lock.
		tx.Accept("k2", 2, nil)
		if err := tx.Checkpoint(); err == nil || !strings.Contains(err.Error(), "lock on sync \"a\" was lost") {
			t.Errorf("Checkpoint after the lock was lost = %v", err)
		}
		st, err := o.LockStatus()
		must(t, err)
		if st.Held || !st.Stale || len(st.Syncs) != 2 || !st.Syncs[0].Stale || st.Holder == nil || st.Holder.ID != h.info.ID || !strings.Contains(st.Note, "session ended") {
			t.Fatalf("status of a dead holder's lock = %+v", st)
		}
		// The next runner takes it at once, naming the dead holder.
		h2, err := o.Lock(context.Background(), "apply", []string{"a"})
		must(t, err)
		if took := h2.TookOverFrom(); took == nil || took.ID != h.info.ID {
			t.Errorf("TookOverFrom = %+v, want %s", took, h.info.ID)
		}
		st, err = o.LockStatus()
		must(t, err)
		if !st.Held || st.Holder.ID == h.info.ID || len(st.Syncs) != 2 || !st.Syncs[0].Held || !st.Syncs[1].Stale {
			t.Errorf("status after the take-over = %+v", st)
		}
		// Stale info of b is removed by ID; a live lock is not.
		if err := o.ForceUnlock(st.Holder.ID); err == nil || !strings.Contains(err.Error(), "running process") {
			t.Errorf("ForceUnlock of a live lock = %v", err)
		}
		if err := o.ForceUnlock("nope"); err == nil || !strings.Contains(err.Error(), `no lock with ID "nope"`) {
			t.Errorf("ForceUnlock of an unknown ID = %v", err)
		}
		must(t, o.ForceUnlock(h.info.ID))
		st, err = o.LockStatus()
		must(t, err)
		if len(st.Syncs) != 1 || st.Syncs[0].Sync != "a" {
			t.Errorf("status after ForceUnlock = %+v", st)
		}
		must(t, h2.Unlock())
		must(t, held.Unlock()) // its session is gone already: nothing to do
		// What the dead holder checkpointed is kept.
		if hs, _ := snapshotOf(t, o, "a"); !reflect.DeepEqual(hs, map[string]uint64{"k1": 1}) {
			t.Errorf("snapshot = %v", hs)
		}
	})
}

func TestSQLLockRefusalNamesTheHolderOfEachSync(t *testing.T) {
	forEachSQL(t, func(t *testing.T, pg bool) {
		b, open := newSQLState(t, pg, nil)
		o := open()
		ha, err := b.Lock(context.Background(), "apply", []string{"a"})
		must(t, err)
		defer ha.Unlock()
		_, err = o.Lock(context.Background(), "reset-cdc", []string{"b", "a"})
		var locked *LockedError
		if !errors.As(err, &locked) || locked.Sync != "a" || locked.Holder.ID != ha.(*sqlHeld).info.ID ||
			!strings.Contains(err.Error(), `the state of sync "a" is locked by`) {
			t.Fatalf("refusal = %v", err)
		}
		// The refused Lock released b again.
		hb, err := open().Lock(context.Background(), "apply", []string{"b"})
		must(t, err)
		must(t, hb.Unlock())
	})
}

func TestSQLSnapshotReadsValuesOnDemand(t *testing.T) {
	forEachSQL(t, func(t *testing.T, pg bool) {
		b, open := newSQLState(t, pg, nil)
		const n = 3000
		tx := beginTx(t, b, "s", false)
		for i := range n {
			tx.Accept(fmt.Sprintf("k%05d", i), uint64(i), map[string]any{"i": int64(i), "s": strings.Repeat("x", i%50)})
		}
		must(t, tx.Commit())

		check := func(sn SnapshotReader, i int) {
			t.Helper()
			v, err := sn.Values(i)
			must(t, err)
			if v["i"] != int64(i) || v["s"] != strings.Repeat("x", i%50) {
				t.Fatalf("values %d = %v", i, v)
			}
		}
		// In key order: windows that grow.
		r, err := open().LoadSnapshot("s")
		must(t, err)
		sn := r.(*sqlSnapshot)
		for i := range n {
			check(sn, i)
		}
		if sn.fetches > 12 || sn.spill != nil {
			t.Errorf("reading %d values in order took %d fetches (spilled: %v)", n, sn.fetches, sn.spill != nil)
		}
		sn.Close()
		if _, err := sn.Values(0); err == nil {
			t.Error("Values after Close succeeded")
		}

		// In no order: single reads, then every value at once.
		r, err = open().LoadSnapshot("s")
		must(t, err)
		sn = r.(*sqlSnapshot)
		defer sn.Close()
		rng := rand.New(rand.NewPCG(1, 2))
		for range spillAfter {
			check(sn, rng.IntN(n))
		}
		if sn.spill != nil {
			t.Fatal("spilled before spillAfter reads")
		}
		for range 2 * n {
			check(sn, rng.IntN(n))
		}
		if sn.spill == nil || sn.fetches != spillAfter+1 {
			t.Errorf("after %d random reads: %d fetches, spilled %v", spillAfter+2*n, sn.fetches, sn.spill != nil)
		}

		// Values go with the hashes loaded: once another runner changed a
		// key, reading it fails rather than mix two states; keys it did not
		// change read on.
		r2, err := open().LoadSnapshot("s")
		must(t, err)
		defer r2.Close()
		tx = beginTx(t, b, "s", false)
		tx.Accept("k00005", 999, map[string]any{"i": int64(-1)})
		tx.Accept("new", 1, nil)
		must(t, tx.Commit())
		check(r2, 7)
		if _, err := r2.Values(5); err == nil || !strings.Contains(err.Error(), "changed while it was read") {
			t.Errorf("values of a key changed since the load = %v", err)
		}
		if r2.Len() != n {
			t.Errorf("Len = %d after a later commit", r2.Len())
		}
	})
}

func TestSQLRefusesKeysItCannotIndex(t *testing.T) {
	forEachSQL(t, func(t *testing.T, pg bool) {
		b, _ := newSQLState(t, pg, nil)
		tx := beginTx(t, b, "s", false)
		long := strings.Repeat("k", MaxSQLKeyBytes+1)
		if err := tx.InFlight([]InFlightRecord{{Key: long, Operation: "upsert"}}); err == nil || !strings.Contains(err.Error(), "keys of up to 2048 bytes") {
			t.Errorf("InFlight of a long key = %v", err)
		}
		tx = beginTx(t, b, "s", false)
		tx.Accept(strings.Repeat("k", MaxSQLKeyBytes), 1, nil) // the longest allowed
		tx.Accept("\xff\x00binary", 2, nil)
		must(t, tx.Commit())
		if h, _ := snapshotOf(t, b, "s"); len(h) != 2 || h["\xff\x00binary"] != 2 {
			t.Errorf("snapshot = %d keys", len(h))
		}
	})
}

func TestSQLBadDSNIsNotQuoted(t *testing.T) {
	forEachSQL(t, func(t *testing.T, pg bool) {
		dsn := "postgres://secretuser:hunter2pw@127.0.0.1:1/db?sslmode=disable"
		if !pg {
			dsn = "secretuser:hunter2pw@tcp(127.0.0.1:1)/db"
		}
		_, err := openSQL(context.Background(), sqlConfig(t, pg, dsn, "x"), pg, nil)
		if err == nil || strings.Contains(err.Error(), "hunter2pw") || strings.Contains(err.Error(), "secretuser") || !strings.Contains(err.Error(), "127.0.0.1:1") {
			t.Errorf("connect error = %v", err)
		}
		_, err = openSQL(context.Background(), sqlConfig(t, pg, "::hunter2pw::%%", "x"), pg, nil)
		if err == nil || strings.Contains(err.Error(), "hunter2pw") {
			t.Errorf("parse error = %v", err)
		}
	})
}

// A user who may not create schemas or databases uses one created for it
// beforehand.
func TestSQLUsesASchemaCreatedBeforehand(t *testing.T) {
	forEachSQL(t, func(t *testing.T, pg bool) {
		admin, _ := newSQLState(t, pg, nil) // its schema name, dropped at cleanup
		role := strings.ToLower(testdb.Name("bfrole"))
		var dsn string
		if pg {
			sqlExec(t, admin, `CREATE ROLE `+role+` LOGIN`)
			t.Cleanup(func() {
				admin.db.Exec(`DROP SCHEMA IF EXISTS "` + admin.schema + `" CASCADE`)
				admin.db.Exec(`DROP ROLE IF EXISTS ` + role)
			})
			sqlExec(t, admin, `CREATE SCHEMA "`+admin.schema+`" AUTHORIZATION `+role)
			dsn = "postgres://" + role + "@127.0.0.1:5432/test?sslmode=disable"
		} else {
			sqlExec(t, admin, "CREATE USER '"+role+"'@'127.0.0.1'")
			t.Cleanup(func() { admin.db.Exec("DROP USER IF EXISTS '" + role + "'@'127.0.0.1'") })
			sqlExec(t, admin, "CREATE DATABASE `"+admin.schema+"`")
			sqlExec(t, admin, "GRANT ALL ON `"+admin.schema+"`.* TO '"+role+"'@'127.0.0.1'")
			dsn = role + "@tcp(127.0.0.1:3306)/"
		}
		b, err := openSQL(context.Background(), sqlConfig(t, pg, dsn, admin.schema), pg, nil)
		must(t, err)
		defer b.Close()
		h, err := b.Lock(context.Background(), "apply", []string{"s"})
		must(t, err)
		tx := beginTx(t, b, "s", false)
		tx.Accept("k", 1, map[string]any{"v": "x"})
		must(t, tx.Commit())
		must(t, h.Unlock())
		if hs, _ := snapshotOf(t, b, "s"); hs["k"] != 1 {
			t.Errorf("snapshot = %v", hs)
		}
	})
}
