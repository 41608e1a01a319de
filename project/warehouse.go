package project

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/hcl/v2"

	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/pushdown"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/state"
)

// cdcDefaultSchema is where warehouse CDC keeps its tables when the state
// lives elsewhere.
const cdcDefaultSchema = "backflow"

// dialects are the source types warehouse CDC speaks to.
var dialects = map[string]pushdown.Dialect{"postgres": pushdown.Postgres, "mysql": pushdown.MySQL}

// cdcOf is where a sync's changes are found: its own cdc, else its
// source's.
func cdcOf(s *config.Sync) string {
	if s.CDC != "" {
		return s.CDC
	}
	if s.Model != nil && s.Model.Source != nil {
		if v := s.Model.Source.Args.String("cdc"); v != "" {
			return v
		}
	}
	return config.CDCLocal
}

// Warehouse returns where a sync's warehouse CDC tables live; ok is false
// for a sync diffed locally.
func (p *Project) Warehouse(s *config.Sync) (t pushdown.Target, ok bool) {
	if cdcOf(s) != config.CDCWarehouse || s.Model == nil || s.Model.Source == nil {
		return t, false
	}
	src := s.Model.Source
	d, ok := dialects[src.Type]
	if !ok {
		return t, false
	}
	t = pushdown.Target{Dialect: d, DSN: src.Args.String("dsn"), Schema: src.Args.String("cdc_schema")}
	if t.Schema == "" {
		t.Schema = cdcDefaultSchema
		// The state backend's schema, when the state lives in this
		// database: one schema for everything backflow owns there.
		if st := p.Config.State; st != nil && st.Backend == src.Type && st.Args.String("dsn") == t.DSN {
			if sch := st.Args.String("schema"); sch != "" {
				t.Schema = sch
			}
		}
	}
	return t, true
}

// checkCDC refuses cdc = "warehouse" where the source cannot diff.
func checkCDC(s *config.Sync) hcl.Diagnostics {
	if cdcOf(s) != config.CDCWarehouse || s.Model == nil || s.Model.Source == nil || s.Model.Source.Type == "" {
		return nil
	}
	src := s.Model.Source
	var diags hcl.Diagnostics
	if _, ok := dialects[src.Type]; !ok {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Warehouse CDC Needs A Live Source",
			Detail: fmt.Sprintf("Sync %q asks for cdc = \"warehouse\", but its model %q runs on source %q of type %q: only postgres and mysql sources can diff in the database. Use cdc = \"local\" (the default).",
				s.Name, s.Model.Name, src.Name, src.Type),
			Subject: rangePtr(s.CDCRange)})
	}
	// cdc_schema is checked with the source's arguments (its own line).
	return diags
}

// diffWarehouse diffs a sync of project p (this workspace's, or a base
// revision's) in its source database, against the snapshot table there and
// this workspace's failure index.
func (w *Workspace) diffWarehouse(ctx context.Context, p *Project, s *config.Sync, t pushdown.Target, skipRemovals bool) (*reconcile.DiffResult, error) {
	return w.diffWarehouseIn(ctx, p, s, t, pushdown.Input{SkipRemovals: skipRemovals})
}

// diffWarehouseIn is diffWarehouse; in gives SkipRemovals and TakeOver.
func (w *Workspace) diffWarehouseIn(ctx context.Context, p *Project, s *config.Sync, t pushdown.Target, in pushdown.Input) (*reconcile.DiffResult, error) {
	if _, ok := p.columns[s.Model.Name]; !ok {
		return nil, fmt.Errorf("the columns of model %q are not known", s.Model.Name)
	}
	snap, err := w.State.LoadSnapshot(s.Name)
	if err != nil {
		return nil, err
	}
	n := snap.Len()
	snap.Close()
	// reset-cdc (TakeOver) is what this asks for: it reads the table
	// whatever the state holds, and empties the state's snapshot.
	if !in.TakeOver {
		// (A sync whose last reset-cdc did not end is refused first,
		// whatever its state holds: lastCDC.)
		last, ok, err := w.lastCDC(s.Name)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			return nil, fmt.Errorf("cdc is \"warehouse\" but the state holds a snapshot of %d records made with cdc = \"local\"; run backflow reset-cdc %s to take the model's current rows as synced in the warehouse, or set cdc = \"local\" again", n, s.Name)
		}
		// The snapshot stays in the schema the last apply kept it in: in
		// another, the sync has none, and every row would be sent again.
		if ok && last.CDC == state.CDCWarehouse && last.CDCSchema != "" && last.CDCSchema != t.Schema {
			return nil, fmt.Errorf("sync %q keeps its warehouse CDC snapshot in schema %q (run %d), but its source's cdc_schema is now %q, where it has none: every row would be sent again as new and rows that left the model would never be removed; run backflow reset-cdc %s to take the model's current rows as synced in %q, or set cdc_schema = %q again", s.Name, last.CDCSchema, last.Run, t.Schema, s.Name, t.Schema, last.CDCSchema)
		}
	}
	meta, err := w.State.Meta()
	if err != nil {
		return nil, err
	}
	in.Lineage = meta.Lineage
	for attempt := 1; ; attempt++ {
		failures, err := w.State.LoadFailures(s.Name)
		if err != nil {
			return nil, err
		}
		in.Failures = failures
		res, err := warehouseDiff(ctx, p, s, t, in)
		var oos *pushdown.OutOfStepError
		if err == nil || !errors.As(err, &oos) || ctx.Err() != nil {
			return res, err
		}
		if attempt == outOfStepAttempts {
			return nil, fmt.Errorf("%w (read %d times)", err, attempt)
		}
		// An apply of the sync recorded outcomes between the state's read
		// and the statement's (a plan takes no lock): both are read again.
		if outOfStepRetried != nil {
			outOfStepRetried(attempt)
		}
	}
}

