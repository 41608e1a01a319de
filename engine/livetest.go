package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/schema"
)

// EmbeddedType is the source type of the embedded engine; every other
// built-in type is a live database.
const EmbeddedType = "embedded"

// FixtureRunner is a live source that can run a test's model on fixtures
// in its own SQL dialect: the fixtures go into a scratch schema of its
// server, never into the tables the model reads in production.
type FixtureRunner interface {
	Source
	// Server names the server for messages: "PostgreSQL at host:port".
	Server() string
	// OnFixtures loads fx into scratch schemas and returns a Source whose
	// queries run there (see Scratch). An *UnavailableError says the
	// server could not be used at all; any other error is about the
	// fixtures.
	OnFixtures(ctx context.Context, fx *LiveFixtures) (Scratch, error)
}

// Scratch is a source over fixtures loaded into scratch schemas
// (PostgreSQL) or databases (MySQL), named backflow_test_<time>_<random>
// (and that name followed by _<schema> for schema-qualified tables). A
// model's unqualified table names resolve there; a schema-qualified name
// whose schema and table are a fixture's is rewritten to the scratch
// schema before the query is sent (nothing else in the query changes). A
// model that reads a table the test gives no rows fails rather than read
// the production table. Close drops the scratch schemas.
type Scratch interface {
	Source
	// Schemas lists the scratch schemas or databases, the main one first.
	Schemas() []string
}

// UnavailableError says that a test could not run on a live source: the
// server cannot be reached, or it refuses to create a scratch schema. The
// test's fixtures and model are not at fault.
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string { return e.Err.Error() }
func (e *UnavailableError) Unwrap() error { return e.Err }

// scratchPrefix starts every scratch schema's name.
const scratchPrefix = "backflow_test_"

// newScratchName returns backflow_test_<unix time, base 36>_<8 hex
// digits>: unique, and telling its age to a later sweep.
func newScratchName(now time.Time) string {
	var b [4]byte
	scratchRandom(b[:])
	return scratchPrefix + strconv.FormatInt(now.Unix(), 36) + "_" + hex.EncodeToString(b[:])
}

// scratchRandom fills the random part of scratch names (tests make it
// known).
var scratchRandom = func(b []byte) { _, _ = rand.Read(b) }

