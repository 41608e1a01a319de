package project

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/engine"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/internal/crashpoint"
	didyoumean "github.com/backflowhq/backflow/internal/suggest"
	"github.com/backflowhq/backflow/pushdown"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/rules"
	"github.com/backflowhq/backflow/schema"
	"github.com/backflowhq/backflow/state"
)

// syncNames are the names of the config's syncs, in order.
func (p *Project) syncNames() []string {
	names := make([]string, len(p.Config.Syncs))
	for i, s := range p.Config.Syncs {
		names[i] = s.Name
	}
	return names
}

// unknownSync is the error for a sync name nothing declares.
func unknownSync(name string, known []string) error {
	if len(known) == 0 {
		return fmt.Errorf("no sync named %q: the config declares no sync", name)
	}
	return fmt.Errorf("no sync named %q; the config declares %s.%s", name, strings.Join(known, ", "), didyoumean.DidYouMean(name, known))
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
			return nil, unknownSync(n, p.syncNames())
		}
		out = append(out, p.Config.Syncs[i])
	}
	return out, nil
}

// OpenDestination opens a destination block's driver; readOnly opens it to
// inspect it only (destination.Config.ReadOnly).
func (p *Project) OpenDestination(ctx context.Context, d *config.Destination, readOnly bool) (destination.Destination, error) {
	if d.Args.Broken() || d.Common.Broken() {
		return nil, fmt.Errorf("destination %q has arguments that could not be read (validate says which); it is not opened", d.Name)
	}
	return p.opts.Destinations.Open(ctx, d.Type, destination.Config{
		Name: d.Name, Dir: p.Config.Dir, Args: d.Args, Policy: destination.PolicyOf(d.Common), Redact: p.Config.Redact,
		ReadOnly: readOnly,
	})
}

// openDestinations opens each destination block once per command, however
// many syncs write to it: read-only to plan, for writing to apply.
type openDestinations struct {
	p        *Project
	readOnly bool
	byName   map[string]destination.Destination
	errs     map[string]error
}

func (p *Project) destinations(readOnly bool) *openDestinations {
	return &openDestinations{p: p, readOnly: readOnly, byName: map[string]destination.Destination{}, errs: map[string]error{}}
}

func (o *openDestinations) open(ctx context.Context, d *config.Destination) (destination.Destination, error) {
	if dest, ok := o.byName[d.Name]; ok {
		return dest, nil
	}
	if err, ok := o.errs[d.Name]; ok {
		return nil, err // one attempt per command: an unreachable server is not waited for twice
	}
	dest, err := o.p.OpenDestination(ctx, d, o.readOnly)
	if err != nil {
		o.errs[d.Name] = err
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
	// diffs, when set, receives each sync's diff result: PlanReview needs
	// the keys rules exclude, which plans only count.
	diffs func(*reconcile.DiffResult)
}

// SyncError is a sync that could not be planned or applied: its source or
// destination failed. The other syncs go on. Subject is the block the
// failure is about (the model for a failed query, the destination for an
// unreachable one), for rendering as a diagnostic; Diags, when set, say it
// better (one per mapped field of the wrong type, at its mapping).
type SyncError struct {
	Sync    string
	Summary string
	Err     error
	Subject *hcl.Range
	Diags   hcl.Diagnostics
}

func (e *SyncError) Error() string { return fmt.Sprintf("sync %q: %v", e.Sync, e.Err) }
func (e *SyncError) Unwrap() error { return e.Err }

// Diagnostics render the failure for the diagnostic writer.
func (e *SyncError) Diagnostics() hcl.Diagnostics {
	if len(e.Diags) > 0 {
		return e.Diags
	}
	return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: e.Summary, Detail: e.Error() + ".", Subject: e.Subject}}
}

// SyncErrors are the syncs that failed while the others went on.
type SyncErrors []*SyncError

func (e SyncErrors) Error() string {
	msgs := make([]string, len(e))
	for i, x := range e {
		msgs[i] = x.Error()
	}
	return strings.Join(msgs, "; ")
}

