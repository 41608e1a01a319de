package project

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/destination"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/redact"
	"github.com/backflowhq/backflow/repofs"
	"github.com/backflowhq/backflow/rules"
)

// Review is what `plan --base REV` adds to a plan: every input of the
// config that differs from REV, and the data consequence of the
// difference. The consequence compares two plans against the same state
// and the same sources: the plan of the config at REV and the plan of the
// config being planned. Rows whose outcome differs (sent, unchanged,
// excluded by which rule, removed) are counted and attributed to what
// changed.
type Review struct {
	Base       string `json:"base"`        // the revision as given
	BaseCommit string `json:"base_commit"` // the commit it names
	// ConfigChanges are the HCL blocks that differ, FileChanges the other
	// files the config reads (model SQL, init_sql files, fixtures).
	ConfigChanges []BlockChange `json:"config_changes"`
	FileChanges   []FileChange  `json:"file_changes"`
	// BaseError says why the config at Base could not be planned (it does
	// not load there): the consequence is then unknown and not shown.
	BaseError    string         `json:"base_error,omitempty"`
	Consequences []*Consequence `json:"consequences"`
}

// Changed reports whether any input differs from the base.
func (r *Review) Changed() bool { return len(r.ConfigChanges) > 0 || len(r.FileChanges) > 0 }

// Consequence is what a change of the config does to one sync's data.
type Consequence struct {
	Sync string `json:"sync"`
	// Status is "added" (a new sync), "removed", "changed" (some row's
	// outcome differs), "unchanged" or "error" (a side could not be
	// planned: Error says why).
	Status string `json:"status"`
	// Base and Head are the plans' counts at the base revision and with the
	// config planned, against the same state (nil for the side without
	// the sync).
	Base    *PlanCounts `json:"base"`
	Head    *PlanCounts `json:"head"`
	Effects []Effect    `json:"effects"`
	Error   string      `json:"error,omitempty"`
}

// PlanCounts are a sync plan's counts.
type PlanCounts struct {
	Add      int `json:"add"`
	Change   int `json:"change"`
	Remove   int `json:"remove"`
	Retry    int `json:"retry"`
	Excluded int `json:"excluded"`
}

// Cause is what changed in the config, as far as one sync is concerned.
type Cause struct {
	// Kind is rule, mapping, model, setting, sync or other.
	Kind string `json:"kind"`
	// Name is the rule's name, the mapped field, the model's name, the
	// setting (mode, delete_behavior, key, object, destination) or the sync.
	Name string `json:"name"`
	// Change is added, removed or changed; Detail says how, for people
	// (`name` → `display_name`, the files behind a model's change).
	Change string `json:"change"`
	Detail string `json:"detail,omitempty"`
}

// Effect kinds: how a group of rows' outcomes differ.
const (
	EffectNewlyExcluded    = "newly_excluded"     // included at base, excluded by Rule now
	EffectNoLongerExcluded = "no_longer_excluded" // excluded by Rule at base, included now
	EffectExcludedInstead  = "excluded_instead"   // excluded by another rule (From) at base
	EffectLeaveModel       = "leave_model"        // rows the model no longer returns
	EffectJoinModel        = "join_model"         // rows the model now returns
	EffectJoinExcluded     = "join_model_excluded"
	EffectValuesChange     = "values_change"   // included both times, other values sent
	EffectSendingChange    = "sending_change"  // same values, sent at one side only
	EffectRemovalChange    = "removal_change"  // removed both times, another operation
	EffectNewSync          = "new_sync"        // every row, of a sync added
	EffectRemovedSync      = "removed_sync"    // a sync no longer in the config
	EffectOther            = "other"           // outcomes differ for no change found
	sampleKeys             = 5                 // keys kept per effect
	removedNothingOp       = "nothing to send" // key of Operations for rows apply leaves alone
)

