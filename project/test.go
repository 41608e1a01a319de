package project

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/engine"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/schema"
)

// TestResult is the outcome of one `test` block.
type TestResult struct {
	Name string
	Sync string
	// On says where the model ran: "the embedded engine", or a live
	// source's server ("PostgreSQL at 127.0.0.1:5432").
	On string
	// Problems lists each difference between expectation and result; empty
	// when the test passed.
	Problems []string
	// NotRun says why the test did not run at all: --offline, or its live
	// source could not be used. Such a test neither passed nor failed.
	NotRun string
	// Offline: the test was not run because TestOptions.Offline asked so.
	Offline bool
	// Warnings are problems that do not fail the test, such as a scratch
	// database that could not be dropped.
	Warnings []string
}

// Passed reports whether the test ran and passed.
func (r TestResult) Passed() bool { return r.NotRun == "" && len(r.Problems) == 0 }

// Failed reports whether the test ran and failed.
func (r TestResult) Failed() bool { return r.NotRun == "" && len(r.Problems) > 0 }

// TestOptions tune RunTests.
type TestOptions struct {
	// Offline runs no test whose model is on a live source: each is
	// reported as not run, and no live source is connected to.
	Offline bool
}

// embeddedOn is TestResult.On for the embedded engine.
const embeddedOn = "the embedded engine"

// RunTests runs every test block. A model of the embedded engine runs
// offline, on a fresh engine loaded with the source's fixtures, the test's
// fixture folder and its inline tables. A model of a live source runs on
// that source's server, in its own SQL dialect: the test's fixture folder
// and inline tables go into scratch schemas there (see
// engine.FixtureRunner), dropped afterwards. It never runs on another
// dialect: offline, or when the server cannot be used, the test is
// reported as not run, with the reason. Either way the sync is diffed as
// on a first run.
func (p *Project) RunTests(ctx context.Context, opts TestOptions) []TestResult {
	live := &liveTestSources{p: p, open: map[string]*liveTestSource{}}
	defer live.close()
	var out []TestResult
	for _, t := range p.Config.Tests {
		if ctx.Err() != nil {
			r := TestResult{Name: t.Name, NotRun: "interrupted"}
			if t.Sync != nil {
				r.Sync = t.Sync.Name
			}
			out = append(out, r)
			continue
		}
		out = append(out, p.runTest(ctx, t, opts, live))
	}
	return out
}

// liveTestSources opens each live source once, on first use.
type liveTestSources struct {
	p    *Project
	open map[string]*liveTestSource
}

type liveTestSource struct {
	runner engine.FixtureRunner
	opened engine.Source // to close; nil when the project's own
	reason string        // why it cannot run tests
}

func (l *liveTestSources) get(ctx context.Context, s *config.Source) *liveTestSource {
	if ls, ok := l.open[s.Name]; ok {
		return ls
	}
	ls := &liveTestSource{}
	l.open[s.Name] = ls
	src := l.p.sources[s.Name]
	if src == nil {
		d, ok := l.p.opts.Sources.Lookup(s.Type)
		if !ok {
			ls.reason = fmt.Sprintf("source %q has the unknown type %q", s.Name, s.Type)
			return ls
		}
		if s.Args.Broken() {
			ls.reason = fmt.Sprintf("source %q has arguments that could not be read (validate says which)", s.Name)
			return ls
		}
		opened, diags := d.Open(ctx, l.p.engineConfig(s.Name, s.Args))
		if diags.HasErrors() {
			var msgs []string
			for _, dg := range diags {
				if dg.Severity == hcl.DiagError {
					msgs = append(msgs, l.p.Config.Redact.String(dg.Detail))
				}
			}
			if opened != nil {
				_ = opened.Close()
			}
			ls.reason = strings.Join(msgs, "; ")
			return ls
		}
		src, ls.opened = opened, opened
	}
	runner, ok := src.(engine.FixtureRunner)
	if !ok {
		ls.reason = fmt.Sprintf("source %q (type %s) cannot load test fixtures: tests run on the embedded engine, PostgreSQL and MySQL/MariaDB sources", s.Name, s.Type)
		return ls
	}
	ls.runner = runner
	return ls
}

func (l *liveTestSources) close() {
	for _, ls := range l.open {
		if ls.opened != nil {
			_ = ls.opened.Close()
		}
	}
}