// Plan diffs every selected sync against the state. It checks, for each
// sync, that the destination object has the key and mapped fields, so a
// missing table or column is an error now rather than during apply.
//
// Syncs sharing a model read one result of it. A sync whose destination or
// model fails is left out of the plan and reported in a SyncErrors error;
// the plan of the others is returned with it.
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
		Created:       time.Now().UTC(),
	}
	plan.Commit, plan.Dirty = w.Revision()
	names := make([]string, len(syncs))
	for i, s := range syncs {
		names[i] = s.Name
	}
	if plan.SyncStamps, err = w.syncStamps(names); err != nil {
		return nil, err
	}
	var failed SyncErrors
	dests := w.destinations(true)
	defer dests.close()
	byModel := map[*config.Model][]SyncDiff{}
	var models []*config.Model
	notes := map[string][]string{}
	warehouse := map[string]*reconcile.DiffResult{}
	for _, s := range syncs {
		n, serr := w.inspect(ctx, dests, s)
		if serr != nil {
			failed = append(failed, serr)
			continue
		}
		notes[s.Name] = n
		if t, ok := w.Warehouse(s); ok {
			res, err := w.diffWarehouse(ctx, w.Project, s, t, opts.SkipRemovals)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if err != nil {
				se := &SyncError{Sync: s.Name, Summary: "Warehouse CDC Failed", Err: err, Subject: rangePtr(s.Model.QueryRange)}
				if summary := resetSummary(err, ""); summary != "" {
					// Not the query's doing: the sync's reset did not end.
					se.Summary, se.Subject = summary, rangePtr(s.DeclRange)
				}
				if oe := (*pushdown.OwnerError)(nil); errors.As(err, &oe) {
					// Not the query's doing: the snapshot's schema is.
					se.Summary, se.Subject = "Warehouse CDC Snapshot Owned By Another State", rangePtr(s.Model.Source.DeclRange)
				}
				failed = append(failed, se)
				continue
			}
			warehouse[s.Name] = res
			continue
		}
		base, closeBase, err := w.base(s.Name, opts.SkipRemovals)
		if err != nil {
			return nil, err
		}
		defer closeBase()
		if err := w.checkLocalCDC(s.Name, base); err != nil {
			failed = append(failed, &SyncError{Sync: s.Name, Summary: resetSummary(err, "Snapshot Kept By Warehouse CDC"), Err: err, Subject: rangePtr(s.DeclRange)})
			continue
		}
		if _, ok := byModel[s.Model]; !ok {
			models = append(models, s.Model)
		}
		byModel[s.Model] = append(byModel[s.Model], SyncDiff{Sync: s, Rules: w.Rules(s.Name), Base: base})
	}
	results := map[string]*reconcile.SyncPlan{}
	for name, res := range warehouse {
		results[name] = res.Plan
		if opts.diffs != nil {
			opts.diffs(res)
		}
	}
	for _, m := range models {
		res, errs, err := DiffModel(ctx, w.Source(m), m, byModel[m])
		for i, sd := range byModel[m] {
			switch {
			case err != nil:
				failed = append(failed, &SyncError{Sync: sd.Sync.Name, Summary: "Model Query Failed", Err: err, Subject: rangePtr(m.QueryRange)})
			case errs[i] != nil:
				failed = append(failed, &SyncError{Sync: sd.Sync.Name, Summary: "Sync Failed", Err: errs[i], Subject: rangePtr(sd.Sync.DeclRange)})
			default:
				results[sd.Sync.Name] = res[i].Plan
				if opts.diffs != nil {
					opts.diffs(res[i])
				}
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	for _, s := range syncs {
		if sp, ok := results[s.Name]; ok {
			sp.Notes = notes[s.Name]
			sp.FieldTypes = w.fieldTypes(s)
			plan.Syncs = append(plan.Syncs, sp)
		}
	}
	if len(failed) > 0 {
		for _, f := range failed {
			// A server's message may quote what it knows of the session:
			// the user, database or options of a DSN read through env().
			f.Err = w.Config.Redact.Error(f.Err)
		}
		return plan, failed
	}
	return plan, nil
}

// inspect opens a sync's destination read-only and checks its object: the
// key and mapped fields exist, and the model's values can be written to
// them. Notes say what could not be checked because apply creates it.
func (w *Workspace) inspect(ctx context.Context, dests *openDestinations, s *config.Sync) ([]string, *SyncError) {
	d := s.Destination
	dest, err := dests.open(ctx, d)
	if errors.Is(err, destination.ErrNotCreated) {
		if drv, ok := w.opts.Destinations.Lookup(d.Type); ok && d.Args.String("init_sql") == "" {
			if _, takes := drv.Type.Spec.Arg("init_sql"); takes {
				return nil, &SyncError{Sync: s.Name, Summary: "Destination Not Ready", Subject: rangePtr(d.DeclRange),
					Err: fmt.Errorf("%v, and without init_sql nothing creates table %q in it", err, s.Object)}
			}
		}
		return []string{fmt.Sprintf("destination %q: %v; its object and fields are checked when it exists", d.Name, unwrapName(err, d.Name))}, nil
	}
	if err != nil {
		return nil, &SyncError{Sync: s.Name, Summary: "Destination Unavailable", Err: err, Subject: rangePtr(d.DeclRange)}
	}
	err = prepare(ctx, dest, s)
	if errors.Is(err, destination.ErrNotFound) && d.Args.String("init_sql") != "" {
		return []string{fmt.Sprintf("%v; apply runs the init_sql of destination %q first", errors.Unwrap(err), d.Name)}, nil
	}
	if err != nil {
		return nil, &SyncError{Sync: s.Name, Summary: "Destination Not Ready", Err: err, Subject: rangePtr(d.DeclRange)}
	}
	if err := checkTypes(ctx, dest, s, w.fieldTypes(s)); err != nil {
		return nil, err
	}
	return nil, checkClears(ctx, dest, s)
}

// checkClears refuses a sync whose clears would set a NOT NULL column to
// null: the destination would reject every removal, run after run.
func checkClears(ctx context.Context, dest destination.Destination, s *config.Sync) *SyncError {
	cc, ok := dest.(destination.ClearChecker)
	if !ok || s.DeleteBehavior != config.DeleteClear {
		return nil
	}
	var cleared []string
	for _, m := range s.Mapping {
		if m.Field != s.Key && (s.ClearFields == nil || slices.Contains(s.ClearFields, m.Field)) {
			cleared = append(cleared, m.Field)
		}
	}
	notNull, err := cc.NotNullFields(ctx, s.Object, cleared)
	if err != nil {
		return &SyncError{Sync: s.Name, Summary: "Destination Not Ready", Err: err, Subject: rangePtr(s.Destination.DeclRange)}
	}
	if len(notNull) == 0 {
		return nil
	}
	return &SyncError{Sync: s.Name, Summary: "Clear Of A NOT NULL Column", Subject: rangePtr(s.DeleteRange),
		Err: fmt.Errorf("a clear sets %s to null, but %s NOT NULL in %q: every removal would be rejected. Name the fields a clear may reset with clear_fields, or use delete_behavior = \"delete\" or \"nothing\"",
			quoted(notNull), map[bool]string{true: "that column is", false: "those columns are"}[len(notNull) == 1], s.Object)}
}

func quoted(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

// unwrapName drops the "destination NAME: " prefix drivers put on errors.
func unwrapName(err error, name string) string {
	return strings.TrimPrefix(err.Error(), fmt.Sprintf("destination %q: ", name))
}

// fieldTypes are the model's types of a sync's mapped fields and key field,
// as the model's columns report them (nil when they are not known).
func (p *Project) fieldTypes(s *config.Sync) map[string]schema.Type {
	cols, ok := p.columns[s.Model.Name]
	if !ok {
		return nil
	}
	byName := map[string]schema.Type{}
	for _, c := range cols {
		byName[c.Name] = c.Type
	}
	out := map[string]schema.Type{}
	for _, m := range s.Mapping {
		if t, ok := byName[m.Column]; ok {
			out[m.Field] = t
		}
	}
	if _, mapped := out[s.Key]; !mapped {
		out[s.Key] = schema.TypeString // a composite key is written as its string
		if len(s.Model.PrimaryKey) == 1 {
			if t, ok := byName[s.Model.PrimaryKey[0]]; ok {
				out[s.Key] = t
			}
		}
	}
	return out
}

// checkTypes tells a destination that can check them the types of the
// values a sync sends, as a diagnostic per mapped field it cannot take.
func checkTypes(ctx context.Context, dest destination.Destination, s *config.Sync, types map[string]schema.Type) *SyncError {
	tc, ok := dest.(destination.TypeChecker)
	if !ok || types == nil {
		return nil
	}
	err := tc.CheckTypes(ctx, s.Object, types)
	if err == nil {
		return nil
	}
	se := &SyncError{Sync: s.Name, Summary: "Mapping Type Mismatch", Err: err, Subject: rangePtr(s.MappingRange)}
	var ms destination.TypeMismatches
	if !errors.As(err, &ms) {
		se.Summary = "Destination Not Ready"
		return se
	}
	for _, m := range ms {
		subject := rangePtr(s.MappingRange)
		column := s.Model.PrimaryKey[0]
		for _, f := range s.Mapping {
			if f.Field == m.Field {
				subject, column = rangePtr(f.Range), f.Column
			}
		}
		se.Diags = append(se.Diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Mapping Type Mismatch", Subject: subject,
			Detail: fmt.Sprintf("Sync %q maps model column %q (%s) to %q, a column of type %s in %s %q of destination %q: such values can never be written there. Map another column, convert it in the model's query, or change the destination column.",
				s.Name, column, m.Model, m.Field, m.ColumnType, "table", s.Object, s.Destination.Name),
		})
	}
	return se
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
		return fmt.Errorf("destination %q: %w", s.Destination.Name, err)
	}
	return nil
}

// base loads what a sync is diffed against; close releases the snapshot.
func (w *Workspace) base(sync string, skipRemovals bool) (Base, func(), error) {
	snap, err := w.State.LoadSnapshot(sync)
	if err != nil {
		return Base{}, nil, err
	}
	failures, err := w.State.LoadFailures(sync)
	if err != nil {
		snap.Close()
		return Base{}, nil, err
	}
	return Base{Snapshot: snap, Failures: failures, SkipRemovals: skipRemovals}, func() { snap.Close() }, nil
}

// checkLocalCDC refuses to diff a sync with local CDC against a state
// that holds no snapshot of it when its last apply or reset kept the
// snapshot in the warehouse (the source's tables): every row would be
// planned again as new, and rows that left the model never removed.
// reset-cdc takes the model's rows as synced in the state instead.
func (w *Workspace) checkLocalCDC(sync string, base Base) error {
	last, ok, err := w.lastCDC(sync)
	if err != nil || (base.Snapshot != nil && base.Snapshot.Len() > 0) {
		return err
	}
	if err != nil || !ok || last.CDC != state.CDCWarehouse {
		return err
	}
	return fmt.Errorf("cdc is \"local\" but sync %q was last applied with cdc = \"warehouse\" (run %d): its snapshot is in the source's warehouse CDC tables and the state holds none, so every row would be sent again as new and rows that left the model would never be removed; run backflow reset-cdc %s to take the model's current rows as synced in the state, or set cdc = \"warehouse\" again", sync, last.Run, sync)
}

// diffForReset diffs one sync's model against its state, for reset-cdc's
// preview: a warehouse CDC snapshot is read even when another state owns
// it, as the reset takes it over.
func (w *Workspace) diffForReset(ctx context.Context, s *config.Sync) (*reconcile.DiffResult, error) {
	if t, ok := w.Warehouse(s); ok {
		res, err := w.diffWarehouseIn(ctx, w.Project, s, t, pushdown.Input{TakeOver: true})
		if err != nil {
			return nil, fmt.Errorf("sync %q: %w", s.Name, err)
		}
		return res, nil
	}
	base, closeBase, err := w.base(s.Name, false)
	if err != nil {
		return nil, err
	}
	defer closeBase()
	return DiffSync(ctx, w.Source(s.Model), s, w.Rules(s.Name), base)
}

// Base is what a sync's model is diffed against.
type Base struct {
	Snapshot     reconcile.Snapshot // nil: a sync never applied
	Failures     state.FailureIndex
	SkipRemovals bool
}

// SyncDiff is one sync to diff against its model's rows: its compiled
// rules (nil to compile them against the columns the query returns) and
// its base.
type SyncDiff struct {
	Sync  *config.Sync
	Rules *rules.Program
	Base  Base
}

// DiffModel is the one pipeline from a model to plans — rows, then rules,
// then the diff — shared by plan, reset-cdc, test and the benchmark. It
// runs the model's query once for every sync in syncs. Results and errors
// are index-aligned with syncs; err is a failure of the query itself.
func DiffModel(ctx context.Context, src engine.Source, m *config.Model, syncs []SyncDiff) ([]*reconcile.DiffResult, []error, error) {
	if src == nil {
		return nil, nil, fmt.Errorf("the source of model %q is not open", m.Name)
	}
	rows, err := src.Query(ctx, m.Query)
	if err != nil {
		return nil, nil, fmt.Errorf("running model %q: %w", m.Name, err)
	}
	defer rows.Close()
	ins := make([]reconcile.DiffInput, len(syncs))
	compileErrs := make([]error, len(syncs))
	for i, sd := range syncs {
		in := reconcile.DiffInput{Sync: sd.Sync, Snapshot: sd.Base.Snapshot, Failures: sd.Base.Failures, SkipRemovals: sd.Base.SkipRemovals}
		if in.Snapshot == nil {
			in.Snapshot = reconcile.EmptySnapshot{}
		}
		prog := sd.Rules
		if prog == nil && len(sd.Sync.Excludes) > 0 {
			compiled, d := rules.Compile(rows.Columns(), sd.Sync.Excludes)
			if d.HasErrors() {
				compileErrs[i] = fmt.Errorf("rules: %s", d.Error())
			}
			prog = compiled
		}
		if prog != nil {
			in.Rules = prog
		}
		ins[i] = in
	}
	res, errs, err := reconcile.DiffAll(ctx, rows, ins)
	if err != nil {
		return nil, nil, err
	}
	for i, e := range compileErrs {
		if e != nil {
			res[i], errs[i] = nil, e
		}
	}
	return res, errs, nil
}

// DiffSync diffs one sync (see DiffModel).
func DiffSync(ctx context.Context, src engine.Source, s *config.Sync, prog *rules.Program, base Base) (*reconcile.DiffResult, error) {
	res, errs, err := DiffModel(ctx, src, s.Model, []SyncDiff{{Sync: s, Rules: prog, Base: base}})
	if err != nil {
		return nil, fmt.Errorf("sync %q: %w", s.Name, err)
	}
	return res[0], errs[0]
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
	if err := w.CheckPlan(plan); err != nil {
		plan.Close()
		return nil, err
	}
	for _, sp := range plan.Syncs {
		syncs, err := w.SelectSyncs([]string{sp.Name})
		if err != nil {
			plan.Close()
			return nil, &StaleError{Reason: err.Error()}
		}
		if err := sp.Conforms(syncs[0]); err != nil {
			plan.Close()
			return nil, fmt.Errorf("saved plan refused, nothing was changed: %w", err)
		}
		if err := w.checkRemovals(sp, syncs[0]); err != nil {
			plan.Close()
			return nil, err
		}
	}
	return plan, nil
}

// checkRemovals decides again, from a saved plan's own changes and the
// sync's state and max_removals, whether it is a mass removal (apply
// refuses it without --allow-mass-removal): its file's checksum catches
// damage, not edits, so the header's word is not taken for it. A sync
// diffed in its source (warehouse CDC) counts its synced records there,
// which apply does not connect to: its plan's own verdict stands.
func (w *Workspace) checkRemovals(sp *reconcile.SyncPlan, s *config.Sync) error {
	if sp.Warehouse != nil {
		return nil
	}
	base, closeBase, err := w.base(s.Name, false)
	if err != nil {
		return err
	}
	defer closeBase()
	var snap reconcile.Snapshot = reconcile.EmptySnapshot{}
	if base.Snapshot != nil {
		snap = base.Snapshot
	}
	if err := sp.CheckRemovals(s, snap, base.Failures); err != nil {
		return fmt.Errorf("saved plan refused, nothing was changed: %w", err)
	}
	return nil
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
	ps, perSync := w.State.(state.PerSyncLocking)
	perSync = perSync && ps.PerSyncLocks() && plan.SyncStamps != nil
	// A plan made before the state's first write has no lineage yet; with
	// per-sync runners, another sync may have written it since.
	if plan.Lineage != meta.Lineage && !(perSync && plan.Lineage == "") {
		if plan.Lineage == "" {
			return &StaleError{Reason: "it was made before the state was first written, and an apply has written it since"}
		}
		return &StaleError{Reason: fmt.Sprintf("it was made against another state (lineage %q, state has %q)", plan.Lineage, meta.Lineage)}
	}
	if plan.Serial == meta.Serial && plan.Lineage == meta.Lineage {
		// The same serial should mean the same state; the syncs' run
		// histories say whether it does (an older state.json put back,
		// say from a backup or a cache, turns the serial back while the
		// syncs' files stay as the applies since left them).
		moved, err := w.movedSince(plan, true)
		if err != nil || moved == "" {
			return err
		}
		return &StaleError{Reason: fmt.Sprintf("sync %q was applied (or reset) since the plan was made, although the state's serial (%d) is the same: the state was put back or edited since (an older state.json?)", moved, meta.Serial)}
	}
	if perSync {
		// Other syncs were applied meanwhile: what matters is whether
		// this plan's own syncs were.
		moved, err := w.movedSince(plan, false)
		if err != nil || moved == "" {
			return err
		}
		return &StaleError{Reason: fmt.Sprintf("sync %q was applied (or reset) since the plan was made", moved)}
	}
	return &StaleError{Reason: fmt.Sprintf("the state changed since the plan was made (serial %d, now %d)", plan.Serial, meta.Serial)}
}

// movedSince returns the first of plan's syncs whose run history is not
// as the plan recorded it ("": none); with skipUnstamped, a sync the plan
// recorded no stamp for is not compared.
func (w *Workspace) movedSince(plan *reconcile.Plan, skipUnstamped bool) (string, error) {
	names := make([]string, len(plan.Syncs))
	for i, sp := range plan.Syncs {
		names[i] = sp.Name
	}
	stamps, err := w.syncStamps(names)
	if err != nil {
		return "", err
	}
	for _, name := range names {
		want, ok := plan.SyncStamps[name]
		if (ok || !skipUnstamped) && stamps[name] != want {
			return name, nil
		}
	}
	return "", nil
}

// syncStamps fingerprints the run history of each of syncs, read once.
// Every write of a sync's snapshot or failure index (apply, reset-cdc)
// records a run, so a stamp changes whenever the sync's state may have.
func (w *Workspace) syncStamps(syncs []string) (map[string]string, error) {
	runs, err := w.State.Runs("")
	if err != nil {
		return nil, err
	}
	bySync := map[string][]state.Run{}
	for _, r := range runs {
		bySync[r.Sync] = append(bySync[r.Sync], r)
	}
	stamps := make(map[string]string, len(syncs))
	for _, name := range syncs {
		h := sha256.New()
		enc := json.NewEncoder(h)
		for _, r := range bySync[name] {
			if err := enc.Encode(r); err != nil {
				return nil, err
			}
		}
		stamps[name] = fmt.Sprintf("%d:%x", len(bySync[name]), h.Sum(nil)[:12])
	}
	return stamps, nil
}

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// Progress is called after every request.
	Progress func(sync string, done, total int)
	// KeepLogs is how many runs of row logs to keep per sync (0 = default).
	KeepLogs int
	// Halving uses plain recursive halving for split retries (comparison only).
	Halving bool
	// AllowMassRemoval applies syncs whose plan removes more than their
	// max_removals (or whose model returned no rows); without it they are
	// refused, and the other syncs go on.
	AllowMassRemoval bool
	// Strict counts the records still failing (rejected again as before)
	// against each sync's failure_threshold.
	Strict bool
	// Parallelism is how many syncs are applied at once (0 or 1: one).
	// Progress is then called from several goroutines.
	Parallelism int
}

