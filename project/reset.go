package project

import (
	"context"
	"fmt"
	"time"

	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/reconcile"
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
func (p *Project) PreviewResetCDC(ctx context.Context, store *state.Store, name string) (*ResetPreview, error) {
	syncs, err := p.SelectSyncs([]string{name})
	if err != nil {
		return nil, err
	}
	res, err := p.diffSync(ctx, store, syncs[0], false)
	if err != nil {
		return nil, err
	}
	failures, err := store.LoadFailures(name)
	if err != nil {
		return nil, err
	}
	full, err := p.fullResult(ctx, syncs[0])
	if err != nil {
		return nil, err
	}
	return &ResetPreview{Plan: res.Plan, Records: len(full.Plan.Changes), Failures: len(failures), sync: syncs[0], full: full}, nil
}

// fullResult diffs a sync against an empty state in mode "all": every
// included row, with its hash and values.
func (p *Project) fullResult(ctx context.Context, s *config.Sync) (*reconcile.DiffResult, error) {
	all := *s
	all.Mode = config.ModeAll
	return p.diff(ctx, &all, reconcile.EmptySnapshot{}, state.FailureIndex{}, false)
}

// ResetCDC takes a sync's model result, as read by PreviewResetCDC, as
// already synced: the snapshot becomes every included row and the failure
// index is emptied. Nothing is sent. The caller holds the lock from before
// the preview, so the state it showed is the state replaced.
func (p *Project) ResetCDC(store *state.Store, preview *ResetPreview) (int, error) {
	s, full := preview.sync, preview.full
	started := time.Now()
	w, err := store.Begin(s.Name, true)
	if err != nil {
		return 0, err
	}
	for _, c := range full.Plan.Changes {
		w.Accept(c.Key, c.Hash, c.After)
	}
	if err := w.Commit(); err != nil {
		return 0, fmt.Errorf("sync %q: saving state: %w", s.Name, err)
	}
	excluded := 0
	for _, n := range full.Plan.Excluded {
		excluded += n
	}
	_, err = store.AppendRun(state.Run{
		Sync: s.Name, Status: "reset-cdc", ConfigHash: p.Config.Hash, Commit: p.Commit(),
		Started: started.UTC(), DurationMS: time.Since(started).Milliseconds(), Counts: state.Counts{Excluded: excluded},
	}, nil, 0)
	return len(full.Plan.Changes), err
}
