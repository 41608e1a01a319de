package crashpoint

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
)

func TestParse(t *testing.T) {
	ps, err := parse("a:3, b:1")
	if err != nil || len(ps) != 2 || ps["a"].at != 3 || ps["b"].at != 1 {
		t.Fatalf("parse = %v, %v", ps, err)
	}
	for _, bad := range []string{"a", "a:0", "a:x", ":2", "a:1,b"} {
		if _, err := parse(bad); err == nil {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
	if ps, err := parse(""); err != nil || ps != nil {
		t.Errorf("parse(\"\") = %v, %v", ps, err)
	}
}

// TestHitKillsOnTheNthPass runs this test binary as a child that passes a
// point five times with the third pass armed: it dies by SIGKILL after
// printing the two passes before it.
func TestHitKillsOnTheNthPass(t *testing.T) {
	if os.Getenv("CRASHPOINT_CHILD") == "1" {
		for i := 1; i <= 5; i++ {
			Hit("other")
			os.Stdout.WriteString("pass\n")
			Hit("p")
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHitKillsOnTheNthPass$")
	cmd.Env = append(os.Environ(), "CRASHPOINT_CHILD=1", EnvVar+"=p:3")
	out, err := cmd.Output()
	ee, ok := err.(*exec.ExitError)
	if !ok {
		t.Fatalf("child ended with %v, want a kill; output %q", err, out)
	}
	if ws, _ := ee.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want SIGKILL", ee)
	}
	if string(out) != "pass\npass\npass\n" {
		t.Fatalf("child printed %q before dying, want three passes", out)
	}
}

func TestUnarmedHitDoesNothing(t *testing.T) {
	if Armed() {
		t.Skip("armed by the environment")
	}
	for range 1000 {
		Hit("p")
	}
}
