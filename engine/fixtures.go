package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/schema"
)

// LoadDir loads every *.csv, *.jsonl and *.sql file of dir as tables (the
// table name is the file name without extension; .sql files are run as
// statements). Files load in name order. types overrides inferred column
// types: table → column → type name (schema.ParseType). A table loaded again
// replaces the earlier one. Problems are diagnostics naming the file and
// line; every broken file is reported, and the others still load.
func (e *Embedded) LoadDir(dir string, types map[string]map[string]string) hcl.Diagnostics {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot Read Fixtures",
			Detail:   fmt.Sprintf("The fixtures folder %q cannot be read (%v). Check the source's fixtures path.", dir, err),
		}}
	}
	var diags hcl.Diagnostics
	loaded := make(map[string]bool)
	var names []string
	for _, ent := range entries {
		if !ent.IsDir() {
			names = append(names, ent.Name())
		}
	}
	sort.Strings(names)
	for _, name := range names {
		ext := filepath.Ext(name)
		path := filepath.Join(dir, name)
		table := strings.TrimSuffix(name, ext)
		switch ext {
		case ".csv", ".jsonl":
		case ".sql":
			diags = append(diags, e.loadSQL(path)...)
			continue
		default:
			continue
		}
		if !validIdentifier(table) {
			diags = append(diags, fileDiag(path, 0, "Invalid Fixture Table Name",
				fmt.Sprintf("The fixture file name %q does not give a valid table name. Rename the file to letters, digits and underscores, not starting with a digit.", name)))
			continue
		}
		loaded[table] = true
		overrides, ds := resolveOverrides(path, types[table])
		if ds.HasErrors() {
			diags = append(diags, ds...)
			continue
		}
		var d hcl.Diagnostics
		if ext == ".csv" {
			d = e.loadCSV(path, table, overrides)
		} else {
			d = e.loadJSONL(path, table, overrides)
		}
		diags = append(diags, d...)
	}
	var unknown []string
	for table := range types {
		if !loaded[table] {
			unknown = append(unknown, table)
		}
	}
	sort.Strings(unknown)
	for _, table := range unknown {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Column Types For Unknown Fixture",
			Detail:   fmt.Sprintf("Column types are given for table %q, but %s has no %s.csv or %s.jsonl fixture. Remove the entry or add the fixture file.", table, dir, table, table),
		})
	}
	return diags
}

// fileDiag is an error diagnostic located at a line of a fixture file
// (line 0: the file as a whole, shown at line 1).
func fileDiag(path string, line int, summary, detail string) *hcl.Diagnostic {
	if line < 1 {
		line = 1
	}
	pos := hcl.Pos{Line: line, Column: 1, Byte: 0}
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   detail,
		Subject:  &hcl.Range{Filename: path, Start: pos, End: pos},
	}
}

// resolveOverrides parses a table's column type overrides (column → type).
func resolveOverrides(path string, names map[string]string) (map[string]schema.Type, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	out := make(map[string]schema.Type, len(names))
	for col, name := range names {
		t, ok := schema.ParseType(strings.ToLower(name))
		if !ok {
			diags = append(diags, fileDiag(path, 0, "Unknown Column Type",
				fmt.Sprintf("Column %q of this fixture is given type %q, which is not a known type. Use one of: %s.", col, name, strings.Join(schema.TypeNames(), ", "))))
			continue
		}
		out[strings.ToLower(col)] = t
	}
	return out, diags
}

// applyOverrides pins the inference of overridden columns and reports
// overrides naming no column of the header.
func applyOverrides(path string, columns []string, inf []columnInference, overrides map[string]schema.Type) hcl.Diagnostics {
	used := 0
	for i, c := range columns {
		if t, ok := overrides[strings.ToLower(c)]; ok {
			inf[i].override = &t
			used++
		}
	}
	if used == len(overrides) {
		return nil
	}
	var diags hcl.Diagnostics
	have := make(map[string]bool, len(columns))
	for _, c := range columns {
		have[strings.ToLower(c)] = true
	}
	var missing []string
	for c := range overrides {
		if !have[c] {
			missing = append(missing, c)
		}
	}
	sort.Strings(missing)
	for _, c := range missing {
		diags = append(diags, fileDiag(path, 1, "Column schema.Type For Unknown Column",
			fmt.Sprintf("A column type is given for column %q, which this fixture does not have (its columns: %s). Fix the column name or remove the entry.", c, strings.Join(columns, ", "))))
	}
	return diags
}

