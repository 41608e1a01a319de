package project

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/state"
)

// dropAfter wraps a destination and drops the table with another
// connection before its request number n+1, as an operator might mid-run.
type dropAfter struct {
	destination.Destination
	t        *testing.T
	path     string
	n, calls int
}

func (d *dropAfter) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	d.calls++
	if d.calls == d.n+1 {
		db, err := sql.Open("sqlite", d.path)
		if err != nil {
			d.t.Fatal(err)
		}
		if _, err := db.Exec(`DROP TABLE ` + b.Object); err != nil {
			d.t.Fatal(err)
		}
		db.Close()
	}
	return d.Destination.Write(ctx, b)
}

// A table dropped mid-run: the real SQLite driver answers that the sync
// cannot proceed; it stops at once, records no rejection, fails the run
// naming the cause, and the next plan sends the records as they were.
func TestTableDroppedMidRunStopsTheSync(t *testing.T) {
	w := newWorkspace(t, sqliteConfig(10, true, "delete"), map[string]string{"data/users.csv": usersCSV(100, func(i int) int { return i })})
	reg := destination.NewRegistry()
	var wrapped *dropAfter
	for _, d := range destination.BuiltinDrivers() {
		if d.Type.Name == "sqlite" {
			open := d.Open
			d.Open = func(ctx context.Context, cfg destination.Config) (destination.Destination, error) {
				dest, err := open(ctx, cfg)
				if err != nil || cfg.ReadOnly {
					return dest, err
				}
				wrapped = &dropAfter{Destination: dest, t: t, path: filepath.Join(w.dir, "crm.db"), n: 3}
				return wrapped, nil
			}
		}
		reg.Register(d)
	}
	w.reg = reg

	_, res := w.apply(PlanOptions{}, ApplyOptions{})
	if wrapped == nil || wrapped.calls != 4 || res.Requests != 4 {
		t.Fatalf("%d requests, want 4: three accepted, then the fatal one, then nothing", res.Requests)
	}
	if res.Halted == nil || res.Halted.Reason != reconcile.HaltFatal || res.Counts.Accepted != 30 || res.Counts.Rejected != 0 {
		t.Fatalf("halt %+v, %+v", res.Halted, res.Counts)
	}
	if f := w.failures(); len(f) != 0 {
		t.Fatalf("failure index %v, want empty: no record is at fault", f)
	}
	runs := w.runs()
	last := runs[len(runs)-1]
	if last.Status != state.RunFailed || !strings.Contains(last.Error, "contacts") || !strings.Contains(last.Error, "refused the sync") {
		t.Fatalf("run %+v, want failed naming the table", last)
	}
	plan := w.plan(PlanOptions{})
	if sp := plan.Syncs[0]; sp.Add != 70 || sp.Retry != 0 {
		t.Fatalf("next plan: %d to add, %d to retry; want the 70 records not written as adds", sp.Add, sp.Retry)
	}
}