func (p *Project) runTest(ctx context.Context, t *config.Test, opts TestOptions, live *liveTestSources) (res TestResult) {
	res = TestResult{Name: t.Name}
	fail := func(format string, args ...any) TestResult {
		res.Problems = append(res.Problems, p.Config.Redact.String(fmt.Sprintf(format, args...)))
		return res
	}
	if t.Sync == nil {
		return fail("the test names no sync")
	}
	s := t.Sync
	res.Sync = s.Name
	src := s.Model.Source
	cfg := p.engineConfig(src.Name, src.Args)
	var source engine.Source
	if src.Type == engine.EmbeddedType {
		res.On = embeddedOn
		fx := engine.EmbeddedFixtures(cfg)
		e := engine.NewEmbedded()
		defer e.Close()
		if diags := fx.Load(e); diags.HasErrors() {
			return fail("loading the source's fixtures: %s", diags.Error())
		}
		if t.Fixtures != "" {
			if diags := fx.In(cfg, t.Fixtures).Load(e); diags.HasErrors() {
				return fail("loading the test's fixtures: %s", diags.Error())
			}
		}
		for _, tbl := range t.Tables {
			cols, rows := tableRows(tbl)
			if err := e.AddTable(tbl.Name, cols, rows); err != nil {
				return fail("table %q: %s", tbl.Name, err)
			}
		}
		source = e
	} else {
		if opts.Offline {
			res.NotRun = fmt.Sprintf("--offline: model %q is on live source %q (%s), and is tested only there, in its own SQL dialect", s.Model.Name, src.Name, src.Type)
			res.Offline = true
			return res
		}
		ls := live.get(ctx, src)
		if ls.reason != "" {
			res.NotRun = ls.reason
			return res
		}
		res.On = ls.runner.Server()
		fx := &engine.LiveFixtures{}
		if t.Fixtures != "" {
			var diags hcl.Diagnostics
			if fx, diags = engine.ReadLiveFixtures(engine.Fixtures{}.In(cfg, t.Fixtures)); diags.HasErrors() {
				return fail("loading the test's fixtures: %s", diags.Error())
			}
		}
		for _, tbl := range t.Tables {
			cols, rows := tableRows(tbl)
			if err := fx.AddTable(tbl.Name, cols, rows, fmt.Sprintf("%s:%d", tbl.Range.Filename, tbl.Range.Start.Line)); err != nil {
				return fail("table %q: %s", tbl.Name, err)
			}
		}
		sc, err := ls.runner.OnFixtures(ctx, fx)
		var ue *engine.UnavailableError
		if errors.As(err, &ue) {
			res.NotRun = p.Config.Redact.String(fmt.Sprintf("source %q: %s", src.Name, err))
			return res
		}
		if err != nil {
			return fail("loading the test's fixtures on %s: %s", res.On, err)
		}
		defer func() {
			if err := sc.Close(); err != nil {
				res.Warnings = append(res.Warnings, p.Config.Redact.String(err.Error()))
			}
		}()
		source = sc
	}
	d, err := DiffSync(ctx, modelSource(s.Model, source), s, nil, Base{})
	if err != nil {
		return fail("%s", err)
	}
	// The decimal fields, whose values are their exact text: a number a
	// test expects is compared with them as a number (sameDecimal). The
	// diff's own columns: the model is not described again.
	decimals := map[string]bool{}
	for _, m := range s.Mapping {
		for _, c := range d.Columns {
			if c.Name == m.Column && c.Type == schema.TypeDecimal {
				decimals[m.Field] = true
			}
		}
	}
	compare(&res, t, s, d, decimals)
	return res
}

