package config

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/backflowhq/backflow/rules"
)

var (
	modes           = []string{ModeUpsert, ModeUpdate, ModeInsert, ModeAll}
	deleteBehaviors = []string{DeleteNothing, DeleteClear, DeleteDelete}
	cdcKinds        = []string{CDCLocal, CDCWarehouse}
)

// require diagnoses missing arguments that every block of its kind needs.
func (l *loader) require(b *hcl.Block, attrs hcl.Attributes, names ...string) {
	for _, name := range names {
		if _, ok := attrs[name]; !ok && !l.brokenBody(b) {
			l.errorf(b.DefRange, "Missing required argument", "The %s block needs the argument %q.", b.Type, name)
		}
	}
}

func (l *loader) content(b *hcl.Block, schema *hcl.BodySchema) *hcl.BodyContent {
	c, diags := b.Body.Content(schema)
	l.diags = append(l.diags, diags...)
	return c
}

func (l *loader) decodeSource(b *hcl.Block) {
	t := l.decodeFamily(b, l.family(kindSource))
	s := &Source{Name: b.Labels[0], Type: t.typ, Args: t.args, DeclRange: b.DefRange}
	if l.primary(b) {
		l.sources[s.Name] = s
		l.cfg.Sources = append(l.cfg.Sources, s)
	}
}

func (l *loader) decodeModel(b *hcl.Block) {
	m := &Model{Name: b.Labels[0], DeclRange: b.DefRange}
	c := l.content(b, modelSchema)
	l.require(b, c.Attributes, "source", "query", "primary_key")
	if a, ok := c.Attributes["source"]; ok {
		if name, ok := l.ref(a, kindSource); ok {
			m.Source = l.sources[name]
		}
	}
	if a, ok := c.Attributes["query"]; ok {
		m.QueryRange = a.Expr.Range()
		if q, ok := l.str(a, noSecret); ok {
			if strings.TrimSpace(q) == "" {
				l.errorf(a.Expr.Range(), "Empty query", "The query of model %q is empty. Write a SELECT statement, inline or with file(\"models/%s.sql\").", m.Name, m.Name)
			}
			m.Query = q
		}
	}
	if a, ok := c.Attributes["primary_key"]; ok {
		m.PKRange = a.Expr.Range()
		if pk, ok := l.stringList(a); ok {
			l.checkPrimaryKey(a, pk)
			m.PrimaryKey = pk
		}
	}
	if a, ok := c.Attributes["column_types"]; ok {
		arg, _ := modelSpec.Arg("column_types")
		m.ColumnTypes, _ = l.checkedMap(arg, a)
	}
	if l.primary(b) {
		l.models[m.Name] = m
		l.cfg.Models = append(l.cfg.Models, m)
	}
}

func (l *loader) checkPrimaryKey(a *hcl.Attribute, pk []string) {
	if len(pk) == 0 {
		l.errorf(a.Expr.Range(), "Empty primary key", "The primary key must name at least one column of the model, like primary_key = \"id\", or a list of columns for a composite key.")
		return
	}
	seen := map[string]bool{}
	for _, col := range pk {
		switch {
		case strings.TrimSpace(col) == "":
			l.errorf(a.Expr.Range(), "Empty primary key", "A primary key column name is empty. Name a column of the model, like primary_key = \"id\".")
		case seen[col]:
			l.errorf(a.Expr.Range(), "Duplicate primary key column", "The column %q appears twice in the primary key. List each column once.", col)
		}
		seen[col] = true
	}
}

func (l *loader) decodeDestination(b *hcl.Block) {
	t := l.decodeFamily(b, l.family(kindDestination))
	d := &Destination{Name: b.Labels[0], Type: t.typ, Common: t.common, Args: t.args, DeclRange: b.DefRange}
	if l.primary(b) {
		l.destinations[d.Name] = d
		l.cfg.Destinations = append(l.cfg.Destinations, d)
	}
}

