package project

import (
	"context"
	"fmt"
	"time"

	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/internal/crashpoint"
	"github.com/backflowhq/backflow/pushdown"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/schema"
	"github.com/backflowhq/backflow/state"
)

// ResetPreview is what reset-cdc would discard: the changes a plan would
// send now, which will instead be taken as already synced.
type ResetPreview struct {
	Plan *reconcile.SyncPlan
	// Records is how many included rows the new snapshot will hold.
	Records int
	// Failures is how many failure-index entries will be dropped.
	Failures int

	sync *config.Sync
	full *reconcile.DiffResult // every included row, committed by ResetCDC
}

// PreviewResetCDC computes what reset-cdc would do to a sync.
func (w *Workspace) PreviewResetCDC(ctx context.Context, name string) (*ResetPreview, error) {
	syncs, err := w.SelectSyncs([]string{name})
	if err != nil {
		return nil, err
	}
	res, err := w.diffForReset(ctx, syncs[0])
	if err != nil {
		return nil, err
	}
	failures, err := w.State.LoadFailures(name)
	if err != nil {
		return nil, err
	}
	// Every included row, with its hash and values: the sync in mode "all"
	// against an empty state.
	all := *syncs[0]
	all.Mode = config.ModeAll
	var full *reconcile.DiffResult
	if t, ok := w.Warehouse(syncs[0]); ok {
		// The database's keys and hashes of every included row, for the
		// snapshot table; nothing of the old snapshot is carried over.
		full, err = w.resetWarehouseDiff(ctx, &all, t)
	} else {
		full, err = DiffSync(ctx, w.Source(all.Model), &all, w.Rules(all.Name), Base{})
	}
	if err != nil {
		return nil, err
	}
	return &ResetPreview{Plan: res.Plan, Records: full.Plan.NumChanges(), Failures: len(failures), sync: syncs[0], full: full}, nil
}

// ResetCDC takes a sync's model result, as read by PreviewResetCDC, as
// already synced: the snapshot becomes every included row and the failure
// index is emptied. Nothing is sent. The workspace holds the lock from
// before the preview, so the state it showed is the state replaced.
// Cancelling ctx stops the write of a warehouse CDC snapshot table.
func (w *Workspace) ResetCDC(ctx context.Context, preview *ResetPreview) (int, error) {
	s, full := preview.sync, preview.full
	run := w.resetRun(s, time.Now()) // its revision read once, for both records
	t, warehouse := w.Warehouse(s)
	if warehouse {
		var err error
		if run, err = w.startReset(run); err != nil {
			return 0, err
		}
		// The table first: if the state's reset then fails, the next plan
		// finds failures the table does not flag and asks for reset-cdc
		// again rather than planning on a half-reset state. It becomes
		// this state's (taken over from any other).
		meta, err := w.State.Meta()
		if err != nil {
			return 0, err
		}
		t.Owner = meta.Lineage
		if err := resetWarehouse(ctx, s, t, full.Plan, w.columns[s.Model.Name]); err != nil {
			return 0, err
		}
		crashpoint.Hit("reset.begun") // the table reset, the state not yet
	}
	tx, err := w.State.Begin(s.Name, true)
	if err != nil {
		return 0, err
	}
	if warehouse {
		// The state keeps no snapshot of a warehouse CDC sync.
		if err := tx.Commit(); err != nil {
			return 0, fmt.Errorf("sync %q: saving state: %w", s.Name, err)
		}
		if t.Owner == "" {
			// A state never written had no lineage to claim the table
			// with until now: it was reset unowned.
			meta, err := w.State.Meta()
			if err != nil {
				return 0, err
			}
			t.Owner = meta.Lineage
			if err := claimUnowned(ctx, t, s.Name); err != nil {
				return 0, fmt.Errorf("sync %q: %w", s.Name, err)
			}
		}
		return w.recordReset(run, full)
	}
	if run, err = w.startReset(run); err != nil {
		tx.Abort()
		return 0, err
	}
	err = full.Plan.Each(func(c *reconcile.Change) error {
		tx.Accept(c.Key, c.Hash, c.After)
		return nil
	})
	if err != nil {
		tx.Abort()
		return 0, fmt.Errorf("sync %q: reading the plan: %w", s.Name, err)
	}
	crashpoint.Hit("reset.begun") // begun, nothing committed
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sync %q: saving state: %w", s.Name, err)
	}
	crashpoint.Hit("reset.committed") // committed, no run recorded
	return w.recordReset(run, full)
}