// loadCSV reads a CSV fixture twice: once to infer column types, once to
// convert and insert, so memory holds only the table's rows.
func (e *Embedded) loadCSV(path, table string, overrides map[string]schema.Type) hcl.Diagnostics {
	var columns []string
	var inf []columnInference
	rowCount := 0
	pass := func(each func(line int, rec []string) *hcl.Diagnostic) hcl.Diagnostics {
		f, err := os.Open(path)
		if err != nil {
			return hcl.Diagnostics{fileDiag(path, 0, "Cannot Read Fixture", fmt.Sprintf("The fixture cannot be opened (%v).", err))}
		}
		defer f.Close()
		br := bufio.NewReaderSize(f, 1<<16)
		if err := skipBOM(br); err != nil {
			return hcl.Diagnostics{csvDiag(path, err)}
		}
		r := csv.NewReader(br)
		r.FieldsPerRecord = -1
		r.ReuseRecord = true
		header, err := r.Read()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return hcl.Diagnostics{fileDiag(path, 1, "Empty CSV Fixture", "A CSV fixture needs a header row naming its columns. Add one.")}
			}
			return hcl.Diagnostics{csvDiag(path, err)}
		}
		if columns == nil {
			columns = append([]string(nil), header...)
			for i := range columns {
				columns[i] = strings.TrimSpace(columns[i])
			}
			if err := checkColumns(columns); err != nil {
				return hcl.Diagnostics{fileDiag(path, 1, "Invalid CSV Header", fmt.Sprintf("The header row is invalid: %v. Give every column a distinct name.", err))}
			}
		}
		for {
			rec, err := r.Read()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return hcl.Diagnostics{csvDiag(path, err)}
			}
			line, _ := r.FieldPos(0)
			if len(rec) != len(columns) {
				return hcl.Diagnostics{fileDiag(path, line, "Ragged CSV Row",
					fmt.Sprintf("This row has %d fields but the header names %d columns. Give every row one field per column (an empty field is NULL; quote fields that contain commas).", len(rec), len(columns)))}
			}
			if d := each(line, rec); d != nil {
				return hcl.Diagnostics{d}
			}
		}
	}
	diags := pass(func(line int, rec []string) *hcl.Diagnostic {
		if inf == nil {
			inf = newInference(len(columns))
		}
		for i, s := range rec {
			if s != "" {
				inf[i].observeText(s)
			}
		}
		rowCount++
		return nil
	})
	if diags.HasErrors() {
		return diags
	}
	if inf == nil {
		inf = newInference(len(columns))
	}
	if d := applyOverrides(path, columns, inf, overrides); d.HasErrors() {
		return d
	}
	if hasOverride(inf) {
		// Decimal overrides are sized from the values: observe them again.
		inf2 := newInference(len(columns))
		applyOverrides(path, columns, inf2, overrides)
		for i := range inf2 {
			if inf2[i].override == nil {
				inf2[i] = inf[i]
			}
		}
		inf = inf2
		if d := pass(func(_ int, rec []string) *hcl.Diagnostic {
			for i, s := range rec {
				if s != "" && inf[i].override != nil {
					inf[i].observeText(s)
				}
			}
			return nil
		}); d.HasErrors() {
			return d
		}
	}
	spec := newSpec(table, columns, inf)
	rows := make([]sql.Row, 0, rowCount)
	diags = pass(func(line int, rec []string) *hcl.Diagnostic {
		row := make(sql.Row, len(rec))
		for i, s := range rec {
			if s == "" {
				continue
			}
			v, err := spec.convertText(i, s)
			if err != nil {
				return valueDiag(path, line, spec, i, err)
			}
			row[i] = v
		}
		rows = append(rows, row)
		return nil
	})
	if diags.HasErrors() {
		return diags
	}
	if err := e.createTable(context.Background(), spec, rows); err != nil {
		return hcl.Diagnostics{fileDiag(path, 0, "Cannot Load Fixture", fmt.Sprintf("Loading the fixture into the embedded engine failed: %v.", err))}
	}
	return nil
}

