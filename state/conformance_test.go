package state

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/spec"
)

// The behaviour every Backend shares, run against the local folder, a
// PostgreSQL schema and a MariaDB database (each test gets a fresh one).

// backendCase opens fresh state of one backend, and other handles on it
// (as another process would).
type backendCase struct {
	name string
	// perSync: locks are per sync (the local folder has one lock for all).
	perSync bool
	// open returns a new, empty state and a function opening another
	// handle on the same state.
	open func(t *testing.T) (Backend, func() Backend)
}

func backendCases() []backendCase {
	return []backendCase{
		{name: "local", open: func(t *testing.T) (Backend, func() Backend) {
			dir := filepath.Join(t.TempDir(), ".backflow")
			open := func() Backend {
				s, err := Open(dir)
				must(t, err)
				return s.Backend()
			}
			return open(), open
		}},
		{name: "postgres", perSync: true, open: func(t *testing.T) (Backend, func() Backend) {
			b, open := newSQLState(t, true, nil)
			return b, func() Backend { return open() }
		}},
		{name: "mysql", perSync: true, open: func(t *testing.T) (Backend, func() Backend) {
			b, open := newSQLState(t, false, nil)
			return b, func() Backend { return open() }
		}},
	}
}

// newSQLState opens a database backend on a schema of its own, dropped at
// cleanup, and returns a function opening more handles on it (each
// closed at cleanup). migs replaces the built-in migrations (nil: keep).
func newSQLState(t testing.TB, pg bool, migs []migration) (*sqlBackend, func() *sqlBackend) {
	t.Helper()
	schema := testdb.Name("bfstate")
	dsn := testdb.MariaDBDSN
	if pg {
		dsn = testdb.PostgresDSN
		conn := testdb.Postgres(t) // skips or fails when the server is unreachable
		t.Cleanup(func() { conn.Exec(context.Background(), `DROP SCHEMA IF EXISTS "`+schema+`" CASCADE`) })
	} else {
		db := testdb.MariaDB(t)
		t.Cleanup(func() { db.Exec("DROP DATABASE IF EXISTS `" + schema + "`") })
	}
	open := func() *sqlBackend {
		t.Helper()
		b, err := openSQL(context.Background(), sqlConfig(t, pg, dsn, schema), pg, migs)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	return open(), open
}

func sqlConfig(t testing.TB, pg bool, dsn, schema string) Config {
	t.Helper()
	args, err := spec.ValuesFor(sqlSpec(!pg), map[string]any{"dsn": dsn, "schema": schema})
	if err != nil {
		t.Fatal(err)
	}
	return Config{Args: args}
}

func forEachBackend(t *testing.T, fn func(t *testing.T, c backendCase)) {
	for _, c := range backendCases() {
		t.Run(c.name, func(t *testing.T) { fn(t, c) })
	}
}

func beginTx(t *testing.T, b Backend, sync string, reset bool) Tx {
	t.Helper()
	tx, err := b.Begin(sync, reset)
	must(t, err)
	return tx
}

// snapshotOf reads a whole snapshot: key → hash, and key → values.
func snapshotOf(t *testing.T, b Backend, sync string) (map[string]uint64, map[string]map[string]any) {
	t.Helper()
	sn, err := b.LoadSnapshot(sync)
	must(t, err)
	defer sn.Close()
	hashes, values := map[string]uint64{}, map[string]map[string]any{}
	prev := ""
	for i := range sn.Len() {
		k := sn.Key(i)
		if i > 0 && k <= prev {
			t.Fatalf("key %d %q is not after %q", i, k, prev)
		}
		prev = k
		j, h, ok := sn.Lookup(k)
		if !ok || j != i {
			t.Fatalf("Lookup(%q) = %d, %v; want %d", k, j, ok, i)
		}
		v, err := sn.Values(i)
		must(t, err)
		hashes[k], values[k] = h, v
		// A reader that lends its values one by one lends the same.
		if vr, ok := sn.(interface{ VisitValues(int, ValueVisitor) error }); ok {
			var mv mapVisitor
			must(t, vr.VisitValues(i, &mv))
			if !reflect.DeepEqual(mv.m, v) {
				t.Fatalf("VisitValues(%d) = %#v, Values = %#v", i, mv.m, v)
			}
		}
	}
	if _, _, ok := sn.Lookup("no such key"); ok {
		t.Fatal("Lookup found a key that is not there")
	}
	return hashes, values
}

func metaOf(t *testing.T, b Backend) Meta {
	t.Helper()
	m, err := b.Meta()
	must(t, err)
	return m
}

func TestBackendEmptyState(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c backendCase) {
		b, _ := c.open(t)
		if m := metaOf(t, b); m.Lineage != "" || m.Serial != 0 {
			t.Errorf("meta of empty state = %+v", m)
		}
		syncs, err := b.Syncs()
		if err != nil || len(syncs) != 0 {
			t.Errorf("Syncs = %v, %v", syncs, err)
		}
		if h, _ := snapshotOf(t, b, "s"); len(h) != 0 {
			t.Errorf("snapshot of a sync never applied = %v", h)
		}
		if f, err := b.LoadFailures("s"); err != nil || len(f) != 0 {
			t.Errorf("failures = %v, %v", f, err)
		}
		if r, err := b.Runs(""); err != nil || len(r) != 0 {
			t.Errorf("runs = %v, %v", r, err)
		}
		if r, err := b.RowLogs("s", 0); err != nil || r != nil {
			t.Errorf("row logs = %v, %v", r, err)
		}
		if st, err := b.LockStatus(); err != nil || st.Held || st.Stale {
			t.Errorf("lock status = %+v, %v", st, err)
		}
		if _, err := b.LoadSnapshot("../x"); err == nil {
			t.Error("an invalid sync name was accepted")
		}
	})
}