// Apply carries out a plan. The workspace holds the state lock (it was
// opened with Options.Lock) and the plan was checked (Plan made it, or
// ReadPlan read it). Every sync's outcome is saved, and a run recorded,
// even when it fails or is interrupted.
//
// With Parallelism above 1, that many syncs are applied at once. Syncs
// writing to one destination block share its rate_limit, and, unless the
// destination takes concurrent writes, take turns for each request.
func (w *Workspace) Apply(ctx context.Context, plan *reconcile.Plan, opts ApplyOptions) ([]*reconcile.SyncResult, error) {
	if w.lock == nil {
		return nil, errors.New("apply needs the state lock: open the workspace with Options.Lock")
	}
	changes := 0
	for _, sp := range plan.Syncs {
		changes += sp.NumChanges()
	}
	defer raiseGC(changes)()
	n := max(opts.Parallelism, 1)
	results := make([]*reconcile.SyncResult, len(plan.Syncs))
	failures := make([]*SyncError, len(plan.Syncs))
	dests := w.destinations(false)
	defer dests.close()
	shared := &sharedDestinations{open: dests, blocks: map[string]*destBlock{}}

	var (
		mu      sync.Mutex
		saveErr error // the state could not be saved: going on would lose outcomes
		wg      sync.WaitGroup
	)
	slots := make(chan struct{}, n)
	for i, sp := range plan.Syncs {
		slots <- struct{}{}
		mu.Lock()
		stop := saveErr != nil
		mu.Unlock()
		if stop || ctx.Err() != nil {
			<-slots
			break
		}
		syncs, err := w.SelectSyncs([]string{sp.Name})
		if err != nil {
			<-slots
			mu.Lock()
			saveErr = err
			mu.Unlock()
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			res, serr, err := w.applyOne(ctx, plan, sp, syncs[0], shared, opts)
			mu.Lock()
			defer mu.Unlock()
			results[i], failures[i] = res, serr
			if err != nil && saveErr == nil {
				saveErr = err
			}
		}()
	}
	wg.Wait()

	var out []*reconcile.SyncResult
	var failed SyncErrors
	for i := range plan.Syncs {
		if results[i] != nil {
			out = append(out, results[i])
		}
		if f := failures[i]; f != nil {
			// As in Plan: a destination's message may name what env() gave.
			f.Err = w.Config.Redact.Error(f.Err)
			failed = append(failed, f)
		}
	}
	if saveErr != nil {
		return out, saveErr
	}
	if len(failed) > 0 {
		return out, failed
	}
	return out, nil
}

