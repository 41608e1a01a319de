package main

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/backflowhq/backflow/project"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/state"
)

func newState(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Inspect and repair the state",
	}
	cmd.AddCommand(newStateList(g), newStateFailures(g), newStateUnlock(g), newStateRecover(g), newStateCopy(g, true), newStateCopy(g, false))
	return cmd
}

// stateWorkspace opens the config and its state without the sources:
// reading state needs neither the config's sources nor its fixtures, which
// can take long to load.
func (g *globals) stateWorkspace(cmd *cobra.Command) (*project.Workspace, error) {
	return g.workspace(cmd.Context(), "", true)
}

func newStateList(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the syncs that have state, with their record and failure counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return showState(g, cmd, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func showState(g *globals, cmd *cobra.Command, asJSON bool) error {
	w, err := g.stateWorkspace(cmd)
	if err != nil {
		return err
	}
	defer w.Close()
	sum, err := w.Summary()
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(g.stdout, viewState(sum))
	}
	fmt.Fprintf(g.stdout, "state in %s (lineage %s, serial %d)\n", sum.Location, sum.Meta.Lineage, sum.Meta.Serial)
	if len(sum.Lock.Syncs) > 0 {
		for _, l := range sum.Lock.Syncs {
			switch {
			case l.Stale:
				fmt.Fprintf(g.stdout, "lock of sync %q: stale, left by %s, whose database session ended (the next command takes it over; `state unlock %s` clears it)\n", l.Sync, l.Holder, l.Holder.ID)
			case l.Held && l.Holder != nil && l.Note == "":
				fmt.Fprintf(g.stdout, "lock of sync %q: held by %s\n", l.Sync, l.Holder)
			default:
				fmt.Fprintf(g.stdout, "lock of sync %q: %s\n", l.Sync, l.Note)
			}
		}
	} else {
		switch lock := sum.Lock; {
		case lock.Stale:
			fmt.Fprintf(g.stdout, "lock: stale, left by %s, which is gone (the next command takes it over; `state unlock %s` clears it)\n", lock.Holder, lock.Holder.ID)
		case lock.Held && lock.Holder != nil:
			fmt.Fprintf(g.stdout, "lock: held by %s\n", lock.Holder)
		case lock.Held:
			fmt.Fprintln(g.stdout, "lock: held by another process (holder unknown)")
		case lock.Note != "":
			fmt.Fprintf(g.stdout, "lock: %s\n", lock.Note)
		}
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SYNC\tRECORDS\tFAILURES")
	for _, s := range sum.Syncs {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", s.Sync, s.Records, s.Failures)
	}
	return tw.Flush()
}

func newStateFailures(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "failures SYNC",
		Short: "List the records of a sync the destination rejected, retried on every run",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := g.stateWorkspace(cmd)
			if err != nil {
				return err
			}
			defer w.Close()
			list, err := w.Failures(args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(g.stdout, viewFailures(list))
			}
			if len(list) == 0 {
				fmt.Fprintf(g.stdout, "No failed records for sync %q.\n", args[0])
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tOPERATION\tATTEMPTS\tLAST FAILED\tERROR")
			for _, f := range list {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", strconv.Quote(f.Key), f.Operation, f.Attempts, f.LastFailed.Format(time.RFC3339), reconcile.PlainText(f.Error))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the failures as JSON")
	return cmd
}

func newStateUnlock(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "unlock ID",
		Short: "Remove a lock left behind by a process that died",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := g.stateWorkspace(cmd)
			if err != nil {
				return err
			}
			defer w.Close()
			if err := w.Unlock(args[0]); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, "The state is unlocked.")
			return nil
		},
	}
}

func newStateRecover(g *globals) *cobra.Command {
	var autoApprove bool
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Restore the last good generation of damaged state files, after showing what that loses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := project.PlanStateRecovery(cmd.Context(), g.dir, g.options())
			if err != nil {
				return err
			}
			defer r.Close()
			if r.Plan.Empty() {
				fmt.Fprintln(g.stdout, "The state is intact: nothing to recover.")
				return nil
			}
			fmt.Fprintf(g.stdout, "backflow found damaged state in %s:\n\n", r.Location)
			for _, s := range r.Plan.Steps {
				fmt.Fprintf(g.stdout, "  %s\n    problem: %s\n    repair:  %s\n", s.File, s.Problem, s.Action)
				if s.Loses != "" {
					fmt.Fprintf(g.stdout, "    loses:   %s\n", s.Loses)
				} else {
					fmt.Fprintln(g.stdout, "    loses:   nothing")
				}
			}
			fmt.Fprintln(g.stdout, "\nDamaged files are moved aside (name.damaged-TIME), not deleted.")
			if !autoApprove {
				ok, err := g.confirm("\nDo you want to repair the state?")
				if err != nil {
					return err
				}
				if !ok {
					fmt.Fprintln(g.stdout, "Recovery cancelled.")
					return exitError{1}
				}
			}
			if err := r.Apply(); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, "State recovered. Run `backflow plan`: records whose outcome was lost are planned again.")
			return nil
		},
	}
	cmd.Flags().BoolVar(&autoApprove, "auto-approve", false, "repair without asking")
	return cmd
}