func hasOverride(inf []columnInference) bool {
	for i := range inf {
		if inf[i].override != nil {
			return true
		}
	}
	return false
}

func csvDiag(path string, err error) *hcl.Diagnostic {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fileDiag(path, pe.Line, "Invalid CSV Fixture",
			fmt.Sprintf("The CSV cannot be parsed: %v. Quote fields that contain quotes, commas or newlines, doubling inner quotes.", pe.Err))
	}
	return fileDiag(path, 0, "Cannot Read Fixture", fmt.Sprintf("The fixture cannot be read (%v).", err))
}

func valueDiag(path string, line int, spec *tableSpec, col int, err error) *hcl.Diagnostic {
	return fileDiag(path, line, "Value Does Not Fit Column Type",
		fmt.Sprintf("In column %q (type %s): %v. Fix the value, or change the column's type in column_types.", spec.columns[col], spec.types[col], err))
}

// loadJSONL reads a JSON-lines fixture: one object per line, columns the
// union of keys in order of first appearance, a missing key NULL.
func (e *Embedded) loadJSONL(path, table string, overrides map[string]schema.Type) hcl.Diagnostics {
	data, err := os.ReadFile(path)
	if err != nil {
		return hcl.Diagnostics{fileDiag(path, 0, "Cannot Read Fixture", fmt.Sprintf("The fixture cannot be read (%v).", err))}
	}
	data = bytes.TrimPrefix(data, utf8BOM)
	var columns []string
	index := make(map[string]int)
	type jsonRow struct {
		line int
		vals map[int]any
	}
	var rows []jsonRow
	for n, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		keys, vals, err := parseJSONObject(line)
		if err != nil {
			return hcl.Diagnostics{fileDiag(path, n+1, "Invalid JSON Line",
				fmt.Sprintf("This line cannot be read as a row (%v). Write one complete JSON object per line, each key once.", err))}
		}
		r := jsonRow{line: n + 1, vals: make(map[int]any, len(keys))}
		for k, key := range keys {
			i, ok := index[key]
			if !ok {
				i = len(columns)
				index[key] = i
				columns = append(columns, key)
			}
			r.vals[i] = vals[k]
		}
		rows = append(rows, r)
	}
	if len(columns) == 0 {
		return hcl.Diagnostics{fileDiag(path, 1, "Empty JSONL Fixture", "A JSONL fixture needs at least one object with at least one key, to name its columns. Add one.")}
	}
	if err := checkColumns(columns); err != nil {
		return hcl.Diagnostics{fileDiag(path, rows[0].line, "Invalid JSONL Keys", fmt.Sprintf("The keys cannot be columns: %v. Keys must differ regardless of case.", err))}
	}
	inf := newInference(len(columns))
	if d := applyOverrides(path, columns, inf, overrides); d.HasErrors() {
		return d
	}
	for _, r := range rows {
		for i, v := range r.vals {
			inf[i].observe(v)
		}
	}
	spec := newSpec(table, columns, inf)
	values := make([]sql.Row, len(rows))
	for n, r := range rows {
		row := make(sql.Row, len(columns))
		for i, v := range r.vals {
			x, err := spec.convert(i, v)
			if err != nil {
				return hcl.Diagnostics{valueDiag(path, r.line, spec, i, err)}
			}
			row[i] = x
		}
		values[n] = row
	}
	if err := e.createTable(context.Background(), spec, values); err != nil {
		return hcl.Diagnostics{fileDiag(path, 0, "Cannot Load Fixture", fmt.Sprintf("Loading the fixture into the embedded engine failed: %v.", err))}
	}
	return nil
}