// Effect is a group of rows whose outcome differs in the same way for the
// same cause.
type Effect struct {
	Cause  Cause  `json:"cause"`
	Effect string `json:"effect"`
	// Rule is the rule excluding the rows (newly_excluded,
	// excluded_instead, join_model_excluded) or no longer excluding them;
	// From the rule that excluded them at base (excluded_instead).
	Rule string `json:"rule,omitempty"`
	From string `json:"from,omitempty"`
	Rows int    `json:"rows"`
	// Synced counts the rows in the destination now (in the state).
	Synced int `json:"synced"`
	// WasSent counts the rows the base plan would have sent and the
	// config planned does not.
	WasSent int `json:"was_sent"`
	// Operations counts what apply does to the rows with the config
	// planned: upsert, update, insert, delete, clear, forget, or "nothing
	// to send".
	Operations map[string]int `json:"operations"`
	// Actions counts the rows by the action of the plan with the config
	// planned: add, change, remove, retry, or none.
	Actions map[string]int `json:"actions"`
	// Fields are the fields whose values change (values_change).
	Fields []string `json:"fields,omitempty"`
	// Sample is a few of the rows' keys, in key order.
	Sample []string `json:"sample_keys"`
	// Text says it all in one sentence, for people.
	Text string `json:"text"`
}

// Moves reports whether the effect changes what the destination gets:
// rows excluded by another rule, or joining the model only to be
// excluded, are neither sent nor removed either way.
func (e *Effect) Moves() bool {
	return e.Effect != EffectExcludedInstead && e.Effect != EffectJoinExcluded
}

// PlanReview plans like Plan and, for `plan --base REV`, compares the
// config with the one at rev: their inputs and the data consequence. The
// config at rev is planned against this workspace's state and sources,
// selected syncs only (a sync new or gone counts whole). An error of Plan
// (SyncErrors) is returned with both results, as Plan does; a revision git
// does not know is an error saying how to fetch it.
func (w *Workspace) PlanReview(ctx context.Context, opts PlanOptions, rev string) (*reconcile.Plan, *Review, error) {
	loc, err := repofs.Locate(w.Config.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("--base: %w", err)
	}
	tree, err := repofs.OpenRevision(loc, rev)
	if err != nil {
		return nil, nil, baseError(rev, loc, err)
	}
	heads := map[string]*reconcile.DiffResult{}
	opts.diffs = func(r *reconcile.DiffResult) { heads[r.Plan.Name] = r }
	plan, planErr := w.Plan(ctx, opts)
	if plan == nil {
		return nil, nil, planErr
	}
	rv := &Review{Base: rev, BaseCommit: tree.Commit(), ConfigChanges: []BlockChange{}, FileChanges: []FileChange{}, Consequences: []*Consequence{}}
	if rv.ConfigChanges, err = configChanges(loc, w.Config.FS, w.Config.FSDir, rev); err != nil {
		return nil, nil, err
	}
	if rv.ConfigChanges == nil {
		rv.ConfigChanges = []BlockChange{}
	}

	// A base without the config folder (a change adding the config) has
	// no syncs: every sync is new.
	baseHCL, err := hclFiles(tree, loc.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("--base: reading %s: %w", rev, err)
	}
	var bp *Project
	red := w.Config.Redact
	var baseCfg *config.Config
	if len(baseHCL) > 0 {
		var diags hcl.Diagnostics
		bp, diags = Open(ctx, w.Config.Dir, Options{
			Destinations: w.opts.Destinations, Sources: w.opts.Sources, States: w.opts.States, Ref: rev,
		})
		if bp != nil {
			defer bp.Close()
			baseCfg = bp.Config
			// The base may read secrets through env() the head does not.
			red = redact.Join(w.Config.Redact, bp.Config.Redact)
		}
		if diags.HasErrors() {
			d := diags.Errs()[0]
			rv.BaseError = red.String(fmt.Sprintf("the config at %s does not load: %v", rev, d))
		}
	}
	catalog := w.opts.Catalog()
	cur, err := inputsOf(w.Config.FS, w.Config.FSDir, w.Config, catalog)
	if err != nil {
		return nil, nil, fmt.Errorf("--base: %w", err)
	}
	old, err := inputsOf(tree, loc.Dir, baseCfg, catalog)
	if err != nil {
		return nil, nil, fmt.Errorf("--base: reading %s: %w", rev, err)
	}
	if rv.FileChanges, err = fileChanges(rev, old, cur); err != nil {
		return nil, nil, fmt.Errorf("--base: %w", err)
	}
	if rv.FileChanges == nil {
		rv.FileChanges = []FileChange{}
	}
	if rv.BaseError != "" {
		return plan, rv, planErr
	}

	headSyncs, err := w.SelectSyncs(opts.Syncs)
	if err != nil {
		return nil, nil, err
	}
	var baseSyncs []*config.Sync
	if bp != nil {
		for _, s := range bp.Config.Syncs {
			if len(opts.Syncs) == 0 || contains(opts.Syncs, s.Name) {
				baseSyncs = append(baseSyncs, s)
			}
		}
	}
	bases, baseErrs, err := w.planBase(ctx, bp, baseSyncs, opts.SkipRemovals)
	if err != nil {
		return nil, nil, err
	}
	var failed SyncErrors
	errors.As(planErr, &failed)
	c := comparer{w: w, review: rv}
	byName := map[string]*config.Sync{}
	for _, s := range baseSyncs {
		byName[s.Name] = s
	}
	for _, hs := range headSyncs {
		bs := byName[hs.Name]
		delete(byName, hs.Name)
		con := &Consequence{Sync: hs.Name, Effects: []Effect{}}
		rv.Consequences = append(rv.Consequences, con)
		head := heads[hs.Name]
		if head != nil {
			con.Head = counts(head.Plan)
		}
		if bs != nil {
			if b := bases[hs.Name]; b != nil {
				con.Base = counts(b.Plan)
			}
		}
		switch {
		case head == nil:
			con.Status, con.Error = "error", "the sync could not be planned"
			for _, f := range failed {
				if f.Sync == hs.Name {
					con.Error = red.String(f.Err.Error())
				}
			}
		case bs == nil:
			con.Status = "added"
			con.Effects = append(con.Effects, newSyncEffect(head.Plan))
		case baseErrs[hs.Name] != nil:
			con.Status = "error"
			con.Error = red.String(fmt.Sprintf("at %s: %v", rev, baseErrs[hs.Name]))
		default:
			effects, err := c.compare(bs, hs, bases[hs.Name], head, opts.SkipRemovals)
			if err != nil {
				return nil, nil, err
			}
			con.Effects = effects
			con.Status = "unchanged"
			if len(effects) > 0 {
				con.Status = "changed"
			}
		}
	}
	for _, bs := range baseSyncs {
		if _, gone := byName[bs.Name]; !gone {
			continue
		}
		con := &Consequence{Sync: bs.Name, Status: "removed", Effects: []Effect{}}
		b := bases[bs.Name]
		if b != nil {
			con.Base = counts(b.Plan)
		}
		if b == nil && baseErrs[bs.Name] != nil && cdcOf(bs) == config.CDCWarehouse {
			// Its records synced are counted in its snapshot table, which
			// the failed plan did not read: the state holds none.
			con.Status = "error"
			con.Error = red.String(fmt.Sprintf("removed; its synced records could not be counted at %s: %v", rev, baseErrs[bs.Name]))
			rv.Consequences = append(rv.Consequences, con)
			continue
		}
		synced, err := w.syncedCount(bs.Name)
		if err != nil {
			return nil, nil, err
		}
		if b != nil && b.Snapshot != nil {
			synced = b.Synced // warehouse CDC: the state holds no snapshot
		}
		con.Effects = append(con.Effects, Effect{
			Cause: Cause{Kind: "sync", Name: bs.Name, Change: "removed"}, Effect: EffectRemovedSync,
			Rows: synced, Synced: synced, Operations: map[string]int{removedNothingOp: synced}, Actions: map[string]int{"none": synced}, Sample: []string{},
			Text: fmt.Sprintf("sync `%s` removed: apply no longer keeps its %s synced records in step; they stay in the destination as they are", bs.Name, num(synced)),
		})
		rv.Consequences = append(rv.Consequences, con)
	}
	return plan, rv, planErr
}