// sharedDestinations are the destinations of one apply, opened once per
// block, with what the syncs writing to a block share.
type sharedDestinations struct {
	mu     sync.Mutex
	open   *openDestinations
	blocks map[string]*destBlock
}

// destBlock is one destination block as the syncs of an apply share it.
type destBlock struct {
	dest    destination.Destination
	limiter *reconcile.RateLimiter
	// turn is taken around every use of a destination that does not take
	// concurrent writes (nil for one that does).
	turn *sync.Mutex
}

func (sd *sharedDestinations) get(ctx context.Context, d *config.Destination) (*destBlock, error) {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if b, ok := sd.blocks[d.Name]; ok {
		return b, nil
	}
	dest, err := sd.open.open(ctx, d)
	if err != nil {
		return nil, err
	}
	b := &destBlock{dest: dest, limiter: reconcile.NewRateLimiter(destination.PolicyOf(d.Common).RateLimit)}
	if _, ok := dest.(destination.ConcurrentWriter); !ok {
		b.turn = &sync.Mutex{}
	}
	sd.blocks[d.Name] = b
	return b, nil
}

// lock takes the block's turn, if it has one; the returned func gives it back.
func (b *destBlock) lock() func() {
	if b.turn == nil {
		return func() {}
	}
	b.turn.Lock()
	return b.turn.Unlock
}

