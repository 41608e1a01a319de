package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backflowhq/backflow/internal/crashpoint"
	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/spec"
)

// The database backends write a checkpoint's changes into its transaction
// in batches as they are recorded: memory holds a batch, and nothing of
// the checkpoint is visible, or left after an abort or a crash, before it
// commits.

// smallBatches lowers the batch size for one test.
func smallBatches(t *testing.T, ops int) {
	t.Helper()
	old := sqlBatchOps
	sqlBatchOps = ops
	t.Cleanup(func() { sqlBatchOps = old })
}

// beginBatched begins a writer that an early end of the test aborts, so
// that its open transaction does not hold the locks the schema's drop at
// cleanup waits for.
func beginBatched(t *testing.T, b Backend, sync string, reset bool) Tx {
	t.Helper()
	tx := beginTx(t, b, sync, reset)
	t.Cleanup(func() { tx.Abort() })
	return tx
}

// batchesOf is how many batches tx wrote into its open transaction.
func batchesOf(tx Tx) int {
	w := tx.(*sqlTx)
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	if w.open == nil {
		return 0
	}
	return w.batches
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestSQLResetMemoryIsBounded: a reset of many rows (one checkpoint) holds
// a batch in memory, not the rows recorded; the commit then has them all.
func TestSQLResetMemoryIsBounded(t *testing.T) {
	forEachSQL(t, func(t *testing.T, pg bool) {
		b, open := newSQLState(t, pg, nil)
		tx := beginBatched(t, b, "big", false)
		tx.Accept("gone", 1, map[string]any{"v": "before the reset"})
		must(t, tx.Commit())

		const n = 100_000
		pad := strings.Repeat("p", 1000) // about 100 MB of values in all
		base := liveHeap()
		var peak uint64
		tx = beginBatched(t, b, "big", true)
		for i := range n {
			tx.Accept(fmt.Sprintf("k%06d", i), uint64(i), map[string]any{"i": int64(i), "pad": pad})
			if i%10000 == 9999 {
				peak = max(peak, liveHeap())
			}
		}
		if batchesOf(tx) == 0 {
			t.Fatal("no batch written into the transaction before the commit")
		}
		// Nothing of it is visible before the commit, to another runner.
		o := open()
		if hs, _ := snapshotOf(t, o, "big"); !reflect.DeepEqual(hs, map[string]uint64{"gone": 1}) {
			t.Fatalf("before the commit another runner sees %d keys, want the old snapshot", len(hs))
		}
		must(t, tx.Commit())
		grown := int64(peak) - int64(base)
		t.Logf("live heap grew by %.1f MB", float64(grown)/(1<<20))
		if grown > 32<<20 {
			t.Fatalf("the live heap grew by %d MB while %d rows (about %d MB of values) were recorded: the writer holds them", grown>>20, n, n*len(pad)>>20)
		}
		sn, err := o.LoadSnapshot("big")
		must(t, err)
		defer sn.Close()
		if sn.Len() != n {
			t.Fatalf("%d keys after the reset, want %d", sn.Len(), n)
		}
		for _, i := range []int{0, 4999, 5000, n / 2, n - 1} {
			j, h, ok := sn.Lookup(fmt.Sprintf("k%06d", i))
			if !ok || h != uint64(i) {
				t.Fatalf("k%06d: %v, hash %d", i, ok, h)
			}
			v, err := sn.Values(j)
			must(t, err)
			if v["i"] != int64(i) || v["pad"] != pad {
				t.Fatalf("k%06d = %v", i, v["i"])
			}
		}
	})
}

// TestSQLBatchesAreOneCheckpoint records changes over many batches — keys
// accepted again, forgotten, failed, accepted after failing, in later
// batches than their first change — and checks that another runner sees
// none of them before the checkpoint, none after an abort, and exactly the
// last change of each key after a commit.
func TestSQLBatchesAreOneCheckpoint(t *testing.T) {
	forEachSQL(t, func(t *testing.T, pg bool) {
		smallBatches(t, 7)
		b, open := newSQLState(t, pg, nil)
		o := open()
		now := time.Now().UTC().Truncate(time.Second)
		tx := beginBatched(t, b, "s", false)
		for i := range 20 {
			tx.Accept(fmt.Sprintf("k%02d", i), uint64(i), map[string]any{"v": int64(i)})
		}
		tx.Fail(Failure{Key: "f0", Operation: "upsert", Error: "refused", Attempts: 1, FirstFailed: now, LastFailed: now})
		must(t, tx.Commit())
		hs0, vs0 := snapshotOf(t, o, "s")
		fs0, err := o.LoadFailures("s")
		must(t, err)
		serial0 := metaOf(t, o).Serial

		record := func(tx Tx) {
			for round := range 3 {
				for i := range 20 {
					k := fmt.Sprintf("k%02d", i)
					switch {
					case i%5 == 0 && round == 1:
						tx.Forget(k)
					case i%5 == 1 && round == 2:
						tx.Fail(Failure{Key: k, Operation: "upsert", Error: fmt.Sprintf("round %d", round), Attempts: 1, FirstFailed: now, LastFailed: now})
					case i%5 == 0 && round == 2 && i%2 == 0:
						tx.Accept(k, uint64(100*round+i), map[string]any{"v": int64(100*round + i)}) // back after a forget
					case i%5 != 0 && i%5 != 1:
						tx.Accept(k, uint64(100*round+i), map[string]any{"v": int64(100*round + i)})
					}
				}
				tx.Accept(fmt.Sprintf("new%d", round), uint64(round), nil)
			}
			tx.Accept("f0", 7, map[string]any{"v": "fixed"})
		}
		check := func(what string, hs map[string]uint64, vs map[string]map[string]any, fs FailureIndex) {
			t.Helper()
			gh, gv := snapshotOf(t, o, "s")
			gf, err := o.LoadFailures("s")
			must(t, err)
			if !reflect.DeepEqual(gh, hs) || !reflect.DeepEqual(gv, vs) {
				t.Fatalf("%s: snapshot %v, want %v", what, gh, hs)
			}
			if len(gf) != len(fs) {
				t.Fatalf("%s: failures %v, want %v", what, gf, fs)
			}
			for k, f := range fs {
				if g := gf[k]; g == nil || g.Error != f.Error || g.Attempts != f.Attempts {
					t.Fatalf("%s: failure of %s = %+v, want %+v", what, k, g, f)
				}
			}
		}

		// Aborted: nothing stays, though batches were written.
		tx = beginBatched(t, b, "s", false)
		record(tx)
		if batchesOf(tx) < 5 {
			t.Fatalf("%d batches written, want several", batchesOf(tx))
		}
		check("before the checkpoint", hs0, vs0, fs0)
		must(t, tx.Abort())
		check("after the abort", hs0, vs0, fs0)

		// Committed: the last change of each key.
		tx = beginBatched(t, b, "s", false)
		record(tx)
		check("before the commit", hs0, vs0, fs0)
		must(t, tx.Commit())
		wantH, wantV, wantF := map[string]uint64{}, map[string]map[string]any{}, FailureIndex{}
		for i := range 20 {
			k := fmt.Sprintf("k%02d", i)
			switch {
			case i%5 == 0 && i%2 == 0:
				wantH[k], wantV[k] = uint64(200+i), map[string]any{"v": int64(200 + i)}
			case i%5 == 0:
			case i%5 == 1:
				wantH[k], wantV[k] = uint64(i), map[string]any{"v": int64(i)} // a failure leaves the snapshot entry
				wantF[k] = &Failure{Error: "round 2", Attempts: 1}
			default:
				wantH[k], wantV[k] = uint64(200+i), map[string]any{"v": int64(200 + i)}
			}
		}
		for round := range 3 {
			wantH[fmt.Sprintf("new%d", round)], wantV[fmt.Sprintf("new%d", round)] = uint64(round), map[string]any{}
		}
		wantH["f0"], wantV["f0"] = 7, map[string]any{"v": "fixed"}
		check("after the commit", wantH, wantV, wantF)
		if s := metaOf(t, o).Serial; s != serial0+3 { // two Begins, one Commit
			t.Errorf("serial %d after the commit, want %d", s, serial0+3)
		}
	})
}

// TestSQLBatchesStopWhenTheLockIsLost: batches written, then the lock's
// session dies: the checkpoint fails rather than commit them.
func TestSQLBatchesStopWhenTheLockIsLost(t *testing.T) {
	forEachSQL(t, func(t *testing.T, pg bool) {
		smallBatches(t, 10)
		b, open := newSQLState(t, pg, nil)
		o := open()
		held, err := b.Lock(context.Background(), "apply", []string{"a"})
		must(t, err)
		defer held.Unlock()
		tx := beginBatched(t, b, "a", false)
		tx.Accept("k", 1, nil)
		must(t, tx.Checkpoint())
		for i := range 35 {
			tx.Accept(fmt.Sprintf("b%02d", i), 2, nil)
		}
		if batchesOf(tx) == 0 {
			t.Fatal("no batch written")
		}
		killSession(t, o, held.(*sqlHeld).session)
		if err := tx.Checkpoint(); err == nil || !strings.Contains(err.Error(), `lock on sync "a" was lost`) {
			t.Fatalf("Checkpoint after the lock was lost = %v", err)
		}
		if hs, _ := snapshotOf(t, o, "a"); !reflect.DeepEqual(hs, map[string]uint64{"k": 1}) {
			t.Errorf("snapshot = %v, want only the checkpointed key", hs)
		}
	})
}

// crashChildEnv names the schema a crashing child writes to.
const crashChildEnv = "BACKFLOW_TEST_SQL_CRASH"

// TestSQLCrashAmidBatches kills a process (SIGKILL, at the crash point
// after its second batch) during a reset-cdc of a sync with state: the
// database ends its session, so the state is the one before the reset,
// and the sync's lock is free for the next runner.
func TestSQLCrashAmidBatches(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		t.Skip("the child's part runs in TestSQLCrashAmidBatchesChild")
	}
	forEachSQL(t, func(t *testing.T, pg bool) {
		b, open := newSQLState(t, pg, nil)
		tx := beginBatched(t, b, "s", false)
		tx.Accept("old", 1, map[string]any{"v": int64(1)})
		now := time.Now()
		tx.Fail(Failure{Key: "bad", Operation: "upsert", Error: "refused", Attempts: 1, FirstFailed: now, LastFailed: now})
		must(t, tx.Commit())
		serial := metaOf(t, b).Serial

		cmd := exec.Command(os.Args[0], "-test.run=^TestSQLCrashAmidBatchesChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+fmt.Sprint(pg)+":"+b.schema, crashpoint.EnvVar+"=sql.batch:2")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("the child was not killed at its second batch: %v\n%s", err, out)
		}

		o := open()
		// The session is gone: its lock with it.
		h, err := o.Lock(context.Background(), "apply", []string{"s"})
		must(t, err)
		defer h.Unlock()
		if hs, _ := snapshotOf(t, o, "s"); !reflect.DeepEqual(hs, map[string]uint64{"old": 1}) {
			t.Fatalf("snapshot after the crash = %d keys, want the one before the reset", len(hs))
		}
		fs, err := o.LoadFailures("s")
		must(t, err)
		if len(fs) != 1 || fs["bad"] == nil {
			t.Fatalf("failures after the crash = %v", fs)
		}
		if s := metaOf(t, o).Serial; s != serial+1 { // the child's Begin only
			t.Errorf("serial %d, want %d", s, serial+1)
		}
	})
}

