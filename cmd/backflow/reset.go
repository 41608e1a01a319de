package main

import (
	"fmt"

	"github.com/spf13/cobra"

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
			n, err := w.ResetCDC(preview)
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

func newTest(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "test",
		Short: "Run the test blocks offline against the embedded engine",
		Long: `test runs every test block: fixture rows go into a fresh embedded engine, the
sync's model and exclude rules run on them, and the keys excluded and the
rows that would be sent are compared with the expectations.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer p.Close()
			results := p.RunTests(cmd.Context())
			failed := 0
			for _, r := range results {
				if r.Passed() {
					fmt.Fprintf(g.stdout, "PASS  %s (sync %s)\n", r.Name, r.Sync)
					continue
				}
				failed++
				fmt.Fprintf(g.stdout, "FAIL  %s (sync %s)\n", r.Name, r.Sync)
				for _, pr := range r.Problems {
					fmt.Fprintf(g.stdout, "      %s\n", pr)
				}
			}
			fmt.Fprintf(g.stdout, "\n%d tests, %d passed, %d failed\n", len(results), len(results)-failed, failed)
			if failed > 0 {
				return exitError{1}
			}
			return nil
		},
	}
}
