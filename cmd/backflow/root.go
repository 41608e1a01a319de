package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/backflowhq/backflow/project"
	"github.com/backflowhq/backflow/redact"
)

// exitError carries an exit code; its message, if any, was already printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// globals are the flags every command shares.
type globals struct {
	dir      string
	stateDir string
	noColor  bool
	// lockTimeout is how long to wait for a state lock another run holds
	// (0: fail at once).
	lockTimeout time.Duration
	ref         string // --ref of validate, plan and apply (see addRefFlag)

	stdin          io.Reader
	stdout, stderr io.Writer

	// redact masks the loaded config's secrets in the error a command
	// ends with (nil until a config loads).
	redact *redact.Redactor
}

func (g *globals) color(w io.Writer) bool {
	if g.noColor || os.Getenv("NO_COLOR") != "" {
		return false
	}
	return isTerminal(w)
}

func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	go func() {
		// After the first interrupt, the work in flight is finished and
		// saved; a second one ends the process at once (default handling).
		<-ctx.Done()
		stop()
	}()
	root := newRoot(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintf(stderr, "Error: %s\n", g.redact.String(err.Error()))
	return 1
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "backflow",
		Short: "Keep operational tools in step with SQL models, declaratively",
		Long: `backflow syncs the rows of SQL models to operational tools (databases, CRMs,
HTTP APIs). Syncs are HCL files in a git repository; plan shows what changed
since the last sync, apply sends it, retrying rejected records until they
are accepted.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version(),
	}
	root.SetVersionTemplate("backflow {{.Version}}\n")
	root.PersistentFlags().StringVarP(&g.dir, "chdir", "C", ".", "config folder")
	root.PersistentFlags().StringVar(&g.stateDir, "state-dir", "", "state directory (default DIR/.backflow)")
	root.PersistentFlags().BoolVar(&g.noColor, "no-color", false, "disable colour (also NO_COLOR)")
	root.PersistentFlags().DurationVar(&g.lockTimeout, "lock-timeout", 0, "wait this long for the state lock when another run holds it (default: fail at once)")
	root.AddCommand(
		newValidate(g), newFmt(g), newPlan(g), newApply(g), newShow(g), newState(g),
		newResetCDC(g), newRuns(g), newLogs(g), newTest(g), newDocs(g),
	)
	return root
}

// options are the project options every command shares.
func (g *globals) options() project.Options {
	return project.Options{StateDir: g.stateDir, LockTimeout: g.lockTimeout, Ref: g.ref}
}

// open loads the project with opts and prints its diagnostics; it fails
// with exit code 1 when there are errors.
func (g *globals) open(ctx context.Context, opts project.Options) (*project.Project, error) {
	p, diags := project.Open(ctx, g.dir, opts)
	if p != nil {
		g.redact = p.Config.Redact
	}
	if len(diags) > 0 {
		files := map[string]*hcl.File{}
		if p != nil {
			files = p.Files
		}
		g.writeDiags(files, diags)
	}
	if diags.HasErrors() {
		if p != nil {
			p.Close()
		}
		return nil, exitError{1}
	}
	return p, nil
}

// workspace opens the project and its state, locked for lock when set;
// configOnly skips opening sources (see project.Options.ConfigOnly).
// Diagnostics are printed, and fail with exit code 1.
func (g *globals) workspace(ctx context.Context, lock string, configOnly bool, lockSyncs ...string) (*project.Workspace, error) {
	opts := g.options()
	opts.Lock, opts.ConfigOnly, opts.LockSyncs = lock, configOnly, lockSyncs
	w, err := project.OpenWorkspace(ctx, g.dir, opts)
	var de *project.DiagnosticsError
	if errors.As(err, &de) {
		g.writeDiags(de.Files, de.Diags)
		return nil, exitError{1}
	}
	if err != nil {
		return nil, err
	}
	g.redact = w.Config.Redact
	if len(w.Warnings) > 0 {
		g.writeDiags(w.Files, w.Warnings)
	}
	if w.TookOverFrom != nil {
		fmt.Fprintf(g.stderr, "Warning: took over the state lock left by %s, which is gone.\n", w.TookOverFrom)
	}
	return w, nil
}

func (g *globals) writeDiags(files map[string]*hcl.File, diags hcl.Diagnostics) {
	width := uint(0)
	if f, ok := g.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 {
			width = uint(w)
		}
	}
	writeDiagnostics(g.stderr, files, withoutFolderSubjects(files, diags), g.color(g.stderr), width)
}

// withoutFolderSubjects drops the source range of diagnostics about a
// folder rather than a file (no config files, an unreadable folder): there
// is no snippet to show, and their detail names the folder.
func withoutFolderSubjects(files map[string]*hcl.File, diags hcl.Diagnostics) hcl.Diagnostics {
	out := make(hcl.Diagnostics, len(diags))
	for i, d := range diags {
		out[i] = d
		if d.Subject == nil || files[d.Subject.Filename] != nil {
			continue
		}
		if fi, err := os.Stat(d.Subject.Filename); err == nil && fi.Mode().IsRegular() {
			continue
		}
		c := *d
		c.Subject, c.Context = nil, nil
		out[i] = &c
	}
	return out
}

// syncFailures separates the syncs that failed alone (the others went on)
// from an error that stopped the command.
func syncFailures(err error) (project.SyncErrors, error) {
	var se project.SyncErrors
	if errors.As(err, &se) {
		return se, nil
	}
	return nil, err
}

// reportSyncErrors prints each failed sync as a diagnostic at the block
// it is about.
func (g *globals) reportSyncErrors(w *project.Workspace, failed project.SyncErrors) {
	var diags hcl.Diagnostics
	for _, f := range failed {
		diags = append(diags, f.Diagnostics()...)
	}
	g.writeDiags(w.Files, diags)
}

// confirm asks the user to type "yes". Without a terminal it refuses.
func (g *globals) confirm(question string) (bool, error) {
	if !isTerminal(g.stdin) {
		return false, errors.New("refusing to continue without confirmation: stdin is not a terminal; pass --auto-approve to proceed")
	}
	fmt.Fprintf(g.stdout, "%s\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ", question)
	var answer string
	fmt.Fscanln(g.stdin, &answer)
	return answer == "yes", nil
}

// addRefFlag adds --ref to a command that reads the config.
func (g *globals) addRefFlag(cmd *cobra.Command) {
	cmd.Flags().StringVar(&g.ref, "ref", "", "read the config as of this git revision (branch, tag or commit) instead of the working tree, without a checkout")
}
