package project

import (
	"context"
	"errors"
	"testing"

	"github.com/backflowhq/backflow/pushdown"
	"github.com/backflowhq/backflow/state"
)

// warehouseServers make a project of a warehouse CDC sync of two rows on
// each database the warehouse CDC statement is written for.
var warehouseServers = []struct {
	name string
	open func(t *testing.T) *workspace
}{
	{"postgres", func(t *testing.T) *workspace { w, _, _ := warehouseWorkspace(t); return w }},
	{"mariadb", mariadbWarehouseWorkspace},
}

// outOfStepWorkspace is the sync of open, applied once, whose local
// failure index then holds a key the snapshot table does not flag: what a
// plan sees when an apply of the sync records outcomes between its read of
// the state and its statement.
func outOfStepWorkspace(t *testing.T, open func(t *testing.T) *workspace) *workspace {
	t.Helper()
	w := open(t)
	if _, res := w.apply(PlanOptions{}, ApplyOptions{}); res.Counts.Accepted != 2 {
		t.Fatalf("first apply accepted %d records, want 2", res.Counts.Accepted)
	}
	w.setFailure(true)
	return w
}

// setFailure records a failure of key 1 in the local state only (set), or
// takes it out again.
func (w *workspace) setFailure(set bool) {
	w.t.Helper()
	ws := w.open("apply")
	defer ws.Close()
	tx, err := ws.State.Begin("s", false)
	if err != nil {
		w.t.Fatal(err)
	}
	if set {
		tx.Fail(state.Failure{Key: "1", Operation: "upsert", Error: "rejected", Attempts: 1})
	} else {
		tx.Forget("1")
	}
	if err := tx.Commit(); err != nil {
		w.t.Fatal(err)
	}
}

// A plan that finds the failure index and the snapshot table out of step
// reads both again: an apply that recorded outcomes in between has put
// them back in step.
func TestWarehousePlanReadsAgainWhenOutOfStep(t *testing.T) {
	for _, srv := range warehouseServers {
		t.Run(srv.name, func(t *testing.T) {
			w := outOfStepWorkspace(t, srv.open)
			var retried []int
			outOfStepRetried = func(attempt int) {
				retried = append(retried, attempt)
				if attempt == 1 {
					w.setFailure(false) // the apply racing the plan settled it
				}
			}
			t.Cleanup(func() { outOfStepRetried = nil })
			plan := w.plan(PlanOptions{})
			if len(retried) != 1 {
				t.Fatalf("the plan read the state again after attempts %v, want after the first only", retried)
			}
			if sp := plan.Syncs[0]; sp.NumChanges() != 0 {
				t.Fatalf("plan in step again: %d changes, want none", sp.NumChanges())
			}
		})
	}
}

// Out of step at every attempt, the plan says so, with what to do.
func TestWarehousePlanOutOfStepSaysSoAfterItsAttempts(t *testing.T) {
	for _, srv := range warehouseServers {
		t.Run(srv.name, func(t *testing.T) {
			w := outOfStepWorkspace(t, srv.open)
			var retried []int
			outOfStepRetried = func(attempt int) { retried = append(retried, attempt) }
			t.Cleanup(func() { outOfStepRetried = nil })
			ws := w.open("")
			defer ws.Close()
			_, err := ws.Plan(context.Background(), PlanOptions{})
			var failed SyncErrors
			var oos *pushdown.OutOfStepError
			if !errors.As(err, &failed) || len(failed) != 1 || !errors.As(failed[0], &oos) || oos.Missing != 1 || oos.First != "1" {
				t.Fatalf("plan: %v, want the failure index out of step with the table on key 1", err)
			}
			if len(retried) != outOfStepAttempts-1 {
				t.Fatalf("the plan read the state again after attempts %v, want %d times", retried, outOfStepAttempts-1)
			}
		})
	}
}
