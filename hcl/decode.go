package config

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/backflowhq/backflow/rules"
	"github.com/backflowhq/backflow/schema"
)

var (
	sourceTypes      = []string{"embedded", "postgres", "mysql"}
	destinationTypes = []string{"sqlite", "postgres", "mysql", "http", "file"}
	modes            = []string{ModeUpsert, ModeUpdate, ModeInsert, ModeAll}
	deleteBehaviors  = []string{DeleteNothing, DeleteClear, DeleteDelete}
	portableTypes    = []string{"string", "int", "float", "bool", "bytes", "timestamp", "decimal", "json"}
)

// typedArgs describes the arguments of a block that depend on its `type`.
type typedArgs struct {
	kind     string
	only     map[string][]string // argument → the types it applies to
	required map[string][]string // type → the arguments it needs
}

var argExamples = map[string]string{
	"fixtures": `fixtures = "data"`,
	"dsn":      `dsn = env("DATABASE_URL")`,
	"path":     `path = "crm.db"`,
	"url":      `url = "https://api.example.com/records"`,
}

// example shows how to set argument name for a block of type typ.
func example(typ, name string) string {
	if typ == "file" && name == "path" {
		return `path = "contacts.jsonl"`
	}
	return argExamples[name]
}

var sourceArgs = typedArgs{
	kind:     kindSource,
	only:     map[string][]string{"fixtures": {"embedded"}, "dsn": {"postgres", "mysql"}},
	required: map[string][]string{"embedded": {"fixtures"}, "postgres": {"dsn"}, "mysql": {"dsn"}},
}

var destinationArgs = typedArgs{
	kind: kindDestination,
	only: map[string][]string{
		"path": {"sqlite", "file"}, "dsn": {"postgres", "mysql"},
		"url": {"http"}, "headers": {"http"}, "init_sql": {"sqlite", "postgres", "mysql"},
	},
	required: map[string][]string{"sqlite": {"path"}, "file": {"path"}, "postgres": {"dsn"}, "mysql": {"dsn"}, "http": {"url"}},
}

// checkTyped diagnoses arguments set for a type they do not apply to, and
// arguments the type requires but are missing.
func (l *loader) checkTyped(t typedArgs, typ string, b *hcl.Block, attrs hcl.Attributes) {
	for name, types := range t.only {
		if a, ok := attrs[name]; ok && !contains(types, typ) {
			l.errorf(a.NameRange, "Argument not used by this type", "The argument %q only applies to %s of type %s; remove it from this %s %s.", name, plural(t.kind), quoteList(types, "or"), typ, t.kind)
		}
	}
	for _, name := range t.required[typ] {
		if _, ok := attrs[name]; !ok && !l.brokenBody(b) {
			l.errorf(b.DefRange, "Missing required argument", "%s %s %s needs the argument %q, like %s.", upperFirst(article(typ)), typ, t.kind, name, example(typ, name))
		}
	}
}

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

func attrs(names ...string) []hcl.AttributeSchema {
	out := make([]hcl.AttributeSchema, len(names))
	for i, n := range names {
		out[i] = hcl.AttributeSchema{Name: n}
	}
	return out
}

var (
	sourceSchema = &hcl.BodySchema{
		Attributes: attrs("type", "fixtures", "dsn"),
		Blocks:     []hcl.BlockHeaderSchema{{Type: "table", LabelNames: []string{"name"}}},
	}
	sourceTableSchema = &hcl.BodySchema{Attributes: attrs("column_types")}
	modelSchema       = &hcl.BodySchema{Attributes: attrs("source", "query", "primary_key")}
	destinationSchema = &hcl.BodySchema{
		Attributes: attrs("type", "path", "dsn", "url", "init_sql", "headers", "timeout", "batch_size", "split_retries"),
		Blocks:     []hcl.BlockHeaderSchema{{Type: "retry"}},
	}
	retrySchema = &hcl.BodySchema{Attributes: attrs("max_attempts", "initial_backoff", "max_backoff", "max_elapsed")}
	syncSchema  = &hcl.BodySchema{
		Attributes: attrs("model", "destination", "object", "key", "mode", "delete_behavior", "failure_threshold", "mapping"),
		Blocks:     []hcl.BlockHeaderSchema{{Type: "exclude", LabelNames: []string{"name"}}},
	}
	excludeSchema = &hcl.BodySchema{Attributes: attrs("when", "reason")}
	testSchema    = &hcl.BodySchema{
		Attributes: attrs("sync", "fixtures", "expect_excluded", "expect_sent", "expect_rows"),
		Blocks:     []hcl.BlockHeaderSchema{{Type: "table", LabelNames: []string{"name"}}},
	}
	testTableSchema = &hcl.BodySchema{Attributes: attrs("rows")}
)