func TestBackendRecordsAndCommits(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c backendCase) {
		b, other := c.open(t)
		when := time.Date(2025, 3, 4, 5, 6, 7, 891011000, time.UTC)
		values := map[string]any{
			"nil": nil, "t": true, "f": false, "i": int64(-1 << 62), "max": int64(math.MaxInt64),
			"x": 3.25, "neg0": math.Copysign(0, -1), "inf": math.Inf(-1), "s": "héllo\x00wörld", "empty": "",
		}
		tx := beginTx(t, b, "s", false)
		m1 := metaOf(t, b)
		if m1.Lineage == "" || m1.Serial != 1 {
			t.Fatalf("meta after Begin = %+v, want a lineage and serial 1", m1)
		}
		tx.Accept("b", 2, values)
		tx.Accept("a", 1, map[string]any{"n": int32(7), "u": uint8(200), "g": float32(1.5), "w": 9})
		tx.Accept("c", 3, map[string]any{"v": "old"})
		tx.Accept("c", 4, map[string]any{"v": "new"}) // the last one counts
		tx.Accept("gone", 5, nil)
		tx.Forget("gone")
		tx.Fail(Failure{Key: "d", Operation: "upsert", Error: "rejected: bad\x00value", Attempts: 2, FirstFailed: when, LastFailed: when.Add(time.Second)})
		tx.Fail(Failure{Key: "k\xff", Operation: "upsert", Error: "rejected", Attempts: 1, FirstFailed: when, LastFailed: when}) // not UTF-8
		must(t, tx.Checkpoint())

		// Another reader sees what was checkpointed.
		o := other()
		hashes, vals := snapshotOf(t, o, "s")
		if !reflect.DeepEqual(hashes, map[string]uint64{"a": 1, "b": 2, "c": 4}) {
			t.Fatalf("checkpointed snapshot = %v", hashes)
		}
		if got := vals["a"]; !reflect.DeepEqual(got, map[string]any{"n": int64(7), "u": int64(200), "g": 1.5, "w": int64(9)}) {
			t.Errorf("values of a = %#v (integers widen to int64, floats to float64)", got)
		}
		if got := vals["c"]; !reflect.DeepEqual(got, map[string]any{"v": "new"}) {
			t.Errorf("values of c = %#v", got)
		}
		gotB := vals["b"]
		if !math.Signbit(gotB["neg0"].(float64)) || !math.IsInf(gotB["inf"].(float64), -1) {
			t.Errorf("float specials = %v %v", gotB["neg0"], gotB["inf"])
		}
		delete(gotB, "neg0")
		delete(gotB, "inf")
		want := map[string]any{"nil": nil, "t": true, "f": false, "i": int64(-1 << 62), "max": int64(math.MaxInt64), "x": 3.25, "s": "héllo\x00wörld", "empty": ""}
		if !reflect.DeepEqual(gotB, want) {
			t.Errorf("values of b = %#v, want %#v", gotB, want)
		}
		fails, err := o.LoadFailures("s")
		must(t, err)
		if f := fails["d"]; f == nil || f.Attempts != 2 || f.Operation != "upsert" || !f.FirstFailed.Equal(when.Truncate(time.Microsecond)) || f.Unknown || !strings.HasPrefix(f.Error, "rejected: bad") {
			t.Errorf("failure d = %+v", f)
		}
		if f := fails["k\xff"]; f == nil || f.Key != "k\xff" || fails["k\uFFFD"] != nil {
			t.Errorf("the failure of key k\\xff read back as %+v (k\\uFFFD: %+v)", f, fails["k\uFFFD"])
		}
		if syncs, err := o.Syncs(); err != nil || !reflect.DeepEqual(syncs, []string{"s"}) {
			t.Errorf("Syncs = %v, %v", syncs, err)
		}

		// Accepting a failed key clears its failure; a failed key keeps its
		// snapshot entry.
		tx.Accept("d", 6, map[string]any{"v": int64(1)})
		tx.Fail(Failure{Key: "a", Operation: "upsert", Error: "no", Attempts: 1, FirstFailed: when, LastFailed: when})
		must(t, tx.Commit())
		m2 := metaOf(t, o)
		if m2.Lineage != m1.Lineage || m2.Serial != 2 {
			t.Errorf("meta after Commit = %+v, want lineage %s serial 2", m2, m1.Lineage)
		}
		hashes, _ = snapshotOf(t, o, "s")
		if !reflect.DeepEqual(hashes, map[string]uint64{"a": 1, "b": 2, "c": 4, "d": 6}) {
			t.Errorf("committed snapshot = %v", hashes)
		}
		fails, err = o.LoadFailures("s")
		must(t, err)
		if len(fails) != 2 || fails["a"] == nil || fails["k\xff"] == nil {
			t.Errorf("failures after commit = %v", fails)
		}
		tx.Accept("late", 1, nil)
		if err := tx.Checkpoint(); !errors.Is(err, errWriterDone) {
			t.Errorf("Checkpoint after Commit = %v", err)
		}

		// The next apply accumulates attempts onto the entry.
		tx = beginTx(t, b, "s", false)
		tx.Fail(Failure{Key: "a", Operation: "upsert", Error: "still no", Attempts: 3, FirstFailed: when.Add(time.Hour), LastFailed: when.Add(time.Hour)})
		must(t, tx.Commit())
		fails, err = b.LoadFailures("s")
		must(t, err)
		if f := fails["a"]; f.Attempts != 4 || !f.FirstFailed.Equal(when.Truncate(time.Microsecond)) || f.Error != "still no" {
			t.Errorf("accumulated failure = %+v", f)
		}
		if m := metaOf(t, b); m.Serial != 4 {
			t.Errorf("serial = %d, want 4 (two Begins, two Commits)", m.Serial)
		}
	})
}

