package project

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/engine"
)

// A source type that is neither the embedded engine nor able to load
// fixtures never passes a test: its tests are not run, with the reason;
// with Offline they are not run either, and say so; an interrupted run
// leaves the rest not run.
func TestTestsThatCannotRun(t *testing.T) {
	mem := &memory{records: map[string]map[string]any{}}
	capacity := 0
	dests := destination.NewRegistry()
	destination.RegisterBuiltins(dests)
	dests.Register(memoryDriver(mem, &capacity))
	sources := engine.NewRegistry()
	engine.RegisterBuiltins(sources)
	sources.Register(counterDriver())
	dir := t.TempDir()
	cfg := fmt.Sprintf(extensionConfig, "3", `"crm/"`) + `
test "people_sent" {
  sync        = sync.people_to_mem
  expect_sent = ["1", "2", "3"]
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p, diags := Open(context.Background(), dir, Options{Destinations: dests, Sources: sources, Offline: true})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	defer p.Close()
	if p.sources["numbers"] != nil {
		t.Error("Offline opened a source that is not the embedded engine")
	}

	res := p.RunTests(context.Background(), TestOptions{})
	if len(res) != 1 || res[0].Passed() || res[0].Failed() || res[0].Offline ||
		!strings.Contains(res[0].NotRun, `source "numbers" (type counter) cannot load test fixtures`) {
		t.Errorf("a source that cannot load fixtures: %+v", res)
	}
	res = p.RunTests(context.Background(), TestOptions{Offline: true})
	if len(res) != 1 || res[0].Passed() || !res[0].Offline || !strings.HasPrefix(res[0].NotRun, "--offline: ") {
		t.Errorf("offline: %+v", res)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res = p.RunTests(ctx, TestOptions{})
	if len(res) != 1 || res[0].NotRun != "interrupted" || res[0].Sync != "people_to_mem" {
		t.Errorf("interrupted: %+v", res)
	}
}
