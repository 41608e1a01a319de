package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/backflowhq/backflow/project"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/state"
)

func newPlan(g *globals) *cobra.Command {
	var (
		syncs        []string
		out          string
		asJSON       bool
		detailed     bool
		skipRemovals bool
		base         string
		markdown     bool
	)
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show what apply would send: the changes since the last sync",
		Long: `plan runs each sync's model, compares it with what the destination last
accepted (the state) and shows the records to add, change, remove and retry.
It sends nothing. With --out the plan is saved for "apply FILE", unless a
sync could not be planned: then nothing is saved (exit 1).

For a pull request, --base REV also shows every input of the config that
differs from git revision REV (HCL blocks, and the files they read: model
SQL, init_sql files, fixtures, as unified diffs) and what the difference
does to the data: the config at REV is planned against the same state and
sources, and the rows whose outcome differs are counted and attributed to
the rule, mapping, model or setting that changed. --markdown renders it all
for a PR comment, with a hidden marker line (<!-- backflow-plan: DIR -->)
by which a CI step can find and update its earlier comment.

Values of sensitive_fields (and of syncs with redact_values) are masked in
every rendering; a plan saved with --out keeps them for apply.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("out") {
				if err := checkPlanOut(out, g.dir, project.StateDir(g.dir, g.stateDir)); err != nil {
					return err
				}
			}
			w, err := g.workspace(cmd.Context(), "", false)
			if err != nil {
				return err
			}
			defer w.Close()
			popts := project.PlanOptions{Syncs: syncs, SkipRemovals: skipRemovals}
			var plan *reconcile.Plan
			var review *project.Review
			if base != "" {
				plan, review, err = w.PlanReview(cmd.Context(), popts, base)
			} else {
				plan, err = w.Plan(cmd.Context(), popts)
			}
			if plan != nil {
				defer plan.Close()
			}
			failed, err := syncFailures(err)
			if err != nil {
				return err
			}
			// Every rendering masks sensitive values; the saved plan
			// (--out) keeps them, because apply sends them.
			shown := plan.Masked()
			switch {
			case asJSON:
				wrap := func(p *reconcile.Plan) any { return planJSON{p, review, viewSyncErrors(failed)} }
				if err := printPlanJSON(g.stdout, shown, wrap); err != nil {
					return err
				}
			case markdown:
				renderMarkdown(g.stdout, planMarker(g.dir), g.dir, review, shown, failed)
			default:
				if review != nil {
					renderReviewText(g.stdout, review)
				}
				shown.Render(g.stdout, reconcile.RenderOptions{Color: g.color(g.stdout), Failed: failedSyncs(failed)})
			}
			if len(failed) > 0 {
				g.reportSyncErrors(w, failed)
				if out != "" {
					// apply FILE carries out exactly the plan saved: one
					// without a sync asked for is not the plan asked for.
					others := ""
					if len(plan.Syncs) > 0 {
						others = ", or plan the others alone (--sync NAME for each) to save theirs"
					}
					fmt.Fprintf(g.stderr, "Error: nothing was saved to %s: %s could not be planned. Fix it and plan again%s.\n", out, syncNames(failed), others)
				}
				return exitError{1}
			}
			if out != "" {
				if err := plan.WriteFile(out); err != nil {
					return err
				}
				if !asJSON && !markdown {
					fmt.Fprintf(g.stdout, "\nSaved the plan to %s. To carry out exactly this plan, run:\n  backflow -C %s apply %s\n", out, g.dir, out)
				}
			}
			if detailed && len(plan.MassRemovals()) > 0 {
				return exitError{3}
			}
			if detailed && plan.HasChanges() {
				return exitError{2}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&syncs, "sync", nil, "plan only this sync (repeatable)")
	cmd.Flags().StringVar(&out, "out", "", "save the plan to FILE for apply")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	cmd.Flags().BoolVar(&detailed, "detailed-exitcode", false, "exit 2 when there are changes, 3 when apply would refuse a mass removal (0 none, 1 error)")
	cmd.Flags().BoolVar(&skipRemovals, "skip-removals", false, "forget removed rows without touching the destination")
	cmd.Flags().StringVar(&base, "base", "", "also show what differs from this git revision: config inputs and the data consequence")
	cmd.Flags().BoolVar(&markdown, "markdown", false, "render for a pull-request comment")
	g.addRefFlag(cmd)
	cmd.MarkFlagsMutuallyExclusive("json", "markdown")
	return cmd
}

func newShow(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show [PLANFILE]",
		Short: "Render a saved plan (without PLANFILE: summarise the state)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return showState(g, cmd, asJSON)
			}
			plan, err := reconcile.ReadFile(args[0])
			if plan != nil {
				defer plan.Close()
			}
			if err != nil {
				return err
			}
			// Every change is decoded once, a chunk at a time, before
			// anything is printed: a plan whose changes do not decode is
			// refused rather than shown in part.
			if err := plan.Verify(); err != nil {
				return fmt.Errorf("reading plan: %w", err)
			}
			// A saved plan keeps the values apply sends; showing it masks
			// them like plan does.
			plan = plan.Masked()
			if asJSON {
				return printPlanJSON(g.stdout, plan, func(p *reconcile.Plan) any { return p })
			}
			plan.Render(g.stdout, reconcile.RenderOptions{Color: g.color(g.stdout)})
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func newApply(g *globals) *cobra.Command {
	var (
		syncs        []string
		autoApprove  bool
		skipRemovals bool
		asJSON       bool
		keepLogs     int
		requireClean bool
		allowMass    bool
		strict       bool
		parallelism  int
	)
	cmd := &cobra.Command{
		Use:   "apply [PLANFILE]",
		Short: "Send the changes to the destinations",
		Long: `apply carries out a plan: without PLANFILE it plans, shows the plan and asks
for confirmation (--auto-approve skips the question; without a terminal it
is required). With PLANFILE it applies exactly that saved plan, and refuses
it when the config or the state changed since it was made.

Records the destination rejects are kept in the failure index and retried
on every later run until they are accepted.

A sync's run fails (exit 1) when more of the records it attempted for the
first time are rejected than its failure_threshold allows, when the
destination took none of them, when it answered that the sync cannot
proceed (credentials, permission, a missing table or endpoint), or when
the circuit breaker stopped it. Records rejected again as on earlier runs
are reported as still failing, a warning; --strict counts them too. The
other syncs are applied either way.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if len(args) == 1 && (len(syncs) > 0 || skipRemovals) {
				return errors.New("--sync and --skip-removals shape a new plan; they cannot change a saved one")
			}
			if parallelism < 1 {
				return fmt.Errorf("--parallelism must be at least 1, not %d", parallelism)
			}
			if keepLogs < 1 {
				return fmt.Errorf("--log-retention must be at least 1, not %d", keepLogs)
			}
			// A saved plan holds everything apply sends: the sources need
			// not be opened, and only its syncs are locked (a database
			// state backend locks per sync).
			lockSyncs := syncs
			if len(args) == 1 {
				// Its header only: no change is decoded before the plan
				// is checked against the config and the state (ReadPlan).
				saved, err := reconcile.ReadFile(args[0])
				if err != nil {
					return err
				}
				for _, sp := range saved.Syncs {
					lockSyncs = append(lockSyncs, sp.Name)
				}
				saved.Close()
			}
			w, err := g.workspace(ctx, "apply", len(args) == 1, lockSyncs...)
			if err != nil {
				return err
			}
			defer w.Close()

			var plan *reconcile.Plan
			var planFailed project.SyncErrors
			if len(args) == 1 {
				if plan, err = w.ReadPlan(args[0]); err != nil {
					return err
				}
				defer plan.Close()
			} else {
				plan, err = w.Plan(ctx, project.PlanOptions{Syncs: syncs, SkipRemovals: skipRemovals})
				if plan != nil {
					defer plan.Close()
				}
				if planFailed, err = syncFailures(err); err != nil {
					return err
				}
				if !asJSON {
					plan.Masked().Render(g.stdout, reconcile.RenderOptions{Color: g.color(g.stdout), Failed: failedSyncs(planFailed)})
				}
				if !plan.HasChanges() {
					if err := w.ClaimWarehouse(ctx, plan); err != nil {
						return err
					}
					if asJSON {
						printJSON(g.stdout, applyReport(nil, planFailed, nil))
					}
					if len(planFailed) > 0 {
						g.reportSyncErrors(w, planFailed)
						return exitError{1}
					}
					return nil
				}
				if !autoApprove {
					ok, err := g.confirm("Do you want to apply these changes?")
					if err != nil {
						return err
					}
					if !ok {
						fmt.Fprintln(g.stdout, "Apply cancelled.")
						return exitError{1}
					}
				}
			}
			if plan.Dirty {
				if requireClean {
					return fmt.Errorf("the config has changes not committed to git (commit %s); commit them, or drop --require-clean", shortCommit(plan.Commit, false))
				}
				fmt.Fprintf(g.stderr, "Warning: applying a config with changes not committed to git (on top of commit %s); the run records it as dirty.\n", shortCommit(plan.Commit, false))
			}
			results, err := g.applyWithProgress(ctx, w, plan, project.ApplyOptions{KeepLogs: keepLogs, AllowMassRemoval: allowMass, Strict: strict, Parallelism: parallelism})
			applyFailed, err := syncFailures(err)
			failed := append(planFailed, applyFailed...)
			if asJSON {
				if jerr := printJSON(g.stdout, applyReport(results, failed, err)); jerr != nil && err == nil {
					err = jerr
				}
			} else {
				// The plan shown above named the syncs it could not plan,
				// each with its error.
				printResults(g, results, applyFailed, len(planFailed), strict, err)
			}
			if err != nil {
				return err
			}
			if len(failed) > 0 {
				g.reportSyncErrors(w, failed)
				return exitError{1}
			}
			if ctx.Err() != nil {
				fmt.Fprintln(g.stderr, "Interrupted: the batch in flight was finished and the state saved; records not yet sent will be planned again.")
				return exitError{130}
			}
			for _, r := range results {
				if r.Failed() {
					return exitError{1}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&syncs, "sync", nil, "apply only this sync (repeatable)")
	cmd.Flags().BoolVar(&autoApprove, "auto-approve", false, "skip the confirmation")
	cmd.Flags().BoolVar(&skipRemovals, "skip-removals", false, "forget removed rows without touching the destination (this run only)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the results as JSON")
	cmd.Flags().BoolVar(&allowMass, "allow-mass-removal", false, "apply syncs whose plan removes more than their max_removals (or whose model returned no rows)")
	cmd.Flags().IntVar(&parallelism, "parallelism", 1, "apply this many syncs at once")
	cmd.Flags().BoolVar(&strict, "strict", false, "count records still failing (rejected again as on earlier runs) against failure_threshold")
	cmd.Flags().BoolVar(&requireClean, "require-clean", false, "refuse to apply a config with changes not committed to git")
	cmd.Flags().IntVar(&keepLogs, "log-retention", state.DefaultKeepRowLogs, "keep per-record logs of this many recent runs per sync")
	g.addRefFlag(cmd)
	return cmd
}

// applyWithProgress shows a progress bar per sync on a terminal and a
// one-line progress log every few seconds otherwise.
func (g *globals) applyWithProgress(ctx context.Context, w *project.Workspace, plan *reconcile.Plan, opts project.ApplyOptions) ([]*reconcile.SyncResult, error) {
	if isTerminal(g.stderr) {
		progress := mpb.NewWithContext(ctx, mpb.WithOutput(g.stderr), mpb.WithWidth(40))
		bars := map[string]*mpb.Bar{}
		var mu sync.Mutex // syncs applied in parallel report at once
		opts.Progress = func(sync string, done, total int) {
			mu.Lock()
			defer mu.Unlock()
			bar, ok := bars[sync]
			if !ok {
				bar = progress.AddBar(int64(total),
					mpb.PrependDecorators(decor.Name(sync+" "), decor.CountersNoUnit("%d/%d")),
					mpb.AppendDecorators(decor.Percentage()))
				bars[sync] = bar
			}
			bar.SetCurrent(int64(done))
		}
		defer func() {
			for _, b := range bars {
				b.Abort(false)
			}
			progress.Wait()
		}()
	} else {
		last := time.Now()
		var mu sync.Mutex
		opts.Progress = func(sync string, done, total int) {
			mu.Lock()
			defer mu.Unlock()
			if time.Since(last) >= 2*time.Second {
				last = time.Now()
				fmt.Fprintf(g.stderr, "sync %q: %d/%d records done\n", sync, done, total)
			}
		}
	}
	return w.Apply(ctx, plan, opts)
}

// syncNames names the syncs of errs: sync "a", or syncs "a", "b".
func syncNames(errs project.SyncErrors) string {
	names := make([]string, len(errs))
	for i, e := range errs {
		names[i] = strconv.Quote(e.Sync)
	}
	if len(names) == 1 {
		return "sync " + names[0]
	}
	return "syncs " + strings.Join(names, ", ")
}

// failedSyncs are the syncs that could not be planned, as a rendered plan
// names them.
func failedSyncs(errs project.SyncErrors) []reconcile.FailedSync {
	var out []reconcile.FailedSync
	for _, e := range errs {
		out = append(out, reconcile.FailedSync{Sync: e.Sync, Error: e.Err.Error()})
	}
	return out
}

// printResults prints each sync's outcome, the syncs that failed before
// sending (failed), and a summary line, which calls the apply complete only
// when no sync failed and err (what stopped the apply: the state could not
// be saved) is nil. notPlanned counts the syncs that could not be planned,
// which the plan shown before the results names: the summary counts them
// among the failed.
func printResults(g *globals, results []*reconcile.SyncResult, failed project.SyncErrors, notPlanned int, strict bool, err error) {
	for _, r := range results {
		c := r.Counts
		fmt.Fprintf(g.stdout, "sync %q: %d accepted, %d rejected (%d requests, %d records re-sent) in %s\n",
			r.Sync, c.Accepted, c.Rejected, r.Requests, r.Resent, r.Duration.Round(time.Millisecond))
		if r.Halted != nil {
			fmt.Fprintf(g.stdout, "  stopped: %s\n", reconcile.PlainText(r.Halted.String()))
			if n := r.Unsettled(); n > 0 {
				fmt.Fprintf(g.stdout, "  the %d records not settled are planned again next run (those a request may have written are in the failure index, outcome unknown)\n", n)
			}
		}
		if c.Rejected > 0 {
			fmt.Fprintf(g.stdout, "  most frequent errors:\n")
			for i, e := range r.TopErrors {
				if i == 5 {
					fmt.Fprintf(g.stdout, "    (%d more kinds of error)\n", len(r.TopErrors)-5)
					break
				}
				if e.Example != e.Error {
					fmt.Fprintf(g.stdout, "    %5d × %s (e.g. %s)\n", e.Count, reconcile.PlainText(e.Error), reconcile.PlainText(e.Example))
				} else {
					fmt.Fprintf(g.stdout, "    %5d × %s\n", e.Count, reconcile.PlainText(e.Error))
				}
			}
			fmt.Fprintf(g.stdout, "  rejected records are retried on the next run; see: backflow -C %s state failures %s\n", g.dir, r.Sync)
		}
		if r.StillFailing > 0 && !strict {
			fmt.Fprintf(g.stderr, "Warning: sync %q: %d records still failing, rejected again as on earlier runs; they do not fail the run (apply --strict counts them).\n", r.Sync, r.StillFailing)
		}
		if r.Failed() {
			fmt.Fprintf(g.stderr, "Error: sync %q failed: %s\n", r.Sync, r.FailureReason())
		}
	}
	nFailed, interrupted := len(failed)+notPlanned, false
	for _, r := range results {
		if r.Failed() {
			nFailed++
		}
		interrupted = interrupted || r.Interrupted
	}
	for _, f := range failed {
		fmt.Fprintf(g.stdout, "sync %q: failed, nothing sent: %v\n", f.Sync, f.Err)
	}
	switch {
	case err != nil:
		fmt.Fprintf(g.stdout, "Apply failed: %v.\n", err)
	case nFailed > 0 && len(results)+len(failed)+notPlanned > 1:
		fmt.Fprintf(g.stdout, "Apply finished: %d sync(s) applied, %d failed.\n", len(results)+len(failed)+notPlanned-nFailed, nFailed)
	case nFailed > 0:
		fmt.Fprintln(g.stdout, "Apply failed.")
	case interrupted:
		// What was not sent stays pending, planned again next run.
		fmt.Fprintln(g.stdout, "Apply interrupted: the records not sent are planned again next run.")
	case len(results) > 0:
		fmt.Fprintln(g.stdout, "Apply complete.")
	}
}

type syncReport struct {
	Sync              string                 `json:"sync"`
	Status            string                 `json:"status"`
	Counts            countsView             `json:"counts"`
	Requests          int                    `json:"requests"`
	Resent            int                    `json:"resent"`
	DurationMS        int64                  `json:"duration_ms"`
	TopErrors         []reconcile.ErrorCount `json:"top_errors"`
	ThresholdExceeded bool                   `json:"threshold_exceeded"`
	// Halted is "fatal" or "circuit_breaker" when the sync stopped sending.
	Halted string `json:"halted,omitempty"`
	Error  string `json:"error,omitempty"`
}

// applyReport is apply's JSON: each sync's outcome, and the error that
// stopped the apply (the state could not be saved), if any.
func applyReport(results []*reconcile.SyncResult, failed project.SyncErrors, err error) any {
	out := []syncReport{}
	for _, f := range failed {
		out = append(out, syncReport{Sync: f.Sync, Status: "error", TopErrors: []reconcile.ErrorCount{}, Error: f.Err.Error()})
	}
	for _, r := range results {
		top := r.TopErrors
		if top == nil {
			top = []reconcile.ErrorCount{}
		}
		c := r.Counts
		counts := countsView{Added: c.Added, Changed: c.Changed, Removed: c.Removed, Retried: c.Retried, Accepted: c.Accepted, Rejected: c.Rejected, Excluded: c.Excluded,
			StillFailing: r.StillFailing}
		rep := syncReport{Sync: r.Sync, Status: string(r.Status()), Counts: counts, Requests: r.Requests, Resent: r.Resent,
			DurationMS: r.Duration.Milliseconds(), TopErrors: top, ThresholdExceeded: r.ThresholdExceeded, Error: r.FailureReason()}
		if r.Halted != nil {
			rep.Halted = string(r.Halted.Reason)
		}
		if se := (*project.SaveError)(nil); errors.As(err, &se) && se.Sync == r.Sync {
			// Whatever the destination accepted, what backflow knows of it
			// was not saved.
			rep.Status, rep.Error = "error", se.Error()
		}
		out = append(out, rep)
	}
	if err != nil {
		return map[string]any{"syncs": out, "error": err.Error()}
	}
	return map[string]any{"syncs": out}
}

// checkPlanOut refuses a --out path that would replace what backflow
// reads: a file of the state directory, or a config file (.hcl, which the
// config folder's loading would also take for config). Other files are
// replaced as plan files (WriteFile refuses links and special files).
func checkPlanOut(out, dir, stateDir string) error {
	if out == "" {
		return fmt.Errorf("--out needs a file name, such as --out changes.plan")
	}
	if strings.EqualFold(filepath.Ext(out), ".hcl") {
		return fmt.Errorf("refusing to write the plan to %s: a .hcl file is config, and the config folder would load it; name a file such as changes.plan", out)
	}
	abs, err := resolvedPath(out)
	if err != nil {
		return fmt.Errorf("writing plan: %w", err)
	}
	state, err := resolvedPath(stateDir)
	if err != nil {
		return fmt.Errorf("writing plan: %w", err)
	}
	if rel, err := filepath.Rel(state, abs); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("refusing to write the plan to %s: it is in the state folder %s, whose files backflow keeps; name a file outside it", out, stateDir)
	}
	return nil
}

// resolvedPath is path made absolute, with the symbolic links of the
// longest part of it that exists resolved.
func resolvedPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	rest := ""
	for p := abs; ; p = filepath.Dir(p) {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(r, rest), nil
		}
		if filepath.Dir(p) == p {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(p), rest)
	}
}