func TestBackendRefusesUnsupportedValues(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c backendCase) {
		b, _ := c.open(t)
		tx := beginTx(t, b, "s", false)
		tx.Accept("a", 1, map[string]any{"ok": "x"})
		tx.Accept("b", 2, map[string]any{"bad": struct{}{}})
		if err := tx.Checkpoint(); err == nil || !strings.Contains(err.Error(), "unsupported value type") {
			t.Errorf("Checkpoint with an unsupported value = %v", err)
		}
		if err := tx.Commit(); err == nil {
			t.Error("Commit of a failed writer succeeded")
		}
	})
}

// TestBackendUnknownOutcomeOutlivesARejection: a record sent when a run
// stopped may be in the destination; a later attempt that is refused (its
// row changed to a value the destination rejects) leaves it there, so the
// entry stays an unknown outcome, with the new error, until a send is
// accepted. Otherwise, in insert mode, the next retry is an insert, refused
// as a duplicate forever. Found by the crash harness (./crash).
func TestBackendUnknownOutcomeOutlivesARejection(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c backendCase) {
		b, other := c.open(t)
		tx := beginTx(t, b, "s", false)
		must(t, tx.InFlight([]InFlightRecord{{Key: "k", Operation: "insert"}, {Key: "j", Operation: "insert"}}))
		must(t, tx.Abort())

		tx = beginTx(t, other(), "s", false)
		now := time.Now()
		tx.Fail(Failure{Key: "k", Operation: "upsert", Error: "CHECK constraint failed", Attempts: 1, FirstFailed: now, LastFailed: now})
		must(t, tx.Commit())
		fails, err := other().LoadFailures("s")
		must(t, err)
		if f := fails["k"]; f == nil || !f.Unknown || f.Attempts != 2 || f.Error != "CHECK constraint failed" || f.Operation != "upsert" {
			t.Fatalf("failure k after its retry was refused = %+v, want an unknown outcome still, with the new error", f)
		}
		if f := fails["j"]; f == nil || !f.Unknown || f.Attempts != 1 {
			t.Fatalf("failure j = %+v", f)
		}
		// Accepted at last: the entry goes.
		tx = beginTx(t, b, "s", false)
		tx.Accept("k", 1, nil)
		must(t, tx.Commit())
		fails, err = other().LoadFailures("s")
		must(t, err)
		if fails["k"] != nil || len(fails) != 1 {
			t.Fatalf("failures after k was accepted = %v", fails)
		}
	})
}

