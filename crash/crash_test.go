package crash

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backflowhq/backflow/state"
)

// The short run: a fixed seed, every combination of SQLite and PostgreSQL
// destinations, local and PostgreSQL state and modes upsert and insert,
// three projects on MariaDB, a few killed runs each, and reset-cdc on every
// state backend. The soak (BACKFLOW_SOAK=N) spreads N killed runs over the same.

const shortRounds = 3

func TestCrashShort(t *testing.T) {
	if os.Getenv("BACKFLOW_SOAK") != "" {
		t.Skip("BACKFLOW_SOAK is set: TestCrashSoak runs instead")
	}
	k := runHarness(t, seed(t, 1), shortRounds, 2)
	t.Logf("%d kill points survived:\n%s", k.count(), k)
	if k.count() < 15 {
		t.Errorf("only %d runs were killed: the draws no longer reach the crash points", k.count())
	}
}

// A reset-cdc killed once it committed, before it recorded its run: a plan
// saved before it is stale all the same (with a database backend, whose
// locks are per sync, the run history is what tells it).
func TestStalePlanAfterKilledReset(t *testing.T) {
	backflowBinary(t)
	for _, store := range []string{"local", "postgres"} {
		t.Run(store, func(t *testing.T) {
			p := newProject(t, "sqlite", store, "upsert", 30, 10)
			if r := p.apply(kill{}); r.code != 0 {
				p.fatalf("first apply: %s", r.out)
			}
			p.m.mutate(rand.New(rand.NewPCG(1, 2)))
			if err := p.m.write(p.dir); err != nil {
				t.Fatal(err)
			}
			saved := filepath.Join(p.dir, "before-reset.plan")
			if r := p.run(kill{}, "plan", "--out", saved); r.code != 0 {
				p.fatalf("plan --out: exit %d:\n%s", r.code, r.out)
			}
			what := kill{point: "reset.committed", n: 1}
			if r := p.run(what, "reset-cdc", "s", "--auto-approve"); !r.killed {
				p.fatalf("reset-cdc was not killed at %v: exit %d:\n%s", what, r.code, r.out)
			}
			if r := p.run(kill{}, "apply", saved, "--auto-approve"); r.code == 0 || !strings.Contains(r.out, "stale") {
				p.fatalf("the plan saved before the killed reset-cdc: exit %d:\n%s", r.code, r.out)
			}
		})
	}
}

// Wide rows in large batches: one answer's records are more than the
// state writer holds in memory (4 MiB), so journal frames are appended to
// the file before the checkpoint that ends their group, and kills land
// between (torn spilled frames, a group without its last frame).
func TestCrashWideRows(t *testing.T) {
	skipLarge(t, "wide rows: tens of MB per run")
	k := &kills{}
	p := newShapedProject(t, "sqlite", "local", "upsert", 3000, 3000, modelShape{pad: 2000})
	applyScenario(p, rand.New(rand.NewPCG(seed(t, 1), 99)), shortRounds, localApplyPoints, k)
	t.Logf("%d kill points survived:\n%s", k.count(), k)
}

// Wide rows in large batches with the state in PostgreSQL: one answer's
// changes are more than the database state holds before writing them into
// its open transaction (sqlBatchBytes), so kills land between such a
// batch and the checkpoint that commits it (sql.batch). A bulk-shaped
// model, so that most batches are accepted whole.
func TestCrashWideRowsDatabaseState(t *testing.T) {
	skipLarge(t, "wide rows: tens of MB per run")
	k := &kills{}
	p := newShapedProject(t, "sqlite", "postgres", "upsert", 3000, 3000, modelShape{pad: 2000, bulk: true})
	// The first apply is killed there, whatever the draws after it.
	first := kill{point: "sql.batch", n: 1}
	before, prevDest, inc := p.readState(), p.readDest(), p.m.included()
	if res := p.apply(first); !res.killed {
		t.Fatalf("the first apply was not killed at sql.batch: the changes of an answer no longer fill a batch of the database state\n%s", res.out)
	}
	k.add(p.name, first)
	p.checkRun(before, prevDest, p.readState(), p.readDest(), inc)
	points := append([]pointRange{{"sql.batch", 2}}, sqlApplyPoints...)
	applyScenario(p, rand.New(rand.NewPCG(seed(t, 1), 98)), 2*shortRounds, points, k)
	t.Logf("%d kill points survived:\n%s", k.count(), k)
}

