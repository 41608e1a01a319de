package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/spec"
	"github.com/backflowhq/backflow/state"
)

// Runners sharing a database state backend, as separate OS processes.

// dbState is a state schema of one test on one server, with the test's
// own connection to it.
type dbState struct {
	backend string // "postgres" or "mysql"
	dsn     string
	schema  string
	// query runs a COUNT(*) query; {t} prefixes a table of the state schema.
	query func(query string, args ...any) (int, error)
}

// count runs a COUNT(*) query, failing the test on error.
func (s *dbState) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	n, err := s.query(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// poll runs a COUNT(*) query on tables that may not exist yet (0).
func (s *dbState) poll(query string) int {
	n, _ := s.query(query)
	return n
}

func newDBState(t *testing.T, backend string) *dbState {
	t.Helper()
	s := &dbState{backend: backend, schema: testdb.Name("bfcli")}
	if backend == "postgres" {
		conn := testdb.Postgres(t)
		s.dsn = testdb.PostgresDSN
		t.Cleanup(func() { conn.Exec(context.Background(), `DROP SCHEMA IF EXISTS "`+s.schema+`" CASCADE`) })
		s.query = func(q string, args ...any) (int, error) {
			var n int
			err := conn.QueryRow(context.Background(), strings.ReplaceAll(q, "{t}", `"`+s.schema+`".`), args...).Scan(&n)
			return n, err
		}
	} else {
		db := testdb.MariaDB(t)
		s.dsn = testdb.MariaDBDSN
		t.Cleanup(func() { db.Exec("DROP DATABASE IF EXISTS `" + s.schema + "`") })
		s.query = func(q string, args ...any) (int, error) {
			var n int
			err := db.QueryRow(strings.ReplaceAll(q, "{t}", "`"+s.schema+"`."), args...).Scan(&n)
			return n, err
		}
	}
	return s
}

// block is the config's state block; the DSN is read from the
// environment, as a user would.
func (s *dbState) block() string {
	return fmt.Sprintf("state {\n  backend = %q\n  dsn     = env(\"BACKFLOW_STATE_DSN\")\n  schema  = %q\n}\n", s.backend, s.schema)
}

// open opens the backend through the registry, as backflow does.
func (s *dbState) open(t *testing.T) state.Backend {
	t.Helper()
	d, ok := state.Default().Lookup(s.backend)
	if !ok {
		t.Fatalf("state backend %s is not registered", s.backend)
	}
	args, err := spec.ValuesFor(d.Type.Spec, map[string]any{"dsn": s.dsn, "schema": s.schema})
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.Open(context.Background(), state.Config{Args: args})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.(interface{ Close() error }).Close() })
	return b
}

// command is `backflow ARGS` as a child process with the state DSN in its
// environment.
func (s *dbState) command(args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	cmd := exec.Command("backflow", args...)
	cmd.Env = append(os.Environ(), "BACKFLOW_STATE_DSN="+s.dsn)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	return cmd, &out, &errOut
}

// run runs `backflow ARGS` as a child process and returns its exit code.
func (s *dbState) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd, out, errOut := s.command(args...)
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errOut.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errOut.String()
}

// child is a running backflow process.
type child struct {
	cmd         *exec.Cmd
	out, stderr *bytes.Buffer
	done        chan struct{}
	err         error // once done
}

func (s *dbState) start(t *testing.T, args ...string) *child {
	t.Helper()
	cmd, out, stderr := s.command(args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, out: out, stderr: stderr, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-c.done
	})
	return c
}

// waitFor polls the state database until cond holds (the child process
// reached a point of its apply); it fails when the child ends first or
// after a minute.
func (c *child) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		select {
		case <-c.done:
			t.Fatalf("the process ended (%v) before %s; stderr: %s", c.err, what, c.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within a minute; stderr: %s", what, c.stderr)
		}
		time.Sleep(5 * time.Millisecond) // polling the database, not ordering events
	}
}