// parseJSONObject reads one JSON object, keeping its keys in order. Values
// become nil, string, int64 (integral numbers that fit), float64, bool or
// jsonText (nested objects and arrays, as compact JSON).
func parseJSONObject(line []byte) ([]string, []any, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, errors.New("expected an object")
	}
	var keys []string
	var vals []any
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		key := tok.(string)
		if seen[key] {
			return nil, nil, fmt.Errorf("the key %q appears twice", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, err
		}
		v, err := jsonValue(raw)
		if err != nil {
			return nil, nil, err
		}
		keys = append(keys, key)
		vals = append(vals, v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, err
	}
	if dec.More() {
		return nil, nil, errors.New("unexpected data after the object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, errors.New("unexpected data after the object")
	}
	return keys, vals, nil
}

func jsonValue(raw json.RawMessage) (any, error) {
	raw = bytes.TrimSpace(raw)
	switch raw[0] {
	case '{', '[':
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, err
		}
		return jsonText(buf.String()), nil
	case 'n':
		return nil, nil
	case 't':
		return true, nil
	case 'f':
		return false, nil
	case '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	if i, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return nil, fmt.Errorf("the number %s is out of range; quote it to load it as text", raw)
	}
	return f, nil
}

// utf8BOM is the byte order mark some editors write at the start of a
// UTF-8 file; fixtures skip it rather than read it into the first value.
var utf8BOM = []byte("\xef\xbb\xbf")

// skipBOM consumes a UTF-8 byte order mark at the start of r, if any.
func skipBOM(r *bufio.Reader) error {
	b, err := r.Peek(len(utf8BOM))
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if bytes.Equal(b, utf8BOM) {
		_, err := r.Discard(len(utf8BOM))
		return err
	}
	return nil
}

// loadSQL runs a .sql fixture's statements in order, stopping at the first
// failure. Only CREATE TABLE and INSERT … VALUES are allowed (see
// checkFixture).
func (e *Embedded) loadSQL(path string) hcl.Diagnostics {
	data, err := os.ReadFile(path)
	if err != nil {
		return hcl.Diagnostics{fileDiag(path, 0, "Cannot Read Fixture", fmt.Sprintf("The fixture cannot be read (%v).", err))}
	}
	for _, st := range splitSQL(string(bytes.TrimPrefix(data, utf8BOM))) {
		if err := e.exec(context.Background(), st.text); err != nil {
			var r *refusal
			if errors.As(err, &r) {
				return hcl.Diagnostics{fileDiag(path, st.line, r.summary, r.detail)}
			}
			return hcl.Diagnostics{fileDiag(path, st.line, "SQL Fixture Failed",
				fmt.Sprintf("This statement failed in the embedded engine (MySQL dialect): %v. Fix the statement; note that words such as `plan` are reserved and must be quoted with backticks.", err))}
		}
	}
	return nil
}

// sqlStatement is one statement of a .sql fixture and the line it starts on.
type sqlStatement struct {
	text string
	line int
}

// splitSQL splits a script on semicolons outside quotes and comments.
func splitSQL(src string) []sqlStatement {
	var out []sqlStatement
	line, start, startLine := 1, 0, 0
	flush := func(end int) {
		if t := strings.TrimSpace(src[start:end]); t != "" && !onlyComments(t) {
			out = append(out, sqlStatement{text: t, line: startLine})
		}
	}
	for i := 0; i < len(src); i++ {
		c := src[i]
		if startLine == 0 && !isSpace(c) {
			startLine = line
		}
		switch {
		case c == '\n':
			line++
		case c == '\'' || c == '"' || c == '`':
			for i++; i < len(src) && src[i] != c; i++ {
				if src[i] == '\n' {
					line++
				}
				if src[i] == '\\' && c != '`' && i+1 < len(src) {
					i++
				}
			}
		case c == '#' || (c == '-' && strings.HasPrefix(src[i:], "-- ")):
			for i < len(src) && src[i] != '\n' {
				i++
			}
			if i < len(src) {
				line++
			}
			if strings.TrimSpace(src[start:i]) == "" || onlyComments(strings.TrimSpace(src[start:i])) {
				startLine = 0
			}
		case c == '/' && strings.HasPrefix(src[i:], "/*"):
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				end = len(src) - i - 2
			}
			line += strings.Count(src[i:i+2+end], "\n")
			i += end + 3
		case c == ';':
			flush(i)
			start, startLine = i+1, 0
		}
	}
	flush(len(src))
	return out
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// onlyComments reports whether a trimmed fragment holds nothing but
// line comments.
func onlyComments(s string) bool {
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "--") && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}
