package state

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// stateContent is everything a backend holds, for comparisons.
type stateContent struct {
	Meta     Meta
	Syncs    []string
	Hashes   map[string]map[string]uint64
	Values   map[string]map[string]map[string]any
	Failures map[string]FailureIndex
	Runs     []Run
	RowLogs  map[string][]RowLog // "sync/run" → rows, for the runs that keep them
}

func contentOf(t *testing.T, b Backend) stateContent {
	t.Helper()
	c := stateContent{Meta: metaOf(t, b), Hashes: map[string]map[string]uint64{}, Values: map[string]map[string]map[string]any{},
		Failures: map[string]FailureIndex{}, RowLogs: map[string][]RowLog{}}
	c.Meta.Version = 0 // backends number their formats apart
	var err error
	c.Syncs, err = b.Syncs()
	must(t, err)
	for _, s := range c.Syncs {
		c.Hashes[s], c.Values[s] = snapshotOf(t, b, s)
		f, err := b.LoadFailures(s)
		must(t, err)
		for _, e := range f { // the databases keep times to the microsecond
			e.FirstFailed, e.LastFailed = dbTime(e.FirstFailed), dbTime(e.LastFailed)
		}
		c.Failures[s] = f
	}
	c.Runs, err = b.Runs("")
	must(t, err)
	for _, r := range c.Runs {
		rows, kept, err := rowLogsOf(b, r)
		must(t, err)
		if kept {
			c.RowLogs[r.Sync+"/"+strconv.Itoa(r.Run)] = rows
		}
	}
	return c
}

// fillState writes two syncs with every kind of value, failures, an
// unknown outcome, and runs of which the oldest row logs aged out.
func fillState(t *testing.T, b Backend) {
	t.Helper()
	when := time.Date(2025, 6, 7, 8, 9, 10, 123456000, time.UTC)
	for _, sync := range []string{"users", "orders"} {
		tx := beginTx(t, b, sync, false)
		for i := range 300 {
			tx.Accept(sync+strconv.Itoa(i), uint64(i)*7919, map[string]any{"i": int64(i), "f": float64(i) / 3, "s": "v" + strconv.Itoa(i),
				"b": i%2 == 0, "n": nil, "big": int64(math.MinInt64)})
		}
		tx.Fail(Failure{Key: sync + "1", Operation: "upsert", Error: "rejected", Attempts: 3, FirstFailed: when, LastFailed: when.Add(time.Minute)})
		tx.Fail(Failure{Key: "gone", Operation: "delete", Error: "refused", Attempts: 1, FirstFailed: when, LastFailed: when})
		must(t, tx.Commit())
		for run := 1; run <= 3; run++ {
			_, err := b.AppendRun(Run{Sync: sync, Status: RunSucceeded, ConfigHash: "cfg", Started: when.Add(time.Duration(run) * time.Hour), Counts: Counts{Added: run}},
				[]RowLog{{Key: sync + "1", Operation: "upsert", Status: RowRejected, Error: "rejected", Attempts: run}}, 2)
			must(t, err)
		}
	}
	tx := beginTx(t, b, "users", false)
	must(t, tx.InFlight([]InFlightRecord{{Key: "users5", Operation: "upsert"}, {Key: "new", Operation: "insert"}}))
	must(t, tx.Abort()) // a crash: two outcomes unknown
}

func localState(t *testing.T) Backend {
	s, err := Open(filepath.Join(t.TempDir(), ".backflow"))
	must(t, err)
	return s.Backend()
}