func writeFixture(t *testing.T, dir string, n int, badEvery int) {
	t.Helper()
	var b strings.Builder
	b.WriteString("id,name,score\n")
	for i := 1; i <= n; i++ {
		s := i
		if badEvery > 0 && i%badEvery == 0 {
			s = -1
		}
		fmt.Fprintf(&b, "%d,name %d,%d\n", i, i, s)
	}
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "data", "t.csv"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

const modelHCL = `
source "w" {
  type     = "embedded"
  fixtures = "data"
}
model "m" {
  source      = source.w
  query       = "SELECT id, name, score FROM t"
  primary_key = "id"
}
`

func TestTwoRunnersShareADatabaseStateBackend(t *testing.T) {
	if _, err := exec.LookPath("backflow"); err != nil {
		t.Fatal(err)
	}
	for _, backend := range []string{"postgres", "mysql"} {
		t.Run(backend, func(t *testing.T) { testTwoRunners(t, backend) })
	}
}

// testTwoRunners: runner A applies sync s1, whose destination table the
// test keeps locked, so A holds s1's state lock until the test lets go.
// Meanwhile runner B applies s2 to the end, and runner C, on s1, is
// refused at once, naming A.
func testTwoRunners(t *testing.T, backend string) {
	st := newDBState(t, backend)
	const n = 500
	dir := t.TempDir()
	writeFixture(t, dir, n, 0)

	var destDSN, table string
	var release func()
	var destRows func() int
	if backend == "postgres" {
		conn := testdb.Postgres(t)
		table = testdb.PostgresTable(t, conn, "id bigint PRIMARY KEY, name text, score bigint")
		destDSN = testdb.PostgresDSN
		locker := testdb.Postgres(t)
		testdb.PostgresExec(t, locker, "BEGIN", "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE")
		release = func() { testdb.PostgresExec(t, locker, "COMMIT") }
		destRows = func() int {
			var c int
			if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&c); err != nil {
				t.Fatal(err)
			}
			return c
		}
	} else {
		db := testdb.MariaDB(t)
		table = testdb.MariaDBTable(t, db, "id BIGINT PRIMARY KEY, name TEXT, score BIGINT")
		destDSN = testdb.MariaDBDSN
		locker, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := locker.ExecContext(context.Background(), "LOCK TABLES "+table+" WRITE"); err != nil {
			t.Fatal(err)
		}
		release = func() {
			locker.ExecContext(context.Background(), "UNLOCK TABLES")
			locker.Close()
		}
		destRows = func() int {
			var c int
			if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&c); err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
	released := false
	defer func() {
		if !released {
			release()
		}
	}()
	hcl := st.block() + modelHCL + fmt.Sprintf(`
destination "shared" {
  type         = %q
  dsn          = %q
  timeout      = "10m"
  lock_timeout = "10m"
}
destination "lite" {
  type     = "sqlite"
  path     = "lite.db"
  init_sql = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT, score INTEGER)"
}
sync "s1" {
  model       = model.m
  destination = destination.shared
  object      = %q
  key         = "id"
  mapping = {
    name  = "name"
    score = "score"
  }
}
sync "s2" {
  model       = model.m
  destination = destination.lite
  object      = "t"
  key         = "id"
  mapping = {
    name  = "name"
    score = "score"
  }
}
`, backend, destDSN, table)
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}

	a := st.start(t, "-C", dir, "apply", "--auto-approve", "--sync", "s1")
	// A has begun s1 and announced its first batch: it is inside its apply,
	// blocked on the destination table, holding s1's lock.
	a.waitFor(t, "runner A's first batch", func() bool {
		return st.poll("SELECT count(*) FROM {t}inflight") > 0
	})

	// B applies the other sync at the same time, to the end.
	code, out, errOut := st.run(t, "-C", dir, "apply", "--auto-approve", "--sync", "s2")
	if code != 0 || !strings.Contains(out, fmt.Sprintf(`sync "s2": %d accepted, 0 rejected`, n)) {
		t.Fatalf("runner B on s2: exit %d\n%s%s", code, out, errOut)
	}
	// C, on A's sync, is refused at once, naming A.
	code, out, errOut = st.run(t, "-C", dir, "apply", "--auto-approve", "--sync", "s1")
	if code != 1 || !strings.Contains(errOut, `the state of sync "s1" is locked by`) || !strings.Contains(errOut, fmt.Sprintf("(pid %d) for \"apply\"", a.cmd.Process.Pid)) {
		t.Fatalf("runner C on s1: exit %d, want a refusal naming pid %d\n%s%s", code, a.cmd.Process.Pid, out, errOut)
	}
	code, out, _ = st.run(t, "-C", dir, "state", "list")
	if code != 0 || !strings.Contains(out, `lock of sync "s1": held by`) || !strings.Contains(out, fmt.Sprintf("(pid %d)", a.cmd.Process.Pid)) || strings.Contains(out, `lock of sync "s2"`) {
		t.Fatalf("state list while A runs: exit %d\n%s", code, out)
	}
	if st.count(t, "SELECT count(*) FROM {t}locks") != 1 {
		t.Fatal("B left its lock's holder row behind")
	}

	release()
	released = true
	<-a.done
	if a.err != nil {
		t.Fatalf("runner A: %v\n%s%s", a.err, a.out, a.stderr)
	}
	if !strings.Contains(a.out.String(), fmt.Sprintf(`sync "s1": %d accepted, 0 rejected`, n)) {
		t.Fatalf("runner A: %s", a.out)
	}
	if got := destRows(); got != n {
		t.Errorf("s1's destination holds %d rows, want %d", got, n)
	}
	if got := countRows(t, filepath.Join(dir, "lite.db")); got != n {
		t.Errorf("s2's destination holds %d rows, want %d", got, n)
	}
	code, out, errOut = st.run(t, "-C", dir, "plan", "--detailed-exitcode")
	if code != 0 {
		t.Errorf("plan after both runs: exit %d\n%s%s", code, out, errOut)
	}
	if st.count(t, "SELECT count(*) FROM {t}locks")+st.count(t, "SELECT count(*) FROM {t}inflight") != 0 {
		t.Error("holder rows or in-flight records left behind")
	}
	runs := st.count(t, "SELECT count(*) FROM {t}runs")
	if runs != 2 {
		t.Errorf("%d runs recorded, want 2", runs)
	}
}

