package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/internal/testdb"
)

// runGuarded runs the CLI and fails the test, instead of hanging it, when
// a command does not end within a generous guard.
func runGuarded(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		c, o, e := backflow(args...)
		done <- result{c, o, e}
	}()
	select {
	case r := <-done:
		return r.code, r.out, r.err
	case <-time.After(90 * time.Second):
		t.Fatalf("backflow %v did not end: a timeout is missing", args)
		return 0, "", ""
	}
}

// TestBlackHoleServersFailEveryCommand points a source, then a destination,
// at a server that accepts connections and never answers: validate, plan
// and apply each fail, naming the block, instead of hanging.
func TestBlackHoleServersFailEveryCommand(t *testing.T) {
	addr := testdb.BlackHole(t)
	host, port, _ := net.SplitHostPort(addr)
	write := func(name, src string) string {
		dir := filepath.Join(t.TempDir(), name)
		os.MkdirAll(filepath.Join(dir, "data"), 0o755)
		os.WriteFile(filepath.Join(dir, "data/users.csv"), []byte("id,email\n1,a@example.com\n"), 0o644)
		if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	source := write("source", `source "hole" {
  type            = "postgres"
  dsn             = "postgres://u@`+host+`:`+port+`/db?sslmode=disable"
  connect_timeout = "1s"
}
model "m" {
  source      = source.hole
  query       = "SELECT 1 AS id"
  primary_key = "id"
}
destination "out" {
  type = "file"
  path = "out.jsonl"
}
sync "s" {
  model       = model.m
  destination = destination.out
  object      = "x"
  key         = "id"
}
`)
	for _, cmd := range [][]string{{"validate"}, {"plan"}, {"apply", "--auto-approve"}} {
		code, _, errOut := runGuarded(t, append([]string{"-C", source}, cmd...)...)
		if code != 1 || !strings.Contains(errOut, "Cannot Connect To Source") || !strings.Contains(errOut, `source "hole"`) || !strings.Contains(errOut, addr) {
			t.Errorf("%v with a black-hole source: exit %d\n%s", cmd, code, errOut)
		}
	}
	dest := write("destination", usersModelHCL+`destination "hole" {
  type            = "mysql"
  dsn             = "u:pw@tcp(`+addr+`)/db"
  connect_timeout = "1s"
}
sync "s" {
  model       = model.m
  destination = destination.hole
  object      = "x"
  key         = "id"
  mapping     = { email = "email" }
}
`)
	for _, cmd := range [][]string{{"plan"}, {"apply", "--auto-approve"}} {
		code, _, errOut := runGuarded(t, append([]string{"-C", dest}, cmd...)...)
		if code != 1 || !strings.Contains(errOut, "Destination Unavailable") || !strings.Contains(errOut, `destination "hole"`) || strings.Contains(errOut, "pw@") {
			t.Errorf("%v with a black-hole destination: exit %d\n%s", cmd, code, errOut)
		}
	}
}
