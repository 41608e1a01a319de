package project

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/state"
)

// DiagnosticsError is a config that could not be used: the diagnostics
// say why, and Files holds what they point into, for rendering.
type DiagnosticsError struct {
	Diags hcl.Diagnostics
	Files map[string]*hcl.File
}

func (e *DiagnosticsError) Error() string { return e.Diags.Error() }

// Workspace is an open project with its state store, locked when the
// operation writes state. It is what every command but validate, fmt and
// test works on; the CLI opens one, calls one method and renders.
type Workspace struct {
	*Project
	// State is where snapshots, failure indexes and run history live.
	State state.Backend
	// Warnings are diagnostics that did not stop the config from loading.
	Warnings hcl.Diagnostics
	// TookOverFrom names the holder of a lock left behind by a process
	// that died, which opening the workspace took over.
	TookOverFrom *state.LockInfo

	lock state.Held

	// cdcRuns is the last run of each sync that says where it kept the
	// snapshot, as of the state's serial cdcSerial (read once per state
	// version, not once per sync planned).
	cdcMu     sync.Mutex
	cdcRuns   map[string]state.Run
	lastRuns  map[string]state.Run // the last run of each sync, of any kind
	cdcSerial uint64
}

// OpenWorkspace opens the config folder dir (see Open and
// Options.ConfigOnly) and its state; with opts.Lock set it takes the state
// lock for that operation, failing at once, naming the holder, if another
// process has it. A config with errors is a *DiagnosticsError.
func OpenWorkspace(ctx context.Context, dir string, opts Options) (*Workspace, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		if err == nil {
			err = errors.New("not a folder")
		}
		return nil, fmt.Errorf("config folder %s: %w", dir, err)
	}
	p, diags := Open(ctx, dir, opts)
	if diags.HasErrors() {
		files := map[string]*hcl.File{}
		if p != nil {
			files = p.Files
			p.Close()
		}
		return nil, &DiagnosticsError{Diags: diags, Files: files}
	}
	backend, err := p.openState(ctx)
	if err != nil {
		p.Close()
		return nil, err
	}
	w := &Workspace{Project: p, State: backend, Warnings: diags}
	if opts.Lock != "" {
		lctx := ctx
		if opts.LockTimeout > 0 {
			var cancel context.CancelFunc
			lctx, cancel = context.WithTimeout(ctx, opts.LockTimeout)
			defer cancel()
		}
		syncs := opts.LockSyncs
		if len(syncs) == 0 {
			for _, s := range p.Config.Syncs {
				syncs = append(syncs, s.Name)
			}
		}
		if w.lock, err = w.State.Lock(lctx, opts.Lock, syncs); err != nil {
			if c, ok := w.State.(io.Closer); ok {
				c.Close()
			}
			p.Close()
			return nil, err
		}
		w.TookOverFrom = w.lock.TookOverFrom()
	}
	return w, nil
}

// openState opens the backend the config's state block names.
func (p *Project) openState(ctx context.Context) (state.Backend, error) {
	sb := p.Config.State
	d, ok := p.opts.States.Lookup(sb.Backend)
	if !ok {
		return nil, fmt.Errorf("state backend %q is not registered", sb.Backend)
	}
	if sb.Args.Broken() {
		return nil, errors.New("the state block has arguments that could not be read (validate says which); the state is not opened")
	}
	b, err := d.Open(ctx, state.Config{Dir: p.Config.Dir, Args: sb.Args, Redact: p.Config.Redact, DirOverride: p.opts.StateDir})
	if err != nil {
		return nil, p.Config.Redact.Error(err)
	}
	return b, nil
}

// Close releases the lock, closes the state backend (when it holds
// connections) and the sources.
func (w *Workspace) Close() error {
	var err error
	if w.lock != nil {
		err = w.lock.Unlock()
	}
	if c, ok := w.State.(io.Closer); ok {
		err = errors.Join(err, c.Close())
	}
	return errors.Join(err, w.Project.Close())
}

// StateDir is the local state directory of the config folder dir: override
// when set, else dir/.backflow.
func StateDir(dir, override string) string {
	if override != "" {
		return override
	}
	return filepath.Join(dir, ".backflow")
}