// TestSQLCrashAmidBatchesChild is the child of TestSQLCrashAmidBatches:
// a reset whose batches are written, killed before its commit.
func TestSQLCrashAmidBatchesChild(t *testing.T) {
	arg := os.Getenv(crashChildEnv)
	if arg == "" {
		t.Skip("run by TestSQLCrashAmidBatches")
	}
	kind, schema, _ := strings.Cut(arg, ":")
	pg := kind == "true"
	dsn := testdb.MariaDBDSN
	if pg {
		dsn = testdb.PostgresDSN
	}
	smallBatches(t, 50)
	b, err := openSQL(context.Background(), sqlConfig(t, pg, dsn, schema), pg, nil)
	must(t, err)
	h, err := b.Lock(context.Background(), "reset-cdc", []string{"s"})
	must(t, err)
	tx := beginBatched(t, b, "s", true)
	for i := range 500 {
		tx.Accept(fmt.Sprintf("new%03d", i), uint64(i), nil)
	}
	must(t, tx.Commit())
	h.Unlock()
	t.Fatal("the reset committed: the crash point was not reached")
}

// TestSQLBatchesConcurrent records from several goroutines, each sending
// records in flight and checkpointing now and then, while batches fill:
// every record reaches the snapshot, and no record stays in flight.
func TestSQLBatchesConcurrent(t *testing.T) {
	forEachSQL(t, func(t *testing.T, pg bool) {
		smallBatches(t, 50)
		b, open := newSQLState(t, pg, nil)
		tx := beginBatched(t, b, "s", false)
		const workers, each = 4, 1500
		errs := make(chan error, workers)
		for g := range workers {
			go func() {
				for i := range each {
					k := fmt.Sprintf("g%d-%04d", g, i)
					if i%100 == 0 {
						if err := tx.InFlight([]InFlightRecord{{Key: k, Operation: "upsert"}}); err != nil {
							errs <- err
							return
						}
					}
					tx.Accept(k, uint64(g*each+i), map[string]any{"i": int64(i)})
					if i%(300+70*g) == 0 {
						if err := tx.Checkpoint(); err != nil {
							errs <- err
							return
						}
					}
				}
				errs <- nil
			}()
		}
		for range workers {
			must(t, <-errs)
		}
		must(t, tx.Commit())
		o := open()
		hashes, values := snapshotOf(t, o, "s")
		if len(hashes) != workers*each {
			t.Fatalf("%d keys, want %d", len(hashes), workers*each)
		}
		for g := range workers {
			for i := range each {
				k := fmt.Sprintf("g%d-%04d", g, i)
				if hashes[k] != uint64(g*each+i) || values[k]["i"] != int64(i) {
					t.Fatalf("%s = %d %v", k, hashes[k], values[k])
				}
			}
		}
		fs, err := o.LoadFailures("s")
		must(t, err)
		if len(fs) != 0 {
			t.Fatalf("%d failure entries, want none (every record in flight was accepted)", len(fs))
		}
		var n int
		must(t, o.db.QueryRow(o.q(`SELECT COUNT(*) FROM {inflight}`)).Scan(&n))
		if n != 0 {
			t.Fatalf("%d in-flight rows left", n)
		}
	})
}

