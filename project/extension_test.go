package project

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/engine"
	"github.com/backflowhq/backflow/schema"
	"github.com/backflowhq/backflow/spec"
)

// memory is a destination type defined in this test alone: adding it is one
// registration, with its own two arguments.
type memory struct {
	mu      sync.Mutex
	prefix  string
	records map[string]map[string]any
}

func (m *memory) Write(_ context.Context, b *destination.Batch) destination.Outcome {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range b.Records {
		m.records[m.prefix+b.Object+"/"+r.Key] = r.Fields
	}
	return destination.AllAccepted(len(b.Records))
}

func (m *memory) Close() error { return nil }

func memoryDriver(m *memory, capacity *int) destination.Driver {
	return destination.Driver{
		Type: spec.Type{Name: "memory", Doc: "Records kept in memory.", Spec: spec.Spec{Args: []spec.Arg{
			{Name: "prefix", Kind: spec.String, Required: true, Doc: "Prefix of every stored key.", Example: `prefix = "crm/"`},
			{Name: "capacity", Kind: spec.Int, Min: 1, Default: 1000, Doc: "Records it holds at most.", Example: "capacity = 10"},
		}}},
		Open: func(_ context.Context, cfg destination.Config) (destination.Destination, error) {
			m.prefix = cfg.Args.String("prefix")
			*capacity = cfg.Args.Int("capacity")
			return m, nil
		},
	}
}

// counter is a source type defined in this test alone: every query returns
// the rows 1..n with an email each, whatever its SQL.
type counter struct{ n int }

func (c counter) Query(context.Context, string) (engine.Rows, error) {
	return &counterRows{n: c.n}, nil
}

func (c counter) Schema(context.Context, string) ([]schema.Column, error) {
	return (&counterRows{}).Columns(), nil
}

func (counter) Close() error { return nil }

type counterRows struct{ i, n int }

func (r *counterRows) Columns() []schema.Column {
	return []schema.Column{{Name: "id", Type: schema.TypeInt}, {Name: "email", Type: schema.TypeString, Nullable: true}}
}
func (r *counterRows) Next() bool   { r.i++; return r.i <= r.n }
func (r *counterRows) Row() []any   { return []any{int64(r.i), fmt.Sprintf("u%d@example.com", r.i)} }
func (r *counterRows) Err() error   { return nil }
func (r *counterRows) Close() error { return nil }

func counterDriver() engine.Driver {
	return engine.Driver{
		Type: spec.Type{Name: "counter", Doc: "Rows 1..n.", Spec: spec.Spec{Args: []spec.Arg{
			{Name: "rows", Kind: spec.Int, Min: 0, Required: true, Doc: "How many rows.", Example: "rows = 3"},
		}}},
		Open: func(_ context.Context, cfg engine.Config) (engine.Source, hcl.Diagnostics) {
			return counter{n: cfg.Args.Int("rows")}, nil
		},
	}
}

const extensionConfig = `source "numbers" {
  type = "counter"
  rows = %s
}

model "people" {
  source      = source.numbers
  query       = "anything"
  primary_key = "id"
}

destination "mem" {
  type   = "memory"
  prefix = %s
}

sync "people_to_mem" {
  model       = model.people
  destination = destination.mem
  object      = "contacts"
  key         = "id"
  mapping     = { email = "email" }
}
`

// TestNewTypesAreOneRegistration adds a destination type and a source type
// by registering them in fresh registries, and uses them through validate
// (their argument errors at file:line:col), plan and apply.
func TestNewTypesAreOneRegistration(t *testing.T) {
	mem := &memory{records: map[string]map[string]any{}}
	capacity := 0
	dests := destination.NewRegistry()
	destination.RegisterBuiltins(dests)
	dests.Register(memoryDriver(mem, &capacity))
	sources := engine.NewRegistry()
	engine.RegisterBuiltins(sources)
	sources.Register(counterDriver())
	opts := Options{Destinations: dests, Sources: sources}

	dir := t.TempDir()
	write := func(rows, prefix string) {
		if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(fmt.Sprintf(extensionConfig, rows, prefix)), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Argument errors of the new types point into the file.
	write(`"three"`, "42")
	p, diags := Open(context.Background(), dir, opts)
	if p != nil {
		p.Close()
	}
	got := map[string]bool{}
	for _, d := range diags {
		got[fmt.Sprintf("%d:%d %s", d.Subject.Start.Line, d.Subject.Start.Column, d.Summary)] = true
	}
	if !got["3:10 Invalid value type"] || len(diags) != 1 {
		t.Fatalf("want the rows argument's type error at 3:10, got %s", diags.Error())
	}
	write("3", `"crm/"`)
	if err := os.WriteFile(filepath.Join(dir, "extra.hcl"), []byte("destination \"other\" {\n  type = \"memory\"\n  prefx = \"x\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, diags = Open(context.Background(), dir, opts)
	var all []string
	for _, d := range diags {
		all = append(all, fmt.Sprintf("%s:%d:%d %s", filepath.Base(d.Subject.Filename), d.Subject.Start.Line, d.Subject.Start.Column, d.Detail))
	}
	text := strings.Join(all, "\n")
	if len(diags) != 2 || !strings.Contains(text, `extra.hcl:3:3 An argument named "prefx" is not expected here. Did you mean "prefix"?`) ||
		!strings.Contains(text, `extra.hcl:1:1 A memory destination needs the argument "prefix", like prefix = "crm/"`) {
		t.Fatalf("unknown and missing arguments of a new type:\n%s", text)
	}
	os.Remove(filepath.Join(dir, "extra.hcl"))

	// Plan and apply through the new types; the default of capacity applies.
	w, err := OpenWorkspace(context.Background(), dir, Options{Destinations: dests, Sources: sources, Lock: "apply"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	plan, err := w.Plan(context.Background(), PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Syncs[0].Add != 3 {
		t.Fatalf("plan adds %d, want 3", plan.Syncs[0].Add)
	}
	res, err := w.Apply(context.Background(), plan, ApplyOptions{})
	if err != nil || res[0].Counts.Accepted != 3 {
		t.Fatalf("apply: %v, %+v", err, res)
	}
	if capacity != 1000 || mem.records["crm/contacts/2"]["email"] != "u2@example.com" {
		t.Fatalf("capacity %d, records %v", capacity, mem.records)
	}
}
