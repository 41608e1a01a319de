package state

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLockTwoStores(t *testing.T) {
	s1 := newStore(t)
	s2, err := Open(s1.Dir())
	must(t, err)
	l, err := s1.Lock("apply")
	must(t, err)
	if l.Info.PID != os.Getpid() || l.Info.Operation != "apply" || !strings.Contains(l.Info.Who, "@") || len(l.Info.ID) != 32 {
		t.Errorf("lock info = %+v", l.Info)
	}
	for _, s := range []*Store{s2, s1} { // another Store, and the same one
		_, err := s.Lock("plan")
		var locked *LockedError
		if !errors.As(err, &locked) {
			t.Fatalf("second Lock = %v, want *LockedError", err)
		}
		if locked.Holder != l.Info {
			t.Errorf("holder = %+v, want %+v", locked.Holder, l.Info)
		}
		for _, part := range []string{l.Info.ID, l.Info.Who, strconv.Itoa(os.Getpid()), `"apply"`} {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("error %q does not mention %s", err, part)
			}
		}
	}
	// A live holder cannot be forced, even with its ID.
	if err := s2.ForceUnlock(l.Info.ID); err == nil || !strings.Contains(err.Error(), "running") {
		t.Errorf("ForceUnlock of a live lock = %v", err)
	}
	if err := s2.ForceUnlock("nope"); err == nil || !strings.Contains(err.Error(), l.Info.ID) {
		t.Errorf("ForceUnlock with a wrong ID = %v", err)
	}
	must(t, l.Unlock())
	must(t, l.Unlock()) // twice is fine
	if _, err := os.Stat(filepath.Join(s1.Dir(), "lock")); !os.IsNotExist(err) {
		t.Errorf("lock info left after Unlock: %v", err)
	}
	l2, err := s2.Lock("apply")
	must(t, err)
	if l2.Info.ID == l.Info.ID {
		t.Error("lock IDs repeat")
	}
	must(t, l2.Unlock())
	if err := s1.ForceUnlock(l2.Info.ID); err == nil || !strings.Contains(err.Error(), "not locked") {
		t.Errorf("ForceUnlock of an unlocked state = %v", err)
	}
}

func TestStaleLockInfo(t *testing.T) {
	s := newStore(t)
	stale := LockInfo{ID: "deadbeef", Operation: "apply", Who: "ghost@nowhere", PID: 1 << 22, Created: time.Unix(0, 0).UTC()}
	data, err := json.Marshal(stale)
	must(t, err)
	must(t, os.MkdirAll(s.Dir(), 0o700))
	must(t, os.WriteFile(filepath.Join(s.Dir(), "lock"), data, 0o600))

	if err := s.ForceUnlock("wrong"); err == nil {
		t.Error("ForceUnlock with a wrong ID succeeded")
	}
	must(t, s.ForceUnlock("deadbeef"))
	if _, err := os.Stat(filepath.Join(s.Dir(), "lock")); !os.IsNotExist(err) {
		t.Errorf("stale info not removed: %v", err)
	}

	// Lock does not need ForceUnlock: stale info without a holder is replaced.
	must(t, os.WriteFile(filepath.Join(s.Dir(), "lock"), data, 0o600))
	l, err := s.Lock("apply")
	must(t, err)
	defer l.Unlock()
	holder, err := s.lockHolder()
	must(t, err)
	if holder != l.Info {
		t.Errorf("lock info = %+v, want %+v", holder, l.Info)
	}
}

// TestLockFileRemovedWhileHeld: lock.flock removed while its holder runs
// (and holds a lock on the removed file): the next writer's flock is on a
// new file, free, but it must not take over from a holder that still runs
// and may still write. A holder whose pid is alive but started after the
// lock was taken (a pid used again) is gone: taken over.
func TestLockFileRemovedWhileHeld(t *testing.T) {
	s1 := newStore(t)
	s2, err := Open(s1.Dir())
	must(t, err)
	l, err := s1.Lock("apply")
	must(t, err)
	must(t, os.Remove(filepath.Join(s1.Dir(), lockFile)))
	_, err = s2.Lock("apply")
	var locked *LockedError
	if !errors.As(err, &locked) || !locked.Orphaned || locked.Holder != l.Info {
		t.Fatalf("Lock beside a holder whose lock file was removed = %v, want an orphaned *LockedError naming it", err)
	}
	for _, part := range []string{"was removed while it held it", "still runs", "backflow state unlock " + l.Info.ID} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not say %q", err, part)
		}
	}
	must(t, l.Unlock())
	l2, err := s2.Lock("apply")
	must(t, err)
	if l2.TookOver != nil {
		t.Errorf("took over %v after the holder unlocked", l2.TookOver)
	}
	must(t, l2.Unlock())

	// This process's pid, for a lock taken before it started: another
	// process that had the pid.
	who := whoAmI()
	old := LockInfo{ID: "0ld", Operation: "apply", Who: who, PID: os.Getpid(), Created: time.Now().Add(-time.Hour).UTC()}
	data, err := json.Marshal(old)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(s1.Dir(), lockInfoFile), data, 0o600))
	l3, err := s1.Lock("apply")
	if runtime.GOOS == "linux" {
		must(t, err)
		if l3.TookOver == nil || l3.TookOver.ID != "0ld" {
			t.Errorf("TookOver = %v, want the lock of the pid's former process", l3.TookOver)
		}
		must(t, l3.Unlock())
	}
}

