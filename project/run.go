package project

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/go-git/go-git/v5"

	"github.com/backflowhq/backflow/destination"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/state"
)

// StateDir is the state directory: override when set, else .backflow/ in the
// config folder.
func (p *Project) StateDir(override string) string { return StateDir(p.Config.Dir, override) }

// StateDir is the state directory of the config folder dir: override when
// set, else dir/.backflow. Commands that only read the state use it without
// loading the config.
func StateDir(dir, override string) string {
	if override != "" {
		return override
	}
	return filepath.Join(dir, ".backflow")
}

// SelectSyncs returns the named syncs (all when names is empty), or an error
// naming an unknown one.
func (p *Project) SelectSyncs(names []string) ([]*config.Sync, error) {
	if len(names) == 0 {
		return p.Config.Syncs, nil
	}
	var out []*config.Sync
	for _, n := range names {
		i := slices.IndexFunc(p.Config.Syncs, func(s *config.Sync) bool { return s.Name == n })
		if i < 0 {
			var known []string
			for _, s := range p.Config.Syncs {
				known = append(known, s.Name)
			}
			return nil, fmt.Errorf("no sync named %q (syncs: %v)", n, known)
		}
		out = append(out, p.Config.Syncs[i])
	}
	return out, nil
}

// OpenDestination opens a destination block's driver.
func (p *Project) OpenDestination(ctx context.Context, d *config.Destination) (destination.Destination, error) {
	headers := map[string]string{}
	for k, v := range d.Headers {
		headers[k] = v.Reveal()
	}
	dest, err := p.Registry.Open(ctx, destination.Config{
		Name: d.Name, Type: d.Type, Dir: p.Config.Dir, Path: d.Path, DSN: d.DSN.Reveal(), URL: d.URL,
		InitSQL: d.InitSQL, Headers: headers, Timeout: d.Timeout,
	})
	if err != nil {
		return nil, errors.New(scrub(err.Error(), d.DSN.Reveal()))
	}
	return dest, nil
}

// openDestinations opens each destination block once per command, however
// many syncs write to it.
type openDestinations struct {
	p      *Project
	byName map[string]destination.Destination
}

func (p *Project) destinations() *openDestinations {
	return &openDestinations{p: p, byName: map[string]destination.Destination{}}
}

func (o *openDestinations) open(ctx context.Context, d *config.Destination) (destination.Destination, error) {
	if dest, ok := o.byName[d.Name]; ok {
		return dest, nil
	}
	dest, err := o.p.OpenDestination(ctx, d)
	if err != nil {
		return nil, err
	}
	o.byName[d.Name] = dest
	return dest, nil
}

func (o *openDestinations) close() {
	for _, d := range o.byName {
		d.Close()
	}
}

// PlanOptions tune Plan.
type PlanOptions struct {
	Syncs        []string
	SkipRemovals bool
}

// Plan diffs every selected sync against the state. It checks, for each
// sync, that the destination object has the key and mapped fields, so a
// missing table or column is an error now rather than during apply.
func (p *Project) Plan(ctx context.Context, store *state.Store, opts PlanOptions) (*reconcile.Plan, error) {
	syncs, err := p.SelectSyncs(opts.Syncs)
	if err != nil {
		return nil, err
	}
	meta, err := store.Meta()
	if err != nil {
		return nil, err
	}
	plan := &reconcile.Plan{
		FormatVersion: reconcile.FormatVersion,
		Lineage:       meta.Lineage,
		Serial:        meta.Serial,
		ConfigHash:    p.Config.Hash,
		Commit:        p.Commit(),
		Created:       time.Now().UTC(),
	}
	dests := p.destinations()
	defer dests.close()
	for _, s := range syncs {
		dest, err := dests.open(ctx, s.Destination)
		if err != nil {
			return nil, err
		}
		if err := prepare(ctx, dest, s); err != nil {
			return nil, err
		}
		res, err := p.diffSync(ctx, store, s, opts.SkipRemovals)
		if err != nil {
			return nil, err
		}
		plan.Syncs = append(plan.Syncs, res.Plan)
	}
	return plan, nil
}

func prepare(ctx context.Context, dest destination.Destination, s *config.Sync) error {
	pr, ok := dest.(destination.Preparer)
	if !ok {
		return nil
	}
	fields := make([]string, len(s.Mapping))
	for i, m := range s.Mapping {
		fields[i] = m.Field
	}
	if err := pr.Prepare(ctx, s.Object, s.Key, fields); err != nil {
		return fmt.Errorf("sync %q: destination %q: %w", s.Name, s.Destination.Name, err)
	}
	return nil
}

func (p *Project) diffSync(ctx context.Context, store *state.Store, s *config.Sync, skipRemovals bool) (*reconcile.DiffResult, error) {
	snap, err := store.LoadSnapshot(s.Name)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	failures, err := store.LoadFailures(s.Name)
	if err != nil {
		return nil, err
	}
	return p.diff(ctx, s, snap, failures, skipRemovals)
}