func TestKilledApplyWithDatabaseStateLosesNothing(t *testing.T) {
	if _, err := exec.LookPath("backflow"); err != nil {
		t.Fatal(err)
	}
	for _, backend := range []string{"postgres", "mysql"} {
		t.Run(backend, func(t *testing.T) { testKilledApply(t, backend) })
	}
}

func testKilledApply(t *testing.T, backend string) {
	st := newDBState(t, backend)
	const n, bad = 6000, 6
	dir := bigConfig(t, n) // every 1000th row violates a CHECK constraint
	hcl, err := os.ReadFile(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "main.hcl"), append([]byte(st.block()), hcl...), 0o644)

	c := st.start(t, "-C", dir, "apply", "--auto-approve")
	c.waitFor(t, "checkpoints of 1000 records", func() bool {
		return st.poll("SELECT count(*) FROM {t}snapshot") >= 1000
	})
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.done
	cmd := c.cmd

	b := st.open(t)
	// The lock goes with the session (once the server has seen the
	// connection close): only the holder row is left, stale.
	var ls state.LockStatus
	for deadline := time.Now().Add(time.Minute); ; {
		var err error
		if ls, err = b.LockStatus(); err != nil {
			t.Fatal(err)
		}
		if !ls.Held || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling the server, not ordering events
	}
	if ls.Held || !ls.Stale || ls.Holder == nil || ls.Holder.PID != cmd.Process.Pid {
		t.Fatalf("lock status after SIGKILL = %+v, want a stale holder row of pid %d", ls, cmd.Process.Pid)
	}
	// Nothing recorded is lost: every record the snapshot holds is in the
	// destination, and every row the destination holds beyond it was in
	// flight, now an unknown outcome to send again.
	snap, err := b.LoadSnapshot("s")
	if err != nil {
		t.Fatal(err)
	}
	kept := snap.Len()
	fails, err := b.LoadFailures("s")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "dest.db"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query("SELECT id FROM t")
	if err != nil {
		t.Fatal(err)
	}
	written := 0
	for rows.Next() {
		var id int
		rows.Scan(&id)
		written++
		key := strconv.Itoa(id)
		if _, _, ok := snap.Lookup(key); !ok && (fails[key] == nil || !fails[key].Unknown) {
			t.Errorf("row %s is in the destination but neither in the snapshot nor in flight", key)
		}
	}
	rows.Close()
	db.Close()
	for i := range kept {
		if _, err := snap.Values(i); err != nil {
			t.Fatal(err)
		}
	}
	snap.Close()
	// At most two batches apart: the one whose answer was being recorded
	// and the one sent meanwhile.
	if kept < 1000 || kept >= n || written < kept || written > kept+20 {
		t.Fatalf("snapshot %d records, destination %d rows: want the checkpointed progress, at most two batches apart", kept, written)
	}

	code, out, errOut := st.run(t, "-C", dir, "apply", "--auto-approve")
	if code != 0 || !strings.Contains(errOut, "took over the state lock left by") || !strings.Contains(errOut, fmt.Sprintf("(pid %d)", cmd.Process.Pid)) {
		t.Fatalf("re-run: exit %d, want success and a warning naming the dead holder\n%s%s", code, out, errOut)
	}
	if got := countRows(t, filepath.Join(dir, "dest.db")); got != n-bad {
		t.Fatalf("destination holds %d rows, want every valid row (%d)", got, n-bad)
	}
	code, out, _ = st.run(t, "-C", dir, "plan", "--detailed-exitcode")
	if code != 2 || !strings.Contains(out, fmt.Sprintf("Plan: 0 to add, 0 to change, 0 to remove, %d to retry.", bad)) {
		t.Fatalf("plan after recovery: exit %d\n%s", code, out)
	}
	if ls, err := b.LockStatus(); err != nil || ls.Held || ls.Stale {
		t.Errorf("lock status after the re-run = %+v, %v", ls, err)
	}
}