// newStateCopy is `state push` (push: the local folder into the config's
// database backend) or `state pull` (the other way).
func newStateCopy(g *globals, push bool) *cobra.Command {
	var (
		folder string
		force  bool
	)
	use, short, flag := "pull", "Copy the state of the config's database backend into a local folder", "to"
	if push {
		use, short, flag = "push", "Copy the state in a local folder into the config's database backend", "from"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `, replacing what is there: every sync's snapshot
and failure index, the run history and row logs, the lineage and serial, so
that plans made against one apply against the other. State of another
lineage, or newer state of the same lineage, is not overwritten without
--force. The locks of every sync are taken on both sides first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w, err := g.stateWorkspace(cmd)
			if err != nil {
				return err
			}
			defer w.Close()
			dir := folder
			if dir == "" {
				dir = project.StateDir(g.dir, g.stateDir)
			}
			var rep *project.StateCopy
			if push {
				rep, err = w.PushState(cmd.Context(), dir, force)
			} else {
				rep, err = w.PullState(cmd.Context(), dir, force)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "Copied the state from %s to %s: %d syncs, %d records, %d failures, %d runs (%d with row logs); lineage %s, serial %d.\n",
				rep.From, rep.To, rep.Syncs, rep.Records, rep.Failures, rep.Runs, rep.RowLogs, rep.Lineage, rep.Serial)
			if rep.Replaced.Lineage != "" && rep.Replaced.Lineage != rep.Lineage {
				fmt.Fprintf(g.stdout, "It replaced state of another lineage (%s, serial %d).\n", rep.Replaced.Lineage, rep.Replaced.Serial)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&folder, flag, "", "the local state folder (default: --state-dir, or .backflow beside the config)")
	cmd.Flags().BoolVar(&force, "force", false, "replace state of another lineage, or newer state")
	return cmd
}

func newRuns(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "runs [SYNC]",
		Short: "List the run history",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := g.stateWorkspace(cmd)
			if err != nil {
				return err
			}
			defer w.Close()
			sync := ""
			if len(args) == 1 {
				sync = args[0]
			}
			runs, err := w.Runs(sync)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(g.stdout, viewRuns(runs))
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SYNC\tRUN\tSTATUS\tCOMMIT\tSTARTED\tDURATION\tADDED\tCHANGED\tREMOVED\tRETRIED\tACCEPTED\tREJECTED\tEXCLUDED\tREQUESTS\tRESENT")
			for _, r := range runs {
				c := r.Counts
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", r.Sync, r.Run, r.Status, shortCommit(r.Commit, r.Dirty),
					r.Started.Format(time.RFC3339), time.Duration(r.DurationMS)*time.Millisecond,
					c.Added, c.Changed, c.Removed, c.Retried, c.Accepted, c.Rejected, c.Excluded, r.Requests, r.Resent)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the runs as JSON")
	return cmd
}

func newLogs(g *globals) *cobra.Command {
	var (
		run    int
		status string
		key    string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "logs SYNC",
		Short: "Show per-record outcomes of a recent run",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if status != "" && status != string(state.RowAccepted) && status != string(state.RowRejected) {
				return fmt.Errorf("--status must be accepted or rejected, not %q", status)
			}
			w, err := g.stateWorkspace(cmd)
			if err != nil {
				return err
			}
			defer w.Close()
			out, err := w.Logs(args[0], project.LogFilter{Run: run, Status: state.RowStatus(status), Key: key})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(g.stdout, viewRowLogs(out))
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RUN\tKEY\tOPERATION\tSTATUS\tATTEMPTS\tERROR")
			for _, r := range out {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", r.Run, strconv.Quote(r.Key), r.Operation, r.Status, r.Attempts, reconcile.PlainText(r.Error))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVar(&run, "run", 0, "run number (default: the latest)")
	cmd.Flags().StringVar(&status, "status", "", "only records with this outcome: accepted or rejected")
	cmd.Flags().StringVar(&key, "key", "", "only the record with this key")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

// shortCommit is a commit as people read it: 12 hex digits, "+dirty" when
// the config had uncommitted changes, "-" outside git.
func shortCommit(commit string, dirty bool) string {
	if commit == "" {
		commit = "-"
	} else if len(commit) > 12 {
		commit = commit[:12]
	}
	if dirty {
		commit += "+dirty"
	}
	return commit
}