// compare adds to res every difference between the test's expectations
// and the diff of its sync.
func compare(res *TestResult, t *config.Test, s *config.Sync, d *reconcile.DiffResult, decimals map[string]bool) {
	if t.ExpectExcluded != nil {
		for _, k := range unionKeys(t.ExpectExcluded, d.ExcludedKeys) {
			want, wok := t.ExpectExcluded[k]
			got, gok := d.ExcludedKeys[k]
			switch {
			case wok && !gok:
				res.Problems = append(res.Problems, fmt.Sprintf("key %q: want excluded by rule %q, got included", k, want))
			case !wok && gok:
				res.Problems = append(res.Problems, fmt.Sprintf("key %q: want included, got excluded by rule %q", k, got))
			case want != got:
				res.Problems = append(res.Problems, fmt.Sprintf("key %q: want excluded by rule %q, got excluded by rule %q", k, want, got))
			}
		}
	}
	sent := map[string]reconcile.Change{}
	if err := d.Plan.Each(func(c *reconcile.Change) error {
		sent[c.Key] = *c
		return nil
	}); err != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("reading the plan: %v", err))
		return
	}
	if t.ExpectSent != nil {
		want := map[string]bool{}
		for _, k := range t.ExpectSent {
			want[k] = true
		}
		var keys []string
		for k := range sent {
			keys = append(keys, k)
		}
		for k := range want {
			if _, ok := sent[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			_, got := sent[k]
			switch {
			case want[k] && !got:
				res.Problems = append(res.Problems, fmt.Sprintf("key %q: want sent, got not sent%s", k, why(d, k)))
			case !want[k] && got:
				res.Problems = append(res.Problems, fmt.Sprintf("key %q: want not sent, got sent", k))
			}
		}
	}
	keys := make([]string, 0, len(t.ExpectRows))
	for k := range t.ExpectRows {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c, ok := sent[k]
		if !ok {
			res.Problems = append(res.Problems, fmt.Sprintf("key %q: want a row sent, got none%s", k, why(d, k)))
			continue
		}
		fields := make([]string, 0, len(t.ExpectRows[k]))
		for f := range t.ExpectRows[k] {
			fields = append(fields, f)
		}
		sort.Strings(fields)
		for _, f := range fields {
			want := reconcile.Canonical(t.ExpectRows[k][f])
			got, ok := c.After[f]
			if !ok {
				res.Problems = append(res.Problems, fmt.Sprintf("key %q: field %q is not mapped by sync %q", k, f, s.Name))
				continue
			}
			if fmt.Sprintf("%#v", want) != fmt.Sprintf("%#v", got) && !(decimals[f] && sameDecimal(want, got)) {
				res.Problems = append(res.Problems, fmt.Sprintf("key %q, field %q: want %s, got %s", k, f, show(want), show(got)))
			}
		}
	}
}

// sameDecimal reports whether want, a number written in a test, is the
// value of got, a decimal's exact text ("12345678901234567891.0", "0.50"):
// a column with one number a float64 would round is a decimal, and its
// other values are its text too, so a test's 0.5 and 1 are compared with
// them as numbers, exactly (a float as the shortest text that gives it
// back, as it was written). Text columns are not: "007" is not 7.
func sameDecimal(want, got any) bool {
	text, ok := got.(string)
	if !ok || !plainDecimalText.MatchString(text) {
		return false
	}
	var w string
	switch x := want.(type) {
	case int64:
		w = strconv.FormatInt(x, 10)
	case float64:
		w = strconv.FormatFloat(x, 'g', -1, 64)
	case json.Number:
		w = string(x)
	default:
		return false
	}
	a, ok1 := new(big.Rat).SetString(w)
	b, ok2 := new(big.Rat).SetString(text)
	return ok1 && ok2 && a.Cmp(b) == 0
}

var plainDecimalText = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)

func why(d *reconcile.DiffResult, key string) string {
	if r, ok := d.ExcludedKeys[key]; ok {
		return fmt.Sprintf(" (excluded by rule %q)", r)
	}
	return " (no such row in the model)"
}

func show(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	if v == nil {
		return "null"
	}
	return fmt.Sprint(v)
}

func unionKeys(a, b map[string]string) []string {
	set := map[string]bool{}
	for k := range a {
		set[k] = true
	}
	for k := range b {
		set[k] = true
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// tableRows turns inline rows into columns (in first-seen order, keys of
// each row sorted) and value rows.
func tableRows(t config.TestTable) ([]string, [][]any) {
	var cols []string
	seen := map[string]bool{}
	for _, r := range t.Rows {
		names := make([]string, 0, len(r))
		for k := range r {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			if !seen[k] {
				seen[k] = true
				cols = append(cols, k)
			}
		}
	}
	rows := make([][]any, len(t.Rows))
	for i, r := range t.Rows {
		row := make([]any, len(cols))
		for j, c := range cols {
			row[j] = r[c]
		}
		rows[i] = row
	}
	return cols, rows
}