// turnWriter gives a destination that takes one request at a time to the
// syncs sharing it in turns, one request each.
type turnWriter struct {
	destination.Destination
	b *destBlock
}

func (t turnWriter) Write(ctx context.Context, batch *destination.Batch) destination.Outcome {
	defer t.b.lock()()
	return t.Destination.Write(ctx, batch)
}

// PrepareBatch passes the batch to the destination's own, which may run
// while another sync has its turn.
func (t turnWriter) PrepareBatch(batch *destination.Batch) {
	if p, ok := t.Destination.(destination.BatchPreparer); ok {
		p.PrepareBatch(batch)
	}
}

// ReadsValues implements destination.ValuesReader as the destination does.
func (t turnWriter) ReadsValues() bool {
	r, ok := t.Destination.(destination.ValuesReader)
	return ok && r.ReadsValues()
}

// applyOne applies one sync of a plan: a SyncError when it could not start
// (the others go on), an error when the state could not be saved.
func (w *Workspace) applyOne(ctx context.Context, plan *reconcile.Plan, sp *reconcile.SyncPlan, s *config.Sync, shared *sharedDestinations, opts ApplyOptions) (*reconcile.SyncResult, *SyncError, error) {
	if sp.MassRemoval != nil && !opts.AllowMassRemoval {
		return nil, &SyncError{Sync: s.Name, Summary: "Mass Removal Refused", Subject: rangePtr(s.DeclRange),
			Err: fmt.Errorf("%s; nothing was sent. Check the model; if the removal is intended, apply again with --allow-mass-removal (or raise max_removals)", sp.MassRemoval.Reason())}, nil
	}
	b, err := shared.get(ctx, s.Destination)
	if err != nil {
		return nil, &SyncError{Sync: s.Name, Summary: "Destination Unavailable", Err: err, Subject: rangePtr(s.Destination.DeclRange)}, nil
	}
	// What the plan could not check (a destination apply created) is
	// checked now, before anything is sent; the driver converts values by
	// the model's types, recorded in the plan.
	unlock := b.lock()
	err = prepare(ctx, b.dest, s)
	var serr *SyncError
	if err == nil {
		serr = checkTypes(ctx, b.dest, s, sp.FieldTypes)
	}
	unlock()
	if err != nil {
		return nil, &SyncError{Sync: s.Name, Summary: "Destination Not Ready", Err: err, Subject: rangePtr(s.Destination.DeclRange)}, nil
	}
	if serr != nil {
		return nil, serr, nil
	}
	dest := b.dest
	if b.turn != nil {
		dest = turnWriter{Destination: b.dest, b: b}
	}
	res, err := w.applySync(ctx, plan, sp, s, dest, b.limiter, opts)
	return res, nil, err
}