func (l *loader) decodeSource(b *hcl.Block) {
	s := &Source{Name: b.Labels[0], DeclRange: b.DefRange}
	c := l.content(b, sourceSchema)
	l.require(b, c.Attributes, "type")
	if a, ok := c.Attributes["type"]; ok {
		if typ, ok := l.oneOf(a, "Unknown source type", sourceTypes); ok {
			s.Type = typ
			l.checkTyped(sourceArgs, typ, b, c.Attributes)
		}
	}
	if a, ok := c.Attributes["fixtures"]; ok {
		var ok bool
		if s.Fixtures, ok = l.str(a, noSecret); ok && strings.TrimSpace(s.Fixtures) == "" {
			l.errorf(a.Expr.Range(), "Empty fixtures path", "The argument \"fixtures\" must name the folder of fixture files, relative to the config folder, like fixtures = \"data\" (or \".\" for the config folder itself).")
			s.Fixtures = ""
		} else if ok {
			s.Fixtures = l.folder(a.Expr.Range(), "fixtures", s.Fixtures)
		}
	}
	if a, ok := c.Attributes["dsn"]; ok {
		if v, ok := l.str(a, allowSecret); ok {
			s.DSN = NewSecret(v)
		}
	}
	tables := map[string]hcl.Range{}
	for _, tb := range c.Blocks {
		name := tb.Labels[0]
		if first, dup := tables[name]; dup {
			l.errorf(tb.DefRange, "Duplicate table block", "The table %q is already configured at line %d of this source. Merge the two blocks.", name, first.Start.Line)
			continue
		}
		tables[name] = tb.DefRange
		tc := l.content(tb, sourceTableSchema)
		l.require(tb, tc.Attributes, "column_types")
		a, ok := tc.Attributes["column_types"]
		if !ok {
			continue
		}
		es, _ := l.entries(a)
		for _, e := range es {
			typ, ok := l.exprString(e.Value, fmt.Sprintf("The column type of %q", e.Key), e.Key)
			if !ok {
				continue
			}
			if _, ok := schema.ParseType(typ); !ok {
				l.errorf(e.Value.Range(), "Unknown column type", "%q is not a column type. Use %s (or a common SQL spelling such as bigint or varchar).%s", typ, quoteList(portableTypes, "or"), didYouMean(typ, schema.TypeNames()))
				continue
			}
			if s.ColumnTypes == nil {
				s.ColumnTypes = map[string]map[string]string{}
			}
			if s.ColumnTypes[name] == nil {
				s.ColumnTypes[name] = map[string]string{}
			}
			s.ColumnTypes[name][e.Key] = typ
		}
	}
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
	d := &Destination{
		Name:      b.Labels[0],
		Timeout:   30 * time.Second,
		BatchSize: 100,
		Retry:     Retry{MaxAttempts: 5, InitialBackoff: 200 * time.Millisecond, MaxBackoff: 30 * time.Second},
		DeclRange: b.DefRange,
	}
	c := l.content(b, destinationSchema)
	l.require(b, c.Attributes, "type")
	at := c.Attributes
	if a, ok := at["type"]; ok {
		if typ, ok := l.oneOf(a, "Unknown destination type", destinationTypes); ok {
			d.Type = typ
			l.checkTyped(destinationArgs, typ, b, at)
		}
	}
	if a, ok := at["path"]; ok {
		d.Path, _ = l.str(a, allowSecret)
	}
	if a, ok := at["dsn"]; ok {
		if v, ok := l.str(a, allowSecret); ok {
			d.DSN = NewSecret(v)
		}
	}
	if a, ok := at["url"]; ok {
		d.URL, _ = l.str(a, allowSecret)
	}
	if a, ok := at["init_sql"]; ok {
		d.InitSQL, _ = l.str(a, noSecret)
	}
	if a, ok := at["headers"]; ok {
		if m, ok := l.stringMap(a, allowSecret); ok {
			d.Headers = map[string]Secret{}
			for k, v := range m {
				d.Headers[k] = NewSecret(v)
			}
		}
	}
	if a, ok := at["timeout"]; ok {
		if v, ok := l.duration(a); ok {
			d.Timeout = v
		}
	}
	if a, ok := at["batch_size"]; ok {
		if v, ok := l.integer(a, 1); ok {
			d.BatchSize = v
		}
	}
	if a, ok := at["split_retries"]; ok {
		d.SplitRetries, _ = l.boolean(a)
	}
	for i, rb := range c.Blocks {
		if i > 0 {
			l.errorf(rb.DefRange, "Duplicate retry block", "A destination has at most one retry block; the first is at line %d. Merge them.", c.Blocks[0].DefRange.Start.Line)
			continue
		}
		l.decodeRetry(rb, &d.Retry)
	}
	if l.primary(b) {
		l.destinations[d.Name] = d
		l.cfg.Destinations = append(l.cfg.Destinations, d)
	}
}

func (l *loader) decodeRetry(b *hcl.Block, r *Retry) {
	at := l.content(b, retrySchema).Attributes
	if a, ok := at["max_attempts"]; ok {
		if v, ok := l.integer(a, 1); ok {
			r.MaxAttempts = v
		}
	}
	initialOK, maxOK := true, true
	if a, ok := at["initial_backoff"]; ok {
		r.InitialBackoff, initialOK = l.duration(a)
	}
	if a, ok := at["max_backoff"]; ok {
		r.MaxBackoff, maxOK = l.duration(a)
	}
	if a, ok := at["max_elapsed"]; ok {
		r.MaxElapsed, _ = l.duration(a)
	}
	if initialOK && maxOK && r.InitialBackoff > r.MaxBackoff {
		rng := b.DefRange
		if a, ok := at["max_backoff"]; ok {
			rng = a.Expr.Range()
		} else if a, ok := at["initial_backoff"]; ok {
			rng = a.Expr.Range()
		}
		l.errorf(rng, "Invalid backoff", "The initial backoff (%s) is longer than the maximum backoff (%s). Raise max_backoff or lower initial_backoff.", r.InitialBackoff, r.MaxBackoff)
	}
}

func (l *loader) decodeSync(b *hcl.Block) {
	s := &Sync{
		Name:             b.Labels[0],
		Mode:             ModeUpsert,
		DeleteBehavior:   DeleteNothing,
		FailureThreshold: 1,
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
	if a, ok := at["delete_behavior"]; ok {
		if v, ok := l.oneOf(a, "Invalid delete behavior", deleteBehaviors); ok {
			s.DeleteBehavior = v
		}
	}
	if a, ok := at["failure_threshold"]; ok {
		if v, ok := l.percent(a); ok {
			s.FailureThreshold = v
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
