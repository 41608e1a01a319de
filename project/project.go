package project

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/engine"
	config "github.com/backflowhq/backflow/hcl"
	didyoumean "github.com/backflowhq/backflow/internal/suggest"
	"github.com/backflowhq/backflow/rules"
	"github.com/backflowhq/backflow/schema"
	"github.com/backflowhq/backflow/spec"
	"github.com/backflowhq/backflow/state"
)

// Project is a loaded and checked config folder with its sources open.
type Project struct {
	Config *config.Config
	// Files holds every file a diagnostic may point into (config and
	// fixture files), for the diagnostic writer.
	Files map[string]*hcl.File

	opts     Options
	sources  map[string]engine.Source
	columns  map[string][]schema.Column // by model name
	programs map[string]*rules.Program  // by sync name; nil when a sync has no rules
}

// Options tune Open.
type Options struct {
	// Destinations and Sources are the driver registries; nil uses
	// destination.Default() and engine.Default().
	Destinations *destination.Registry
	Sources      *engine.Registry
	States       *state.Registry
	// ConfigOnly loads the config without opening its sources, reading
	// model columns or compiling rules: for commands that need only the
	// config and the state (apply PLANFILE, state, runs, logs), which then
	// pay nothing for the embedded engine.
	ConfigOnly bool
	// StateDir overrides where the local state lives (default DIR/.backflow).
	StateDir string
	// Lock, when set, takes the state lock for this operation (OpenWorkspace),
	// for the syncs in LockSyncs (all the config's syncs when empty).
	Lock      string
	LockSyncs []string
	// LockTimeout waits that long for a lock another run holds (0: fail at
	// once).
	LockTimeout time.Duration
	// Ref, when set, reads the config as of this git revision (a branch,
	// tag or commit) instead of the working tree: see loadConfig.
	Ref string
	// Offline opens only embedded sources: live ones are not connected to,
	// and their models are not checked (test opens its live sources itself,
	// when it may).
	Offline bool
}

func (o Options) withDefaults() Options {
	if o.Destinations == nil {
		o.Destinations = destination.Default()
	}
	if o.Sources == nil {
		o.Sources = engine.Default()
	}
	if o.States == nil {
		o.States = state.Default()
	}
	return o
}

// Catalog is the families of typed blocks the config loader decodes: the
// registered source and destination types with their argument specs.
func (o Options) Catalog() spec.Catalog {
	o = o.withDefaults()
	return spec.Catalog{
		"source":      o.Sources.Family(),
		"destination": o.Destinations.Family(),
		"state":       o.States.Family(),
	}
}

// Open loads dir, opens its sources and checks everything that can be
// checked without writing: references, model columns, mappings, primary
// keys and rules. It returns the project whenever the config could be read
// (so diagnostics can be rendered with its Files), and all problems at once.
func Open(ctx context.Context, dir string, opts Options) (*Project, hcl.Diagnostics) {
	opts = opts.withDefaults()
	cfg, diags := loadConfig(dir, opts.Ref, config.Options{Catalog: opts.Catalog()})
	if cfg == nil {
		return nil, diags
	}
	p := &Project{
		Config:   cfg,
		Files:    map[string]*hcl.File{},
		opts:     opts,
		sources:  map[string]engine.Source{},
		columns:  map[string][]schema.Column{},
		programs: map[string]*rules.Program{},
	}
	for name, f := range cfg.Files {
		p.Files[name] = f
	}
	if opts.ConfigOnly {
		return p, diags
	}
	if diags.HasErrors() {
		// Column checks on a broken config would only add noise, but the
		// sources and rules of intact blocks are still worth checking.
		diags = append(diags, p.check(ctx, true)...)
		return p, sortDiags(diags)
	}
	diags = append(diags, p.check(ctx, false)...)
	return p, sortDiags(diags)
}