// TestSQLBatchesOfTwoSyncsAtOnce: two runners, each holding its sync's
// lock, write batches of a reset (a sync with state) and of a first apply
// (a sync without a row yet) at the same time: neither waits for the
// other's open transaction, and each commit shows only its own sync.
func TestSQLBatchesOfTwoSyncsAtOnce(t *testing.T) {
	forEachSQL(t, func(t *testing.T, pg bool) {
		smallBatches(t, 20)
		b, open := newSQLState(t, pg, nil)
		tx := beginTx(t, b, "a", false)
		for i := range 50 {
			tx.Accept(fmt.Sprintf("old%02d", i), 1, nil)
		}
		must(t, tx.Commit())
		// Another runner's connections, with a short bound so that a wait
		// on the other transaction fails the test rather than hang it.
		args, err := spec.ValuesFor(sqlSpec(!pg), map[string]any{"dsn": dsnOf(pg), "schema": b.schema, "timeout": 20 * time.Second})
		must(t, err)
		ob, err := openSQL(context.Background(), Config{Args: args}, pg, nil)
		must(t, err)
		t.Cleanup(func() { ob.Close() })
		ha, err := b.Lock(context.Background(), "reset-cdc", []string{"a"})
		must(t, err)
		defer ha.Unlock()
		hb, err := ob.Lock(context.Background(), "apply", []string{"b"})
		must(t, err)
		defer hb.Unlock()

		ta := beginBatched(t, b, "a", true)
		tb := beginBatched(t, ob, "b", false)
		for i := range 100 {
			ta.Accept(fmt.Sprintf("a%03d", i), 2, nil)
			tb.Accept(fmt.Sprintf("b%03d", i), 3, nil)
		}
		if batchesOf(ta) == 0 || batchesOf(tb) == 0 {
			t.Fatalf("batches written: a %d, b %d", batchesOf(ta), batchesOf(tb))
		}
		r := open()
		if syncs, err := r.Syncs(); err != nil || !reflect.DeepEqual(syncs, []string{"a"}) {
			t.Fatalf("syncs before the commits = %v, %v", syncs, err)
		}
		must(t, tb.Commit())
		if hs, _ := snapshotOf(t, r, "a"); len(hs) != 50 || hs["old00"] != 1 {
			t.Fatalf("a after b's commit: %d keys, want the 50 before its reset", len(hs))
		}
		for i := range 30 {
			ta.Accept(fmt.Sprintf("a%03d", 100+i), 2, nil)
		}
		must(t, ta.Commit())
		ha2, _ := snapshotOf(t, r, "a")
		hb2, _ := snapshotOf(t, r, "b")
		if len(ha2) != 130 || ha2["a129"] != 2 || ha2["old00"] != 0 || len(hb2) != 100 || hb2["b099"] != 3 {
			t.Fatalf("after both commits: a %d keys, b %d keys", len(ha2), len(hb2))
		}
	})
}