// Batches of 1,000 to PostgreSQL, with hundreds of rows added and
// changed each day: adds go by COPY and changes by the bulk statement
// (500 rows and more), so kills land while they run, and the rare
// refused row rejects a whole bulk batch, which split retries isolate.
// (A record whose outcome a kill left unknown is sent again as a retry,
// an upsert, never as an add.)
func TestCrashBulkPostgres(t *testing.T) {
	skipLarge(t, "bulk batches: thousands of rows per run")
	k := &kills{}
	p := newShapedProject(t, "postgres", "local", "upsert", 3000, 1000, modelShape{bulk: true})
	// A run sends a few requests, not dozens: the kill points are drawn
	// among those.
	points := []pointRange{{"apply.inflight", 4}, {"apply.sent", 4}, {"journal.torn", 8},
		{"commit.snapshot", 1}, {"commit.failures", 1}, {"commit.journal", 1}, {"file.replace", 5}, {"apply.committed", 1}}
	applyScenario(p, rand.New(rand.NewPCG(seed(t, 1), 7)), 4*shortRounds, points, k)
	t.Logf("%d kill points survived:\n%s", k.count(), k)
	if k.count() < 4 {
		t.Errorf("only %d runs were killed: the draws no longer reach the crash points", k.count())
	}
}

// skipLarge skips a harness run of large batches where the harness
// cannot kill (Windows) or in -short runs (why says what is large), and
// builds the backflow binary otherwise.
func skipLarge(t *testing.T, why string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the harness kills with SIGKILL")
	}
	if testing.Short() {
		t.Skip(why)
	}
	backflowBinary(t)
}

func TestCrashSoak(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("BACKFLOW_SOAK"))
	if n <= 0 {
		t.Skip("set BACKFLOW_SOAK=N (N killed runs, 50 or more) to soak")
	}
	// Fourteen projects: eleven applying, three resetting.
	rounds := max(1, (n+13)/14)
	start := time.Now()
	k := runHarness(t, seed(t, uint64(time.Now().UnixNano())), rounds, rounds)
	t.Logf("%d kill points survived in %v:\n%s", k.count(), time.Since(start).Round(time.Second), k)
}

func seed(t *testing.T, def uint64) uint64 {
	if s := os.Getenv("BACKFLOW_CRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("BACKFLOW_CRASH_SEED=%q: %v", s, err)
		}
		def = v
	}
	t.Logf("seed %d (BACKFLOW_CRASH_SEED=%d reproduces it)", def, def)
	return def
}

// kills lists the runs killed, by project.
type kills struct {
	mu   sync.Mutex
	list []string
}

func (k *kills) add(project string, what kill) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.list = append(k.list, project+": "+what.String())
}

func (k *kills) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.list)
}

func (k *kills) String() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := slices.Clone(k.list)
	slices.Sort(l)
	return "  " + strings.Join(l, "\n  ")
}

