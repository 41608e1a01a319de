package project

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/spec"
)

// meeting is where the first requests of several destinations wait for
// each other: they only all get through when they are in flight at once.
type meeting struct {
	mu      sync.Mutex
	want    int
	arrived int
	all     chan struct{}
}

func (m *meeting) arrive() error {
	m.mu.Lock()
	m.arrived++
	if m.arrived == m.want {
		close(m.all)
	}
	first := m.arrived <= m.want
	m.mu.Unlock()
	if !first {
		return nil
	}
	select {
	case <-m.all:
		return nil
	case <-time.After(10 * time.Second): // a guard: the others never came
		return errors.New("the syncs were not applied at once")
	}
}

// meetingDest accepts everything once its first request met the others'.
type meetingDest struct {
	m    *meeting
	once sync.Once
	mu   sync.Mutex
	got  int
}

func (d *meetingDest) Write(_ context.Context, b *destination.Batch) destination.Outcome {
	var err error
	d.once.Do(func() { err = d.m.arrive() })
	if err != nil {
		return destination.Fatal(err)
	}
	d.mu.Lock()
	d.got += len(b.Records)
	d.mu.Unlock()
	return destination.AllAccepted(len(b.Records))
}

func (d *meetingDest) Close() error { return nil }

func TestParallelismAppliesIndependentSyncsAtOnce(t *testing.T) {
	m := &meeting{want: 2, all: make(chan struct{})}
	opened := map[string]*meetingDest{}
	var mu sync.Mutex
	reg := destination.NewRegistry()
	destination.RegisterBuiltins(reg)
	reg.Register(destination.Driver{
		Type: spec.Type{Name: "meeting", Doc: "Waits for the other syncs.", Spec: spec.Spec{}},
		Open: func(_ context.Context, cfg destination.Config) (destination.Destination, error) {
			mu.Lock()
			defer mu.Unlock()
			d := &meetingDest{m: m}
			opened[cfg.Name] = d
			return d, nil
		},
	})
	hcl := sourceAndModel + `
destination "api1" {
  type       = "meeting"
  batch_size = 10
}
destination "api2" {
  type       = "meeting"
  batch_size = 10
}
destination "crm" {
  type       = "sqlite"
  path       = "crm.db"
  init_sql   = "CREATE TABLE IF NOT EXISTS c1 (external_id INTEGER PRIMARY KEY, email TEXT); CREATE TABLE IF NOT EXISTS c2 (external_id INTEGER PRIMARY KEY, email TEXT)"
  batch_size = 7
}
`
	for i, target := range []string{"api1:contacts", "api2:contacts", "crm:c1", "crm:c2"} {
		dest, object, _ := strings.Cut(target, ":")
		hcl += fmt.Sprintf(`
sync "s%d" {
  model       = model.users
  destination = destination.%s
  object      = %q
  key         = "external_id"
  mapping     = { email = "email" }
}
`, i, dest, object)
	}
	w := newWorkspace(t, hcl, map[string]string{"data/users.csv": usersCSV(100, func(i int) int { return i })})
	w.reg = reg
	ws := w.open("apply")
	defer ws.Close()
	plan, err := ws.Plan(context.Background(), PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	results, err := ws.Apply(context.Background(), plan, ApplyOptions{Parallelism: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 4 {
		t.Fatalf("%d results, want 4", len(results))
	}
	for i, r := range results {
		if r.Sync != fmt.Sprintf("s%d", i) || r.Counts.Accepted != 100 || r.Failed() {
			t.Fatalf("result %d: %s %+v %s", i, r.Sync, r.Counts, r.FailureReason())
		}
	}
	if opened["api1"].got != 100 || opened["api2"].got != 100 {
		t.Fatalf("api1 got %d, api2 %d records", opened["api1"].got, opened["api2"].got)
	}
	// Two syncs into one SQLite destination took turns; both landed.
	for _, table := range []string{"c1", "c2"} {
		if got := w.query("SELECT count(*) FROM " + table); got[0] != "100" {
			t.Fatalf("%s holds %s rows, want 100", table, got[0])
		}
	}
	runs, err := ws.Runs("")
	if err != nil || len(runs) != 4 {
		t.Fatalf("%d runs (%v), want 4", len(runs), err)
	}
}