// TestSQLBatchSessionLost: the session of the writer's open transaction
// ends between batches (the server restarted, a proxy cut it): the next
// batch fails, the writer is unusable, Commit says so, and the state is
// the last checkpoint's.
func TestSQLBatchSessionLost(t *testing.T) {
	forEachSQL(t, func(t *testing.T, pg bool) {
		smallBatches(t, 10)
		b, open := newSQLState(t, pg, nil)
		o := open()
		tx := beginBatched(t, b, "s", false)
		tx.Accept("kept", 1, nil)
		must(t, tx.Checkpoint())
		for i := range 25 {
			tx.Accept(fmt.Sprintf("k%02d", i), 2, nil)
		}
		w := tx.(*sqlTx)
		w.flushMu.Lock()
		if w.open == nil {
			w.flushMu.Unlock()
			t.Fatal("no transaction open after two batches")
		}
		var session int64
		q := `SELECT CONNECTION_ID()`
		if pg {
			q = `SELECT pg_backend_pid()`
		}
		err := w.open.QueryRow(q).Scan(&session)
		w.flushMu.Unlock()
		must(t, err)
		killSession(t, o, session)
		for i := range 25 {
			tx.Accept(fmt.Sprintf("m%02d", i), 3, nil)
		}
		err = tx.Commit()
		if err == nil {
			t.Fatal("Commit succeeded after the session of its transaction ended")
		}
		t.Log(err)
		if hs, _ := snapshotOf(t, o, "s"); !reflect.DeepEqual(hs, map[string]uint64{"kept": 1}) {
			t.Fatalf("snapshot = %v, want the last checkpoint's", hs)
		}
		tx2 := beginBatched(t, o, "s", false) // the sync is usable again
		tx2.Accept("after", 4, nil)
		must(t, tx2.Commit())
	})
}

