package crash

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // database/sql driver "sqlite", to read the destination

	"github.com/backflowhq/backflow/internal/crashpoint"
	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/spec"
	"github.com/backflowhq/backflow/state"
)

// The backflow binary, built once for the whole package.
var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func backflowBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "backflow-crash-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "backflow")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/backflowhq/backflow/cmd/backflow").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// kill is where a run is stopped: the n-th pass through a named crash
// point, or an external SIGKILL after a delay; neither is a clean run.
type kill struct {
	point string
	n     int
	after time.Duration
}

func (k kill) String() string {
	switch {
	case k.point != "":
		return fmt.Sprintf("%s:%d", k.point, k.n)
	case k.after > 0:
		return fmt.Sprintf("external after %v", k.after)
	}
	return "no kill"
}

// Crash points by the state backend, with the largest hit count worth
// drawing (points passed once per run have 1).
var (
	localApplyPoints = []pointRange{{"apply.inflight", 30}, {"apply.sent", 30}, {"journal.torn", 50},
		{"commit.snapshot", 1}, {"commit.failures", 1}, {"commit.journal", 1}, {"file.replace", 5}, {"apply.committed", 1}}
	sqlApplyPoints = []pointRange{{"apply.inflight", 30}, {"apply.sent", 30}, {"sql.open", 50}, {"sql.committed", 50},
		{"apply.committed", 1}}
	localResetPoints = []pointRange{{"reset.begun", 1}, {"journal.torn", 1}, {"commit.snapshot", 1}, {"commit.failures", 1},
		{"commit.journal", 1}, {"file.replace", 5}, {"reset.committed", 1}}
	sqlResetPoints = []pointRange{{"reset.begun", 1}, {"sql.open", 3}, {"sql.committed", 3}, {"reset.committed", 1}}
)

type pointRange struct {
	name string
	max  int
}

// drawKill picks a named point and hit (three times in four) or an
// external kill after up to maxDelay.
func drawKill(rng *rand.Rand, points []pointRange, maxDelay time.Duration) kill {
	if rng.IntN(4) == 0 {
		return kill{after: time.Duration(1+rng.Int64N(int64(maxDelay/time.Millisecond))) * time.Millisecond}
	}
	p := points[rng.IntN(len(points))]
	return kill{point: p.name, n: 1 + rng.IntN(p.max)}
}

// result is how a child process ended.
type result struct {
	code   int
	killed bool // by SIGKILL
	out    string
}

// project is one project folder: a model, a destination, a state backend.
type project struct {
	t      *testing.T
	name   string
	dir    string
	dest   string // "sqlite" or "postgres"
	store  string // "local" or "postgres"
	mode   string // "upsert" or "insert"
	table  string
	schema string    // of the PostgreSQL state backend
	pg     *pgx.Conn // when the destination or the state is on PostgreSQL
	my     *sql.DB   // … on MariaDB
	m      *model
	serial uint64
	log    []string
}

func newProject(t *testing.T, dest, store, mode string, rows, batch int) *project {
	return newShapedProject(t, dest, store, mode, rows, batch, modelShape{})
}