func (l *loader) decodeSync(b *hcl.Block) {
	s := &Sync{
		Name:             b.Labels[0],
		Mode:             syncDefaults.String("mode"),
		DeleteBehavior:   syncDefaults.String("delete_behavior"),
		FailureThreshold: syncDefaults.Fraction("failure_threshold"),
		MaxRemovals:      mustLimit(syncDefaults.String("max_removals")),
		LogAccepted:      mustLogAccepted(syncDefaults.String("log_accepted")),
		DeclRange:        b.DefRange,
	}
	c := l.content(b, syncSchema)
	at := c.Attributes
	l.require(b, at, "model", "destination", "object", "key")
	if a, ok := at["model"]; ok {
		if name, ok := l.ref(a, kindModel); ok {
			s.Model = l.models[name]
		}
	}
	if a, ok := at["destination"]; ok {
		if name, ok := l.ref(a, kindDestination); ok {
			s.Destination = l.destinations[name]
		}
	}
	for _, name := range []string{"object", "key"} {
		a, ok := at[name]
		if !ok {
			continue
		}
		v, ok := l.str(a, noSecret)
		if ok && strings.TrimSpace(v) == "" {
			l.errorf(a.Expr.Range(), "Empty "+name, "The argument %q must not be empty: name the destination's %s.", name, map[string]string{"object": "table or object", "key": "field matched to the model's primary key"}[name])
		}
		if name == "object" {
			s.Object = v
		} else {
			s.Key = v
		}
	}
	if a, ok := at["mode"]; ok {
		if v, ok := l.oneOf(a, "Invalid mode", modes); ok {
			s.Mode = v
		}
	}
	if a, ok := at["cdc"]; ok {
		s.CDCRange = a.Expr.Range()
		if v, ok := l.oneOf(a, "Invalid cdc", cdcKinds); ok {
			s.CDC = v
		}
	}
	if a, ok := at["delete_behavior"]; ok {
		s.DeleteRange = a.Expr.Range()
		if v, ok := l.oneOf(a, "Invalid delete behavior", deleteBehaviors); ok {
			s.DeleteBehavior = v
		}
	}
	if a, ok := at["failure_threshold"]; ok {
		if v, ok := l.percent(a); ok {
			s.FailureThreshold = v
		}
	}
	if a, ok := at["log_accepted"]; ok {
		if v, ok := l.str(a, noSecret); ok {
			if n, ok := parseLogAccepted(v); ok {
				s.LogAccepted = n
			} else {
				hint := map[string]string{"true": ` (for every accepted record, write "all")`, "false": ` (for none, write "none")`}[v]
				l.errorf(a.Expr.Range(), "Invalid log_accepted", "The argument \"log_accepted\" must be \"all\", \"none\" or a number of records, like 1000; %q is none of these%s.", v, hint)
			}
		}
	}
	if a, ok := at["max_removals"]; ok {
		if v, ok := l.limit(a); ok {
			s.MaxRemovals = v
		}
	}
	if a, ok := at["mapping"]; ok {
		s.MappingRange = a.Expr.Range()
		es, _ := l.entries(a)
		for _, e := range es {
			col, ok := l.exprString(e.Value, fmt.Sprintf("The mapping of %q (a model column name)", e.Key), e.Key)
			if !ok {
				continue
			}
			if strings.TrimSpace(col) == "" {
				l.errorf(e.Value.Range(), "Empty column name", "The mapping of %q names no column. Write the model column to send, like %s = %q.", e.Key, e.Key, e.Key)
				continue
			}
			s.Mapping = append(s.Mapping, Field{Field: e.Key, Column: col, Range: e.Value.Range()})
		}
		sort.Slice(s.Mapping, func(i, j int) bool { return s.Mapping[i].Field < s.Mapping[j].Field })
	}
	if a, ok := at["sensitive_fields"]; ok {
		l.sensitiveFields(a, s)
	}
	if a, ok := at["redact_values"]; ok {
		s.RedactValues, _ = l.boolean(a)
	}
	if a, ok := at["clear_fields"]; ok {
		s.DeleteRange = a.Expr.Range()
		l.clearFields(a, s)
	}
	rulesSeen := map[string]hcl.Range{}
	for _, eb := range c.Blocks {
		name := eb.Labels[0]
		if first, dup := rulesSeen[name]; dup {
			l.errorf(eb.DefRange, "Duplicate exclude rule", "The sync already has an exclude rule named %q at line %d. Rule names must be unique within a sync, since excluded rows are counted by rule.", name, first.Start.Line)
			continue
		}
		rulesSeen[name] = eb.DefRange
		if r, ok := l.decodeExclude(eb); ok {
			s.Excludes = append(s.Excludes, r)
		}
	}
	if l.primary(b) {
		l.syncs[s.Name] = s
		l.cfg.Syncs = append(l.cfg.Syncs, s)
	}
}