func (p *Project) diff(ctx context.Context, s *config.Sync, snap reconcile.Snapshot, failures state.FailureIndex, skipRemovals bool) (*reconcile.DiffResult, error) {
	src := p.Source(s.Model)
	if src == nil {
		return nil, fmt.Errorf("sync %q: source of model %q is not open", s.Name, s.Model.Name)
	}
	rows, err := src.Query(ctx, s.Model.Query)
	if err != nil {
		return nil, fmt.Errorf("sync %q: running model %q: %w", s.Name, s.Model.Name, err)
	}
	defer rows.Close()
	in := reconcile.DiffInput{Sync: s, Rows: rows, Snapshot: snap, Failures: failures, SkipRemovals: skipRemovals}
	if prog := p.Rules(s.Name); prog != nil {
		in.Rules = prog
	}
	return reconcile.Diff(ctx, in)
}

// StaleError explains why a saved plan cannot be applied.
type StaleError struct{ Reason string }

func (e *StaleError) Error() string {
	return "saved plan is stale: " + e.Reason + "; nothing was changed. Run plan again."
}

// CheckPlan refuses a plan made against another config or state.
func (p *Project) CheckPlan(plan *reconcile.Plan, store *state.Store) error {
	if plan.ConfigHash != p.Config.Hash {
		return &StaleError{Reason: "the configuration changed since the plan was made"}
	}
	meta, err := store.Meta()
	if err != nil {
		return err
	}
	if plan.Lineage != meta.Lineage {
		return &StaleError{Reason: fmt.Sprintf("it was made against another state (lineage %q, state has %q)", plan.Lineage, meta.Lineage)}
	}
	if plan.Serial != meta.Serial {
		return &StaleError{Reason: fmt.Sprintf("the state changed since the plan was made (serial %d, now %d)", plan.Serial, meta.Serial)}
	}
	return nil
}

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// Progress is called after every request.
	Progress func(sync string, done, total int)
	// KeepLogs is how many runs of row logs to keep per sync (0 = default).
	KeepLogs int
	// Halving uses plain recursive halving for split retries (comparison only).
	Halving bool
}

// Apply carries out a plan. The caller holds the state lock and has
// checked the plan with CheckPlan. Every sync's outcome is saved, and a run
// recorded, even when it fails or is interrupted.
func (p *Project) Apply(ctx context.Context, store *state.Store, plan *reconcile.Plan, opts ApplyOptions) ([]*reconcile.SyncResult, error) {
	var results []*reconcile.SyncResult
	dests := p.destinations()
	defer dests.close()
	for _, sp := range plan.Syncs {
		if ctx.Err() != nil {
			break
		}
		syncs, err := p.SelectSyncs([]string{sp.Name})
		if err != nil {
			return results, err
		}
		s := syncs[0]
		dest, err := dests.open(ctx, s.Destination)
		if err != nil {
			return results, err
		}
		res, err := p.applySync(ctx, store, plan, sp, s, dest, opts)
		if res != nil {
			results = append(results, res)
		}
		if err != nil {
			return results, err
		}
	}
	return results, nil
}

func (p *Project) applySync(ctx context.Context, store *state.Store, plan *reconcile.Plan, sp *reconcile.SyncPlan, s *config.Sync, dest destination.Destination, opts ApplyOptions) (*reconcile.SyncResult, error) {
	w, err := store.Begin(s.Name, false)
	if err != nil {
		return nil, err
	}
	d := s.Destination
	ao := reconcile.ApplyOptions{
		Policy: reconcile.Policy{
			BatchSize: d.BatchSize, SplitRetries: d.SplitRetries, MaxAttempts: d.Retry.MaxAttempts,
			InitialBackoff: d.Retry.InitialBackoff, MaxBackoff: d.Retry.MaxBackoff, MaxElapsed: d.Retry.MaxElapsed,
		},
		Threshold: s.FailureThreshold,
		Halving:   opts.Halving,
	}
	if opts.Progress != nil {
		ao.Progress = func(done, total int) { opts.Progress(s.Name, done, total) }
	}
	res, applyErr := reconcile.ApplySync(ctx, sp, dest, w, ao)
	if applyErr != nil {
		w.Abort()
		return res, fmt.Errorf("sync %q: %w", s.Name, applyErr)
	}
	if err := w.Commit(); err != nil {
		return res, fmt.Errorf("sync %q: saving state: %w", s.Name, err)
	}
	run := state.Run{
		Sync: s.Name, Status: res.Status(), ConfigHash: plan.ConfigHash, Commit: plan.Commit,
		Started: res.Started.UTC(), DurationMS: res.Duration.Milliseconds(), Counts: res.Counts, ByAction: res.ByAction,
		Requests: res.Requests, Resent: res.Resent,
	}
	if res.ThresholdExceeded {
		run.Error = fmt.Sprintf("%d of %d attempted records rejected, more than the failure threshold of %g%%", res.Counts.Rejected, res.Attempted(), s.FailureThreshold*100)
	}
	if _, err := store.AppendRun(run, res.Rows, opts.KeepLogs); err != nil {
		return res, fmt.Errorf("sync %q: saving run history: %w", s.Name, err)
	}
	return res, nil
}

// GitCommit returns the commit checked out in the git repository holding
// dir, or "" when dir is not in a repository.
func GitCommit(dir string) string {
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return ""
	}
	head, err := repo.Head()
	if err != nil {
		return ""
	}
	return head.Hash().String()
}