// A record rejected before, then in flight when the process died, keeps
// that rejection under its unknown outcome, through a second crash too:
// rejected again as before on the next run, it is still failing, not news
// that fails the run. Found by a SIGKILL campaign: the run after every
// crash with known-bad records in flight failed, "the destination took
// none of the records attempted for the first time".
func TestBackendUnknownOutcomeKeepsTheRejectionBefore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c backendCase) {
		b, other := c.open(t)
		tx := beginTx(t, b, "s", false)
		now := time.Now()
		tx.Fail(Failure{Key: "k", Operation: "upsert", Error: "CHECK constraint failed", Attempts: 1, FirstFailed: now, LastFailed: now})
		must(t, tx.Commit())

		for crash := 1; crash <= 2; crash++ {
			tx = beginTx(t, other(), "s", false)
			must(t, tx.InFlight([]InFlightRecord{{Key: "k", Operation: "upsert"}, {Key: "new", Operation: "upsert"}}))
			must(t, tx.Abort())
			fails, err := b.LoadFailures("s")
			must(t, err)
			f := fails["k"]
			if f == nil || !f.Unknown || f.Attempts != 1+crash || !strings.Contains(f.Error, "outcome unknown") || RejectedBefore(f.Error) != "CHECK constraint failed" {
				t.Fatalf("crash %d: failure k = %+v, want an unknown outcome keeping the CHECK rejection", crash, f)
			}
			if f := fails["new"]; f == nil || !f.Unknown || RejectedBefore(f.Error) != "" {
				t.Fatalf("crash %d: failure new = %+v, want an unknown outcome never rejected", crash, f)
			}
		}
	})
}

