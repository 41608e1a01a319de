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
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/repofs"
	"github.com/backflowhq/backflow/schema"
)

// LoadDir loads the fixtures of folder dir of the file system; see LoadFS.
// Diagnostics name files as dir/name.
func (e *Embedded) LoadDir(dir string, types map[string]map[string]string) hcl.Diagnostics {
	return e.LoadFS(os.DirFS(dir), ".", dir, types)
}

// LoadFS loads every *.csv, *.jsonl and *.sql file of folder dir of fsys
// (dir is an fs.FS path: "." for its root) as tables: the table name is the
// file name without extension; .sql files are run as statements (only
// CREATE TABLE and INSERT … VALUES, see checkFixture). Files load in name
// order; subfolders are ignored; a fixture must be a regular file (or a
// link fsys resolves to one). Reading stays within fsys: to confine
// fixtures to a repository or read them from a git revision, pass an FS
// that does.
//
// types overrides inferred column types: table → column → type name
// (schema.ParseType). A table loaded again replaces the earlier one.
// Problems are diagnostics naming the file as filepath.Join(display, name)
// and the line: display is the folder as the user knows it (the fixtures
// path of the config). Every broken file is reported; the others still
// load.
func (e *Embedded) LoadFS(fsys fs.FS, dir, display string, types map[string]map[string]string) hcl.Diagnostics {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot Read Fixtures",
			Detail:   fmt.Sprintf("The fixtures folder %q cannot be read (%v). Check the source's fixtures path.", display, fsError(err)),
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
		f := fixtureFile{fsys: fsys, path: path.Join(dir, name), shown: filepath.Join(display, name)}
		table := strings.TrimSuffix(name, ext)
		switch ext {
		case ".csv", ".jsonl", ".sql":
		default:
			continue
		}
		if d := f.checkRegular(); d != nil {
			diags = append(diags, d)
			continue
		}
		if ext == ".sql" {
			diags = append(diags, e.loadSQL(f)...)
			continue
		}
		if !validIdentifier(table) {
			diags = append(diags, fileDiag(f.shown, 0, "Invalid Fixture Table Name",
				fmt.Sprintf("The fixture file name %q does not give a valid table name. Rename the file to letters, digits and underscores, not starting with a digit.", name)))
			continue
		}
		loaded[table] = true
		overrides, ds := resolveOverrides(f.shown, types[table])
		if ds.HasErrors() {
			diags = append(diags, ds...)
			continue
		}
		var d hcl.Diagnostics
		if ext == ".csv" {
			d = e.loadCSV(f, table, overrides)
		} else {
			d = e.loadJSONL(f, table, overrides)
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
			Detail:   fmt.Sprintf("Column types are given for table %q, but %s has no %s.csv or %s.jsonl fixture. Remove the entry or add the fixture file.", table, display, table, table),
		})
	}
	return diags
}

// fixtureFile is one fixture: where it is in its FS, and how diagnostics
// name it.
type fixtureFile struct {
	fsys  fs.FS
	path  string
	shown string
}

// checkRegular refuses a fixture that is not a regular file (a FIFO or a
// device could block or never end).
func (f fixtureFile) checkRegular() *hcl.Diagnostic {
	info, err := fs.Stat(f.fsys, f.path)
	if err != nil {
		return fileDiag(f.shown, 0, "Cannot Read Fixture", fmt.Sprintf("The fixture cannot be read (%v).", fsError(err)))
	}
	if !info.Mode().IsRegular() {
		return fileDiag(f.shown, 0, "Fixture Is Not A Regular File", "A fixture must be a regular file. Replace it with one, or remove it from the fixtures folder.")
	}
	return nil
}

func (f fixtureFile) read() ([]byte, *hcl.Diagnostic) {
	data, err := fs.ReadFile(f.fsys, f.path)
	if err != nil {
		return nil, fileDiag(f.shown, 0, "Cannot Read Fixture", fmt.Sprintf("The fixture cannot be read (%v).", fsError(err)))
	}
	return data, nil
}