func (l *loader) decodeExclude(b *hcl.Block) (rules.Rule, bool) {
	r := rules.Rule{Name: b.Labels[0]}
	at := l.content(b, excludeSchema).Attributes
	l.require(b, at, "when")
	ok := true
	if a, has := at["reason"]; has {
		r.Reason, ok = l.str(a, noSecret)
	}
	a, has := at["when"]
	if !has {
		return r, false
	}
	r.Range = a.Expr.Range()
	if f := l.cfg.Files[r.Range.Filename]; f != nil && r.Range.End.Byte <= len(f.Bytes) {
		r.Raw = append([]byte(nil), f.Bytes[r.Range.Start.Byte:r.Range.End.Byte]...)
	}
	var whenOK bool
	r.Expr, whenOK = l.str(a, noSecret)
	if whenOK && strings.TrimSpace(r.Expr) == "" {
		l.errorf(a.Expr.Range(), "Empty rule", "The condition of exclude rule %q is empty. Write a CEL expression over row, like \"row.email == null\".", r.Name)
		whenOK = false
	}
	return r, ok && whenOK
}

func (l *loader) decodeTest(b *hcl.Block) {
	t := &Test{Name: b.Labels[0], DeclRange: b.DefRange}
	c := l.content(b, testSchema)
	at := c.Attributes
	l.require(b, at, "sync")
	if a, ok := at["sync"]; ok {
		if name, ok := l.ref(a, kindSync); ok {
			t.Sync = l.syncs[name]
		}
	}
	if a, ok := at["fixtures"]; ok {
		if t.Fixtures, ok = l.str(a, noSecret); ok && t.Fixtures != "" {
			t.Fixtures = l.folder(a.Expr.Range(), "fixtures", t.Fixtures)
		}
	}
	tables := map[string]hcl.Range{}
	for _, tb := range c.Blocks {
		name := tb.Labels[0]
		if first, dup := tables[name]; dup {
			l.errorf(tb.DefRange, "Duplicate table block", "The test already sets table %q at line %d. Put all its rows in one block.", name, first.Start.Line)
			continue
		}
		tables[name] = tb.DefRange
		tt := TestTable{Name: name, Range: tb.DefRange}
		ta := l.content(tb, testTableSchema).Attributes
		l.require(tb, ta, "rows")
		if a, ok := ta["rows"]; ok {
			tt.Rows, _ = l.rows(a)
		}
		t.Tables = append(t.Tables, tt)
	}
	if a, ok := at["expect_excluded"]; ok {
		l.expectExcluded(a, t)
	}
	if a, ok := at["expect_sent"]; ok {
		l.expectSent(a, t)
	}
	if a, ok := at["expect_rows"]; ok {
		l.expectRows(a, t)
	}
	if l.primary(b) {
		l.cfg.Tests = append(l.cfg.Tests, t)
	}
}