func TestBackendUnknownOutcomesAfterAbandonedApply(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c backendCase) {
		b, other := c.open(t)
		tx := beginTx(t, b, "s", false)
		tx.Accept("old", 1, map[string]any{"v": "x"})
		must(t, tx.Commit())

		tx = beginTx(t, b, "s", false)
		must(t, tx.InFlight([]InFlightRecord{{Key: "k1", Operation: "upsert"}, {Key: "k2", Operation: "upsert"}, {Key: "old", Operation: "delete"}}))
		tx.Accept("k1", 11, map[string]any{"v": "1"})
		must(t, tx.Checkpoint())
		must(t, tx.InFlight([]InFlightRecord{{Key: "k3", Operation: "insert"}}))
		// The process dies here: no Commit.
		must(t, tx.Abort())

		o := other()
		hashes, _ := snapshotOf(t, o, "s")
		if !reflect.DeepEqual(hashes, map[string]uint64{"k1": 11, "old": 1}) {
			t.Errorf("snapshot after the crash = %v: checkpointed results must stay", hashes)
		}
		fails, err := o.LoadFailures("s")
		must(t, err)
		for _, k := range []string{"k2", "old", "k3"} {
			f := fails[k]
			if f == nil || !f.Unknown || f.Attempts != 1 || f.FirstFailed.IsZero() {
				t.Errorf("failure %s after the crash = %+v, want an unknown outcome", k, f)
			}
		}
		if fails["old"].Operation != "delete" || fails["k3"].Operation != "insert" || len(fails) != 3 {
			t.Errorf("failures = %v", fails)
		}

		// The next apply starts from them; a second crash accumulates.
		tx = beginTx(t, o, "s", false)
		tx.Accept("k2", 12, nil)
		must(t, tx.InFlight([]InFlightRecord{{Key: "k3", Operation: "insert"}}))
		must(t, tx.Abort())
		fails, err = b.LoadFailures("s")
		must(t, err)
		if len(fails) != 2 || fails["k3"].Attempts != 2 || !fails["k3"].Unknown || fails["old"].Attempts != 1 {
			t.Errorf("failures after a second crash = %+v %+v", fails["k3"], fails["old"])
		}
		// A Commit with records still in flight records them as unknown.
		tx = beginTx(t, b, "s", false)
		must(t, tx.InFlight([]InFlightRecord{{Key: "k9", Operation: "upsert"}}))
		tx.Accept("k3", 13, nil)
		tx.Forget("old")
		must(t, tx.Commit())
		fails, err = other().LoadFailures("s")
		must(t, err)
		if len(fails) != 1 || fails["k9"] == nil || !fails["k9"].Unknown {
			t.Errorf("failures after commit = %v", fails)
		}
		hashes, _ = snapshotOf(t, b, "s")
		if !reflect.DeepEqual(hashes, map[string]uint64{"k1": 11, "k2": 12, "k3": 13}) {
			t.Errorf("snapshot = %v", hashes)
		}
	})
}

func TestBackendReset(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c backendCase) {
		b, other := c.open(t)
		tx := beginTx(t, b, "s", false)
		for i := range 50 {
			tx.Accept("k"+strconv.Itoa(i), uint64(i), map[string]any{"i": int64(i)})
		}
		tx.Fail(Failure{Key: "bad", Operation: "upsert", Error: "x", Attempts: 1, FirstFailed: time.Now(), LastFailed: time.Now()})
		must(t, tx.InFlight([]InFlightRecord{{Key: "lost", Operation: "upsert"}}))
		must(t, tx.Abort())

		// A reset abandoned before its first checkpoint changes nothing.
		tx = beginTx(t, b, "s", true)
		tx.Accept("new", 1, nil)
		must(t, tx.Abort())
		if h, _ := snapshotOf(t, b, "s"); len(h) != 50 {
			t.Fatalf("snapshot after an abandoned reset holds %d keys, want 50", len(h))
		}

		tx = beginTx(t, b, "s", true)
		tx.Accept("k1", 100, map[string]any{"i": int64(100)})
		tx.Accept("z", 101, nil)
		must(t, tx.Commit())
		o := other()
		hashes, vals := snapshotOf(t, o, "s")
		if !reflect.DeepEqual(hashes, map[string]uint64{"k1": 100, "z": 101}) || vals["k1"]["i"] != int64(100) {
			t.Errorf("snapshot after reset = %v", hashes)
		}
		if f, err := o.LoadFailures("s"); err != nil || len(f) != 0 {
			t.Errorf("failures after reset = %v, %v", f, err)
		}
	})
}