// SyncState is one sync's line in `state list` and `show`.
type SyncState struct {
	Sync     string
	Records  int
	Failures int
}

// StateSummary is what `state list` shows.
type StateSummary struct {
	Location string
	Meta     state.Meta
	Syncs    []SyncState
	Lock     state.LockStatus
}

// Summary counts each sync's snapshot records and failures.
func (w *Workspace) Summary() (*StateSummary, error) {
	meta, err := w.State.Meta()
	if err != nil {
		return nil, err
	}
	names, err := w.State.Syncs()
	if err != nil {
		return nil, err
	}
	lock, err := w.State.LockStatus()
	if err != nil {
		return nil, err
	}
	out := &StateSummary{Location: w.State.Location(), Meta: meta, Lock: lock}
	for _, n := range names {
		snap, err := w.State.LoadSnapshot(n)
		if err != nil {
			return nil, err
		}
		records := snap.Len()
		snap.Close()
		failures, err := w.State.LoadFailures(n)
		if err != nil {
			return nil, err
		}
		out.Syncs = append(out.Syncs, SyncState{Sync: n, Records: records, Failures: len(failures)})
	}
	return out, nil
}

// checkSync fails when sync is neither declared by the config nor has
// state (a sync removed from the config keeps its state, which stays
// readable).
func (w *Workspace) checkSync(sync string) error {
	known := w.syncNames()
	if slices.Contains(known, sync) {
		return nil
	}
	stored, err := w.State.Syncs()
	if err != nil {
		return err
	}
	if slices.Contains(stored, sync) {
		return nil
	}
	return unknownSync(sync, known)
}

// Failures lists a sync's failure index, by key.
func (w *Workspace) Failures(sync string) ([]*state.Failure, error) {
	if err := w.checkSync(sync); err != nil {
		return nil, err
	}
	idx, err := w.State.LoadFailures(sync)
	if err != nil {
		return nil, err
	}
	list := make([]*state.Failure, 0, len(idx))
	for _, f := range idx {
		list = append(list, f)
	}
	sort.Slice(list, func(i, j int) bool { return reconcile.KeyLess(list[i].Key, list[j].Key) })
	return list, nil
}

// Runs lists the run history, of one sync or ("") of all.
func (w *Workspace) Runs(sync string) ([]state.Run, error) {
	if sync != "" {
		if err := w.checkSync(sync); err != nil {
			return nil, err
		}
	}
	return w.State.Runs(sync)
}

// LogFilter selects records of a run's log; zero values select all.
type LogFilter struct {
	Run    int // 0: the latest
	Status state.RowStatus
	Key    string
}

// Logs returns the per-record outcomes of one run of a sync.
func (w *Workspace) Logs(sync string, f LogFilter) ([]state.RowLog, error) {
	if f.Status != "" && f.Status != state.RowAccepted && f.Status != state.RowRejected {
		return nil, fmt.Errorf("the status filter must be %s or %s, not %q", state.RowAccepted, state.RowRejected, f.Status)
	}
	if err := w.checkSync(sync); err != nil {
		return nil, err
	}
	rows, err := w.State.RowLogs(sync, f.Run)
	if err != nil {
		return nil, err
	}
	out := []state.RowLog{}
	for _, r := range rows {
		if (f.Status == "" || r.Status == f.Status) && (f.Key == "" || r.Key == f.Key) {
			out = append(out, r)
		}
	}
	return out, nil
}

// Unlock removes a lock left behind by a process that died.
func (w *Workspace) Unlock(id string) error { return w.State.ForceUnlock(id) }

// StateRecovery is a repair of damaged state, planned and not yet done.
// It holds the state lock until closed.
type StateRecovery struct {
	Location string
	Plan     *state.Recovery
	store    *state.Store
	lock     *state.Lock
}