// rows reads a list of objects whose attributes are primitive values.
func (l *loader) rows(a *hcl.Attribute) ([]map[string]any, bool) {
	val, _, ok := l.eval(a, noSecret)
	if !ok {
		return nil, false
	}
	if !isList(val.Type()) {
		l.errorf(a.Expr.Range(), "Invalid value type", "The argument \"rows\" must be a list of objects, like [{ id = 1, email = \"a@example.com\" }], not %s.", typeName(val.Type()))
		return nil, false
	}
	out := []map[string]any{}
	i := 0
	for it := val.ElementIterator(); it.Next(); i++ {
		_, row := it.Element()
		fields, ok := l.object(a.Expr.Range(), row, fmt.Sprintf("row %d", i+1))
		if !ok {
			return nil, false
		}
		out = append(out, fields)
	}
	return out, true
}

// object converts an object of primitive values; what names it in messages.
func (l *loader) object(rng hcl.Range, v cty.Value, what string) (map[string]any, bool) {
	if v.IsNull() || !(v.Type().IsObjectType() || v.Type().IsMapType()) {
		l.errorf(rng, "Invalid value type", "%s must be an object, like { id = 1, email = \"a@example.com\" }, not %s.", upperFirst(what), typeName(v.Type()))
		return nil, false
	}
	out := map[string]any{}
	for it := v.ElementIterator(); it.Next(); {
		k, fv := it.Element()
		gv, ok := goValue(fv)
		if !ok {
			l.errorf(rng, "Invalid row value", "The value of %q in %s is %s; only strings, numbers, bools and null are allowed.", k.AsString(), what, typeName(fv.Type()))
			return nil, false
		}
		out[k.AsString()] = gv
	}
	return out, true
}

func (l *loader) expectExcluded(a *hcl.Attribute, t *Test) {
	es, _ := l.entries(a)
	t.ExpectExcluded = map[string]string{}
	var ruleNames []string
	if t.Sync != nil {
		for _, r := range t.Sync.Excludes {
			ruleNames = append(ruleNames, r.Name)
		}
	}
	for _, e := range es {
		rule, ok := l.exprString(e.Value, fmt.Sprintf("The rule expected to exclude key %q", e.Key), e.Key)
		if !ok {
			continue
		}
		if t.Sync != nil && !contains(ruleNames, rule) {
			hint := didYouMean(rule, ruleNames)
			if hint == "" {
				hint = fmt.Sprintf(" Its rules are %s.", quoteList(ruleNames, "and"))
				if len(ruleNames) == 0 {
					hint = " It has no exclude blocks."
				}
			}
			l.errorf(e.Value.Range(), "Reference to undeclared rule", "The sync %q has no exclude rule named %q.%s", t.Sync.Name, rule, hint)
			continue
		}
		t.ExpectExcluded[e.Key] = rule
	}
}

func (l *loader) expectSent(a *hcl.Attribute, t *Test) {
	val, _, ok := l.eval(a, noSecret)
	if !ok {
		return
	}
	if !isList(val.Type()) {
		l.errorf(a.Expr.Range(), "Invalid value type", "The argument \"expect_sent\" must be a list of keys, like [\"1\", \"3\"], not %s.", typeName(val.Type()))
		return
	}
	t.ExpectSent = []string{}
	for it := val.ElementIterator(); it.Next(); {
		_, v := it.Element()
		k, ok := keyString(v)
		if !ok {
			what := typeName(v.Type())
			if v.IsNull() {
				what = "null"
			}
			l.errorf(a.Expr.Range(), "Invalid value type", "The keys of \"expect_sent\" must be strings or numbers, not %s.", what)
			t.ExpectSent = nil
			return
		}
		t.ExpectSent = append(t.ExpectSent, k)
	}
}

