package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/backflowhq/backflow/project"
	"github.com/backflowhq/backflow/reconcile"
)

func newResetCDC(g *globals) *cobra.Command {
	var autoApprove bool
	cmd := &cobra.Command{
		Use:   "reset-cdc SYNC",
		Short: "Take a sync's current model result as already synced, sending nothing",
		Long: `reset-cdc replaces a sync's snapshot with the model's current result and
empties its failure index, without sending anything: the changes shown are
NOT sent, and the failed records are no longer retried. Run a normal apply
first if anything pending should still reach the destination.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			w, err := g.workspace(ctx, "reset-cdc", false, args[0])
			if err != nil {
				return err
			}
			defer w.Close()
			preview, err := w.PreviewResetCDC(ctx, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "reset-cdc will take the current result of sync %q as already synced.\nThese changes will NOT be sent:\n\n", args[0])
			(&reconcile.Plan{Syncs: []*reconcile.SyncPlan{preview.Plan}}).Render(g.stdout, reconcile.RenderOptions{Color: g.color(g.stdout)})
			fmt.Fprintf(g.stdout, "\nThe snapshot will hold %d records; %d failed records will be dropped from the failure index.\n", preview.Records, preview.Failures)
			if !autoApprove {
				ok, err := g.confirm("Do you want to reset CDC for this sync?")
				if err != nil {
					return err
				}
				if !ok {
					fmt.Fprintln(g.stdout, "Reset cancelled.")
					return exitError{1}
				}
			}
			n, err := w.ResetCDC(ctx, preview)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "Reset complete: sync %q now takes %d records as synced.\n", args[0], n)
			return nil
		},
	}
	cmd.Flags().BoolVar(&autoApprove, "auto-approve", false, "skip the confirmation")
	return cmd
}

// Exit codes of test: a failure outranks a test that could not run.
const (
	testExitFailed = 1
	testExitNotRun = 2
)

func newTest(g *globals) *cobra.Command {
	var offline bool
	cmd := &cobra.Command{
		Use:   "test",
		Short: "Run the test blocks: on the embedded engine, or on the model's own live database",
		Long: `test runs every test block: the sync's model runs on the test's fixture rows,
then its exclude rules, and the keys excluded and the rows that would be
sent are compared with the expectations.

A model of the embedded engine runs offline, on a fresh engine loaded with
the source's fixtures and the test's. A model of a PostgreSQL or MySQL/MariaDB
source runs on that server, in its own SQL dialect: the test's fixtures are
loaded into scratch schemas there (backflow_test_…), which are dropped
afterwards; production tables are neither read nor written. Such a test never
runs on another dialect: with --offline, or when the server cannot be reached
or will not create the scratch schema, it is reported as NOT RUN with the
reason.

Exit codes: 0 when every test that ran passed (tests not run because of
--offline do not count); 1 when a test failed; 2 when none failed but a test
could not run (its server unreachable, or the run interrupted).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := g.options()
			opts.Offline = true // live sources are opened by the tests that need them
			p, err := g.open(cmd.Context(), opts)
			if err != nil {
				return err
			}
			defer p.Close()
			results := p.RunTests(cmd.Context(), project.TestOptions{Offline: offline})
			failed, notRun, excused := 0, 0, 0
			for _, r := range results {
				switch {
				case r.NotRun != "":
					notRun++
					if r.Offline {
						excused++
					}
					fmt.Fprintf(g.stdout, "NOT RUN  %s (sync %s): %s\n", r.Name, r.Sync, r.NotRun)
				case r.Passed():
					fmt.Fprintf(g.stdout, "PASS     %s (sync %s, on %s)\n", r.Name, r.Sync, r.On)
				default:
					failed++
					on := ""
					if r.On != "" {
						on = ", on " + r.On
					}
					fmt.Fprintf(g.stdout, "FAIL     %s (sync %s%s)\n", r.Name, r.Sync, on)
					for _, pr := range r.Problems {
						fmt.Fprintf(g.stdout, "         %s\n", pr)
					}
				}
				for _, w := range r.Warnings {
					fmt.Fprintf(g.stdout, "         warning: %s\n", w)
				}
			}
			fmt.Fprintf(g.stdout, "\n%d tests, %d passed, %d failed", len(results), len(results)-failed-notRun, failed)
			if notRun > 0 {
				fmt.Fprintf(g.stdout, ", %d not run", notRun)
			}
			fmt.Fprintln(g.stdout)
			switch {
			case failed > 0:
				return exitError{testExitFailed}
			case notRun > excused:
				fmt.Fprintf(g.stderr, "Error: %d tests could not run (a test that cannot run in its model's own dialect never passes); pass --offline to run only the tests that need no live database.\n", notRun-excused)
				return exitError{testExitNotRun}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&offline, "offline", false, "connect to no live source: tests of models on PostgreSQL or MySQL sources are reported as not run, and do not fail the command")
	return cmd
}