func TestStatePushAndPull(t *testing.T) {
	st := newDBState(t, "postgres")
	dir := bigConfig(t, 300)
	code, out, errOut := backflow("-C", dir, "apply", "--auto-approve")
	if code != 0 {
		t.Fatalf("apply with local state: exit %d\n%s%s", code, out, errOut)
	}
	_, localPlan, _ := backflow("-C", dir, "plan")
	local, err := state.Open(filepath.Join(dir, ".backflow"))
	if err != nil {
		t.Fatal(err)
	}
	localMeta, _ := local.Meta()

	// Without a database backend in the config there is nothing to push to.
	code, _, errOut = backflow("-C", dir, "state", "push")
	if code != 1 || !strings.Contains(errOut, "add a state block naming a database backend") {
		t.Fatalf("push without a state block: exit %d %s", code, errOut)
	}
	hcl, _ := os.ReadFile(filepath.Join(dir, "main.hcl"))
	os.WriteFile(filepath.Join(dir, "main.hcl"), append([]byte(st.block()), hcl...), 0o644)
	t.Setenv("BACKFLOW_STATE_DSN", st.dsn)

	code, out, errOut = backflow("-C", dir, "state", "push")
	if code != 0 || !strings.Contains(out, "1 syncs, 300 records, 0 failures, 1 runs (1 with row logs); lineage "+localMeta.Lineage) {
		t.Fatalf("push: exit %d\n%s%s", code, out, errOut)
	}
	// The same plan against the database as against the folder.
	if _, dbPlan, _ := backflow("-C", dir, "plan"); dbPlan != localPlan {
		t.Errorf("plan against the pushed state:\n%s\nagainst the folder:\n%s", dbPlan, localPlan)
	}
	code, out, _ = backflow("-C", dir, "state", "list")
	if code != 0 || !strings.Contains(out, "300") || !strings.Contains(out, "lineage "+localMeta.Lineage) {
		t.Errorf("state list: %s", out)
	}

	// The database moves on; pushing the older folder is refused, pulling
	// brings the folder up to date.
	writeFixture(t, dir, 310, 0)
	if code, out, errOut := backflow("-C", dir, "apply", "--auto-approve"); code != 0 {
		t.Fatalf("apply against the database: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = backflow("-C", dir, "state", "push")
	if code != 1 || !strings.Contains(errOut, "newer state of the same lineage") || !strings.Contains(errOut, "--force") {
		t.Fatalf("push over newer state: exit %d %s", code, errOut)
	}
	code, out, errOut = backflow("-C", dir, "state", "pull")
	if code != 0 || !strings.Contains(out, "310 records") {
		t.Fatalf("pull: exit %d\n%s%s", code, out, errOut)
	}
	local, _ = state.Open(filepath.Join(dir, ".backflow"))
	m, _ := local.Meta()
	dbm, _ := st.open(t).Meta()
	if m.Lineage != dbm.Lineage || m.Serial != dbm.Serial {
		t.Errorf("pulled %+v, database %+v", m, dbm)
	}
	runs, _ := local.Runs("s")
	if len(runs) != 2 {
		t.Errorf("pulled %d runs, want 2", len(runs))
	}
	// Another lineage in the database needs --force.
	other := filepath.Join(t.TempDir(), "other")
	if code, out, errOut := backflow("-C", dir, "state", "pull", "--to", other); code != 0 {
		t.Fatalf("pull into a new folder: %d %s%s", code, out, errOut)
	}
	os.RemoveAll(filepath.Join(dir, ".backflow"))
	os.WriteFile(filepath.Join(dir, "main.hcl"), hcl, 0o644)
	if code, out, errOut := backflow("-C", dir, "apply", "--auto-approve"); code != 0 {
		t.Fatalf("apply to a new folder: %d %s%s", code, out, errOut)
	}
	os.WriteFile(filepath.Join(dir, "main.hcl"), append([]byte(st.block()), hcl...), 0o644)
	code, _, errOut = backflow("-C", dir, "state", "push")
	if code != 1 || !strings.Contains(errOut, "another lineage") {
		t.Fatalf("push of another lineage: exit %d %s", code, errOut)
	}
	code, out, errOut = backflow("-C", dir, "state", "push", "--force")
	if code != 0 || !strings.Contains(out, "It replaced state of another lineage ("+dbm.Lineage) {
		t.Fatalf("push --force: exit %d\n%s%s", code, out, errOut)
	}
}

// TestSavedPlanPerSyncWithDatabaseState saves a plan of sync a, applies
// sync b meanwhile (the state's serial moves), and applies the saved plan:
// it is not stale, since a did not change. Once a itself is applied, the
// old plan of a is refused.
func TestSavedPlanPerSyncWithDatabaseState(t *testing.T) {
	st := newDBState(t, "postgres")
	t.Setenv("BACKFLOW_STATE_DSN", st.dsn)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	os.WriteFile(filepath.Join(dir, "data/users.csv"), []byte("id,email\n1,a@example.com\n2,b@example.com\n"), 0o644)
	cfg := st.block() + usersModelHCL + `destination "a" {
  type = "file"
  path = "a.jsonl"
}
destination "b" {
  type = "file"
  path = "b.jsonl"
}
sync "a" {
  model       = model.m
  destination = destination.a
  object      = "x"
  key         = "id"
  mapping     = { email = "email" }
}
sync "b" {
  model       = model.m
  destination = destination.b
  object      = "x"
  key         = "id"
  mapping     = { email = "email" }
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	planA := filepath.Join(dir, "a.plan")
	if code, out, errOut := backflow("-C", dir, "plan", "--sync", "a", "--out", planA); code != 0 {
		t.Fatalf("plan a: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := backflow("-C", dir, "apply", "--auto-approve", "--sync", "b"); code != 0 {
		t.Fatalf("apply b: exit %d\n%s%s", code, out, errOut)
	}
	planA2 := filepath.Join(dir, "a2.plan")
	if code, _, errOut := backflow("-C", dir, "plan", "--sync", "a", "--out", planA2); code != 0 {
		t.Fatalf("plan a again: %s", errOut)
	}
	if code, out, errOut := backflow("-C", dir, "apply", planA); code != 0 || !strings.Contains(out, "2 accepted") {
		t.Fatalf("the saved plan of a after b was applied: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut := backflow("-C", dir, "apply", planA2)
	if code != 1 || !strings.Contains(errOut, `sync "a" was applied (or reset) since the plan was made`) {
		t.Fatalf("a plan of a made before a was applied: exit %d\n%s", code, errOut)
	}
}

// TestApplyThatCouldNotSaveItsRunSaysSo: records were sent, but the run
// history could not be saved (the state database refuses its row logs).
// The apply fails, and neither its text nor its JSON says it completed.
func TestApplyThatCouldNotSaveItsRunSaysSo(t *testing.T) {
	st := newDBState(t, "postgres")
	t.Setenv("BACKFLOW_STATE_DSN", st.dsn)
	conn := testdb.Postgres(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"data/users.csv": "id,email\n1,a@example.com\n", "main.hcl": st.block() + usersModelHCL + `destination "d" {
  type = "file"
  path = "d.jsonl"
}
sync "s" {
  model       = model.m
  destination = destination.d
  object      = "x"
  key         = "id"
  mapping     = { email = "email" }
}
`})
	if code, out, errOut := backflow("-C", dir, "apply", "--auto-approve"); code != 0 {
		t.Fatalf("first apply: exit %d\n%s%s", code, out, errOut)
	}
	testdb.PostgresExec(t, conn,
		`CREATE FUNCTION "`+st.schema+`".refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'row logs refused'; END$$`,
		`CREATE TRIGGER refuse BEFORE INSERT ON "`+st.schema+`".row_logs FOR EACH ROW EXECUTE FUNCTION "`+st.schema+`".refuse()`)

	writeFiles(t, dir, map[string]string{"data/users.csv": "id,email\n1,a@example.com\n2,b@example.com\n"})
	code, out, errOut := backflow("-C", dir, "apply", "--auto-approve")
	if code != 1 || !strings.Contains(out, "1 accepted") || strings.Contains(out, "Apply complete") ||
		!strings.Contains(out, `Apply failed: sync "s": saving run history:`) || !strings.Contains(errOut, "row logs refused") {
		t.Errorf("apply that could not save its run: exit %d\n%s%s", code, out, errOut)
	}

	writeFiles(t, dir, map[string]string{"data/users.csv": "id,email\n1,a@example.com\n2,b@example.com\n3,c@example.com\n"})
	code, out, errOut = backflow("-C", dir, "apply", "--auto-approve", "--json")
	var report struct {
		Error string `json:"error"`
		Syncs []struct {
			Sync, Status, Error string
		} `json:"syncs"`
	}
	if err := json.Unmarshal([]byte(out), &report); code != 1 || err != nil || !strings.Contains(report.Error, "row logs refused") {
		t.Errorf("apply --json that could not save its run: exit %d (%v)\n%s%s", code, err, out, errOut)
	}
	// The sync whose run could not be saved did not succeed.
	if len(report.Syncs) != 1 || report.Syncs[0].Status != "error" || !strings.Contains(report.Syncs[0].Error, "saving run history") {
		t.Errorf("apply --json that could not save its run reports the sync as %+v", report.Syncs)
	}
}