func TestBackendRunsAndRowLogs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c backendCase) {
		b, other := c.open(t)
		started := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
		for i := 1; i <= 4; i++ {
			for _, sync := range []string{"a", "b"} {
				rows := []RowLog{{Key: "k" + strconv.Itoa(i), Operation: "upsert", Status: RowAccepted, Attempts: 1},
					{Key: "bad\xfe", Operation: "delete", Status: RowRejected, Error: "nope", Attempts: i}} // a key not UTF-8
				r, err := b.AppendRun(Run{Sync: sync, Status: RunSucceeded, ConfigHash: "h", Commit: "c", Started: started.Add(time.Duration(i) * time.Minute),
					DurationMS: int64(i), Counts: Counts{Added: i, Accepted: i}, ByAction: map[string]Outcomes{"add": {Accepted: i}}, Requests: 2, Resent: 1}, rows, 2)
				must(t, err)
				if r.Run != i {
					t.Fatalf("run %d of %s numbered %d", i, sync, r.Run)
				}
			}
		}
		if m := metaOf(t, b); m.Serial != 8 {
			t.Errorf("serial = %d after 8 runs", m.Serial)
		}
		o := other()
		all, err := o.Runs("")
		must(t, err)
		if len(all) != 8 || all[0].Sync != "a" || all[1].Sync != "b" || all[7].Run != 4 {
			t.Fatalf("runs = %+v", all)
		}
		runs, err := o.Runs("b")
		must(t, err)
		want := Run{Sync: "b", Run: 3, Status: RunSucceeded, ConfigHash: "h", Commit: "c", Started: started.Add(3 * time.Minute), DurationMS: 3,
			Counts: Counts{Added: 3, Accepted: 3}, ByAction: map[string]Outcomes{"add": {Accepted: 3}}, Requests: 2, Resent: 1}
		if len(runs) != 4 || !reflect.DeepEqual(runs[2], want) {
			t.Errorf("run 3 of b = %+v, want %+v", runs[2], want)
		}
		latest, err := o.RowLogs("a", 0)
		must(t, err)
		if len(latest) != 2 || latest[0] != (RowLog{Run: 4, Key: "k4", Operation: "upsert", Status: RowAccepted, Attempts: 1}) || latest[1].Error != "nope" || latest[1].Attempts != 4 || latest[1].Key != "bad\xfe" {
			t.Errorf("latest row logs = %+v", latest)
		}
		if rows, err := o.RowLogs("a", 3); err != nil || len(rows) != 2 || rows[0].Run != 3 {
			t.Errorf("row logs of run 3 = %+v, %v", rows, err)
		}
		for _, run := range []int{2, 9} { // aged out (keep 2), never existed
			if _, err := o.RowLogs("a", run); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("row logs of run %d = %v, want os.ErrNotExist", run, err)
			}
		}
		// A run without rows keeps an empty log.
		r, err := b.AppendRun(Run{Sync: "c", Status: RunResetCDC, Started: started}, nil, 0)
		must(t, err)
		if rows, err := o.RowLogs("c", r.Run); err != nil || len(rows) != 0 {
			t.Errorf("row logs of a run without rows = %v, %v", rows, err)
		}
	})
}