func TestCopyBetweenBackendsLosesNothing(t *testing.T) {
	local := localState(t)
	fillState(t, local)
	want := contentOf(t, local)
	if len(want.Failures["users"]) != 4 || !want.Failures["users"]["new"].Unknown || len(want.RowLogs) != 4 {
		t.Fatalf("test state: %d failures, %d row logs", len(want.Failures["users"]), len(want.RowLogs))
	}
	pg, _ := newSQLState(t, true, nil)
	my, _ := newSQLState(t, false, nil)
	back := localState(t)
	// A sync the copy does not have is removed from the destination.
	tx := beginTx(t, back, "stray", false)
	tx.Accept("x", 1, nil)
	must(t, tx.Commit())

	ctx := context.Background()
	for _, step := range []struct{ dst, src Backend }{{pg, local}, {my, pg}, {back, my}} {
		rep, err := Copy(ctx, step.dst, step.src, step.dst == back) // back holds another lineage
		if err != nil {
			t.Fatal(err)
		}
		if rep.Syncs != 2 || rep.Records != 600 || rep.Failures != 6 || rep.Runs != 6 || rep.RowLogs != 4 || rep.Lineage != want.Meta.Lineage || rep.Serial != want.Meta.Serial {
			t.Errorf("copy to %s: %+v", step.dst.Location(), rep)
		}
		got := contentOf(t, step.dst)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("state copied to %s differs:\n got %+v\nwant %+v", step.dst.Location(), got.Meta, want.Meta)
			for _, s := range want.Syncs {
				if !reflect.DeepEqual(got.Values[s], want.Values[s]) {
					t.Errorf("values of %s differ", s)
				}
				if !reflect.DeepEqual(got.Failures[s], want.Failures[s]) {
					t.Errorf("failures of %s: %v, want %v", s, got.Failures[s], want.Failures[s])
				}
			}
			if !reflect.DeepEqual(got.Runs, want.Runs) || !reflect.DeepEqual(got.RowLogs, want.RowLogs) {
				t.Errorf("runs: %+v\nwant %+v", got.Runs, want.Runs)
			}
		}
	}
	// The copy carries on like the original: the next Begin turns the
	// unknown outcomes into failure entries in both.
	for _, b := range []Backend{local, back} {
		tx := beginTx(t, b, "users", false)
		tx.Accept("new", 1, nil)
		must(t, tx.Commit())
	}
	if a, b := contentOf(t, local), contentOf(t, back); !reflect.DeepEqual(a, b) {
		t.Error("the original and its copy diverged after the same apply")
	}
}

func TestCopyRefusesToOverwriteOtherState(t *testing.T) {
	ctx := context.Background()
	src := localState(t)
	fillState(t, src)
	db, _ := newSQLState(t, true, nil)

	empty := localState(t)
	if _, err := Copy(ctx, db, empty, false); err == nil {
		t.Error("copying empty state succeeded")
	}
	other := localState(t)
	tx := beginTx(t, other, "users", false)
	must(t, tx.Commit())
	_, err := Copy(ctx, db, other, false)
	must(t, err)
	// Another lineage.
	_, err = Copy(ctx, db, src, false)
	var refused *CopyRefusedError
	if !errors.As(err, &refused) || !contains(err.Error(), "another lineage", metaOf(t, other).Lineage, "--force") {
		t.Fatalf("copy over another lineage = %v", err)
	}
	if metaOf(t, db).Lineage != metaOf(t, other).Lineage {
		t.Fatal("a refused copy changed the destination")
	}
	_, err = Copy(ctx, db, src, true)
	must(t, err)
	// Newer state of the same lineage: the database moved on.
	tx = beginTx(t, db, "users", false)
	must(t, tx.Commit())
	_, err = Copy(ctx, db, src, false)
	if !errors.As(err, &refused) || !contains(err.Error(), "newer state", "serial") {
		t.Fatalf("copy over newer state = %v", err)
	}
	// The other way round is fine: pull what the database has.
	if _, err := Copy(ctx, src, db, false); err != nil {
		t.Fatal(err)
	}
	if a, b := metaOf(t, src), metaOf(t, db); a.Lineage != b.Lineage || a.Serial != b.Serial {
		t.Errorf("pulled %+v, database %+v", a, b)
	}
}

func contains(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