// outOfStepAttempts is how many times a warehouse CDC plan reads the
// failure index and runs the statement while it finds them out of step
// (pushdown.OutOfStepError) before it says so.
const outOfStepAttempts = 3

// outOfStepRetried, when set (by tests), is called before a warehouse CDC
// plan found out of step reads the state again, with the attempt that
// found it.
var outOfStepRetried func(attempt int)

// warehouseDiff runs pushdown.Diff for a sync of project p: in gives the
// failure index and SkipRemovals, the rest is filled in from p.
func warehouseDiff(ctx context.Context, p *Project, s *config.Sync, t pushdown.Target, in pushdown.Input) (*reconcile.DiffResult, error) {
	cols, ok := p.columns[s.Model.Name]
	if !ok {
		return nil, fmt.Errorf("the columns of model %q are not known", s.Model.Name)
	}
	in.Sync, in.Columns = s, cols
	if prog := p.Rules(s.Name); prog != nil {
		in.Rules = prog
	}
	src := p.Source(s.Model)
	if src == nil {
		return nil, fmt.Errorf("the source of model %q is not open", s.Model.Name)
	}
	res, _, err := pushdown.Diff(ctx, src, t, in)
	return res, err
}

// beginWarehouse wraps a sync's state transaction so that apply also
// writes the snapshot table of a plan made with warehouse CDC; done closes
// the connection.
func (w *Workspace) beginWarehouse(ctx context.Context, tx state.Tx, s *config.Sync, sp *reconcile.SyncPlan) (state.Tx, func(), error) {
	if sp.Warehouse == nil {
		return tx, func() {}, nil
	}
	t, ok := w.Warehouse(s)
	if !ok {
		return nil, nil, &StaleError{Reason: fmt.Sprintf("sync %q was planned with cdc = \"warehouse\" and the config now diffs it locally", s.Name)}
	}
	// The table is this state's (the run recorded before gave a state
	// never written its lineage).
	meta, err := w.State.Meta()
	if err != nil {
		return nil, nil, err
	}
	t.Owner = meta.Lineage
	store, err := pushdown.Open(ctx, t)
	if err != nil {
		return nil, nil, fmt.Errorf("sync %q: %w", s.Name, err)
	}
	return store.Begin(tx, s.Name, sp.Warehouse), func() { store.Close() }, nil
}

// ClaimWarehouse makes this state the owner of the snapshot tables of the
// plan's warehouse CDC syncs that have none (made by an earlier version,
// WarehousePlan.Unowned; the others are not connected to):
// apply calls it when the plan has nothing to send, as an apply that
// sends claims them with its writes. A state never written has nothing to
// claim with.
func (w *Workspace) ClaimWarehouse(ctx context.Context, plan *reconcile.Plan) error {
	meta, err := w.State.Meta()
	if err != nil || meta.Lineage == "" {
		return err
	}
	for _, sp := range plan.Syncs {
		if sp.Warehouse == nil || !sp.Warehouse.Unowned {
			continue // owned already (the plan checked whose), or local CDC
		}
		syncs, err := w.SelectSyncs([]string{sp.Name})
		if err != nil {
			return err
		}
		t, ok := w.Warehouse(syncs[0])
		if !ok {
			continue
		}
		t.Owner = meta.Lineage
		if err := claimUnowned(ctx, t, sp.Name); err != nil {
			return fmt.Errorf("sync %q: %w", sp.Name, err)
		}
	}
	return nil
}

func claimUnowned(ctx context.Context, t pushdown.Target, sync string) error {
	store, err := pushdown.Open(ctx, t)
	if err != nil {
		return err
	}
	defer store.Close()
	return store.ClaimUnowned(ctx, sync)
}
