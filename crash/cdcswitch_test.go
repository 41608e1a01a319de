package crash

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/backflowhq/backflow/internal/crashpoint"
	"github.com/backflowhq/backflow/internal/testdb"
)

// A reset-cdc switching a sync between warehouse and local CDC, killed
// before it committed, leaves the old state: the switch is still refused
// (the next plan would otherwise run against a snapshot never written,
// send every row as new and never remove the rows that left the model).
func TestKilledResetKeepsTheCDCSwitchGuard(t *testing.T) {
	bin := backflowBinary(t)
	conn := testdb.Postgres(t)
	table := testdb.PostgresTable(t, conn, "id bigint PRIMARY KEY, name text")
	testdb.PostgresExec(t, conn, "INSERT INTO "+table+" SELECT i, 'n'||i FROM generate_series(1, 20) AS i")
	var dir, cdcSchema string
	config := func(cdc string) {
		t.Helper()
		cfg := fmt.Sprintf(`source "wh" {
  type       = "postgres"
  dsn        = %q
  cdc        = %q
  cdc_schema = %q
}
model "m" {
  source      = source.wh
  query       = "SELECT id, name FROM %s"
  primary_key = "id"
}
destination "d" {
  type = "file"
  path = "out.jsonl"
}
sync "s" {
  model           = model.m
  destination     = destination.d
  object          = "t"
  key             = "id"
  delete_behavior = "delete"
  max_removals    = "100%%"
  mapping         = { name = "name" }
}
`, testdb.PostgresDSN, cdc, cdcSchema, table)
		if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(crash string, args ...string) (int, bool, string) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"-C", dir, "--no-color"}, args...)...)
		cmd.Env = append(os.Environ(), crashpoint.EnvVar+"="+crash)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			ws, _ := ee.Sys().(syscall.WaitStatus)
			return ee.ExitCode(), ws.Signaled() && ws.Signal() == syscall.SIGKILL, out.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, false, out.String()
	}
	// Killed before anything is written, once the warehouse table or the
	// state is written, and once both are: the sync is not planned until
	// a reset-cdc ends.
	for _, sw := range []struct{ from, to, crash string }{
		{"warehouse", "local", "reset.begun:1"}, {"warehouse", "local", "reset.committed:1"},
		{"local", "warehouse", "reset.begun:1"}, {"local", "warehouse", "commit.journal:1"},
	} {
		dir, cdcSchema = t.TempDir(), testdb.Name("bfcdcsw")
		t.Cleanup(func() { testdb.PostgresExec(t, conn, "DROP SCHEMA IF EXISTS "+cdcSchema+" CASCADE") })
		testdb.PostgresExec(t, conn, "DELETE FROM "+table, "INSERT INTO "+table+" SELECT i, 'n'||i FROM generate_series(1, 20) AS i")
		config(sw.from)
		if code, _, out := run("", "apply", "--auto-approve"); code != 0 {
			t.Fatalf("apply with cdc = %q: exit %d\n%s", sw.from, code, out)
		}
		config(sw.to)
		testdb.PostgresExec(t, conn, "DELETE FROM "+table+" WHERE id > 15")
		if _, killed, out := run(sw.crash, "reset-cdc", "s", "--auto-approve"); !killed {
			t.Fatalf("reset-cdc to %q was not killed at %s:\n%s", sw.to, sw.crash, out)
		}
		for _, cdc := range []string{sw.from, sw.to} {
			config(cdc)
			// Shown at the sync, whichever path refused it.
			if code, _, out := run("", "plan"); code == 0 || !strings.Contains(out, "Reset-cdc Did Not Finish") || !strings.Contains(out, `in sync "s"`) {
				t.Fatalf("plan with cdc = %q after a reset-cdc to %q killed at %s: exit %d, want it refused at the sync, naming reset-cdc:\n%s", cdc, sw.to, sw.crash, code, out)
			}
		}
		config(sw.to)
		if code, _, out := run("", "reset-cdc", "s", "--auto-approve"); code != 0 {
			t.Fatalf("reset-cdc to %q: exit %d\n%s", sw.to, code, out)
		}
		if code, _, out := run("", "plan"); code != 0 || !strings.Contains(out, "No changes") {
			t.Fatalf("plan with cdc = %q after reset-cdc: exit %d\n%s", sw.to, code, out)
		}
	}
}