func (l *loader) expectRows(a *hcl.Attribute, t *Test) {
	val, _, ok := l.eval(a, noSecret)
	if !ok {
		return
	}
	if !(val.Type().IsObjectType() || val.Type().IsMapType()) {
		l.errorf(a.Expr.Range(), "Invalid value type", "The argument \"expect_rows\" must map keys to fields, like { \"1\" = { email = \"a@example.com\" } }, not %s.", typeName(val.Type()))
		return
	}
	t.ExpectRows = map[string]map[string]any{}
	for it := val.ElementIterator(); it.Next(); {
		k, v := it.Element()
		fields, ok := l.object(a.Expr.Range(), v, fmt.Sprintf("the expected row of key %q", k.AsString()))
		if !ok {
			continue
		}
		t.ExpectRows[k.AsString()] = fields
	}
}

func isList(t cty.Type) bool { return t.IsListType() || t.IsTupleType() || t.IsSetType() }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func plural(kind string) string { return kind + "s" }

// article returns the indefinite article for word.
func article(word string) string {
	if word == "http" || word != "" && strings.ContainsRune("aeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// clearFields reads a sync's clear_fields: mapped fields only, and only with
// delete_behavior = "clear".
func (l *loader) clearFields(a *hcl.Attribute, s *Sync) {
	list, ok := l.stringList(a)
	if !ok {
		return
	}
	if s.DeleteBehavior != DeleteClear {
		l.errorf(a.Expr.Range(), "Clear fields without clears", "The argument \"clear_fields\" only applies with delete_behavior = \"clear\"; this sync's is %q. Remove it, or set delete_behavior = \"clear\".", s.DeleteBehavior)
		return
	}
	mapped := map[string]bool{}
	var names []string
	for _, f := range s.Mapping {
		mapped[f.Field] = true
		names = append(names, f.Field)
	}
	s.ClearFields = []string{}
	for _, f := range list {
		if !mapped[f] {
			l.errorf(a.Expr.Range(), "Field not mapped", "The sync clears %q, which its mapping does not name; a clear only resets mapped fields (%s).%s", f, quoteList(names, "and"), didYouMean(f, names))
			continue
		}
		s.ClearFields = append(s.ClearFields, f)
	}
}

// parseLogAccepted reads log_accepted: "all" is -1, "none" 0.
func parseLogAccepted(s string) (int, bool) {
	switch s {
	case "all":
		return -1, true
	case "none":
		return 0, true
	}
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, false // digits only: Atoi also takes "+5"
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

func mustLogAccepted(s string) int {
	n, ok := parseLogAccepted(s)
	if !ok {
		panic("config: bad default log_accepted " + s)
	}
	return n
}

// sensitiveFields reads a sync's sensitive_fields: each a mapped field,
// once, and not the key field, whose values identify records wherever a
// plan shows them.
func (l *loader) sensitiveFields(a *hcl.Attribute, s *Sync) {
	names, ok := l.stringList(a)
	if !ok {
		return
	}
	mapped := make([]string, len(s.Mapping))
	for i, f := range s.Mapping {
		mapped[i] = f.Field
	}
	seen := map[string]bool{}
	for _, n := range names {
		switch {
		case seen[n]:
			l.errorf(a.Expr.Range(), "Duplicate sensitive field", "The field %q is listed twice in sensitive_fields. List each field once.", n)
		case n == s.Key && s.Key != "":
			l.errorf(a.Expr.Range(), "Key field cannot be masked", "The field %q is the sync's key: keys identify records in plans, run logs and the failure index, and are always shown. Key the sync on a column that is not sensitive (an id), or remove %q from sensitive_fields.", n, n)
		case !slices.Contains(mapped, n):
			what := "the sync maps no fields"
			if len(mapped) > 0 {
				what = "mapped fields: " + quoteList(mapped, "and")
			}
			l.errorf(a.Expr.Range(), "Sensitive field not mapped", "sensitive_fields names %q, which the sync's mapping does not send (%s). List fields of the mapping.%s", n, what, didYouMean(n, mapped))
		default:
			s.SensitiveFields = append(s.SensitiveFields, n)
		}
		seen[n] = true
	}
}
