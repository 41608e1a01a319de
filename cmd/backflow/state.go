package main

import (
	"fmt"
	"os"
	"sort"
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
	cmd.AddCommand(newStateList(g), newStateFailures(g), newStateUnlock(g), newStateRecover(g))
	return cmd
}

// openStore opens the state directory alone: reading state needs neither
// the config's sources nor its fixtures, which can take long to load.
func (g *globals) openStore(*cobra.Command) (*state.Store, error) {
	dir := project.StateDir(g.dir, g.stateDir)
	if _, err := os.Stat(g.dir); err != nil {
		return nil, fmt.Errorf("config folder %s: %w", g.dir, err)
	}
	return state.Open(dir)
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

// syncSummary is one sync's line in `state list` and `show`.
type syncSummary struct {
	Sync     string `json:"sync"`
	Records  int    `json:"records"`
	Failures int    `json:"failures"`
}

func showState(g *globals, cmd *cobra.Command, asJSON bool) error {
	store, err := g.openStore(cmd)
	if err != nil {
		return err
	}
	meta, err := store.Meta()
	if err != nil {
		return err
	}
	names, err := store.Syncs()
	if err != nil {
		return err
	}
	summaries := []syncSummary{}
	for _, n := range names {
		snap, err := store.LoadSnapshot(n)
		if err != nil {
			return err
		}
		records := snap.Len()
		snap.Close()
		failures, err := store.LoadFailures(n)
		if err != nil {
			return err
		}
		summaries = append(summaries, syncSummary{Sync: n, Records: records, Failures: len(failures)})
	}
	lock, err := store.LockStatus()
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(g.stdout, map[string]any{"dir": store.Dir(), "version": meta.Version, "lineage": meta.Lineage, "serial": meta.Serial, "syncs": summaries, "lock": lock})
	}
	fmt.Fprintf(g.stdout, "state %s (lineage %s, serial %d)\n", store.Dir(), meta.Lineage, meta.Serial)
	switch {
	case lock.Stale:
		fmt.Fprintf(g.stdout, "lock: stale, left by %s, which is gone (the next command takes it over; `state unlock %s` clears it)\n", lock.Holder, lock.Holder.ID)
	case lock.Held && lock.Holder != nil:
		fmt.Fprintf(g.stdout, "lock: held by %s\n", lock.Holder)
	case lock.Held:
		fmt.Fprintln(g.stdout, "lock: held by another process (holder unknown)")
	}
	if lock.Note != "" && !lock.Stale {
		fmt.Fprintf(g.stdout, "lock: %s\n", lock.Note)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SYNC\tRECORDS\tFAILURES")
	for _, s := range summaries {
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
			store, err := g.openStore(cmd)
			if err != nil {
				return err
			}
			failures, err := store.LoadFailures(args[0])
			if err != nil {
				return err
			}
			list := make([]*state.Failure, 0, len(failures))
			for _, f := range failures {
				list = append(list, f)
			}
			sort.Slice(list, func(i, j int) bool { return reconcile.KeyLess(list[i].Key, list[j].Key) })
			if asJSON {
				return printJSON(g.stdout, list)
			}
			if len(list) == 0 {
				fmt.Fprintf(g.stdout, "No failed records for sync %q.\n", args[0])
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tOPERATION\tATTEMPTS\tLAST FAILED\tERROR")
			for _, f := range list {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", strconv.Quote(f.Key), f.Operation, f.Attempts, f.LastFailed.Format(time.RFC3339), f.Error)
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
			store, err := g.openStore(cmd)
			if err != nil {
				return err
			}
			if err := store.ForceUnlock(args[0]); err != nil {
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
			if _, err := os.Stat(g.dir); err != nil {
				return fmt.Errorf("config folder %s: %w", g.dir, err)
			}
			store, err := state.OpenForRecovery(project.StateDir(g.dir, g.stateDir))
			if err != nil {
				return err
			}
			lock, err := g.lock(cmd.Context(), store, "state recover")
			if err != nil {
				return err
			}
			defer lock.Unlock()
			r, err := store.PlanRecovery()
			if err != nil {
				return err
			}
			if r.Empty() {
				fmt.Fprintln(g.stdout, "The state is intact: nothing to recover.")
				return nil
			}
			fmt.Fprintf(g.stdout, "backflow found damaged state in %s:\n\n", store.Dir())
			for _, s := range r.Steps {
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
			if err := store.Recover(r); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, "State recovered. Run `backflow plan`: records whose outcome was lost are planned again.")
			return nil
		},
	}
	cmd.Flags().BoolVar(&autoApprove, "auto-approve", false, "repair without asking")
	return cmd
}

func newRuns(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "runs [SYNC]",
		Short: "List the run history",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openStore(cmd)
			if err != nil {
				return err
			}
			sync := ""
			if len(args) == 1 {
				sync = args[0]
			}
			runs, err := store.Runs(sync)
			if err != nil {
				return err
			}
			if runs == nil {
				runs = []state.Run{}
			}
			if asJSON {
				return printJSON(g.stdout, runs)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SYNC\tRUN\tSTATUS\tSTARTED\tDURATION\tADDED\tCHANGED\tREMOVED\tRETRIED\tACCEPTED\tREJECTED\tEXCLUDED\tREQUESTS\tRESENT")
			for _, r := range runs {
				c := r.Counts
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", r.Sync, r.Run, r.Status,
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
			if status != "" && status != "accepted" && status != "rejected" {
				return fmt.Errorf("--status must be accepted or rejected, not %q", status)
			}
			store, err := g.openStore(cmd)
			if err != nil {
				return err
			}
			rows, err := store.RowLogs(args[0], run)
			if err != nil {
				return err
			}
			out := []state.RowLog{}
			for _, r := range rows {
				if (status == "" || r.Status == status) && (key == "" || r.Key == key) {
					out = append(out, r)
				}
			}
			if asJSON {
				return printJSON(g.stdout, out)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RUN\tKEY\tOPERATION\tSTATUS\tATTEMPTS\tERROR")
			for _, r := range out {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", r.Run, strconv.Quote(r.Key), r.Operation, r.Status, r.Attempts, r.Error)
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