// startReset records run, a reset-cdc's (resetRun), in the run history as
// unfinished before the reset writes anything, as an apply does: a reset
// that dies once it has committed (or whose record fails) still makes a
// plan saved before it stale, whatever the state's backend (a database
// backend tells a saved plan's staleness by the run history, with locks
// per sync). It returns run with the number it was given.
func (w *Workspace) startReset(run state.Run) (state.Run, error) {
	start := run
	// Not yet where the snapshot is kept: a reset that never ends must
	// not be taken for a switch between local and warehouse CDC (lastCDC
	// skips runs that do not say), which would let the next plan through
	// against a snapshot never written.
	start.Status, start.CDC, start.CDCSchema = state.RunResetIncomplete, "", ""
	start.Error = "reset-cdc did not record its end (killed or failed): the state is the one before it or the one after it; run it again"
	r, err := w.State.AppendRun(start, nil, 0)
	if err != nil {
		return run, fmt.Errorf("sync %q: recording the reset: %w", run.Sync, err)
	}
	run.Run = r.Run
	return run, nil
}

// resetRun is the run a reset-cdc of s started at started records.
func (w *Workspace) resetRun(s *config.Sync, started time.Time) state.Run {
	commit, dirty := w.Revision()
	cdc, cdcSchema := state.CDCLocal, ""
	if t, ok := w.Warehouse(s); ok {
		cdc, cdcSchema = state.CDCWarehouse, t.Schema
	}
	return state.Run{Sync: s.Name, Status: state.RunResetCDC, ConfigHash: w.Config.Hash, Commit: commit, Dirty: dirty,
		Started: started.UTC(), CDC: cdc, CDCSchema: cdcSchema}
}

// recordReset records the outcome of a reset-cdc in run, which
// startReset recorded.
func (w *Workspace) recordReset(run state.Run, full *reconcile.DiffResult) (int, error) {
	excluded := 0
	for _, n := range full.Plan.Excluded {
		excluded += n
	}
	run.DurationMS, run.Counts = time.Since(run.Started).Milliseconds(), state.Counts{Excluded: excluded}
	_, err := w.State.AppendRun(run, nil, 0)
	return full.Plan.NumChanges(), err
}

// resetWarehouseDiff is every included row of a warehouse CDC sync (all is
// the sync in mode "all") with the database's keys and hashes, read
// against an empty failure index.
func (w *Workspace) resetWarehouseDiff(ctx context.Context, all *config.Sync, t pushdown.Target) (*reconcile.DiffResult, error) {
	res, err := warehouseDiff(ctx, w.Project, all, t, pushdown.Input{TakeOver: true})
	if err != nil {
		return nil, fmt.Errorf("sync %q: %w", all.Name, err)
	}
	// Records of the old snapshot whose rows left the model are not part
	// of the new one.
	kept := res.Plan.Changes[:0]
	for _, c := range res.Plan.Changes {
		if c.Action != reconcile.ActionRemove {
			kept = append(kept, c)
		}
	}
	res.Plan.Changes = kept
	return res, nil
}

// resetWarehouse writes the snapshot table of a reset-cdc. Once ctx is
// cancelled the error wraps ctx.Err(): the store's own errors are text
// only (they pass through secret redaction).
func resetWarehouse(ctx context.Context, s *config.Sync, t pushdown.Target, full *reconcile.SyncPlan, cols []schema.Column) error {
	err := func() error {
		store, err := pushdown.Open(ctx, t)
		if err != nil {
			return err
		}
		defer store.Close()
		return store.Reset(ctx, full, pushdown.Fingerprint(t.Dialect, full.Warehouse.Hash, s, cols))
	}()
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("sync %q: reset-cdc interrupted: %w", s.Name, ctx.Err())
	default:
		return fmt.Errorf("sync %q: %w", s.Name, err)
	}
}
