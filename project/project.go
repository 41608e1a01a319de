package project

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/engine"
	config "github.com/backflowhq/backflow/hcl"
	didyoumean "github.com/backflowhq/backflow/internal/suggest"
	"github.com/backflowhq/backflow/rules"
	"github.com/backflowhq/backflow/schema"
)

// Project is a loaded and checked config folder with its sources open.
type Project struct {
	Config *config.Config
	// Files holds every file a diagnostic may point into (config and
	// fixture files), for the diagnostic writer.
	Files    map[string]*hcl.File
	Registry *destination.Registry

	sources  map[string]engine.Source
	columns  map[string][]schema.Column // by model name
	programs map[string]*rules.Program  // by sync name; nil when a sync has no rules
}

// Options tune Open.
type Options struct {
	// Registry of destination drivers; nil uses destination.Default().
	Registry *destination.Registry
	// Ref, when set, reads the config as of this git revision (a branch,
	// tag or commit) instead of the working tree: see loadConfig.
	Ref string
}

// Open loads dir, opens its sources and checks everything that can be
// checked without writing: references, model columns, mappings, primary
// keys and rules. It returns the project whenever the config could be read
// (so diagnostics can be rendered with its Files), and all problems at once.
func Open(ctx context.Context, dir string, opts Options) (*Project, hcl.Diagnostics) {
	cfg, diags := loadConfig(dir, opts.Ref)
	if cfg == nil {
		return nil, diags
	}
	p := &Project{
		Config:   cfg,
		Files:    map[string]*hcl.File{},
		Registry: opts.Registry,
		sources:  map[string]engine.Source{},
		columns:  map[string][]schema.Column{},
		programs: map[string]*rules.Program{},
	}
	if p.Registry == nil {
		p.Registry = destination.Default()
	}
	for name, f := range cfg.Files {
		p.Files[name] = f
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

// Columns returns a model's columns as its source reports them.
func (p *Project) Columns(model string) []schema.Column { return p.columns[model] }

// Source returns a model's source, opened.
func (p *Project) Source(m *config.Model) engine.Source { return p.sources[m.Source.Name] }

// Rules returns a sync's compiled rules (nil when it has none).
func (p *Project) Rules(sync string) *rules.Program { return p.programs[sync] }

// check opens sources, reads model columns and compiles rules. With partial,
// blocks whose references did not resolve are skipped silently.
func (p *Project) check(ctx context.Context, partial bool) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, s := range p.Config.Sources {
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
		src := p.sources[m.Source.Name]
		if src == nil {
			continue
		}
		cols, err := src.Schema(ctx, m.Query)
		if err != nil {
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
	switch s.Type {
	case "embedded":
		if s.Fixtures == "" {
			// Missing or empty in the config, which says so: loading the
			// config folder instead would run its .sql files as fixtures.
			return nil, nil
		}
		e := engine.NewEmbedded()
		diags := p.loadFixtures(e, s.Fixtures, s.ColumnTypes)
		for _, d := range diags {
			// Problems with the folder as a whole (missing, unreadable,
			// column types for no fixture) are the source block's.
			if d.Subject == nil {
				d.Subject = rangePtr(s.DeclRange)
			}
		}
		return e, diags
	case "postgres", "mysql":
		open := engine.OpenPostgres
		if s.Type == "mysql" {
			open = engine.OpenMySQL
		}
		src, err := open(ctx, s.DSN.Reveal())
		if err != nil {
			return nil, hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "Cannot Connect To Source",
				Detail:   fmt.Sprintf("Source %q (%s) could not be reached: %s. Check that the database is running and that the DSN is right.", s.Name, s.Type, scrub(err.Error(), s.DSN.Reveal())),
				Subject:  rangePtr(s.DeclRange),
			}}
		}
		return src, nil
	}
	return nil, nil
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

// scrub removes a secret from a message, in case a driver quoted it.
func scrub(msg, secret string) string {
	if secret == "" {
		return msg
	}
	return strings.ReplaceAll(msg, secret, "(sensitive)")
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