func runHarness(t *testing.T, seed uint64, applyRounds, resetRounds int) *kills {
	if runtime.GOOS == "windows" {
		t.Skip("the harness kills with SIGKILL")
	}
	backflowBinary(t)
	k := &kills{}
	t.Run("apply", func(t *testing.T) {
		var projects [][3]string // destination, state, mode
		for _, dest := range []string{"sqlite", "postgres"} {
			for _, store := range []string{"local", "postgres"} {
				for _, mode := range []string{"upsert", "insert"} {
					projects = append(projects, [3]string{dest, store, mode})
				}
			}
		}
		// MariaDB as destination (four requests in flight at once) and as
		// state, once each way.
		projects = append(projects, [3]string{"mysql", "mysql", "upsert"}, [3]string{"mysql", "local", "insert"}, [3]string{"sqlite", "mysql", "insert"})
		for i, pr := range projects {
			dest, store, mode := pr[0], pr[1], pr[2]
			rng := rand.New(rand.NewPCG(seed, uint64(i+1)))
			t.Run(dest+"-"+store+"-"+mode, func(t *testing.T) {
				t.Parallel()
				// Batches of 10, 4 and 25 records in turn: more or fewer
				// requests, splits and checkpoints per run.
				p := newProject(t, dest, store, mode, 120, []int{10, 4, 25}[i%3])
				points := localApplyPoints
				if store != "local" {
					points = sqlApplyPoints
				}
				applyScenario(p, rng, applyRounds, points, k)
			})
		}
	})
	t.Run("reset-cdc", func(t *testing.T) {
		for i, store := range []string{"local", "postgres", "mysql"} {
			rng := rand.New(rand.NewPCG(seed, 100+uint64(i)))
			t.Run(store, func(t *testing.T) {
				t.Parallel()
				p := newProject(t, "sqlite", store, "upsert", 120, 10)
				points := localResetPoints
				if store != "local" {
					points = sqlResetPoints
				}
				resetScenario(p, rng, resetRounds, points, k)
			})
		}
	})
	return k
}

// maxDelay bounds the external kills: about the time an apply of the
// first model takes here (start-up included), so that many land inside
// one; the later, smaller applies often end first, and are then checked
// as runs that ended by themselves.
const maxDelay = 500 * time.Millisecond

// applyScenario: killed applies, the model changing between them, then a
// final apply that must bring the destination to the model.
func applyScenario(p *project, rng *rand.Rand, rounds int, points []pointRange, k *kills) {
	before, prevDest := p.readState(), p.readDest()
	for r := range rounds + 1 {
		final := r == rounds
		change := "unchanged"
		if r > 0 && rng.IntN(10) < 7 {
			change = p.m.mutate(rng)
			if err := p.m.write(p.dir); err != nil {
				p.t.Fatal(err)
			}
		}
		what := kill{}
		if !final {
			what = drawKill(rng, points, maxDelay)
		}
		inc := p.m.included()
		res := p.apply(what)
		p.log = append(p.log, fmt.Sprintf("model %s; apply, %v: killed %v", change, what, res.killed))
		p.stateList()
		now, dest := p.readState(), p.readDest()
		p.checkRun(before, prevDest, now, dest, inc)
		if res.killed {
			k.add(p.name, what)
		} else {
			// A run that ended by itself brought everything in step, however
			// many crashes came before it.
			p.checkFinal(now, dest)
		}
		before, prevDest = now, dest
	}
	p.checkFinal(before, prevDest)
	// Converged: the next plan only retries the rejected records.
	r := p.run(kill{}, "plan", "--no-color")
	want := fmt.Sprintf("Plan: 0 to add, 0 to change, 0 to remove, %d to retry.", len(before.failures))
	if len(before.failures) == 0 {
		want = "No changes."
	}
	if r.code != 0 || !strings.Contains(r.out, want) {
		p.fatalf("plan after the final apply: exit %d, want %q:\n%s", r.code, want, r.out)
	}
}