// TestSQLBatchesAndRecordsInFlight: records committed as in flight, then
// outcomes written in batches that are never committed (the run stops):
// the records come back as failures whose outcome is unknown, as when no
// outcome was recorded at all, and the next apply starts from them.
func TestSQLBatchesAndRecordsInFlight(t *testing.T) {
	forEachSQL(t, func(t *testing.T, pg bool) {
		smallBatches(t, 10)
		b, open := newSQLState(t, pg, nil)
		o := open()
		tx := beginBatched(t, b, "s", false)
		must(t, tx.InFlight([]InFlightRecord{{Key: "k1", Operation: "upsert"}, {Key: "k2", Operation: "delete"}}))
		tx.Accept("k1", 1, nil)
		for i := range 30 {
			tx.Accept(fmt.Sprintf("x%02d", i), 2, nil)
		}
		if batchesOf(tx) == 0 {
			t.Fatal("no batch written")
		}
		must(t, tx.Abort())
		if hs, _ := snapshotOf(t, o, "s"); len(hs) != 0 {
			t.Fatalf("snapshot after the abort = %v, want empty", hs)
		}
		fs, err := o.LoadFailures("s")
		must(t, err)
		if len(fs) != 2 || !fs["k1"].Unknown || !fs["k2"].Unknown || fs["k2"].Operation != "delete" {
			t.Fatalf("failures after the abort = %v, want k1 and k2 with unknown outcomes", fs)
		}
		tx = beginBatched(t, o, "s", false)
		for i := range 30 {
			tx.Accept(fmt.Sprintf("y%02d", i), 3, nil)
		}
		tx.Accept("k1", 1, nil)
		must(t, tx.Commit())
		hs, _ := snapshotOf(t, o, "s")
		fs, err = o.LoadFailures("s")
		must(t, err)
		if len(hs) != 31 || hs["k1"] != 1 || len(fs) != 1 || fs["k2"] == nil || !fs["k2"].Unknown {
			t.Fatalf("after the next apply: %d keys, failures %v", len(hs), fs)
		}
		var n int
		must(t, o.db.QueryRow(o.q(`SELECT COUNT(*) FROM {inflight}`)).Scan(&n))
		if n != 0 {
			t.Fatalf("%d in-flight rows left after the commit", n)
		}
	})
}
