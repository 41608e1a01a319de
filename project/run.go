package project

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-git/go-git/v5"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/engine"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/rules"
	"github.com/backflowhq/backflow/state"
)

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
	return p.opts.Destinations.Open(ctx, d.Type, destination.Config{
		Name: d.Name, Dir: p.Config.Dir, Args: d.Args, Policy: destination.PolicyOf(d.Common), Redact: p.Config.Redact,
	})
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
func (w *Workspace) Plan(ctx context.Context, opts PlanOptions) (*reconcile.Plan, error) {
	syncs, err := w.SelectSyncs(opts.Syncs)
	if err != nil {
		return nil, err
	}
	meta, err := w.State.Meta()
	if err != nil {
		return nil, err
	}
	plan := &reconcile.Plan{
		FormatVersion: reconcile.FormatVersion,
		Lineage:       meta.Lineage,
		Serial:        meta.Serial,
		ConfigHash:    w.Config.Hash,
		Commit:        GitCommit(w.Config.Dir),
		Created:       time.Now().UTC(),
	}
	dests := w.destinations()
	defer dests.close()
	for _, s := range syncs {
		dest, err := dests.open(ctx, s.Destination)
		if err != nil {
			return nil, err
		}
		if err := prepare(ctx, dest, s); err != nil {
			return nil, err
		}
		res, err := w.diffSync(ctx, s, opts.SkipRemovals)
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

// diffSync diffs a sync's model against its state.
func (w *Workspace) diffSync(ctx context.Context, s *config.Sync, skipRemovals bool) (*reconcile.DiffResult, error) {
	snap, err := w.State.LoadSnapshot(s.Name)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	failures, err := w.State.LoadFailures(s.Name)
	if err != nil {
		return nil, err
	}
	src := w.Source(s.Model)
	if src == nil {
		return nil, fmt.Errorf("sync %q: source of model %q is not open", s.Name, s.Model.Name)
	}
	return DiffSync(ctx, src, s, w.Rules(s.Name), Base{Snapshot: snap, Failures: failures, SkipRemovals: skipRemovals})
}

// Base is what a sync's model is diffed against.
type Base struct {
	Snapshot     reconcile.Snapshot // nil: a sync never applied
	Failures     state.FailureIndex
	SkipRemovals bool
}

// DiffSync is the one pipeline from a model to a plan — rows, then rules,
// then the diff — shared by plan, reset-cdc, test and the benchmark. prog
// is the sync's compiled rules; when nil and the sync has rules, they are
// compiled against the columns the query returns.
func DiffSync(ctx context.Context, src engine.Source, s *config.Sync, prog *rules.Program, base Base) (*reconcile.DiffResult, error) {
	rows, err := src.Query(ctx, s.Model.Query)
	if err != nil {
		return nil, fmt.Errorf("sync %q: running model %q: %w", s.Name, s.Model.Name, err)
	}
	defer rows.Close()
	in := reconcile.DiffInput{Sync: s, Rows: rows, Snapshot: base.Snapshot, Failures: base.Failures, SkipRemovals: base.SkipRemovals}
	if in.Snapshot == nil {
		in.Snapshot = reconcile.EmptySnapshot{}
	}
	if prog == nil && len(s.Excludes) > 0 {
		compiled, d := rules.Compile(rows.Columns(), s.Excludes)
		if d.HasErrors() {
			return nil, fmt.Errorf("sync %q: rules: %s", s.Name, d.Error())
		}
		prog = compiled
	}
	if prog != nil {
		in.Rules = prog
	}
	return reconcile.Diff(ctx, in)
}

// StaleError explains why a saved plan cannot be applied.
type StaleError struct{ Reason string }

func (e *StaleError) Error() string {
	return "saved plan is stale: " + e.Reason + "; nothing was changed. Run plan again."
}

// ReadPlan reads a saved plan and checks that it was made against this
// config and this state.
func (w *Workspace) ReadPlan(path string) (*reconcile.Plan, error) {
	plan, err := reconcile.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return plan, w.CheckPlan(plan)
}

// CheckPlan refuses a plan made against another config or state.
func (w *Workspace) CheckPlan(plan *reconcile.Plan) error {
	if plan.ConfigHash != w.Config.Hash {
		return &StaleError{Reason: "the configuration changed since the plan was made"}
	}
	meta, err := w.State.Meta()
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

// Apply carries out a plan. The workspace holds the state lock (it was
// opened with Options.Lock) and the plan was checked (Plan made it, or
// ReadPlan read it). Every sync's outcome is saved, and a run recorded,
// even when it fails or is interrupted.
func (w *Workspace) Apply(ctx context.Context, plan *reconcile.Plan, opts ApplyOptions) ([]*reconcile.SyncResult, error) {
	if w.lock == nil {
		return nil, errors.New("apply needs the state lock: open the workspace with Options.Lock")
	}
	var results []*reconcile.SyncResult
	dests := w.destinations()
	defer dests.close()
	for _, sp := range plan.Syncs {
		if ctx.Err() != nil {
			break
		}
		syncs, err := w.SelectSyncs([]string{sp.Name})
		if err != nil {
			return results, err
		}
		s := syncs[0]
		dest, err := dests.open(ctx, s.Destination)
		if err != nil {
			return results, err
		}
		res, err := w.applySync(ctx, plan, sp, s, dest, opts)
		if res != nil {
			results = append(results, res)
		}
		if err != nil {
			return results, err
		}
	}
	return results, nil
}

func (w *Workspace) applySync(ctx context.Context, plan *reconcile.Plan, sp *reconcile.SyncPlan, s *config.Sync, dest destination.Destination, opts ApplyOptions) (*reconcile.SyncResult, error) {
	tx, err := w.State.Begin(s.Name, false)
	if err != nil {
		return nil, err
	}
	ao := reconcile.ApplyOptions{
		Policy:    destination.PolicyOf(s.Destination.Common),
		Threshold: s.FailureThreshold,
		Halving:   opts.Halving,
	}
	if opts.Progress != nil {
		ao.Progress = func(done, total int) { opts.Progress(s.Name, done, total) }
	}
	res, applyErr := reconcile.ApplySync(ctx, sp, dest, tx, ao)
	if applyErr != nil {
		tx.Abort()
		return res, fmt.Errorf("sync %q: %w", s.Name, applyErr)
	}
	if err := tx.Commit(); err != nil {
		return res, fmt.Errorf("sync %q: saving state: %w", s.Name, err)
	}
	run := runRecord(res, plan)
	if res.ThresholdExceeded {
		run.Error = fmt.Sprintf("%d of %d attempted records rejected, more than the failure threshold of %g%%", res.Counts.Rejected, res.Attempted(), s.FailureThreshold*100)
	}
	if _, err := w.State.AppendRun(run, rowLogs(res.Records), opts.KeepLogs); err != nil {
		return res, fmt.Errorf("sync %q: saving run history: %w", s.Name, err)
	}
	return res, nil
}

// runRecord is the run history's record of an apply.
func runRecord(res *reconcile.SyncResult, plan *reconcile.Plan) state.Run {
	c := res.Counts
	run := state.Run{
		Sync: res.Sync, Status: res.Status(), ConfigHash: plan.ConfigHash, Commit: plan.Commit,
		Started: res.Started.UTC(), DurationMS: res.Duration.Milliseconds(),
		Counts: state.Counts{Added: c.Added, Changed: c.Changed, Removed: c.Removed, Retried: c.Retried,
			Accepted: c.Accepted, Rejected: c.Rejected, Excluded: c.Excluded},
		Requests: res.Requests, Resent: res.Resent,
	}
	if len(res.ByAction) > 0 {
		run.ByAction = map[string]state.Outcomes{}
		for a, o := range res.ByAction {
			run.ByAction[string(a)] = state.Outcomes{Accepted: o.Accepted, Rejected: o.Rejected}
		}
	}
	return run
}

func rowLogs(records []reconcile.RecordResult) []state.RowLog {
	out := make([]state.RowLog, len(records))
	for i, r := range records {
		out[i] = state.RowLog{Key: r.Key, Operation: string(r.Operation), Status: r.Status, Error: r.Error, Attempts: r.Attempts}
	}
	return out
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
