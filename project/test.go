package project

import (
	"context"
	"fmt"
	"sort"

	"github.com/backflowhq/backflow/engine"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/reconcile"
)

// TestResult is the outcome of one `test` block.
type TestResult struct {
	Name string
	Sync string
	// Problems lists each difference between expectation and result; empty
	// when the test passed.
	Problems []string
}

// Passed reports whether the test passed.
func (r TestResult) Passed() bool { return len(r.Problems) == 0 }

// RunTests runs every test block offline: each gets a fresh embedded engine
// loaded with the source's fixtures, the test's fixture folder and its
// inline tables, and the sync is diffed as on a first run.
func (p *Project) RunTests(ctx context.Context) []TestResult {
	var out []TestResult
	for _, t := range p.Config.Tests {
		out = append(out, p.runTest(ctx, t))
	}
	return out
}

func (p *Project) runTest(ctx context.Context, t *config.Test) TestResult {
	res := TestResult{Name: t.Name}
	fail := func(format string, args ...any) TestResult {
		res.Problems = append(res.Problems, fmt.Sprintf(format, args...))
		return res
	}
	if t.Sync == nil {
		return fail("the test names no sync")
	}
	s := t.Sync
	res.Sync = s.Name
	src := s.Model.Source
	cfg := p.engineConfig(src.Name, src.Args)
	fx := engine.EmbeddedFixtures(cfg)
	e := engine.NewEmbedded()
	defer e.Close()
	if src.Type == "embedded" {
		if diags := fx.Load(e); diags.HasErrors() {
			return fail("loading the source's fixtures: %s", diags.Error())
		}
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
	d, err := DiffSync(ctx, e, s, nil, Base{})
	if err != nil {
		return fail("%s", err)
	}

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
	for _, c := range d.Plan.Changes {
		sent[c.Key] = c
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
			if fmt.Sprintf("%#v", want) != fmt.Sprintf("%#v", got) {
				res.Problems = append(res.Problems, fmt.Sprintf("key %q, field %q: want %s, got %s", k, f, show(want), show(got)))
			}
		}
	}
	return res
}

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