// fsError drops the path from a file system error: diagnostics name the
// file already, as the user knows it.
func fsError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// fileDiag is an error diagnostic located at a line of a fixture file
// (line 0: the file as a whole, shown at line 1).
func fileDiag(shown string, line int, summary, detail string) *hcl.Diagnostic {
	if line < 1 {
		line = 1
	}
	pos := hcl.Pos{Line: line, Column: 1, Byte: 0}
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   detail,
		Subject:  &hcl.Range{Filename: shown, Start: pos, End: pos},
	}
}

// resolveOverrides parses a table's column type overrides (column → type).
func resolveOverrides(shown string, names map[string]string) (map[string]schema.Type, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	out := make(map[string]schema.Type, len(names))
	for col, name := range names {
		t, ok := schema.ParseType(strings.ToLower(name))
		if !ok {
			diags = append(diags, fileDiag(shown, 0, "Unknown Column Type",
				fmt.Sprintf("Column %q of this fixture is given type %q, which is not a known type. Use one of: %s.", col, name, strings.Join(schema.TypeNames(), ", "))))
			continue
		}
		out[strings.ToLower(col)] = t
	}
	return out, diags
}

// applyOverrides pins the inference of overridden columns and reports
// overrides naming no column of the header.
func applyOverrides(shown string, columns []string, inf []columnInference, overrides map[string]schema.Type) hcl.Diagnostics {
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
		diags = append(diags, fileDiag(shown, 1, "Column Type For Unknown Column",
			fmt.Sprintf("A column type is given for column %q, which this fixture does not have (its columns: %s). Fix the column name or remove the entry.", c, strings.Join(columns, ", "))))
	}
	return diags
}