func (w *Workspace) applySync(ctx context.Context, plan *reconcile.Plan, sp *reconcile.SyncPlan, s *config.Sync, dest destination.Destination, limiter *reconcile.RateLimiter, opts ApplyOptions) (*reconcile.SyncResult, error) {
	// The sync's state is read and checked first: state it refuses
	// (damaged) leaves the history and the serial as they were, as its
	// error says. Then the run is in the history from its start, before
	// anything is sent: if the process dies, it stays there as incomplete.
	stx, err := w.State.Begin(s.Name, false)
	if err != nil {
		return nil, err
	}
	cdc, cdcSchema := w.runCDC(s, sp)
	started, err := w.State.AppendRun(state.Run{
		Sync: s.Name, Status: state.RunIncomplete, ConfigHash: plan.ConfigHash, Commit: plan.Commit, Dirty: plan.Dirty,
		Started: time.Now().UTC(), CDC: cdc, CDCSchema: cdcSchema,
	}, nil, opts.KeepLogs)
	if err != nil {
		stx.Abort()
		return nil, &SaveError{Sync: s.Name, What: "recording the run", Err: err}
	}
	tx, done, err := w.beginWarehouse(ctx, stx, s, sp)
	if err != nil {
		stx.Abort()
		return nil, err
	}
	defer done()
	ao := reconcile.ApplyOptions{
		Policy:    destination.PolicyOf(s.Destination.Common),
		Threshold: s.FailureThreshold,
		Strict:    opts.Strict,
		Halving:   opts.Halving,
		Limiter:   limiter,
		Mask:      w.Config.Redact.String,
	}
	if opts.Progress != nil {
		ao.Progress = func(done, total int) { opts.Progress(s.Name, done, total) }
	}
	res, applyErr := reconcile.ApplyPlan(ctx, sp, dest, tx, ao, s.LogAccepted)
	if applyErr != nil {
		tx.Abort()
		return res, fmt.Errorf("sync %q: %w", s.Name, applyErr)
	}
	if err := tx.Commit(); err != nil {
		return res, &SaveError{Sync: s.Name, What: "saving state", Err: err}
	}
	crashpoint.Hit("apply.committed") // committed, the run still recorded as incomplete
	run := runRecord(res, plan)
	run.Run, run.CDC, run.CDCSchema = started.Run, started.CDC, started.CDCSchema
	run.Error = res.FailureReason()
	if _, err := w.State.AppendRun(run, rowLogs(res.Records), opts.KeepLogs); err != nil {
		return res, &SaveError{Sync: s.Name, What: "saving run history", Err: err}
	}
	return res, nil
}

