package main

import (
	"time"

	"github.com/backflowhq/backflow/project"
	"github.com/backflowhq/backflow/state"
)

// The JSON the CLI prints is a contract (DESIGN.md names its fields): it is
// rendered from these view structs, so that a change to how state is stored
// cannot change it by accident.

type countsView struct {
	Added    int `json:"added"`
	Changed  int `json:"changed"`
	Removed  int `json:"removed"`
	Retried  int `json:"retried"`
	Accepted int `json:"accepted"`
	Rejected int `json:"rejected"`
	Excluded int `json:"excluded"`
	// StillFailing: rejected again as before (a warning).
	StillFailing int `json:"still_failing"`
}

type outcomesView struct {
	Accepted int `json:"accepted"`
	Rejected int `json:"rejected"`
}

type runView struct {
	Sync       string                  `json:"sync"`
	Run        int                     `json:"run"`
	Status     string                  `json:"status"`
	ConfigHash string                  `json:"config_hash"`
	Commit     string                  `json:"commit"`
	Dirty      bool                    `json:"dirty"`
	Started    time.Time               `json:"started"`
	DurationMS int64                   `json:"duration_ms"`
	Counts     countsView              `json:"counts"`
	ByAction   map[string]outcomesView `json:"by_action,omitempty"`
	Requests   int                     `json:"requests"`
	Resent     int                     `json:"resent"`
	Error      string                  `json:"error,omitempty"`
	// CDC is where the run kept the sync's snapshot ("local" or
	// "warehouse"; absent from runs recorded before it was).
	CDC       string `json:"cdc,omitempty"`
	CDCSchema string `json:"cdc_schema,omitempty"`
}

func viewRuns(runs []state.Run) []runView {
	out := make([]runView, len(runs))
	for i, r := range runs {
		c := r.Counts
		v := runView{
			Sync: r.Sync, Run: r.Run, Status: string(r.Status), ConfigHash: r.ConfigHash, Commit: r.Commit, Dirty: r.Dirty,
			Started: r.Started, DurationMS: r.DurationMS,
			Counts:   countsView{Added: c.Added, Changed: c.Changed, Removed: c.Removed, Retried: c.Retried, Accepted: c.Accepted, Rejected: c.Rejected, Excluded: c.Excluded, StillFailing: c.StillFailing},
			Requests: r.Requests, Resent: r.Resent, Error: r.Error, CDC: r.CDC, CDCSchema: r.CDCSchema,
		}
		if len(r.ByAction) > 0 {
			v.ByAction = map[string]outcomesView{}
			for a, o := range r.ByAction {
				v.ByAction[a] = outcomesView{Accepted: o.Accepted, Rejected: o.Rejected}
			}
		}
		out[i] = v
	}
	return out
}

type failureView struct {
	Key         string    `json:"key"`
	KeyBytes    []byte    `json:"key_bytes,omitempty"` // a key not UTF-8 (keyBytes)
	Operation   string    `json:"operation"`
	Error       string    `json:"error"`
	Attempts    int       `json:"attempts"`
	FirstFailed time.Time `json:"first_failed"`
	LastFailed  time.Time `json:"last_failed"`
}

func viewFailures(list []*state.Failure) []failureView {
	out := make([]failureView, len(list))
	for i, f := range list {
		out[i] = failureView{Key: f.Key, KeyBytes: keyBytes(f.Key), Operation: f.Operation, Error: f.Error, Attempts: f.Attempts, FirstFailed: f.FirstFailed, LastFailed: f.LastFailed}
	}
	return out
}

type rowLogView struct {
	Run       int    `json:"run"`
	Key       string `json:"key"`
	KeyBytes  []byte `json:"key_bytes,omitempty"` // a key not UTF-8 (keyBytes)
	Operation string `json:"operation"`
	Status    string `json:"status"`
	Error     string `json:"error,omitempty"`
	Attempts  int    `json:"attempts"`
}

func viewRowLogs(rows []state.RowLog) []rowLogView {
	out := make([]rowLogView, len(rows))
	for i, r := range rows {
		out[i] = rowLogView{Run: r.Run, Key: r.Key, KeyBytes: keyBytes(r.Key), Operation: r.Operation, Status: string(r.Status), Error: r.Error, Attempts: r.Attempts}
	}
	return out
}

type syncStateView struct {
	Sync     string `json:"sync"`
	Records  int    `json:"records"`
	Failures int    `json:"failures"`
}

type stateView struct {
	Location string          `json:"location"`
	Lock     lockView        `json:"lock"`
	Version  int             `json:"version"`
	Lineage  string          `json:"lineage"`
	Serial   uint64          `json:"serial"`
	Syncs    []syncStateView `json:"syncs"`
}

func viewState(s *project.StateSummary) stateView {
	v := stateView{Location: s.Location, Lock: lockView{Held: s.Lock.Held, Stale: s.Lock.Stale, Note: s.Lock.Note}, Version: s.Meta.Version, Lineage: s.Meta.Lineage, Serial: s.Meta.Serial, Syncs: []syncStateView{}}
	v.Lock.Holder = viewLockInfo(s.Lock.Holder)
	for _, l := range s.Lock.Syncs {
		v.Lock.Syncs = append(v.Lock.Syncs, syncLockView{Sync: l.Sync, Held: l.Held, Stale: l.Stale, Holder: viewLockInfo(l.Holder), Note: l.Note})
	}
	for _, x := range s.Syncs {
		v.Syncs = append(v.Syncs, syncStateView{Sync: x.Sync, Records: x.Records, Failures: x.Failures})
	}
	return v
}

type syncErrorView struct {
	Sync  string `json:"sync"`
	Error string `json:"error"`
}

func viewSyncErrors(errs project.SyncErrors) []syncErrorView {
	var out []syncErrorView
	for _, e := range errs {
		out = append(out, syncErrorView{Sync: e.Sync, Error: e.Err.Error()})
	}
	return out
}

type lockView struct {
	Held   bool          `json:"held"`
	Stale  bool          `json:"stale"`
	Holder *lockInfoView `json:"holder,omitempty"`
	Note   string        `json:"note,omitempty"`
	// Syncs are the locks of single syncs (database backends).
	Syncs []syncLockView `json:"syncs,omitempty"`
}

type syncLockView struct {
	Sync   string        `json:"sync"`
	Held   bool          `json:"held"`
	Stale  bool          `json:"stale"`
	Holder *lockInfoView `json:"holder,omitempty"`
	Note   string        `json:"note,omitempty"`
}

func viewLockInfo(h *state.LockInfo) *lockInfoView {
	if h == nil {
		return nil
	}
	return &lockInfoView{ID: h.ID, Operation: h.Operation, Who: h.Who, PID: h.PID, Created: h.Created}
}

type lockInfoView struct {
	ID        string    `json:"id"`
	Operation string    `json:"operation"`
	Who       string    `json:"who"`
	PID       int       `json:"pid"`
	Created   time.Time `json:"created"`
}