// checkRun checks what one run (killed or not) left, against the state
// and destination before it and the model it read.
func (p *project) checkRun(before stateView, prevDest map[string]string, now stateView, dest map[string]string, inc map[string]row) {
	p.t.Helper()
	// No orphan: whatever the destination and the snapshot disagree on is
	// in the failure index, to be sent again.
	for _, k := range union(dest, now.snap) {
		d, inDest := dest[k]
		s, inSnap := now.snap[k]
		if inDest && inSnap && d == s {
			continue
		}
		if now.failures[k] == nil {
			p.fatalf("key %s: destination %q (present %v), snapshot %q (present %v), and not in the failure index: an orphan the next runs would never settle", k, d, inDest, s, inSnap)
		}
	}
	// The snapshot moves only by what this run sent and the destination
	// accepted: a key leaves it only by a removal (it left the model), a
	// value enters it only from the model this run read.
	for k, old := range before.snap {
		if s, ok := now.snap[k]; !ok {
			if _, inModel := inc[k]; inModel {
				p.fatalf("key %s (%q) left the snapshot although the model still has it: an accepted record lost", k, old)
			}
		} else if s != old && s != inc[k].value() {
			p.fatalf("key %s: snapshot %q, was %q, and the model says %q", k, s, old, inc[k].value())
		}
	}
	for k, s := range now.snap {
		if _, was := before.snap[k]; !was && s != inc[k].value() {
			p.fatalf("key %s entered the snapshot as %q; the model says %q", k, s, inc[k].value())
		}
	}
	// The destination changes only to the model this run read.
	for _, k := range union(dest, prevDest) {
		d, inDest := dest[k]
		if old, was := prevDest[k]; inDest == was && d == old {
			continue
		}
		r, inModel := inc[k]
		switch {
		case inDest && (!inModel || d != r.value()):
			p.fatalf("key %s: destination now %q; the model says %q (included %v)", k, d, r.value(), inModel)
		case !inDest && inModel:
			p.fatalf("key %s removed from the destination although the model includes it", k)
		}
	}
}

// checkFinal checks the end of a clean run: the destination is the model
// minus the rejected and excluded rows, every rejected row is in the
// failure index, nothing else is.
func (p *project) checkFinal(st stateView, dest map[string]string) {
	p.t.Helper()
	inc := p.m.included()
	cli := p.cliFailures()
	if len(cli) != len(st.failures) {
		p.fatalf("state failures lists %d entries, the state holds %d", len(cli), len(st.failures))
	}
	for k, f := range st.failures {
		// Unknown may stay set (the destination may hold what that send
		// wrote), but the record was sent again and refused for a reason.
		if strings.Contains(f.Error, "outcome unknown") || strings.Contains(cli[k], "outcome unknown") {
			p.fatalf("key %s was not sent again by a run that ended by itself", k)
		}
		r, ok := inc[k]
		if !ok || r.valid() {
			p.fatalf("key %s is in the failure index (%s) but the model has %q (included %v)", k, f.Error, r.value(), ok)
		}
		if _, ok := cli[k]; !ok {
			p.fatalf("key %s is in the failure index but not in `state failures`", k)
		}
	}
	for _, k := range union(dest, st.snap) {
		if _, ok := inc[k]; !ok {
			p.fatalf("key %s is in the destination or the snapshot but not included in the model", k)
		}
	}
	for k, r := range inc {
		d, inDest := dest[k]
		s, inSnap := st.snap[k]
		f := st.failures[k]
		switch {
		case inSnap && d != s && f == nil:
			// (With a failure entry the destination may hold what a send
			// whose outcome a crash left unknown wrote, until a retry lands.)
			p.fatalf("key %s: snapshot %q, destination %q (present %v), no failure entry", k, s, d, inDest)
		case p.mode == "upsert" && r.valid() && (!inSnap || s != r.value()):
			p.fatalf("key %s: the model says %q, the destination %q (present %v)", k, r.value(), d, inDest)
		case p.mode == "insert" && r.valid() && !inSnap:
			p.fatalf("key %s (%q) is valid and included but was never inserted (destination %q, present %v)", k, r.value(), d, inDest)
		case inSnap && !p.m.history[k][s]:
			p.fatalf("key %s holds %q, never a value of the model", k, s)
		case !r.valid() && !inSnap && f == nil:
			p.fatalf("key %s (%q) was rejected but is not in the failure index", k, r.value())
		case p.mode == "upsert" && !r.valid() && f == nil:
			p.fatalf("key %s changed to %q, rejected, but is not in the failure index", k, r.value())
		case inDest && d != s && !p.m.history[k][d]:
			p.fatalf("key %s: destination holds %q, never a value of the model", k, d)
		}
	}
}