// runCDC is where the apply of sp, a plan of sync s, keeps the sync's
// snapshot (Run.CDC and Run.CDCSchema).
func (w *Workspace) runCDC(s *config.Sync, sp *reconcile.SyncPlan) (string, string) {
	if sp.Warehouse == nil {
		return state.CDCLocal, ""
	}
	t, _ := w.Warehouse(s)
	return state.CDCWarehouse, t.Schema
}

// lastCDC is the last run of sync that says where it kept the snapshot
// (false: none; runs recorded before they said are skipped). The history
// is read again only when the state's serial moved.
func (w *Workspace) lastCDC(sync string) (state.Run, bool, error) {
	meta, err := w.State.Meta()
	if err != nil {
		return state.Run{}, false, err
	}
	w.cdcMu.Lock()
	defer w.cdcMu.Unlock()
	if w.cdcRuns == nil || w.cdcSerial != meta.Serial {
		runs, err := w.State.Runs("")
		if err != nil {
			return state.Run{}, false, err
		}
		last, lastAny := map[string]state.Run{}, map[string]state.Run{}
		for _, r := range runs { // oldest first
			if r.CDC != "" {
				last[r.Sync] = r
			}
			lastAny[r.Sync] = r
		}
		w.cdcRuns, w.lastRuns, w.cdcSerial = last, lastAny, meta.Serial
	}
	r, ok := w.cdcRuns[sync]
	if l, any := w.lastRuns[sync]; any && l.Status == state.RunResetIncomplete {
		// Whether it committed is unknown, and so is where the snapshot
		// is: neither setting's guard can tell a switch from none.
		return r, ok, &ResetUnfinishedError{Sync: sync, Run: l.Run}
	}
	return r, ok, nil
}