// TestLockHelperProcess is the child of TestLockOtherProcess: it takes the
// lock, says so, and holds it until killed or its stdin closes.
func TestLockHelperProcess(t *testing.T) {
	dir := os.Getenv("BACKFLOW_STATE_LOCK_HELPER")
	if dir == "" {
		t.Skip("helper process only")
	}
	s, err := Open(dir)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	l, err := s.Lock("helper")
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked", l.Info.ID)
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	_ = l.Unlock()
	os.Exit(0)
}

func TestLockOtherProcess(t *testing.T) {
	s := newStore(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$")
	cmd.Env = append(os.Environ(), "BACKFLOW_STATE_LOCK_HELPER="+s.Dir())
	stdin, err := cmd.StdinPipe()
	must(t, err)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	must(t, err)
	id, ok := strings.CutPrefix(strings.TrimSpace(line), "locked ")
	if !ok {
		t.Fatalf("helper said %q", line)
	}

	_, err = s.Lock("apply")
	var locked *LockedError
	if !errors.As(err, &locked) {
		t.Fatalf("Lock while another process holds it = %v", err)
	}
	if locked.Holder.ID != id || locked.Holder.PID != cmd.Process.Pid || locked.Holder.Operation != "helper" {
		t.Errorf("holder = %+v, want ID %s pid %d", locked.Holder, id, cmd.Process.Pid)
	}
	if err := s.ForceUnlock(id); err == nil || !strings.Contains(err.Error(), strconv.Itoa(cmd.Process.Pid)) {
		t.Errorf("ForceUnlock of a live process's lock = %v", err)
	}

	st, err := s.LockStatus()
	must(t, err)
	if !st.Held || st.Stale || st.Holder == nil || st.Holder.PID != cmd.Process.Pid {
		t.Errorf("status while held = %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = s.LockContext(ctx, "apply")
	if !errors.As(err, &locked) || !locked.Waited || !strings.Contains(err.Error(), "gave up waiting") {
		t.Errorf("LockContext past its deadline = %v", err)
	}

	// The holder dies without unlocking: the OS drops its flock, its info
	// stays behind, and Lock takes over, naming the dead holder.
	must(t, cmd.Process.Kill())
	_ = cmd.Wait()
	_ = stdin.Close()
	if holder, err := s.lockHolder(); err != nil || holder.ID != id {
		t.Fatalf("stale info = %+v, %v", holder, err)
	}
	st, err = s.LockStatus()
	must(t, err)
	if st.Held || !st.Stale || st.Holder == nil || !strings.Contains(st.Note, strconv.Itoa(cmd.Process.Pid)) {
		t.Errorf("status after the holder died = %+v", st)
	}
	if !st.Holder.gone() {
		t.Errorf("holder %+v not seen as gone", st.Holder)
	}
	l, err := s.Lock("apply")
	must(t, err)
	if l.TookOver == nil || l.TookOver.ID != id || l.TookOver.PID != cmd.Process.Pid {
		t.Errorf("TookOver = %+v, want the dead holder %s", l.TookOver, id)
	}
	must(t, l.Unlock())
	if l, err = s.Lock("apply"); err != nil || l.TookOver != nil {
		t.Errorf("Lock after a clean unlock: %+v, %v", l, err)
	}
	must(t, l.Unlock())
}

// TestLockContextWaitsForTheHolder waits for a lock that another process
// releases while LockContext waits.
func TestLockContextWaitsForTheHolder(t *testing.T) {
	s := newStore(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$")
	cmd.Env = append(os.Environ(), "BACKFLOW_STATE_LOCK_HELPER="+s.Dir())
	stdin, err := cmd.StdinPipe()
	must(t, err)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if _, err := bufio.NewReader(stdout).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		l, err := s.LockContext(ctx, "apply")
		if err == nil {
			err = l.Unlock()
		}
		got <- err
	}()
	must(t, stdin.Close()) // the helper unlocks and exits
	if err := <-got; err != nil {
		t.Fatalf("LockContext = %v, want the lock once its holder let go", err)
	}
}

func TestHolderGoneOnlyOnThisHost(t *testing.T) {
	dead := 1 << 22 // above Linux's pid_max
	here := LockInfo{Who: whoAmI(), PID: dead}
	elsewhere := LockInfo{Who: "someone@another-host.invalid", PID: dead}
	alive := LockInfo{Who: whoAmI(), PID: os.Getpid()}
	if !here.gone() || elsewhere.gone() || alive.gone() {
		t.Errorf("gone: here %v, elsewhere %v, alive %v; want true, false, false", here.gone(), elsewhere.gone(), alive.gone())
	}
}