func TestBackendLocks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c backendCase) {
		b, other := c.open(t)
		o := other()
		h, err := b.Lock(context.Background(), "apply", []string{"a"})
		must(t, err)
		defer h.Unlock()
		if h.TookOverFrom() != nil {
			t.Errorf("took over from %+v on a fresh state", h.TookOverFrom())
		}
		_, err = o.Lock(context.Background(), "plan", []string{"a", "b"})
		var locked *LockedError
		if !errors.As(err, &locked) {
			t.Fatalf("second Lock of a = %v, want *LockedError", err)
		}
		if locked.Holder.PID != os.Getpid() || locked.Holder.Operation != "apply" || len(locked.Holder.ID) != 32 || !strings.Contains(err.Error(), locked.Holder.ID) {
			t.Errorf("refusal names %+v: %v", locked.Holder, err)
		}
		// Waiting until a deadline, then giving up.
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err = o.Lock(ctx, "apply", []string{"a"})
		cancel()
		if !errors.As(err, &locked) || !locked.Waited {
			t.Errorf("Lock with a deadline = %v, want a LockedError that waited", err)
		}
		hb, err := o.Lock(context.Background(), "apply", []string{"b"})
		if c.perSync {
			must(t, err)
			must(t, hb.Unlock())
		} else if !errors.As(err, &locked) {
			t.Errorf("the local folder locked b while a was held: %v", err)
		}
		st, err := o.LockStatus()
		must(t, err)
		if !st.Held || st.Stale || st.Holder == nil || st.Holder.Operation != "apply" {
			t.Errorf("lock status = %+v", st)
		}
		if err := o.ForceUnlock(st.Holder.ID); err == nil || !strings.Contains(err.Error(), "running") {
			t.Errorf("ForceUnlock of a live lock = %v", err)
		}
		must(t, h.Unlock())
		must(t, h.Unlock()) // twice is fine
		st, err = o.LockStatus()
		must(t, err)
		if st.Held || st.Stale {
			t.Errorf("lock status after Unlock = %+v", st)
		}
		h2, err := o.Lock(context.Background(), "apply", []string{"a", "b"})
		must(t, err)
		must(t, h2.Unlock())
		h3, err := o.Lock(context.Background(), "apply", nil) // a config without syncs
		must(t, err)
		must(t, h3.Unlock())
	})
}

func TestBackendRequestsAnsweredInParts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c backendCase) {
		b, other := c.open(t)
		tx := beginTx(t, b, "s", false)
		must(t, tx.InFlight([]InFlightRecord{{Key: "k1", Operation: "upsert"}, {Key: "k2", Operation: "upsert"}, {Key: "k3", Operation: "upsert"}, {Key: "k4", Operation: "delete"}}))
		// A split retry: the first half is answered, k2 is sent again alone.
		tx.Accept("k1", 1, nil)
		tx.Fail(Failure{Key: "k4", Operation: "delete", Error: "no", Attempts: 1, FirstFailed: time.Now(), LastFailed: time.Now()})
		must(t, tx.Checkpoint())
		must(t, tx.InFlight([]InFlightRecord{{Key: "k2", Operation: "upsert"}}))
		must(t, tx.Abort())

		fails, err := other().LoadFailures("s")
		must(t, err)
		if len(fails) != 3 || !fails["k2"].Unknown || !fails["k3"].Unknown || fails["k4"].Unknown || fails["k1"] != nil {
			t.Fatalf("failures = %v", fails)
		}
		if !fails["k2"].FirstFailed.After(fails["k3"].FirstFailed) && !fails["k2"].FirstFailed.Equal(fails["k3"].FirstFailed) {
			t.Errorf("k2 was sent last: %v, k3 %v", fails["k2"].FirstFailed, fails["k3"].FirstFailed)
		}
		tx = beginTx(t, other(), "s", false)
		tx.Accept("k2", 2, nil)
		tx.Accept("k3", 3, nil)
		must(t, tx.Commit())
		fails, err = b.LoadFailures("s")
		must(t, err)
		if len(fails) != 1 || fails["k4"] == nil {
			t.Errorf("failures after the next apply = %v", fails)
		}
		if sb, ok := b.(*sqlBackend); ok {
			var n int
			must(t, sb.db.QueryRow(sb.q(`SELECT COUNT(*) FROM {inflight}`)).Scan(&n))
			if n != 0 {
				t.Errorf("%d in-flight rows left after a commit", n)
			}
		}
	})
}