// scratchCreated reads the creation time from a scratch schema's name.
func scratchCreated(name string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(name, scratchPrefix)
	if !ok {
		return time.Time{}, false
	}
	stamp, rnd, ok := strings.Cut(rest, "_")
	if !ok || len(rnd) < 8 {
		return time.Time{}, false
	}
	if _, err := hex.DecodeString(rnd[:8]); err != nil || (len(rnd) > 8 && rnd[8] != '_') {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(stamp, 36, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}

// staleScratch is how old a scratch schema left behind (by a process that
// was killed before it could drop it) must be before a later run drops
// it: far longer than any test, so a run in progress elsewhere is never
// disturbed.
const staleScratch = time.Hour

// LiveFixtures are the tables of a test on a live source: CSV, JSONL and
// inline tables typed as the embedded engine infers them, and .sql
// scripts run as they are, in the source's own dialect (to declare column
// types, or load rows any way the dialect allows).
type LiveFixtures struct {
	// Tables load after the scripts: each replaces the rows of a table a
	// script created (keeping its declared columns), or is created with
	// the inferred types.
	Tables  []LiveTable
	Scripts []LiveScript
	index   map[string]int
}

// LiveTable is one fixture table.
type LiveTable struct {
	Schema  string // "" for an unqualified name
	Name    string
	Columns []schema.Column
	Rows    [][]any // values as schema.Rows holds them
	From    string  // the file or block it comes from, for messages
}

// LiveScript is a .sql fixture file.
type LiveScript struct {
	Text  string
	Shown string
}

// splitTableName reads a fixture table name: table or schema.table, each
// part letters, digits and underscores, not starting with a digit.
func splitTableName(name string) (string, string, error) {
	parts := strings.Split(name, ".")
	if len(parts) > 2 || !validIdentifier(parts[len(parts)-1]) || (len(parts) == 2 && !validIdentifier(parts[0])) {
		return "", "", fmt.Errorf("%q is not a table name: write table or schema.table, each part letters, digits and underscores, not starting with a digit", name)
	}
	if len(parts) == 2 {
		return parts[0], parts[1], nil
	}
	return "", parts[0], nil
}

// put adds t, replacing a table of the same name (in any case).
func (f *LiveFixtures) put(t LiveTable) {
	if f.index == nil {
		f.index = map[string]int{}
		for i, old := range f.Tables {
			f.index[strings.ToLower(old.Schema+"."+old.Name)] = i
		}
	}
	k := strings.ToLower(t.Schema + "." + t.Name)
	if i, ok := f.index[k]; ok {
		f.Tables[i] = t
		return
	}
	f.index[k] = len(f.Tables)
	f.Tables = append(f.Tables, t)
}

// AddTable adds (or replaces) a table given as rows of Go values, typed as
// Embedded.AddTable types them. name is table or schema.table.
func (f *LiveFixtures) AddTable(name string, columns []string, rows [][]any, from string) error {
	schemaName, table, err := splitTableName(name)
	if err != nil {
		return err
	}
	e := NewEmbedded()
	defer e.Close()
	if err := e.AddTable("t", columns, rows); err != nil {
		return errors.New(strings.Replace(err.Error(), "table t", "table "+name, 1))
	}
	t, err := readBack(e, "t")
	if err != nil {
		return fmt.Errorf("table %s: %w", name, err)
	}
	t.Schema, t.Name, t.From = schemaName, table, from
	f.put(t)
	return nil
}

// ReadLiveFixtures reads a test's fixtures folder for a live source: each
// *.csv and *.jsonl file is a table named after the file (users.csv, or
// analytics.users.csv for the table analytics.users), typed as the
// embedded engine infers it; each *.sql file is a script run on the
// server in its own dialect (CREATE TABLE and INSERT only).
func ReadLiveFixtures(fx Fixtures) (*LiveFixtures, hcl.Diagnostics) {
	out := &LiveFixtures{}
	if fx.Dir == "" {
		return out, nil
	}
	entries, err := fs.ReadDir(fx.FS, fx.Dir)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot Read Fixtures",
			Detail:   fmt.Sprintf("The fixtures folder %q cannot be read (%v). Check the test's fixtures path.", fx.Display, fsError(err)),
		}}
	}
	var names []string
	for _, ent := range entries {
		if !ent.IsDir() {
			names = append(names, ent.Name())
		}
	}
	sort.Strings(names)
	var diags hcl.Diagnostics
	e := NewEmbedded()
	defer e.Close()
	for i, name := range names {
		ext := filepath.Ext(name)
		if ext != ".csv" && ext != ".jsonl" && ext != ".sql" {
			continue
		}
		f := fixtureFile{fsys: fx.FS, path: path.Join(fx.Dir, name), shown: filepath.Join(fx.Display, name)}
		if d := f.checkRegular(); d != nil {
			diags = append(diags, d)
			continue
		}
		if ext == ".sql" {
			data, d := f.read()
			if d != nil {
				diags = append(diags, d)
				continue
			}
			out.Scripts = append(out.Scripts, LiveScript{Text: string(trimBOM(data)), Shown: f.shown})
			continue
		}
		schemaName, table, err := splitTableName(strings.TrimSuffix(name, ext))
		if err != nil {
			diags = append(diags, fileDiag(f.shown, 0, "Invalid Fixture Table Name",
				fmt.Sprintf("The fixture file name %q does not give a table name. Name it table%s or schema.table%s, with letters, digits and underscores, not starting with a digit.", name, ext, ext)))
			continue
		}
		internal := "t" + strconv.Itoa(i)
		var d hcl.Diagnostics
		if ext == ".csv" {
			d = e.loadCSV(f, internal, nil)
		} else {
			d = e.loadJSONL(f, internal, nil)
		}
		if d.HasErrors() {
			diags = append(diags, d...)
			continue
		}
		t, err := readBack(e, internal)
		if err != nil {
			diags = append(diags, fileDiag(f.shown, 0, "Cannot Load Fixture", fmt.Sprintf("Reading the fixture failed: %v.", err)))
			continue
		}
		t.Schema, t.Name, t.From = schemaName, table, f.shown
		out.put(t)
	}
	return out, diags
}

func trimBOM(b []byte) []byte {
	if len(b) >= 3 && string(b[:3]) == string(utf8BOM) {
		return b[3:]
	}
	return b
}

// readBack reads a table of e as typed rows.
func readBack(e *Embedded, table string) (LiveTable, error) {
	rows, err := e.Query(context.Background(), "SELECT * FROM `"+table+"`")
	if err != nil {
		return LiveTable{}, err
	}
	defer rows.Close()
	t := LiveTable{Columns: append([]schema.Column(nil), rows.Columns()...)}
	for rows.Next() {
		t.Rows = append(t.Rows, append([]any(nil), rows.Row()...))
	}
	return t, rows.Err()
}

// scriptStatement is one statement of a .sql fixture, checked, with its
// table references mapped to the scratch schemas.
type scriptStatement struct {
	at     string // file:line
	text   string // rewritten
	schema string
	table  string
	create bool
}

