package main

import (
	"bytes"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backflowhq/backflow/state"
)

// copyDir copies a folder tree, leaving out state and destination files.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			if d.Name() == ".backflow" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if strings.HasSuffix(path, ".db") || strings.Contains(path, ".db-") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// backflow runs the CLI in-process and returns its exit code and output.
func backflow(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestExamples validates, tests and plans every example project.
func TestExamples(t *testing.T) {
	dirs, err := filepath.Glob("../../examples/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, src := range dirs {
		if hcl, _ := filepath.Glob(filepath.Join(src, "*.hcl")); len(hcl) == 0 {
			continue // not a config (examples/ci holds CI recipes, run by ci_test.go)
		}
		t.Run(filepath.Base(src), func(t *testing.T) {
			dir := copyDir(t, src)
			for _, cmd := range [][]string{{"validate"}, {"test"}, {"plan"}} {
				code, out, errOut := backflow(append([]string{"-C", dir}, cmd...)...)
				if code != 0 {
					t.Fatalf("%v: exit %d\n%s%s", cmd, code, out, errOut)
				}
			}
		})
	}
}

// TestQuickstartAcceptance is the quickstart as the README walks through it.
func TestQuickstartAcceptance(t *testing.T) {
	dir := copyDir(t, "../../examples/quickstart")
	code, out, errOut := backflow("-C", dir, "apply", "--auto-approve")
	if code != 0 || !strings.Contains(out, "275 accepted, 5 rejected") {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = backflow("-C", dir, "state", "failures", "users_to_crm", "--json")
	if code != 0 || strings.Count(out, `"key"`) != 5 || strings.Count(out, "CHECK constraint failed: lifetime_value >= 0") != 5 {
		t.Fatalf("state failures: exit %d\n%s", code, out)
	}
	for _, k := range []string{"13", "58", "72", "126", "141"} {
		if !strings.Contains(out, fmt.Sprintf(`"key": %q`, k)) {
			t.Errorf("failure of key %s missing", k)
		}
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "crm.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM contacts").Scan(&n); err != nil || n != 275 {
		t.Fatalf("contacts: %d rows (%v), want 275", n, err)
	}
	code, out, _ = backflow("-C", dir, "plan", "--detailed-exitcode")
	if code != 2 || !strings.Contains(out, "Plan: 0 to add, 0 to change, 0 to remove, 5 to retry.") {
		t.Fatalf("plan after apply: exit %d\n%s", code, out)
	}
	// The five known-bad rows are rejected again: still failing, a
	// warning, not a failed run (their failure_threshold is 5%).
	code, out, errOut = backflow("-C", dir, "apply", "--auto-approve")
	if code != 0 || !strings.Contains(out, "0 accepted, 5 rejected") || !strings.Contains(out, "Apply complete.") ||
		!strings.Contains(errOut, "5 records still failing") || strings.Contains(errOut, "Error") {
		t.Fatalf("second apply: exit %d\n%s%s", code, out, errOut)
	}
	code, _, _ = backflow("-C", dir, "apply", "--auto-approve", "--strict")
	if code != 1 {
		t.Fatalf("second apply with --strict: exit %d, want 1", code)
	}
}

func TestConcurrentApplyFailsNamingTheHolder(t *testing.T) {
	dir := copyDir(t, "../../examples/quickstart")
	store, err := state.Open(filepath.Join(dir, ".backflow"))
	if err != nil {
		t.Fatal(err)
	}
	lock, err := store.Lock("apply")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, _, errOut := backflow("-C", dir, "apply", "--auto-approve")
	if code != 1 || !strings.Contains(errOut, "state is locked by") || !strings.Contains(errOut, fmt.Sprintf("pid %d", os.Getpid())) || !strings.Contains(errOut, lock.Info.ID) {
		t.Fatalf("second apply: exit %d, %q; want a lock error naming the holder", code, errOut)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("second apply waited %v for the lock; it must fail at once", d)
	}
	if _, err := os.Stat(filepath.Join(dir, "crm.db")); err == nil {
		t.Fatal("the refused apply touched the destination")
	}
	code, out, errOut := backflow("-C", dir, "state", "unlock", "not-the-id")
	if code != 1 {
		t.Fatalf("unlock with a wrong ID: exit %d %s%s", code, out, errOut)
	}
	lock.Unlock()
	if code, out, errOut := backflow("-C", dir, "apply", "--auto-approve"); code != 0 {
		t.Fatalf("apply after unlock: exit %d\n%s%s", code, out, errOut)
	}
}

// bigConfig is a sync of n rows in batches of 10 to sqlite, with every
// 1000th row violating a CHECK constraint: slow enough to interrupt.
func bigConfig(t *testing.T, n int) string {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("id,name,score\n")
	for i := 1; i <= n; i++ {
		s := i
		if i%1000 == 0 {
			s = -1
		}
		fmt.Fprintf(&b, "%d,name %d,%d\n", i, i, s)
	}
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	os.WriteFile(filepath.Join(dir, "data", "t.csv"), []byte(b.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(`
source "w" {
  type     = "embedded"
  fixtures = "data"
}
model "m" {
  source      = source.w
  query       = "SELECT id, name, score FROM t"
  primary_key = "id"
}
destination "db" {
  type          = "sqlite"
  path          = "dest.db"
  init_sql      = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT, score INTEGER CHECK (score >= 0))"
  batch_size    = 10
  split_retries = true
}
sync "s" {
  model       = model.m
  destination = destination.db
  object      = "t"
  key         = "id"
  mapping = {
    name  = "name"
    score = "score"
  }
}
`), 0o644)
	return dir
}

// startApply starts `backflow apply` in a child process and waits until it
// has checkpointed results to the state journal.
func startApply(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("backflow", "-C", dir, "apply", "--auto-approve")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &bytes.Buffer{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	journal := filepath.Join(dir, ".backflow", "syncs", "s", "journal")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if fi, err := os.Stat(journal); err == nil && fi.Size() > 4096 {
			return cmd
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("apply wrote no checkpoint within 60s; stderr: %s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond) // polling the file system, not ordering events
	}
}

func countRows(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestKilledApplyResumesWithNothingLost(t *testing.T) {
	if _, err := exec.LookPath("backflow"); err != nil {
		t.Fatal(err)
	}
	const n = 20000
	dir := bigConfig(t, n)
	cmd := startApply(t, dir)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	// The state loads and holds the checkpointed progress.
	store, err := state.Open(filepath.Join(dir, ".backflow"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := store.LoadSnapshot("s")
	if err != nil {
		t.Fatalf("state after SIGKILL: %v", err)
	}
	kept := snap.Len()
	snap.Close()
	if _, err := store.LoadFailures("s"); err != nil {
		t.Fatalf("failure index after SIGKILL: %v", err)
	}
	written := countRows(t, filepath.Join(dir, "dest.db"))
	if kept == 0 || kept >= n {
		t.Fatalf("snapshot holds %d records after the kill, want some progress kept", kept)
	}
	// At most two batches were written without being recorded: the one
	// whose answer was being recorded and the one sent meanwhile.
	if written < kept || written > kept+20 {
		t.Fatalf("destination has %d rows, snapshot %d: more than two batches apart", written, kept)
	}

	code, out, errOut := backflow("-C", dir, "apply", "--auto-approve")
	if code != 0 {
		t.Fatalf("re-run: exit %d\n%s%s", code, out, errOut)
	}
	bad := n / 1000
	if got := countRows(t, filepath.Join(dir, "dest.db")); got != n-bad {
		t.Fatalf("destination holds %d rows, want every valid row (%d)", got, n-bad)
	}
	code, out, _ = backflow("-C", dir, "plan", "--detailed-exitcode")
	if code != 2 || !strings.Contains(out, fmt.Sprintf("Plan: 0 to add, 0 to change, 0 to remove, %d to retry.", bad)) {
		t.Fatalf("plan after recovery: exit %d\n%s", code, out)
	}
}

func TestInterruptedApplyExits130AndSavesState(t *testing.T) {
	dir := bigConfig(t, 20000)
	cmd := startApply(t, dir)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 130 {
		t.Fatalf("apply after Ctrl-C: %v, want exit 130", err)
	}
	if out := cmd.Stdout.(*bytes.Buffer).String(); strings.Contains(out, "Apply complete.") || !strings.Contains(out, "Apply interrupted") {
		t.Fatalf("apply after Ctrl-C says:\n%s", out)
	}
	store, _ := state.Open(filepath.Join(dir, ".backflow"))
	snap, err := store.LoadSnapshot("s")
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if written := countRows(t, filepath.Join(dir, "dest.db")); written != snap.Len() {
		t.Fatalf("destination has %d rows, snapshot %d: the batch in flight must be finished and recorded", written, snap.Len())
	}
	runs, err := store.Runs("s")
	if err != nil || len(runs) != 1 || runs[0].Status != "interrupted" {
		t.Fatalf("runs %+v (%v), want one interrupted run", runs, err)
	}
}

// TestQuickstartTestsCatchABrokenRule breaks the quickstart's rule and
// expects its test blocks to fail with a readable difference.
func TestQuickstartTestsCatchABrokenRule(t *testing.T) {
	dir := copyDir(t, "../../examples/quickstart")
	if code, out, errOut := backflow("-C", dir, "test"); code != 0 {
		t.Fatalf("quickstart tests: exit %d\n%s%s", code, out, errOut)
	}
	path := filepath.Join(dir, "backflow.hcl")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(b), `row.email == null || !row.email.contains('@')`, `row.email == null`, 1)
	if broken == string(b) {
		t.Fatal("rule not found in the quickstart")
	}
	if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := backflow("-C", dir, "test")
	if code != 1 || !strings.Contains(out, `key "2": want excluded by rule "missing_email", got included`) || !strings.Contains(out, "0 passed, 2 failed") {
		t.Fatalf("broken rule: exit %d\n%s", code, out)
	}
}

// TestDetailedExitCodeOfAMassRemoval empties the quickstart's users after
// a first apply: plan --detailed-exitcode exits 3, not 2, and apply
// refuses, leaving the CRM as it was.
func TestDetailedExitCodeOfAMassRemoval(t *testing.T) {
	dir := copyDir(t, "../../examples/quickstart")
	if code, out, errOut := backflow("-C", dir, "apply", "--auto-approve"); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, _ := backflow("-C", dir, "plan", "--detailed-exitcode"); code != 2 {
		t.Fatalf("plan of the five known-bad rows: exit %d, want 2", code)
	}
	b, err := os.ReadFile(filepath.Join(dir, "data/users.csv"))
	if err != nil {
		t.Fatal(err)
	}
	header, _, _ := strings.Cut(string(b), "\n")
	if err := os.WriteFile(filepath.Join(dir, "data/users.csv"), []byte(header+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := backflow("-C", dir, "plan", "--detailed-exitcode"); code != 3 || !strings.Contains(out, "WARNING: mass removal") {
		t.Fatalf("plan of an emptied model: exit %d, want 3\n%s", code, out)
	}
	if code, _, errOut := backflow("-C", dir, "apply", "--auto-approve"); code != 1 || !strings.Contains(errOut, "Mass Removal Refused") {
		t.Fatalf("apply of an emptied model: exit %d, want 1 and a refusal\n%s", code, errOut)
	}
}