// PlanStateRecovery opens the state of the config folder dir, damaged as
// it may be, takes its lock and works out what recovery would restore and
// lose (nothing is changed yet). It does not load the config: a damaged
// state must be repairable whatever the config says.
func PlanStateRecovery(ctx context.Context, dir string, opts Options) (*StateRecovery, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		if err == nil {
			err = errors.New("not a folder")
		}
		return nil, fmt.Errorf("config folder %s: %w", dir, err)
	}
	folder := StateDir(dir, opts.StateDir)
	if p, diags := Open(ctx, dir, Options{ConfigOnly: true, StateDir: opts.StateDir, States: opts.States}); !diags.HasErrors() && p.Config.State != nil {
		// The config says where the state lives, when it can be read; a
		// broken config must not stop a repair of the default folder.
		if p.Config.State.Backend != "local" {
			return nil, fmt.Errorf("state recover repairs a local state folder; the %s backend keeps state in transactions of its own", p.Config.State.Backend)
		}
		folder = state.LocalDir(state.Config{Dir: dir, Args: p.Config.State.Args, DirOverride: opts.StateDir})
	}
	store, err := state.OpenForRecovery(folder)
	if err != nil {
		return nil, err
	}
	var lock *state.Lock
	if opts.LockTimeout > 0 {
		lctx, cancel := context.WithTimeout(ctx, opts.LockTimeout)
		defer cancel()
		lock, err = store.LockContext(lctx, "state recover")
	} else {
		lock, err = store.Lock("state recover")
	}
	if err != nil {
		return nil, err
	}
	plan, err := store.PlanRecovery()
	if err != nil {
		lock.Unlock()
		return nil, err
	}
	return &StateRecovery{Location: store.Dir(), Plan: plan, store: store, lock: lock}, nil
}

// Apply carries out the recovery.
func (r *StateRecovery) Apply() error { return r.store.Recover(r.Plan) }

// Close releases the lock.
func (r *StateRecovery) Close() error { return r.lock.Unlock() }

// StateCopy is a copy of state between the local folder and the config's
// database backend, done.
type StateCopy = state.CopyReport

// PushState copies the state in the local folder localDir into the
// database backend the config's state block names, replacing what it
// holds (see state.Copy: another lineage or newer state is refused unless
// force is set). PullState copies the other way. Both take the locks of
// every sync on both sides first.
func (w *Workspace) PushState(ctx context.Context, localDir string, force bool) (*StateCopy, error) {
	return w.copyState(ctx, localDir, true, force)
}

// PullState copies the state of the config's database backend into the
// local folder localDir (see PushState).
func (w *Workspace) PullState(ctx context.Context, localDir string, force bool) (*StateCopy, error) {
	return w.copyState(ctx, localDir, false, force)
}

func (w *Workspace) copyState(ctx context.Context, localDir string, push bool, force bool) (*StateCopy, error) {
	op := "state pull"
	if push {
		op = "state push"
	}
	if w.Config.State == nil || w.Config.State.Backend == "local" {
		return nil, fmt.Errorf("%s copies state between a local folder and a database backend, but this config keeps its state in %s: add a state block naming a database backend (postgres or mysql) first", op, w.State.Location())
	}
	store, err := state.Open(localDir)
	if err != nil {
		return nil, err
	}
	local := store.Backend()
	if m, err := local.Meta(); err != nil {
		return nil, err
	} else if push && m.Lineage == "" {
		return nil, fmt.Errorf("there is no state in %s to push", local.Location())
	}
	syncs := []string{}
	for _, s := range w.Config.Syncs {
		syncs = append(syncs, s.Name)
	}
	for _, b := range []state.Backend{local, w.State} {
		names, err := b.Syncs()
		if err != nil {
			return nil, err
		}
		syncs = append(syncs, names...)
	}
	slices.Sort(syncs)
	syncs = slices.Compact(syncs)
	lctx := ctx
	if w.opts.LockTimeout > 0 {
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(ctx, w.opts.LockTimeout)
		defer cancel()
	}
	held, err := w.State.Lock(lctx, op, syncs)
	if err != nil {
		return nil, err
	}
	defer held.Unlock()
	localHeld, err := local.Lock(lctx, op, syncs)
	if err != nil {
		return nil, err
	}
	defer localHeld.Unlock()
	if push {
		return state.Copy(ctx, w.State, local, force)
	}
	return state.Copy(ctx, local, w.State, force)
}