// planScratch names the scratch schemas of fx and checks and rewrites its
// scripts: every statement must be CREATE TABLE or INSERT, and INSERT may
// only fill a table a script created before it, so a script cannot write
// to any table but the test's own.
func planScratch(lx sqlLexer, fx *LiveFixtures, now time.Time) (*scratchNames, []scriptStatement, error) {
	names := newScratchNames(lx, newScratchName(now))
	for _, t := range fx.Tables {
		names.add(t.Schema, t.Name)
	}
	type parsed struct {
		sqlStatementAt
		shown string
	}
	var all []parsed
	for _, s := range fx.Scripts {
		stmts, err := lx.split(s.Text)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %v", s.Shown, err)
		}
		for _, st := range stmts {
			all = append(all, parsed{st, s.Shown})
		}
	}
	var out []scriptStatement
	for _, p := range all {
		at := fmt.Sprintf("%s:%d", p.shown, p.line)
		schemaName, table, create, err := names.fixtureTarget(p.toks)
		if err == nil {
			err = lx.checkFixtureShape(p.text, p.toks)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %v", at, err)
		}
		if create {
			names.add(schemaName, table)
		}
		out = append(out, scriptStatement{at: at, schema: schemaName, table: table, create: create})
	}
	created := map[string]bool{}
	for i, p := range all {
		st := &out[i]
		k := st.schema + "." + st.table
		if !st.create && !created[k] {
			return nil, nil, fmt.Errorf("%s: INSERT into %s, which no earlier CREATE TABLE of the test's .sql fixtures creates; a fixture script may only fill the test's own tables", st.at, displayName(st.schema, st.table))
		}
		created[k] = true
		st.text = names.rewrite(p.text, p.toks)
	}
	return names, out, nil
}

func displayName(schemaName, table string) string {
	if schemaName == "" {
		return table
	}
	return schemaName + "." + table
}

// fixtureDialect is what loading fixtures needs of a server.
type fixtureDialect struct {
	lx sqlLexer
	// exec runs one statement.
	exec func(ctx context.Context, text string, args ...any) error
	// columnType is the SQL type a fixture column of t is created with.
	columnType func(c schema.Column) string
	// fold is a table or column name as created, so that the model's
	// unquoted names find it.
	fold func(name string) string
	// value converts a value for exec's arguments.
	value func(v any) any
	// placeholder is the i-th (from 1) parameter of a statement.
	placeholder func(i int) string
	// maxParams bounds the parameters of one INSERT.
	maxParams int
}

// load runs the scripts, then creates or refills the tables.
func (d fixtureDialect) load(ctx context.Context, names *scratchNames, stmts []scriptStatement, fx *LiveFixtures, server string) error {
	declared := map[string]bool{}
	for _, st := range stmts {
		if err := d.exec(ctx, st.text); err != nil {
			return fmt.Errorf("%s: %s: %s", st.at, server, names.unmap(err.Error()))
		}
		if st.create {
			declared[st.schema+"."+st.table] = true
		}
	}
	for _, t := range fx.Tables {
		target := d.lx.quote(names.scratch(t.Schema)) + "." + d.lx.quote(d.fold(t.Name))
		cols := make([]string, len(t.Columns))
		for i, c := range t.Columns {
			cols[i] = d.lx.quote(d.fold(c.Name))
		}
		fail := func(err error) error {
			return fmt.Errorf("%s (table %s): %s: %s", t.From, displayName(t.Schema, t.Name), server, names.unmap(err.Error()))
		}
		if declared[strings.ToLower(t.Schema)+"."+strings.ToLower(t.Name)] {
			if err := d.exec(ctx, "DELETE FROM "+target); err != nil {
				return fail(err)
			}
		} else {
			defs := make([]string, len(t.Columns))
			for i, c := range t.Columns {
				defs[i] = cols[i] + " " + d.columnType(c)
			}
			if err := d.exec(ctx, "CREATE TABLE "+target+" ("+strings.Join(defs, ", ")+")"); err != nil {
				return fail(err)
			}
		}
		if len(t.Rows) == 0 {
			continue
		}
		per := max(d.maxParams/len(cols), 1)
		for start := 0; start < len(t.Rows); start += per {
			batch := t.Rows[start:min(start+per, len(t.Rows))]
			var b strings.Builder
			b.WriteString("INSERT INTO " + target + " (" + strings.Join(cols, ", ") + ") VALUES ")
			args := make([]any, 0, len(batch)*len(cols))
			for r, row := range batch {
				if r > 0 {
					b.WriteString(", ")
				}
				b.WriteByte('(')
				for c, v := range row {
					if c > 0 {
						b.WriteString(", ")
					}
					args = append(args, d.value(v))
					b.WriteString(d.placeholder(len(args)))
				}
				b.WriteByte(')')
			}
			if err := d.exec(ctx, b.String(), args...); err != nil {
				return fail(err)
			}
		}
	}
	return nil
}

// systemSchemas are the schemas a model may read besides the test's
// fixtures: the servers' catalogs.
var systemSchemas = map[string]bool{
	"pg_catalog": true, "information_schema": true,
	"mysql": true, "performance_schema": true, "sys": true,
}

// outsideReadsError explains that a model reads tables the test gives no
// rows.
func outsideReadsError(tables []string) error {
	sort.Strings(tables)
	return fmt.Errorf("the model reads %s, which the test gives no rows: a test runs on its fixtures only. Add a table block or fixture file named as the model names the table (table \"schema.table\", or schema.table.csv)",
		strings.Join(tables, ", "))
}
