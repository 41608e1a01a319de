package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

// startupConfig is a small project for `fmt --check`: one of each block.
const startupConfig = `source "warehouse" {
  type = "embedded"
}

model "people" {
  source      = source.warehouse
  query       = "SELECT id, email FROM people"
  primary_key = "id"
}

destination "crm" {
  type = "sqlite"
  path = "crm.db"
}

sync "people" {
  model       = model.people
  destination = destination.crm
  object      = "contacts"
  key         = "id"
  mapping     = { email = "email" }
}
`

// helloProgram is the baseline: a Go program that prints a line, built
// with the same toolchain.
const helloProgram = `package main

import "fmt"

func main() { fmt.Println("hello") }
`

// runStartup times what a command costs before any work: `backflow
// --help` and `backflow fmt --check` on a small project, each run many
// times as a child process, against a Go hello-world built in the same
// run (what any Go binary costs to start on this machine).
func runStartup(ctx context.Context, e *env) (*result, error) {
	n := 25
	if e.quick {
		n = 5
	}
	bin, err := e.cli(ctx)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.tmp, "startup")
	hello := filepath.Join(dir, "hello")
	if err := os.MkdirAll(filepath.Join(dir, "project"), 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "project", "main.hcl"), []byte(startupConfig), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(helloProgram), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644); err != nil {
		return nil, err
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", hello, ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the hello-world baseline: %v\n%s", err, out)
	}
	cmds := []struct {
		key  string
		args []string
	}{
		{"hello", []string{hello}},
		{"help", []string{bin, "--help"}},
		{"fmt", []string{bin, "-C", filepath.Join(dir, "project"), "fmt", "--check"}},
	}
	times := make([][]time.Duration, len(cmds))
	e.logf("running each command %d times", n)
	for range n {
		// Interleaved, so that a busy moment of the machine costs each
		// command alike.
		for i, c := range cmds {
			cmd := exec.CommandContext(ctx, c.args[0], c.args[1:]...)
			start := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("%s: %v\n%s", c.args, err, out)
			}
			times[i] = append(times[i], time.Since(start))
		}
	}
	r := newResult("startup").set("runs", n)
	med := make([]time.Duration, len(cmds))
	for i, c := range cmds {
		slices.Sort(times[i])
		med[i] = times[i][len(times[i])/2]
		r.set(c.key+"_median_ms", ms(med[i])).set(c.key+"_min_ms", ms(times[i][0]))
	}
	if d, ok := freshPageCost(); ok {
		r.set("fresh_page_fault_us", round3(d.Seconds()*1e6))
	}
	return r.set("help_vs_hello", ratio(med[1].Seconds(), med[0].Seconds())).
		set("fmt_vs_hello", ratio(med[2].Seconds(), med[0].Seconds())).
		set("target", "help_median_ms and fmt_median_ms < 50"), nil
}

func ms(d time.Duration) float64 { return round3(d.Seconds() * 1000) }
