package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/backflowhq/backflow/project"
	"github.com/backflowhq/backflow/state"
)

// exitError carries an exit code; its message, if any, was already printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// globals are the flags every command shares.
type globals struct {
	dir      string
	stateDir string
	noColor  bool
	ref      string // --ref of validate, plan and apply (see addRefFlag)

	stdin          io.Reader
	stdout, stderr io.Writer
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
	fmt.Fprintf(stderr, "Error: %s\n", err)
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
	}
	root.PersistentFlags().StringVarP(&g.dir, "chdir", "C", ".", "config folder")
	root.PersistentFlags().StringVar(&g.stateDir, "state-dir", "", "state directory (default DIR/.backflow)")
	root.PersistentFlags().BoolVar(&g.noColor, "no-color", false, "disable colour (also NO_COLOR)")
	root.AddCommand(
		newValidate(g), newFmt(g), newPlan(g), newApply(g), newShow(g), newState(g),
		newResetCDC(g), newRuns(g), newLogs(g), newTest(g),
	)
	return root
}

// open loads the project and prints its diagnostics; it fails with exit
// code 1 when there are errors.
func (g *globals) open(ctx context.Context) (*project.Project, error) {
	p, diags := project.Open(ctx, g.dir, project.Options{Ref: g.ref})
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

func (g *globals) store(p *project.Project) (*state.Store, error) {
	return state.Open(p.StateDir(g.stateDir))
}

// workspace is an open project with its state, locked when the command
// writes state.
type workspace struct {
	p     *project.Project
	store *state.Store
	lock  *state.Lock
}

// openWorkspace opens the project and its state; with lockFor set it takes
// the state lock for that operation, failing at once if another holds it.
func (g *globals) openWorkspace(ctx context.Context, lockFor string) (*workspace, error) {
	p, err := g.open(ctx)
	if err != nil {
		return nil, err
	}
	w := &workspace{p: p}
	if w.store, err = g.store(p); err != nil {
		p.Close()
		return nil, err
	}
	if lockFor != "" {
		if w.lock, err = w.store.Lock(lockFor); err != nil {
			p.Close()
			return nil, err
		}
	}
	return w, nil
}

func (w *workspace) close() {
	if w.lock != nil {
		w.lock.Unlock()
	}
	w.p.Close()
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