func union[V any](a, b map[string]V) []string {
	out := make([]string, 0, len(a)+len(b))
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// resetScenario: after an apply, the model changes and reset-cdc is killed;
// the state must be all of the old or all of the new, never a mix.
func resetScenario(p *project, rng *rand.Rand, rounds int, points []pointRange, k *kills) {
	if res := p.apply(kill{}); res.code != 0 {
		p.fatalf("first apply: %s", res.out)
	}
	p.stateList()
	resetKilled := false // the last reset-cdc was killed
	for r := range rounds + 1 {
		final := r == rounds
		// After a killed reset-cdc that recorded its start, applies are
		// refused until a reset-cdc ends: the next one is the reset below.
		if rng.IntN(3) == 0 && !resetKilled {
			// New rejected rows fill the failure index again.
			p.m.mutate(rng)
			if err := p.m.write(p.dir); err != nil {
				p.t.Fatal(err)
			}
			p.apply(kill{})
			p.log = append(p.log, "apply")
		}
		if rng.IntN(3) == 0 && !resetKilled {
			// A reset after a killed apply: records in flight, a journal.
			applyPoints := localApplyPoints
			if p.store != "local" {
				applyPoints = sqlApplyPoints
			}
			what := drawKill(rng, applyPoints, maxDelay)
			res := p.apply(what)
			p.log = append(p.log, fmt.Sprintf("apply, %v: killed %v", what, res.killed))
			if res.killed {
				k.add(p.name, what)
			}
		}
		old := p.readState()
		change := p.m.mutate(rng)
		if err := p.m.write(p.dir); err != nil {
			p.t.Fatal(err)
		}
		want := map[string]string{}
		for k, r := range p.m.included() {
			want[k] = r.value()
		}
		// A plan saved before the reset: stale once the reset committed,
		// even when the reset died before it recorded its run.
		// After a killed reset-cdc that recorded its start, the sync is
		// not planned until a reset-cdc ends.
		saved := filepath.Join(p.dir, "before-reset.plan")
		planned := true
		if r := p.run(kill{}, "plan", "--out", saved); r.code != 0 && r.code != 2 {
			if !resetKilled || !strings.Contains(r.out, "did not record its end") {
				p.fatalf("plan --out before reset-cdc exited %d:\n%s", r.code, r.out)
			}
			planned = false
		}
		what := kill{}
		if !final {
			what = drawKill(rng, points, 600*time.Millisecond)
		}
		res := p.run(what, "reset-cdc", "s", "--auto-approve", "--lock-timeout", "1m")
		p.log = append(p.log, fmt.Sprintf("model %s; reset-cdc, %v: killed %v", change, what, res.killed))
		if !res.killed && res.code != 0 {
			p.fatalf("reset-cdc exited %d:\n%s", res.code, res.out)
		}
		p.stateList()
		now := p.readState()
		isNew := len(now.failures) == 0 && equalMaps(now.snap, want)
		isOld := equalMaps(now.snap, old.snap) && sameFailures(now.failures, old.failures)
		switch {
		case !res.killed && !isNew:
			p.fatalf("reset-cdc ended by itself but the state is not the model's: %d keys (want %d), %d failures", len(now.snap), len(want), len(now.failures))
		case !isNew && !isOld:
			p.fatalf("reset-cdc killed at %v left a mix: %d keys (old %d, new %d), %d failures (old %d)", what, len(now.snap), len(old.snap), len(want), len(now.failures), len(old.failures))
		}
		if res.killed {
			k.add(p.name+" reset-cdc", what)
		}
		resetKilled = res.killed
		if planned && isNew && !isOld {
			if r := p.run(kill{}, "apply", saved, "--auto-approve"); r.code == 0 || !strings.Contains(r.out, "stale") {
				p.fatalf("a plan saved before reset-cdc (killed %v at %v), applied after it: exit %d:\n%s", res.killed, what, r.code, r.out)
			}
		}
		os.Remove(saved)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || v != w {
			return false
		}
	}
	return true
}

func sameFailures(a, b map[string]*state.Failure) bool {
	if len(a) != len(b) {
		return false
	}
	for k, f := range a {
		g, ok := b[k]
		if !ok || f.Operation != g.Operation || f.Error != g.Error || f.Attempts != g.Attempts {
			return false
		}
	}
	return true
}