func TestBackendRunRecordedAtStartAndEnd(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c backendCase) {
		b, other := c.open(t)
		first, err := b.AppendRun(Run{Sync: "a", Status: RunIncomplete}, nil, 0)
		must(t, err)
		// The process dies here: no outcome for run 1. The next run starts
		// and ends.
		second, err := b.AppendRun(Run{Sync: "a", Status: RunIncomplete}, []RowLog{{Key: "stale", Status: RowAccepted}}, 0)
		must(t, err)
		_, err = b.AppendRun(Run{Sync: "b", Status: RunSucceeded}, nil, 0)
		must(t, err)
		second.Status, second.Counts.Accepted = RunSucceeded, 3
		if r, err := b.AppendRun(second, []RowLog{{Key: "1", Operation: "upsert", Status: RowAccepted, Attempts: 1}}, 0); err != nil || r.Run != 2 {
			t.Fatalf("AppendRun of the outcome = %+v, %v", r, err)
		}
		runs, err := other().Runs("")
		must(t, err)
		if len(runs) != 3 || runs[0].Run != first.Run || runs[0].Status != RunIncomplete || runs[1].Sync != "a" ||
			runs[1].Run != 2 || runs[1].Status != RunSucceeded || runs[1].Counts.Accepted != 3 || runs[2].Sync != "b" {
			t.Fatalf("runs %+v", runs)
		}
		logs, err := other().RowLogs("a", 2)
		if err != nil || len(logs) != 1 || logs[0].Key != "1" || logs[0].Run != 2 {
			t.Fatalf("row logs of run 2: %+v, %v", logs, err)
		}
	})
}

// Records a fatal answer says were not written stay pending: neither a
// crash after it nor the commit turns them into failure entries, while
// the records of another request still in flight do become unknown.
func TestBackendUnsentRecordsStayPending(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c backendCase) {
		b, other := c.open(t)
		tx := beginTx(t, b, "s", false)
		must(t, tx.InFlight([]InFlightRecord{{Key: "k1", Operation: "upsert"}}))
		must(t, tx.InFlight([]InFlightRecord{{Key: "k2", Operation: "upsert"}, {Key: "k3", Operation: "delete"}}))
		tx.Unsent([]string{"k2", "k3"})
		must(t, tx.Checkpoint())
		must(t, tx.Abort()) // a crash after the fatal answer was recorded

		fails, err := other().LoadFailures("s")
		must(t, err)
		if len(fails) != 1 || fails["k1"] == nil || !fails["k1"].Unknown {
			t.Fatalf("failures after a crash = %v, want only k1 (outcome unknown)", fails)
		}

		tx = beginTx(t, other(), "s", false)
		must(t, tx.InFlight([]InFlightRecord{{Key: "k4", Operation: "upsert"}, {Key: "k5", Operation: "upsert"}}))
		tx.Unsent([]string{"k4", "k5"})
		must(t, tx.Commit())
		fails, err = b.LoadFailures("s")
		must(t, err)
		if len(fails) != 1 || fails["k1"] == nil {
			t.Errorf("failures after commit = %v, want only k1", fails)
		}
		if sb, ok := b.(*sqlBackend); ok {
			var n int
			must(t, sb.db.QueryRow(sb.q(`SELECT COUNT(*) FROM {inflight}`)).Scan(&n))
			if n != 0 {
				t.Errorf("%d in-flight rows left after a commit", n)
			}
		}
	})
}