// ResetUnfinishedError is a sync whose last reset-cdc did not record its
// end: it is not planned until a reset-cdc ends.
type ResetUnfinishedError struct {
	Sync string
	Run  int
}

func (e *ResetUnfinishedError) Error() string {
	return fmt.Sprintf("the last reset-cdc of sync %q (run %d) did not record its end (killed or failed): the state may be the one before it or the one after it; run backflow reset-cdc %s again", e.Sync, e.Run, e.Sync)
}

// resetSummary is the summary of a sync's planning error err when it is a
// ResetUnfinishedError, else summary.
func resetSummary(err error, summary string) string {
	if ue := (*ResetUnfinishedError)(nil); errors.As(err, &ue) {
		return "Reset-cdc Did Not Finish"
	}
	return summary
}

// SaveError is a sync's state, or its run history, that could not be
// saved during apply: the apply stops, and the sync did not succeed
// whatever its destination accepted.
type SaveError struct {
	Sync, What string
	Err        error
}

func (e *SaveError) Error() string { return fmt.Sprintf("sync %q: %s: %v", e.Sync, e.What, e.Err) }
func (e *SaveError) Unwrap() error { return e.Err }

// runRecord is the run history's record of an apply.
func runRecord(res *reconcile.SyncResult, plan *reconcile.Plan) state.Run {
	c := res.Counts
	run := state.Run{
		Sync: res.Sync, Status: res.Status(), ConfigHash: plan.ConfigHash, Commit: plan.Commit, Dirty: plan.Dirty,
		Started: res.Started.UTC(), DurationMS: res.Duration.Milliseconds(),
		Counts: state.Counts{Added: c.Added, Changed: c.Changed, Removed: c.Removed, Retried: c.Retried,
			Accepted: c.Accepted, Rejected: c.Rejected, Excluded: c.Excluded, StillFailing: res.StillFailing},
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

// rowLogs is a run's row log: the records ApplyPlan kept (every rejected
// one, and the first log_accepted accepted ones).
func rowLogs(records []reconcile.RecordResult) []state.RowLog {
	out := make([]state.RowLog, len(records))
	for i, r := range records {
		out[i] = state.RowLog{Key: r.Key, Operation: string(r.Operation), Status: r.Status, Error: r.Error, Attempts: r.Attempts}
	}
	return out
}

// CheckDestinations inspects, read-only, the destination of every sync the
// config could resolve: the object, key and mapped fields exist, the model's
// values can be written to them, and clears can reset them — the checks
// plan makes, for validate. A destination that cannot be reached is a
// warning (validate also runs where destinations are out of reach); one
// apply will create is checked when it exists.
func (p *Project) CheckDestinations(ctx context.Context) hcl.Diagnostics {
	w := &Workspace{Project: p}
	dests := p.destinations(true)
	defer dests.close()
	var diags hcl.Diagnostics
	for _, s := range p.Config.Syncs {
		if s.Model == nil || s.Destination == nil || s.Destination.Type == "" {
			continue
		}
		if _, ok := p.columns[s.Model.Name]; !ok {
			continue // the model could not be read: said already
		}
		_, err := w.inspect(ctx, dests, s)
		if err == nil {
			continue
		}
		d := err.Diagnostics()
		if err.Summary == "Destination Unavailable" {
			for _, x := range d {
				x.Severity = hcl.DiagWarning
				x.Summary = "Destination Not Checked"
				x.Detail = fmt.Sprintf("Destination %q could not be reached, so sync %q's object, fields and types were not checked: %v.", s.Destination.Name, s.Name, err.Err)
			}
		}
		diags = append(diags, d...)
	}
	return diags
}