// Close closes the project's sources.
func (p *Project) Close() error {
	var errs []error
	for _, s := range p.sources {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// Source returns a model's source, opened, reading its columns as the
// model's column_types say.
func (p *Project) Source(m *config.Model) engine.Source {
	return modelSource(m, p.sources[m.Source.Name])
}

// modelSource reads src's columns as model m's column_types say.
func modelSource(m *config.Model, src engine.Source) engine.Source {
	if src == nil || len(m.ColumnTypes) == 0 {
		return src
	}
	types := make(map[string]schema.Type, len(m.ColumnTypes))
	for col, name := range m.ColumnTypes {
		t, _ := schema.ParseType(name) // checked by the config loader
		types[col] = t
	}
	return engine.Retype(src, types)
}

// Rules returns a sync's compiled rules (nil when it has none).
func (p *Project) Rules(sync string) *rules.Program { return p.programs[sync] }

// check opens sources, reads model columns and compiles rules. With partial,
// blocks whose references did not resolve are skipped silently.
func (p *Project) check(ctx context.Context, partial bool) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, s := range p.Config.Sources {
		if p.opts.Offline && s.Type != engine.EmbeddedType {
			continue
		}
		src, d := p.openSource(ctx, s)
		diags = append(diags, d...)
		if src != nil {
			p.sources[s.Name] = src
		}
	}
	for _, m := range p.Config.Models {
		if m.Source == nil {
			continue
		}
		src := p.Source(m)
		if src == nil {
			continue
		}
		cols, err := src.Schema(ctx, m.Query)
		if err != nil {
			// The server may quote the DSN's user or database ("command
			// denied to user 'u'"): the source masks them only when
			// connecting.
			err = p.Config.Redact.Error(err)
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Model Query Failed",
				Detail:   fmt.Sprintf("The query of model %q failed on source %q: %s. Fix the query (or the fixtures it reads) and run validate again.", m.Name, m.Source.Name, err),
				Subject:  rangePtr(m.QueryRange),
			})
			continue
		}
		p.columns[m.Name] = cols
		for _, k := range m.PrimaryKey {
			if !hasColumn(cols, k) {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Primary Key Column Not Returned",
					Detail:   fmt.Sprintf("Model %q declares primary key column %q, but its query returns only %s.%s", m.Name, k, columnList(cols), suggest(k, cols)),
					Subject:  rangePtr(m.PKRange),
				})
			}
		}
	}
	for _, s := range p.Config.Syncs {
		if s.Model == nil {
			continue
		}
		diags = append(diags, checkCDC(s)...)
		cols, ok := p.columns[s.Model.Name]
		if !ok {
			continue
		}
		for _, f := range s.Mapping {
			if !hasColumn(cols, f.Column) {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Mapped Column Not In Model",
					Detail:   fmt.Sprintf("Sync %q maps field %q to column %q, but model %q returns only %s.%s", s.Name, f.Field, f.Column, s.Model.Name, columnList(cols), suggest(f.Column, cols)),
					Subject:  rangePtr(f.Range),
				})
			}
		}
		if len(s.Excludes) > 0 {
			prog, d := rules.Compile(cols, s.Excludes)
			diags = append(diags, d...)
			if !d.HasErrors() {
				p.programs[s.Name] = prog
			}
		}
	}
	return diags
}

func (p *Project) openSource(ctx context.Context, s *config.Source) (engine.Source, hcl.Diagnostics) {
	d, ok := p.opts.Sources.Lookup(s.Type)
	if !ok || s.Args.Broken() {
		return nil, nil // the config says so already
	}
	src, diags := d.Open(ctx, p.engineConfig(s.Name, s.Args))
	for _, d := range diags {
		// Problems with the source as a whole (a folder missing, a server
		// unreachable) are the source block's.
		if d.Subject == nil {
			d.Subject = rangePtr(s.DeclRange)
		}
		d.Summary = p.Config.Redact.String(d.Summary)
		d.Detail = p.Config.Redact.String(d.Detail)
	}
	p.addFixtureFiles(diags)
	return src, diags
}

func hasColumn(cols []schema.Column, name string) bool {
	for _, c := range cols {
		if c.Name == name {
			return true
		}
	}
	return false
}

func columnList(cols []schema.Column) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = fmt.Sprintf("%q", c.Name)
	}
	if len(names) == 0 {
		return "no columns"
	}
	return strings.Join(names, ", ")
}

// suggest returns ` Did you mean "x"?` for the closest column, if close.
func suggest(name string, cols []schema.Column) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	return didyoumean.DidYouMean(name, names)
}

func rangePtr(r hcl.Range) *hcl.Range {
	if r.Filename == "" {
		return nil
	}
	return &r
}

func sortDiags(diags hcl.Diagnostics) hcl.Diagnostics {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		if a == nil || b == nil {
			return a != nil
		}
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
	return diags
}