// baseError explains a --base revision that cannot be read, with what to
// do in a CI checkout, which is often shallow.
func baseError(rev string, loc repofs.Location, err error) error {
	var unknown *repofs.UnknownRevisionError
	switch {
	case errors.Is(err, repofs.ErrNotInGit):
		return fmt.Errorf("--base %q compares with a git revision, but the config folder is in no git repository", rev)
	case errors.As(err, &unknown):
		b := strings.TrimPrefix(rev, "origin/")
		return fmt.Errorf("--base %q names no branch, tag or commit of the git repository at %s. A CI checkout is often shallow or of one branch: fetch the base first (git fetch --no-tags --depth=1 origin +refs/heads/%s:refs/remotes/origin/%s, then --base origin/%s), or check out the full history", rev, loc.Root, b, b, b)
	default:
		return fmt.Errorf("--base %q could not be read: %v. A shallow clone may lack the commit's objects: fetch it (git fetch --no-tags --depth=1 origin <branch or commit>)", rev, err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func counts(sp *reconcile.SyncPlan) *PlanCounts {
	c := &PlanCounts{Add: sp.Add, Change: sp.Change, Remove: sp.Remove, Retry: sp.Retry}
	for _, n := range sp.Excluded {
		c.Excluded += n
	}
	return c
}

// planBase diffs the syncs of the base project against this workspace's
// state, a model's query once for all its syncs. Destinations are not
// opened: the base plan is only compared, never applied.
func (w *Workspace) planBase(ctx context.Context, bp *Project, syncs []*config.Sync, skipRemovals bool) (map[string]*reconcile.DiffResult, map[string]error, error) {
	out := map[string]*reconcile.DiffResult{}
	errs := map[string]error{}
	byModel := map[*config.Model][]SyncDiff{}
	var models []*config.Model
	for _, s := range syncs {
		if s.Model == nil {
			errs[s.Name] = fmt.Errorf("sync %q has no model", s.Name)
			continue
		}
		if t, ok := bp.Warehouse(s); ok {
			res, err := w.diffWarehouse(ctx, bp, s, t, skipRemovals)
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			if err != nil {
				errs[s.Name] = err
			} else {
				out[s.Name] = res
			}
			continue
		}
		base, closeBase, err := w.base(s.Name, skipRemovals)
		if err != nil {
			return nil, nil, err
		}
		defer closeBase()
		if err := w.checkLocalCDC(s.Name, base); err != nil {
			errs[s.Name] = err
			continue
		}
		if _, ok := byModel[s.Model]; !ok {
			models = append(models, s.Model)
		}
		byModel[s.Model] = append(byModel[s.Model], SyncDiff{Sync: s, Rules: bp.Rules(s.Name), Base: base})
	}
	for _, m := range models {
		res, rerrs, err := DiffModel(ctx, bp.Source(m), m, byModel[m])
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		for i, sd := range byModel[m] {
			switch {
			case err != nil:
				errs[sd.Sync.Name] = err
			case rerrs[i] != nil:
				errs[sd.Sync.Name] = rerrs[i]
			default:
				out[sd.Sync.Name] = res[i]
			}
		}
	}
	return out, errs, nil
}

func (w *Workspace) syncedCount(sync string) (int, error) {
	snap, err := w.State.LoadSnapshot(sync)
	if err != nil {
		return 0, err
	}
	defer snap.Close()
	return snap.Len(), nil
}

func newSyncEffect(sp *reconcile.SyncPlan) Effect {
	e := Effect{Cause: Cause{Kind: "sync", Name: sp.Name, Change: "added"}, Effect: EffectNewSync,
		Rows: sp.Add + sp.Change + sp.Retry, Operations: map[string]int{}, Actions: map[string]int{}, Sample: []string{}}
	_ = sp.Each(func(c *reconcile.Change) error {
		e.Operations[string(c.Op)]++
		e.Actions[string(c.Action)]++
		if len(e.Sample) < sampleKeys && c.Action == reconcile.ActionAdd {
			e.Sample = append(e.Sample, c.Key)
		}
		return nil
	})
	excluded := 0
	for _, n := range sp.Excluded {
		excluded += n
	}
	e.Text = fmt.Sprintf("sync `%s` added: %s", sp.Name, sendPhrase(sp.Add, sp.Change, sp.Retry))
	if excluded > 0 {
		e.Text += fmt.Sprintf(", %s excluded", num(excluded))
	}
	return e
}

// comparer compares the base and head plans of syncs.
type comparer struct {
	w      *Workspace
	review *Review
}

// The outcome of a key in one plan.
const (
	outAbsent   = iota // not in the model (nor in the destination, or leaving it)
	outIncluded        // in the model and included: sent or unchanged
	outExcluded        // excluded by a rule
)

type outcome struct {
	kind   int
	rule   string
	change *reconcile.Change // what the plan does with the key; nil: nothing
}

func (o outcome) sends() bool {
	return o.change != nil && o.kind == outIncluded
}

func (o outcome) op() string {
	if o.change == nil {
		return removedNothingOp
	}
	return string(o.change.Op)
}

func isRemovalOp(op destination.Operation) bool {
	return op == destination.OpDelete || op == destination.OpClear || op == reconcile.OpForget
}

type planIndex struct {
	changes  map[string]*reconcile.Change
	excluded map[string]string
}

func indexPlan(r *reconcile.DiffResult) planIndex {
	ix := planIndex{changes: make(map[string]*reconcile.Change, r.Plan.NumChanges()), excluded: r.ExcludedKeys}
	_ = r.Plan.Each(func(c *reconcile.Change) error {
		cc := *c
		ix.changes[c.Key] = &cc
		return nil
	})
	return ix
}

func (ix planIndex) outcome(key string, inSnap bool) outcome {
	c := ix.changes[key]
	if rule, ok := ix.excluded[key]; ok {
		return outcome{kind: outExcluded, rule: rule, change: c}
	}
	switch {
	case c == nil && inSnap:
		return outcome{kind: outIncluded}
	case c == nil:
		return outcome{kind: outAbsent}
	case c.Action == reconcile.ActionRemove, c.Action == reconcile.ActionRetry && isRemovalOp(c.Op):
		return outcome{kind: outAbsent, change: c}
	}
	return outcome{kind: outIncluded, change: c}
}

// syncDelta is what differs between a sync's two configs.
type syncDelta struct {
	rules    map[string]string // rule → added | removed | changed
	mapping  map[string]Cause  // field → its cause
	model    *Cause            // nil when nothing behind the model changed
	settings []Cause           // mode, delete_behavior, key, object, destination
}

func (c *comparer) delta(bs, hs *config.Sync) syncDelta {
	d := syncDelta{rules: map[string]string{}, mapping: map[string]Cause{}}
	br := map[string]rules.Rule{}
	for _, r := range bs.Excludes {
		br[r.Name] = r
	}
	for _, r := range hs.Excludes {
		old, ok := br[r.Name]
		switch {
		case !ok:
			d.rules[r.Name] = "added"
		case strings.TrimSpace(old.Expr) != strings.TrimSpace(r.Expr):
			d.rules[r.Name] = "changed"
		}
		delete(br, r.Name)
	}
	for name := range br {
		d.rules[name] = "removed"
	}
	bm := map[string]string{}
	for _, f := range bs.Mapping {
		bm[f.Field] = f.Column
	}
	for _, f := range hs.Mapping {
		old, ok := bm[f.Field]
		switch {
		case !ok:
			d.mapping[f.Field] = Cause{Kind: "mapping", Name: f.Field, Change: "added", Detail: fmt.Sprintf("column `%s`", f.Column)}
		case old != f.Column:
			d.mapping[f.Field] = Cause{Kind: "mapping", Name: f.Field, Change: "changed", Detail: fmt.Sprintf("`%s` → `%s`", old, f.Column)}
		}
		delete(bm, f.Field)
	}
	for field, col := range bm {
		d.mapping[field] = Cause{Kind: "mapping", Name: field, Change: "removed", Detail: fmt.Sprintf("was column `%s`", col)}
	}
	d.model = c.modelCause(bs.Model, hs.Model)
	setting := func(name, a, b string) {
		if a != b {
			d.settings = append(d.settings, Cause{Kind: "setting", Name: name, Change: "changed", Detail: fmt.Sprintf("%s → %s", a, b)})
		}
	}
	setting("mode", bs.Mode, hs.Mode)
	setting("delete_behavior", bs.DeleteBehavior, hs.DeleteBehavior)
	setting("key", bs.Key, hs.Key)
	setting("object", bs.Object, hs.Object)
	if bs.Destination != nil && hs.Destination != nil {
		setting("destination", bs.Destination.Name, hs.Destination.Name)
	}
	return d
}

// modelCause says what changed behind a sync's model: its block (query,
// primary key, source), the files it reads (its SQL) and its source's
// (fixtures, the source block). Nil when nothing did.
func (c *comparer) modelCause(bm, hm *config.Model) *Cause {
	if bm == nil || hm == nil {
		return nil
	}
	srcName := ""
	if hm.Source != nil {
		srcName = hm.Source.Name
	}
	modelBlock, srcBlock := fmt.Sprintf("model %q", hm.Name), fmt.Sprintf("source %q", srcName)
	var sql, fixtures []string
	for _, f := range c.review.FileChanges {
		switch {
		case contains(f.ReadBy, modelBlock):
			sql = append(sql, f.File)
		case contains(f.ReadBy, srcBlock):
			fixtures = append(fixtures, f.File)
		}
	}
	var what []string
	if bm.Name != hm.Name {
		what = append(what, fmt.Sprintf("was model `%s`", bm.Name))
	}
	switch {
	case len(sql) > 0:
		what = append(what, "query: "+strings.Join(sql, ", "))
	case bm.Query != hm.Query:
		what = append(what, "query")
	}
	if strings.Join(bm.PrimaryKey, ",") != strings.Join(hm.PrimaryKey, ",") {
		what = append(what, "primary key")
	}
	if bm.Source != nil && hm.Source != nil && bm.Source.Name != hm.Source.Name {
		what = append(what, fmt.Sprintf("source `%s` → `%s`", bm.Source.Name, hm.Source.Name))
	}
	for _, b := range c.review.ConfigChanges {
		if b.Block == srcBlock {
			what = append(what, fmt.Sprintf("source `%s`", srcName))
		}
	}
	if len(fixtures) > 0 {
		what = append(what, "fixtures: "+strings.Join(fixtures, ", "))
	}
	if len(what) == 0 {
		return nil
	}
	return &Cause{Kind: "model", Name: hm.Name, Change: "changed", Detail: strings.Join(what, "; ")}
}

// effectKey groups rows of one effect.
type effectKey struct {
	cause      Cause
	effect     string
	rule, from string
}

type effectAcc struct {
	e      *Effect
	fields map[string]bool
}

// compare classifies every key whose outcome may differ: the keys of
// either plan's changes or exclusions. A key in neither is unchanged at
// both sides (in the state and unchanged, or in neither model nor state).
func (c *comparer) compare(bs, hs *config.Sync, base, head *reconcile.DiffResult, skipRemovals bool) ([]Effect, error) {
	d := c.delta(bs, hs)
	snap, err := c.w.State.LoadSnapshot(hs.Name)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	snaps := snapshots{snap}
	for _, r := range []*reconcile.DiffResult{base, head} {
		if r.Snapshot != nil {
			snaps = append(snaps, r.Snapshot)
		}
	}
	bix, hix := indexPlan(base), indexPlan(head)
	keys := map[string]struct{}{}
	for _, ix := range []planIndex{bix, hix} {
		for k := range ix.changes {
			keys[k] = struct{}{}
		}
		for k := range ix.excluded {
			keys[k] = struct{}{}
		}
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Slice(sorted, func(i, j int) bool { return reconcile.KeyLess(sorted[i], sorted[j]) })

	accs := map[effectKey]*effectAcc{}
	var order []effectKey
	add := func(k effectKey, key string, synced bool, bo, ho outcome, fields []string) {
		a := accs[k]
		if a == nil {
			a = &effectAcc{e: &Effect{Cause: k.cause, Effect: k.effect, Rule: k.rule, From: k.from, Operations: map[string]int{}, Actions: map[string]int{}, Sample: []string{}}, fields: map[string]bool{}}
			accs[k] = a
			order = append(order, k)
		}
		e := a.e
		e.Rows++
		if synced {
			e.Synced++
		}
		if bo.sends() && !ho.sends() {
			e.WasSent++
		}
		e.Operations[ho.op()]++
		if ho.change != nil {
			e.Actions[string(ho.change.Action)]++
		} else {
			e.Actions["none"]++
		}
		if len(e.Sample) < sampleKeys {
			e.Sample = append(e.Sample, key)
		}
		for _, f := range fields {
			a.fields[f] = true
		}
	}
	modelCause := func() Cause {
		if d.model != nil {
			return *d.model
		}
		return Cause{Kind: "other", Name: hs.Model.Name, Change: "changed", Detail: "no change to the model or its inputs was found"}
	}
	ruleCause := func(rule string, fallback func() Cause) Cause {
		if ch, ok := d.rules[rule]; ok {
			return Cause{Kind: "rule", Name: rule, Change: ch}
		}
		return fallback()
	}
	settingCause := func(names ...string) Cause {
		for _, s := range d.settings {
			for _, n := range names {
				if s.Name == n {
					return s
				}
			}
		}
		return Cause{Kind: "other", Name: hs.Name, Change: "changed", Detail: "no change to the sync's settings was found"}
	}
	for _, key := range sorted {
		_, _, inSnap := snaps.lookup(key)
		bo, ho := bix.outcome(key, inSnap), hix.outcome(key, inSnap)
		switch {
		case bo.kind == outIncluded && ho.kind == outExcluded:
			add(effectKey{cause: ruleCause(ho.rule, modelCause), effect: EffectNewlyExcluded, rule: ho.rule}, key, inSnap, bo, ho, nil)
		case bo.kind == outExcluded && ho.kind == outIncluded:
			add(effectKey{cause: ruleCause(bo.rule, modelCause), effect: EffectNoLongerExcluded, rule: bo.rule}, key, inSnap, bo, ho, nil)
		case bo.kind == outExcluded && ho.kind == outExcluded && bo.rule != ho.rule:
			cause := ruleCause(ho.rule, func() Cause { return ruleCause(bo.rule, modelCause) })
			add(effectKey{cause: cause, effect: EffectExcludedInstead, rule: ho.rule, from: bo.rule}, key, inSnap, bo, ho, nil)
		case bo.kind == outIncluded && ho.kind == outAbsent:
			add(effectKey{cause: modelCause(), effect: EffectLeaveModel}, key, inSnap, bo, ho, nil)
		case bo.kind == outAbsent && ho.kind == outIncluded:
			add(effectKey{cause: modelCause(), effect: EffectJoinModel}, key, inSnap, bo, ho, nil)
		case bo.kind == outAbsent && ho.kind == outExcluded:
			add(effectKey{cause: modelCause(), effect: EffectJoinExcluded, rule: ho.rule}, key, inSnap, bo, ho, nil)
		case bo.kind == outIncluded && ho.kind == outIncluded:
			bv, err := c.values(bo, snaps, key)
			if err != nil {
				return nil, err
			}
			hv, err := c.values(ho, snaps, key)
			if err != nil {
				return nil, err
			}
			changed := changedFields(bv, hv)
			if len(changed) == 0 {
				if bo.sends() != ho.sends() || bo.op() != ho.op() {
					add(effectKey{cause: settingCause("mode", "key", "object", "destination"), effect: EffectSendingChange}, key, inSnap, bo, ho, nil)
				}
				continue
			}
			var modelFields []string
			for _, f := range changed {
				if mc, ok := d.mapping[f]; ok {
					add(effectKey{cause: mc, effect: EffectValuesChange}, key, inSnap, bo, ho, []string{f})
				} else {
					modelFields = append(modelFields, f)
				}
			}
			if len(modelFields) > 0 {
				add(effectKey{cause: modelCause(), effect: EffectValuesChange}, key, inSnap, bo, ho, modelFields)
			}
		case bo.kind == outAbsent && ho.kind == outAbsent:
			if bo.op() != ho.op() {
				add(effectKey{cause: settingCause("delete_behavior"), effect: EffectRemovalChange}, key, inSnap, bo, ho, nil)
			}
		}
		// excluded → absent: rows that were excluded leave the model;
		// nothing changes in the destination.
	}
	out := make([]Effect, 0, len(order))
	for _, k := range order {
		a := accs[k]
		for f := range a.fields {
			a.e.Fields = append(a.e.Fields, f)
		}
		sort.Strings(a.e.Fields)
		a.e.Text = effectText(a.e, hs, skipRemovals)
		out = append(out, *a.e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Rows > out[j].Rows })
	return out, nil
}

// values are the values a plan leaves a key with: those it sends, or the
// state's when it sends nothing.
func (c *comparer) values(o outcome, snaps snapshots, key string) (map[string]any, error) {
	if o.change != nil && o.change.After != nil {
		return o.change.After, nil
	}
	if o.change != nil && o.change.Before != nil {
		return o.change.Before, nil
	}
	snap, i, ok := snaps.lookup(key)
	if !ok {
		return nil, nil
	}
	return snap.Values(i)
}

// snapshots are where the synced records of a sync are found: the state's
// snapshot, then the parts of the snapshot the plans compared read
// (DiffResult.Snapshot). With warehouse CDC the state holds none, and
// each plan read the entries of the keys it changes or excludes: every
// key compare looks up.
type snapshots []reconcile.Snapshot

// lookup finds key's entry: the snapshot holding it and its index there.
func (ss snapshots) lookup(key string) (reconcile.Snapshot, int, bool) {
	for _, s := range ss {
		if i, _, ok := s.Lookup(key); ok {
			return s, i, true
		}
	}
	return nil, 0, false
}

func changedFields(a, b map[string]any) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range []map[string]any{a, b} {
		for f := range m {
			if seen[f] {
				continue
			}
			seen[f] = true
			av, aok := a[f]
			bv, bok := b[f]
			if aok != bok || (av == nil) != (bv == nil) || fmt.Sprint(av) != fmt.Sprint(bv) {
				out = append(out, f)
			}
		}
	}
	sort.Strings(out)
	return out
}