// loadCSV reads a CSV fixture twice: once to infer column types, once to
// convert and insert, so memory holds only the table's rows.
func (e *Embedded) loadCSV(f fixtureFile, table string, overrides map[string]schema.Type) hcl.Diagnostics {
	shown := f.shown
	var columns []string
	var inf []columnInference
	rowCount := 0
	pass := func(each func(line int, rec []string) *hcl.Diagnostic) hcl.Diagnostics {
		file, err := repofs.OpenStream(f.fsys, f.path)
		if err != nil {
			return hcl.Diagnostics{fileDiag(shown, 0, "Cannot Read Fixture", fmt.Sprintf("The fixture cannot be opened (%v).", fsError(err)))}
		}
		defer file.Close()
		br := bufio.NewReaderSize(file, 4096)
		if err := skipBOM(br); err != nil {
			return hcl.Diagnostics{csvDiag(shown, err)}
		}
		r := newCSVReader(br)
		header, err := r.Read()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return hcl.Diagnostics{fileDiag(shown, 1, "Empty CSV Fixture", "A CSV fixture needs a header row naming its columns. Add one.")}
			}
			return hcl.Diagnostics{csvDiag(shown, err)}
		}
		if columns == nil {
			if len(header) > MaxFixtureColumns {
				return hcl.Diagnostics{tooManyColumns(shown, 1, fmt.Sprintf("The header names %d columns", len(header)))}
			}
			columns = make([]string, len(header))
			for i := range header {
				columns[i] = strings.Clone(strings.TrimSpace(header[i]))
			}
			if err := checkColumns(columns); err != nil {
				return hcl.Diagnostics{fileDiag(shown, 1, "Invalid CSV Header", fmt.Sprintf("The header row is invalid: %v. Give every column a distinct name.", err))}
			}
		}
		for {
			rec, err := r.Read()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return hcl.Diagnostics{csvDiag(shown, err)}
			}
			line := r.Line()
			if len(rec) != len(columns) {
				return hcl.Diagnostics{fileDiag(shown, line, "Ragged CSV Row",
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
	if d := applyOverrides(shown, columns, inf, overrides); d.HasErrors() {
		return d
	}
	if hasOverride(inf) {
		// Decimal overrides are sized from the values: observe them again.
		inf2 := newInference(len(columns))
		applyOverrides(shown, columns, inf2, overrides)
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
	b := newTableBuilder(spec, rowCount)
	rows := 0
	diags = pass(func(line int, rec []string) *hcl.Diagnostic {
		for i, s := range rec {
			if err := b.appendText(i, s); err != nil {
				return valueDiag(shown, line, spec, i, err)
			}
		}
		rows++
		return nil
	})
	if diags.HasErrors() {
		return diags
	}
	if err := e.putTable(context.Background(), b.table(rows)); err != nil {
		return hcl.Diagnostics{fileDiag(shown, 0, "Cannot Load Fixture", fmt.Sprintf("Loading the fixture into the embedded engine failed: %v.", err))}
	}
	return nil
}

// tooManyColumns refuses a fixture wider than MaxFixtureColumns, at the
// line that makes it so, which what describes.
func tooManyColumns(shown string, line int, what string) *hcl.Diagnostic {
	return fileDiag(shown, line, "Too Many Fixture Columns",
		fmt.Sprintf("%s, and a fixture table has at most %d (MySQL's own limit; PostgreSQL's is 1,600): planning a query over a wider one takes too much memory. Split the file into tables a model joins, or keep only the columns the models read.", what, MaxFixtureColumns))
}

func hasOverride(inf []columnInference) bool {
	for i := range inf {
		if inf[i].override != nil {
			return true
		}
	}
	return false
}

func csvDiag(shown string, err error) *hcl.Diagnostic {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fileDiag(shown, pe.Line, "Invalid CSV Fixture",
			fmt.Sprintf("The CSV cannot be parsed: %v. Quote fields that contain quotes, commas or newlines, doubling inner quotes.", pe.Err))
	}
	return fileDiag(shown, 0, "Cannot Read Fixture", fmt.Sprintf("The fixture cannot be read (%v).", err))
}

func valueDiag(shown string, line int, spec *tableSpec, col int, err error) *hcl.Diagnostic {
	return fileDiag(shown, line, "Value Does Not Fit Column Type",
		fmt.Sprintf("In column %q (type %s): %v. Fix the value, or change the column's type in column_types.", spec.columns[col], spec.types[col], err))
}

// loadJSONL reads a JSON-lines fixture: one object per line, columns the
// union of keys in order of first appearance, a missing key NULL.
func (e *Embedded) loadJSONL(f fixtureFile, table string, overrides map[string]schema.Type) hcl.Diagnostics {
	shown := f.shown
	data, d := f.read()
	if d != nil {
		return hcl.Diagnostics{d}
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
		if d := checkJSONText(shown, n+1, line); d != nil {
			return hcl.Diagnostics{d}
		}
		keys, vals, err := parseJSONObject(line)
		if err != nil {
			return hcl.Diagnostics{fileDiag(shown, n+1, "Invalid JSON Line",
				fmt.Sprintf("This line cannot be read as a row (%v). Write one complete JSON object per line, each key once.", err))}
		}
		r := jsonRow{line: n + 1, vals: make(map[int]any, len(keys))}
		for k, key := range keys {
			i, ok := index[key]
			if !ok {
				if len(columns) == MaxFixtureColumns {
					return hcl.Diagnostics{tooManyColumns(shown, n+1, fmt.Sprintf("The key %q is column %d of this fixture", key, len(columns)+1))}
				}
				i = len(columns)
				index[key] = i
				columns = append(columns, key)
			}
			r.vals[i] = vals[k]
		}
		rows = append(rows, r)
	}
	if len(columns) == 0 {
		return hcl.Diagnostics{fileDiag(shown, 1, "Empty JSONL Fixture", "A JSONL fixture needs at least one object with at least one key, to name its columns. Add one.")}
	}
	if err := checkColumns(columns); err != nil {
		return hcl.Diagnostics{fileDiag(shown, rows[0].line, "Invalid JSONL Keys", fmt.Sprintf("The keys cannot be columns: %v. Keys must differ regardless of case.", err))}
	}
	inf := newInference(len(columns))
	if d := applyOverrides(shown, columns, inf, overrides); d.HasErrors() {
		return d
	}
	for _, r := range rows {
		for i, v := range r.vals {
			inf[i].observe(v)
		}
	}
	spec := newSpec(table, columns, inf)
	b := newTableBuilder(spec, len(rows))
	for _, r := range rows {
		for i := range columns {
			v, ok := r.vals[i]
			if !ok {
				b.cols[i].appendNull()
				continue
			}
			if err := b.appendValue(i, v); err != nil {
				return hcl.Diagnostics{valueDiag(shown, r.line, spec, i, err)}
			}
		}
	}
	if err := e.putTable(context.Background(), b.table(len(rows))); err != nil {
		return hcl.Diagnostics{fileDiag(shown, 0, "Cannot Load Fixture", fmt.Sprintf("Loading the fixture into the embedded engine failed: %v.", err))}
	}
	return nil
}

// checkJSONText refuses a JSONL line that encoding/json would read with
// U+FFFD in place of some of its text: bytes that are not UTF-8, and \u
// escapes of half a surrogate pair. Two keys that differ only there would
// otherwise become one, and both rows be dropped as duplicates.
func checkJSONText(shown string, line int, text []byte) *hcl.Diagnostic {
	if !utf8.Valid(text) {
		at := 0
		for at < len(text) {
			r, size := utf8.DecodeRune(text[at:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			at += size
		}
		return fileDiag(shown, line, "Invalid UTF-8 In JSONL Fixture",
			fmt.Sprintf("This line is not valid UTF-8 (byte %d of the line is 0x%02x): JSON text is UTF-8, and the bytes would be read as U+FFFD, merging values that differ only there. Save the file as UTF-8 (for example with iconv -f latin1 -t utf-8), or write binary values as text such as hex or base64.", at+1, text[at]))
	}
	for i := 0; i < len(text); i++ {
		if text[i] != '\\' {
			continue
		}
		if i+1 < len(text) && text[i+1] == 'u' {
			if r, ok := hex4(text, i+2); ok && utf16.IsSurrogate(r) {
				r2, ok2 := rune(0), false
				if i+7 < len(text) && text[i+6] == '\\' && text[i+7] == 'u' {
					r2, ok2 = hex4(text, i+8)
				}
				if r >= 0xdc00 || !ok2 || r2 < 0xdc00 || r2 > 0xdfff {
					return fileDiag(shown, line, "Invalid Escape In JSONL Fixture",
						fmt.Sprintf("The escape %s is half of a UTF-16 surrogate pair, which is no character: it would be read as U+FFFD, merging values that differ only there. Write the character itself, or a complete pair (\\ud83d\\ude00).", text[i:i+6]))
				}
				i += 6 // the pair's second half
			}
		}
		i++ // the escaped character
	}
	return nil
}

// hex4 reads the 4 hex digits of a \u escape at text[at:].
func hex4(text []byte, at int) (rune, bool) {
	if at+4 > len(text) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(text[at:at+4]), 16, 32)
	return rune(n), err == nil
}

// parseJSONObject reads one JSON object, keeping its keys in order. Values
// become nil, string, int64 (integral numbers that fit), jsonNumber (other
// numbers, as written), bool or jsonText (nested objects and arrays, as compact JSON).
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
	if _, err := strconv.ParseFloat(string(raw), 64); err != nil {
		return nil, fmt.Errorf("the number %s is out of range; quote it to load it as text", raw)
	}
	// Kept as written: a float64 may not hold it (12345678901234567891).
	return jsonNumber(raw), nil
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
func (e *Embedded) loadSQL(f fixtureFile) hcl.Diagnostics {
	shown := f.shown
	data, d := f.read()
	if d != nil {
		return hcl.Diagnostics{d}
	}
	// The statements' values may be far larger than their text (REPEAT):
	// the fixture as a whole is bounded like a model query.
	e.mu.Lock()
	limit := e.memoryLimit
	e.mu.Unlock()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	defer watchMemory(limit, &memoryExceeded{limit: limit, fixture: true}, cancel)()
	for _, st := range splitSQL(string(bytes.TrimPrefix(data, utf8BOM))) {
		err := ctx.Err()
		if err == nil {
			err = e.exec(ctx, st.text)
		}
		if err = contextCause(ctx, err); err != nil {
			var r *refusal
			if errors.As(err, &r) {
				return hcl.Diagnostics{fileDiag(shown, st.line, r.summary, r.detail)}
			}
			var m *memoryExceeded
			if errors.As(err, &m) {
				return hcl.Diagnostics{fileDiag(shown, st.line, "SQL Fixture Too Large", "T"+strings.TrimPrefix(m.Error(), "t")+".")}
			}
			return hcl.Diagnostics{fileDiag(shown, st.line, "SQL Fixture Failed",
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