// newShapedProject is newProject with a model of that shape.
func newShapedProject(t *testing.T, dest, store, mode string, rows, batch int, shape modelShape) *project {
	t.Helper()
	dir := t.TempDir()
	if os.Getenv("BACKFLOW_CRASH_KEEP") != "" { // to look at a failure's files
		var err error
		if dir, err = os.MkdirTemp("", "backflow-crash-project-"); err != nil {
			t.Fatal(err)
		}
		t.Logf("project folder %s (kept)", dir)
	}
	p := &project{t: t, name: fmt.Sprintf("%s/%s/%s/b%d", dest, store, mode, batch), dir: dir, dest: dest, store: store, mode: mode, table: "t", m: newModel(rows, shape)}
	if dest == "postgres" || store == "postgres" {
		p.pg = testdb.Postgres(t)
	}
	if dest == "mysql" || store == "mysql" {
		p.my = testdb.MariaDB(t)
	}
	var destBlock string
	switch dest {
	case "sqlite":
		destBlock = fmt.Sprintf(`
destination "d" {
  type            = "sqlite"
  path            = "dest.db"
  init_sql        = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score INTEGER CHECK (score >= 0))"
  batch_size      = %d
  split_retries   = true
}`, batch)
	case "postgres":
		p.table = testdb.PostgresTable(t, p.pg, "id bigint PRIMARY KEY, name text NOT NULL, score bigint CHECK (score >= 0)")
		destBlock = fmt.Sprintf(`
destination "d" {
  type            = "postgres"
  dsn             = env("CRASH_DEST_DSN")
  batch_size      = %d
  split_retries   = true
  max_in_flight   = 8
}`, batch)
	case "mysql":
		p.table = testdb.MariaDBTable(t, p.my, "id BIGINT PRIMARY KEY, name VARCHAR(200) NOT NULL, score BIGINT, CHECK (score >= 0)")
		destBlock = fmt.Sprintf(`
destination "d" {
  type            = "mysql"
  dsn             = env("CRASH_MYSQL_DSN")
  batch_size      = %d
  split_retries   = true
  max_in_flight   = 4
}`, batch)
	}
	var stateBlock string
	if store != "local" {
		p.schema = testdb.Name("bfcrash")
		if store == "postgres" {
			t.Cleanup(func() { p.pg.Exec(context.Background(), `DROP SCHEMA IF EXISTS "`+p.schema+`" CASCADE`) })
		} else {
			t.Cleanup(func() { p.my.Exec("DROP DATABASE IF EXISTS `" + p.schema + "`") })
		}
		stateBlock = fmt.Sprintf("state {\n  backend = %q\n  dsn     = env(\"CRASH_STATE_DSN\")\n  schema  = %q\n}\n", store, p.schema)
	}
	hcl := stateBlock + `
source "w" {
  type     = "embedded"
  fixtures = "data"
}
model "m" {
  source      = source.w
  query       = "SELECT id, name, score FROM t"
  primary_key = "id"
}` + destBlock + fmt.Sprintf(`
sync "s" {
  model             = model.m
  destination       = destination.d
  object            = %q
  key               = "id"
  mode              = %q
  delete_behavior   = "delete"
  failure_threshold = "100%%"
  max_removals      = "100%%"
  mapping = {
    name  = "name"
    score = "score"
  }
  exclude "hidden" {
    when   = "row.name.startsWith('x')"
    reason = "hidden rows are not synced"
  }
}
`, p.table, mode)
	if err := os.WriteFile(filepath.Join(p.dir, "main.hcl"), []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.m.write(p.dir); err != nil {
		t.Fatal(err)
	}
	return p
}

// run runs backflow ARGS in the project, killed as k says.
func (p *project) run(k kill, args ...string) result {
	p.t.Helper()
	cmd := exec.Command(backflowBinary(p.t), append([]string{"-C", p.dir}, args...)...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1", "CRASH_DEST_DSN="+testdb.PostgresDSN, "CRASH_MYSQL_DSN="+testdb.MariaDBDSN, "CRASH_STATE_DSN="+p.stateDSN())
	if k.point != "" {
		cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%s:%d", crashpoint.EnvVar, k.point, k.n))
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	if k.after > 0 {
		timer := time.NewTimer(k.after)
		select {
		case err = <-done:
			timer.Stop()
		case <-timer.C:
			_ = cmd.Process.Signal(syscall.SIGKILL)
			err = <-done
		}
	} else {
		err = <-done
	}
	r := result{out: out.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			r.killed = true
		}
	default:
		p.t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	if r.killed && p.store != "local" {
		p.sessionGone()
	}
	return r
}

// sessionGone waits until the database server has seen the killed
// process's connection close (its lock is no longer held): a COMMIT it
// sent just before dying may still be applied until then, and the state
// read before would not be the state it left.
func (p *project) sessionGone() {
	p.t.Helper()
	b := p.backend()
	if c, ok := b.(interface{ Close() error }); ok {
		defer c.Close()
	}
	for deadline := time.Now().Add(time.Minute); ; {
		ls, err := b.LockStatus()
		if err != nil {
			p.fatalf("lock status: %v", err)
		}
		if !ls.Held {
			return
		}
		if time.Now().After(deadline) {
			p.fatalf("the killed process's database session still holds its lock after a minute")
		}
		time.Sleep(5 * time.Millisecond) // polling the server, not ordering events
	}
}

// apply runs apply killed as k says; a run that ends by itself must
// succeed.
func (p *project) apply(k kill) result {
	p.t.Helper()
	r := p.run(k, "apply", "--auto-approve", "--lock-timeout", "1m")
	// A run in which the destination took none of the records it was sent
	// for the first time fails, by design, though it sent everything: after
	// a crash those can all be rows it refuses.
	tookNothing := r.code == 1 && strings.Contains(r.out, "the destination took none of the")
	if !r.killed && r.code != 0 && !tookNothing {
		p.fatalf("apply (%v) exited %d:\n%s", k, r.code, r.out)
	}
	return r
}

func (p *project) fatalf(format string, args ...any) {
	p.t.Helper()
	p.t.Fatalf("%s: %s\nhistory:\n  %s", p.name, fmt.Sprintf(format, args...), strings.Join(p.log, "\n  "))
}

// stateList runs `state list --json` and `runs --json`: both must
// load the state, and the serial must not go back.
func (p *project) stateList() {
	p.t.Helper()
	r := p.run(kill{}, "state", "list", "--json")
	if r.code != 0 {
		p.fatalf("state list exited %d:\n%s", r.code, r.out)
	}
	var v struct {
		Serial uint64 `json:"serial"`
	}
	if err := json.Unmarshal([]byte(r.out), &v); err != nil {
		p.fatalf("state list --json: %v\n%s", err, r.out)
	}
	if v.Serial < p.serial {
		p.fatalf("serial went back from %d to %d", p.serial, v.Serial)
	}
	p.serial = v.Serial
	if r := p.run(kill{}, "runs", "--json"); r.code != 0 {
		p.fatalf("runs exited %d:\n%s", r.code, r.out)
	}
}

// cliFailures is the failure index as `state failures s --json` lists it.
func (p *project) cliFailures() map[string]string {
	p.t.Helper()
	r := p.run(kill{}, "state", "failures", "s", "--json")
	if r.code != 0 {
		p.fatalf("state failures exited %d:\n%s", r.code, r.out)
	}
	var list []struct {
		Key   string `json:"key"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.out), &list); err != nil {
		p.fatalf("state failures --json: %v\n%s", err, r.out)
	}
	out := map[string]string{}
	for _, f := range list {
		out[f.Key] = f.Error
	}
	return out
}

func (p *project) stateDSN() string {
	if p.store == "mysql" {
		return testdb.MariaDBDSN
	}
	return testdb.PostgresDSN
}

// backend opens the project's state as backflow does.
func (p *project) backend() state.Backend {
	p.t.Helper()
	if p.store == "local" {
		s, err := state.Open(filepath.Join(p.dir, state.DefaultFolder))
		if err != nil {
			p.fatalf("open the state: %v", err)
		}
		return s.Backend()
	}
	d, ok := state.Default().Lookup(p.store)
	if !ok {
		p.t.Fatalf("state backend %s is not registered", p.store)
	}
	args, err := spec.ValuesFor(d.Type.Spec, map[string]any{"dsn": p.stateDSN(), "schema": p.schema})
	if err != nil {
		p.t.Fatal(err)
	}
	b, err := d.Open(context.Background(), state.Config{Args: args})
	if err != nil {
		p.fatalf("open the state: %v", err)
	}
	return b
}

// stateView is a sync's snapshot (key → value) and failure index
// (key → error).
type stateView struct {
	snap     map[string]string
	failures map[string]*state.Failure
}

func (p *project) readState() stateView {
	p.t.Helper()
	b := p.backend()
	if c, ok := b.(interface{ Close() error }); ok {
		defer c.Close()
	}
	sn, err := b.LoadSnapshot("s")
	if err != nil {
		p.fatalf("load the snapshot: %v", err)
	}
	defer sn.Close()
	v := stateView{snap: map[string]string{}}
	for i := range sn.Len() {
		vals, err := sn.Values(i)
		if err != nil {
			p.fatalf("snapshot values of %q: %v", sn.Key(i), err)
		}
		v.snap[sn.Key(i)] = fmt.Sprintf("%v|%v", vals["name"], vals["score"])
	}
	if v.failures, err = b.LoadFailures("s"); err != nil {
		p.fatalf("load the failure index: %v", err)
	}
	return v
}

// readDest reads the destination table directly: key → value, and
// whether a key occurs twice.
func (p *project) readDest() map[string]string {
	p.t.Helper()
	out := map[string]string{}
	add := func(id int64, name string, score int64) {
		k := fmt.Sprint(id)
		if _, dup := out[k]; dup {
			p.fatalf("destination holds key %s twice", k)
		}
		out[k] = fmt.Sprintf("%s|%d", name, score)
	}
	addAll := func(rows *sql.Rows) {
		defer rows.Close()
		for rows.Next() {
			var id, score int64
			var name string
			if err := rows.Scan(&id, &name, &score); err != nil {
				p.t.Fatal(err)
			}
			add(id, name, score)
		}
		if err := rows.Err(); err != nil {
			p.t.Fatal(err)
		}
	}
	switch p.dest {
	case "sqlite":
		path := filepath.Join(p.dir, "dest.db")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return out // not created yet: killed before the first request
		}
		db, err := sql.Open("sqlite", path)
		if err != nil {
			p.t.Fatal(err)
		}
		defer db.Close()
		rows, err := db.Query("SELECT id, name, score FROM t")
		if err != nil {
			if strings.Contains(err.Error(), "no such table") {
				return out
			}
			p.t.Fatal(err)
		}
		addAll(rows)
	case "mysql":
		rows, err := p.my.Query("SELECT id, name, score FROM " + p.table)
		if err != nil {
			p.t.Fatal(err)
		}
		addAll(rows)
	case "postgres":
		rows, err := p.pg.Query(context.Background(), "SELECT id, name, score FROM "+p.table)
		if err != nil {
			p.t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id, score int64
			var name string
			if err := rows.Scan(&id, &name, &score); err != nil {
				p.t.Fatal(err)
			}
			add(id, name, score)
		}
		if err := rows.Err(); err != nil {
			p.t.Fatal(err)
		}
	}
	return out
}
