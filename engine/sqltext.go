package engine

import (
	"fmt"
	"sort"
	"strings"
)

// sqlLexer splits SQL text into the tokens a test on a live source needs
// to see: names (to map schema-qualified table references to scratch
// schemas), dots and semicolons. String literals, comments and every
// other character are skipped as the server's own lexer would skip them,
// so a name inside a string or a comment is never taken for a reference.
type sqlLexer struct {
	postgres bool
	// backslash: backslashes escape in '…' strings (MySQL unless
	// NO_BACKSLASH_ESCAPES; PostgreSQL with standard_conforming_strings off).
	backslash bool
	// ansiQuotes: "…" quotes a name, not a string (PostgreSQL; MySQL with
	// ANSI_QUOTES).
	ansiQuotes bool
}

func postgresLexer(standardStrings bool) sqlLexer {
	return sqlLexer{postgres: true, backslash: !standardStrings, ansiQuotes: true}
}

func mysqlLexer(sqlMode string) sqlLexer {
	mode := "," + strings.ToUpper(sqlMode) + ","
	return sqlLexer{backslash: !strings.Contains(mode, ",NO_BACKSLASH_ESCAPES,"), ansiQuotes: strings.Contains(mode, ",ANSI_QUOTES,")}
}

type tokKind uint8

const (
	tokName  tokKind = iota // a word or a quoted name
	tokDot                  // .
	tokSemi                 // ;
	tokOther                // literals, operators, parameters
)

type sqlToken struct {
	kind       tokKind
	start, end int
	// name is what a tokName names: an unquoted word as written (word),
	// a quoted name without its quotes.
	name   string
	quoted bool
}

// word reports whether t is the unquoted keyword kw (case-insensitive).
func (t sqlToken) word(kw string) bool {
	return t.kind == tokName && !t.quoted && strings.EqualFold(t.name, kw)
}

// key is how t's name is matched against a fixture's schema or table
// name (lower case): PostgreSQL folds unquoted names to lower case and
// keeps quoted ones exact; MySQL compares both without regard to case.
func (l sqlLexer) key(t sqlToken) string {
	if l.postgres && t.quoted {
		return t.name
	}
	return strings.ToLower(t.name)
}

// quote quotes a name for the dialect.
func (l sqlLexer) quote(name string) string {
	if l.postgres {
		return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
	}
	return "`" + strings.ReplaceAll(name, "`", "``") + "`"
}

func isNameStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

func isNameByte(c byte) bool { return isNameStart(c) || (c >= '0' && c <= '9') || c == '$' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// lex returns the tokens of src, or an error for an unterminated quote or
// comment (which the server would refuse too).
func (l sqlLexer) lex(src string) ([]sqlToken, error) {
	var toks []sqlToken
	execComment := false // inside MySQL's /*! … */, whose text is SQL
	n := len(src)
	at := func(i int) byte {
		if i < n {
			return src[i]
		}
		return 0
	}
	unterminated := func(what string, start int) error {
		return fmt.Errorf("unterminated %s starting at line %d", what, 1+strings.Count(src[:start], "\n"))
	}
	for i := 0; i < n; {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && at(i+1) == '-' && (l.postgres || at(i+2) <= ' '):
			for i < n && src[i] != '\n' {
				i++
			}
		case c == '#' && !l.postgres:
			for i < n && src[i] != '\n' {
				i++
			}
		case c == '/' && at(i+1) == '*':
			start := i
			if !l.postgres && (at(i+2) == '!' || (at(i+2) == 'M' && at(i+3) == '!')) {
				// An executable comment: its text is SQL for MySQL and
				// MariaDB (after an optional version number).
				i += 3
				if src[i-1] != '!' {
					i++
				}
				for i < n && isDigit(src[i]) {
					i++
				}
				execComment = true
				continue
			}
			if !l.postgres {
				k := strings.Index(src[i+2:], "*/") // MySQL comments do not nest
				if k < 0 {
					return nil, unterminated("comment", start)
				}
				i += k + 4
				continue
			}
			depth := 0
			for i < n {
				if src[i] == '/' && at(i+1) == '*' {
					depth++
					i += 2
				} else if src[i] == '*' && at(i+1) == '/' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
			if depth != 0 {
				return nil, unterminated("comment", start)
			}
		case c == '*' && at(i+1) == '/' && execComment:
			execComment = false
			i += 2
		case c == '\'':
			end, ok := l.skipQuoted(src, i, '\'', l.backslash)
			if !ok {
				return nil, unterminated("string", i)
			}
			toks = append(toks, sqlToken{kind: tokOther, start: i, end: end})
			i = end
		case c == '"' && !l.ansiQuotes:
			end, ok := l.skipQuoted(src, i, '"', l.backslash)
			if !ok {
				return nil, unterminated("string", i)
			}
			toks = append(toks, sqlToken{kind: tokOther, start: i, end: end})
			i = end
		case c == '"' || (c == '`' && !l.postgres):
			end, ok := l.skipQuoted(src, i, c, false)
			if !ok {
				return nil, unterminated("quoted name", i)
			}
			name := strings.ReplaceAll(src[i+1:end-1], string([]byte{c, c}), string(c))
			toks = append(toks, sqlToken{kind: tokName, start: i, end: end, name: name, quoted: true})
			i = end
		case c == '$' && l.postgres:
			// A dollar-quoted string $tag$…$tag$, or a parameter $1.
			j := i + 1
			for j < n && isNameByte(src[j]) && src[j] != '$' {
				j++
			}
			if j < n && src[j] == '$' && (j == i+1 || !isDigit(src[i+1])) {
				tag := src[i : j+1]
				k := strings.Index(src[j+1:], tag)
				if k < 0 {
					return nil, unterminated("dollar-quoted string", i)
				}
				end := j + 1 + k + len(tag)
				toks = append(toks, sqlToken{kind: tokOther, start: i, end: end})
				i = end
				continue
			}
			toks = append(toks, sqlToken{kind: tokOther, start: i, end: j})
			i = max(j, i+1)
		case c == '.' && !isDigit(at(i+1)):
			toks = append(toks, sqlToken{kind: tokDot, start: i, end: i + 1})
			i++
		case c == ';':
			toks = append(toks, sqlToken{kind: tokSemi, start: i, end: i + 1})
			i++
		case isNameStart(c) || (isDigit(c) && !l.postgres && l.mysqlName(src, i)):
			j := i + 1
			for j < n && isNameByte(src[j]) {
				j++
			}
			word := src[i:j]
			if l.postgres && at(j) == '\'' && (strings.EqualFold(word, "e")) {
				// E'…': backslash escapes.
				end, ok := l.skipQuoted(src, j, '\'', true)
				if !ok {
					return nil, unterminated("string", i)
				}
				toks = append(toks, sqlToken{kind: tokOther, start: i, end: end})
				i = end
				continue
			}
			if l.postgres && at(j) == '&' && (at(j+1) == '\'' || at(j+1) == '"') && strings.EqualFold(word, "u") {
				// U&'…' and U&"…": Unicode escapes, quoted as usual.
				q := at(j + 1)
				end, ok := l.skipQuoted(src, j+1, q, false)
				if !ok {
					return nil, unterminated("string", i)
				}
				kind := tokOther
				if q == '"' {
					kind = tokName
				}
				toks = append(toks, sqlToken{kind: kind, start: i, end: end, name: src[j+2 : end-1], quoted: true})
				i = end
				continue
			}
			toks = append(toks, sqlToken{kind: tokName, start: i, end: j, name: word})
			i = j
		case isDigit(c) || c == '.':
			j := i
			for j < n && (isDigit(src[j]) || src[j] == '.') {
				j++
			}
			if j < n && (src[j] == 'e' || src[j] == 'E') {
				j++
				if j < n && (src[j] == '+' || src[j] == '-') {
					j++
				}
				for j < n && isDigit(src[j]) {
					j++
				}
			}
			toks = append(toks, sqlToken{kind: tokOther, start: i, end: j})
			i = j
		default:
			toks = append(toks, sqlToken{kind: tokOther, start: i, end: i + 1})
			i++
		}
	}
	return toks, nil
}

// mysqlName reports whether the word starting with a digit at i is a MySQL
// name (1abc) rather than a number (1, 1e5, 0x1F).
func (l sqlLexer) mysqlName(src string, i int) bool {
	j := i
	for j < len(src) && isNameByte(src[j]) {
		j++
	}
	w := src[i:j]
	if strings.HasPrefix(w, "0x") || strings.HasPrefix(w, "0b") {
		return false
	}
	for k := 0; k < len(w); k++ {
		if !isDigit(w[k]) && !((w[k] == 'e' || w[k] == 'E') && k > 0) {
			return true
		}
	}
	return false
}

// skipQuoted returns the end (exclusive) of the quoted text starting at i
// with quote q: a doubled quote stands for itself, and with backslash a
// backslash escapes the next byte.
func (l sqlLexer) skipQuoted(src string, i int, q byte, backslash bool) (int, bool) {
	for j := i + 1; j < len(src); j++ {
		switch {
		case backslash && src[j] == '\\':
			j++
		case src[j] == q:
			if j+1 < len(src) && src[j+1] == q {
				j++
				continue
			}
			return j + 1, true
		}
	}
	return 0, false
}

// subquery is query as the text of a subquery: trimmed, without the
// semicolons that end it. Comments after them are kept, so the text may
// end in a line comment and whoever nests it must start a new line before
// the closing parenthesis. Text the lexer cannot read is only trimmed: the
// server's error for it says more.
func (l sqlLexer) subquery(query string) string {
	toks, err := l.lex(query)
	if err != nil {
		return strings.TrimRight(strings.TrimSpace(query), ";")
	}
	last := len(toks)
	for last > 0 && toks[last-1].kind == tokSemi {
		last--
	}
	var b strings.Builder
	at := 0
	for _, t := range toks[last:] {
		b.WriteString(query[at:t.start])
		at = t.end
	}
	b.WriteString(query[at:])
	return strings.TrimSpace(b.String())
}

// sqlStatementAt is one statement of a .sql fixture: its text, tokens and
// line.
type sqlStatementAt struct {
	text string
	toks []sqlToken // offsets relative to text
	line int
}

// split splits a script into statements at semicolons outside quotes and
// comments, dropping empty ones.
func (l sqlLexer) split(src string) ([]sqlStatementAt, error) {
	toks, err := l.lex(src)
	if err != nil {
		return nil, err
	}
	var out []sqlStatementAt
	first := 0
	flush := func(upto int) {
		if upto == first {
			return
		}
		start, end := toks[first].start, toks[upto-1].end
		st := sqlStatementAt{text: src[start:end], line: 1 + strings.Count(src[:start], "\n")}
		for _, t := range toks[first:upto] {
			t.start -= start
			t.end -= start
			st.toks = append(st.toks, t)
		}
		out = append(out, st)
	}
	for i, t := range toks {
		if t.kind == tokSemi {
			flush(i)
			first = i + 1
		}
	}
	flush(len(toks))
	return out, nil
}

// scratchNames maps the schemas of a test's fixture tables to the scratch
// schemas (PostgreSQL) or databases (MySQL) they are created in.
type scratchNames struct {
	lx   sqlLexer
	main string // unqualified tables
	// schemas maps a fixture schema (lower case) to its scratch schema.
	schemas map[string]string
	// tables holds the fixture tables of each schema ("" for unqualified),
	// lower case.
	tables map[string]map[string]bool
}

// maxNameLen is the longest schema or database name both servers take
// (PostgreSQL 63 bytes, MySQL 64 characters).
const maxNameLen = 63

func newScratchNames(lx sqlLexer, main string) *scratchNames {
	return &scratchNames{lx: lx, main: main, schemas: map[string]string{}, tables: map[string]map[string]bool{}}
}

// add registers a fixture table; its schema gets a scratch schema named
// after it (main_schema), or main_N when that would be too long (a schema
// name never starts with a digit, so the two cannot meet).
func (s *scratchNames) add(schemaName, table string) {
	sk, tk := strings.ToLower(schemaName), strings.ToLower(table)
	if sk != "" {
		if _, ok := s.schemas[sk]; !ok {
			name := s.main + "_" + sk
			if len(name) > maxNameLen {
				name = fmt.Sprintf("%s_%d", s.main, len(s.schemas)+1)
			}
			s.schemas[sk] = name
		}
	}
	if s.tables[sk] == nil {
		s.tables[sk] = map[string]bool{}
	}
	s.tables[sk][tk] = true
}

// scratch returns the scratch schema of a fixture table's schema ("" for
// unqualified tables: main).
func (s *scratchNames) scratch(schemaName string) string {
	if schemaName == "" {
		return s.main
	}
	return s.schemas[strings.ToLower(schemaName)]
}

// all lists every scratch schema, main first.
func (s *scratchNames) all() []string {
	out := []string{s.main}
	for _, v := range s.schemas {
		out = append(out, v)
	}
	sort.Strings(out[1:])
	return out
}

// qualified finds the schema.table references of tokens: for each, the
// index of its schema token.
func qualifiedRefs(toks []sqlToken) []int {
	var out []int
	for i := 0; i+2 < len(toks); i++ {
		if toks[i].kind == tokName && toks[i+1].kind == tokDot && toks[i+2].kind == tokName {
			out = append(out, i)
		}
	}
	return out
}

// rewrite replaces the schema of every schema.table reference to a
// fixture table with its scratch schema; nothing else changes. On MySQL a
// name preceded by a dot is a table's column (db.table.column), not a
// schema, and is left alone.
func (s *scratchNames) rewrite(text string, toks []sqlToken) string {
	var b strings.Builder
	last := 0
	for _, i := range qualifiedRefs(toks) {
		sch, tbl := toks[i], toks[i+2]
		if !s.lx.postgres && i > 0 && toks[i-1].kind == tokDot {
			continue
		}
		if !s.tables[s.lx.key(sch)][s.lx.key(tbl)] {
			continue
		}
		b.WriteString(text[last:sch.start])
		b.WriteString(s.lx.quote(s.scratch(s.lx.key(sch))))
		last = sch.end
	}
	b.WriteString(text[last:])
	return b.String()
}

// rewriteQuery lexes and rewrites a model query.
func (s *scratchNames) rewriteQuery(query string) (string, error) {
	toks, err := s.lx.lex(query)
	if err != nil {
		return "", err
	}
	return s.rewrite(query, toks), nil
}

// unmap replaces scratch schema names in a server message by the names
// the model uses: analytics for main_analytics, nothing for main.
func (s *scratchNames) unmap(msg string) string {
	type pair struct{ from, to string }
	var pairs []pair
	for schemaName, scratch := range s.schemas {
		pairs = append(pairs, pair{scratch, schemaName})
	}
	// Longest first: every scratch name starts with main.
	sort.Slice(pairs, func(i, j int) bool { return len(pairs[i].from) > len(pairs[j].from) })
	for _, p := range pairs {
		msg = strings.ReplaceAll(msg, p.from, p.to)
	}
	for _, q := range []string{`"` + s.main + `".`, "`" + s.main + "`.", s.main + "."} {
		msg = strings.ReplaceAll(msg, q, "")
	}
	return strings.ReplaceAll(msg, s.main, "the test's scratch schema")
}

// fixtureTarget checks a .sql fixture statement of a test on a live
// source: only CREATE TABLE and INSERT, into tables of the test. It returns
// the statement's target table and whether it creates it.
func (s *scratchNames) fixtureTarget(toks []sqlToken) (schemaName, table string, creates bool, err error) {
	i := 0
	next := func() (sqlToken, bool) {
		if i >= len(toks) {
			return sqlToken{}, false
		}
		i++
		return toks[i-1], true
	}
	t, _ := next()
	switch {
	case t.word("create"):
		if t, _ = next(); !t.word("table") {
			return "", "", false, fmt.Errorf("only CREATE TABLE and INSERT statements may load fixtures")
		}
		creates = true
		if i+2 < len(toks) && toks[i].word("if") && toks[i+1].word("not") && toks[i+2].word("exists") {
			i += 3
		}
	case t.word("insert"):
		if i < len(toks) && toks[i].word("into") {
			i++
		}
	default:
		return "", "", false, fmt.Errorf("only CREATE TABLE and INSERT statements may load fixtures")
	}
	name, ok := next()
	if !ok || name.kind != tokName {
		return "", "", false, fmt.Errorf("the statement names no table")
	}
	if i+1 < len(toks) && toks[i].kind == tokDot && toks[i+1].kind == tokName {
		schemaName, table = s.lx.key(name), s.lx.key(toks[i+1])
		if i+2 < len(toks) && toks[i+2].kind == tokDot {
			return "", "", false, fmt.Errorf("the table name has more than two parts; write table or schema.table")
		}
	} else {
		table = s.lx.key(name)
	}
	return schemaName, table, creates, nil
}

// A .sql fixture of a test on a live source runs on the server as it is
// written, where SQL can do more than fill a table: a function can read or
// write the server's files (pg_read_file, lo_export, LOAD_FILE), a table
// option can place files (DATA DIRECTORY) or reach other servers
// (ENGINE=CONNECT, FEDERATED). checkFixtureShape keeps a statement to what
// filling the test's own tables needs: CREATE TABLE with column
// definitions (types, constraints, defaults of literals) and, on MySQL,
// the usual table options; INSERT with a VALUES list of literals (NULL,
// TRUE, FALSE, DEFAULT, numbers, strings, typed literals such as DATE
// '2024-05-03', casts). No function calls, no SELECT.

// fixtureParenWords may come right before "(" in a CREATE TABLE: types
// with their sizes, and the constraints and clauses that list columns or
// hold an expression (whose content is checked the same way).
var fixtureParenWords = map[string]bool{
	"varchar": true, "char": true, "character": true, "varying": true, "nchar": true, "nvarchar": true,
	"numeric": true, "decimal": true, "dec": true, "float": true, "double": true, "real": true,
	"time": true, "timestamp": true, "timestamptz": true, "timetz": true, "interval": true,
	"bit": true, "varbit": true, "int": true, "integer": true, "tinyint": true, "smallint": true,
	"mediumint": true, "bigint": true, "binary": true, "varbinary": true, "enum": true, "set": true,
	"year": true, "datetime": true, "text": true, "blob": true, "float4": true, "float8": true,
	"int2": true, "int4": true, "int8": true, "bpchar": true,
	"key": true, "unique": true, "check": true, "as": true, "default": true, "like": true,
	"cast": true, "array": true, "row": true, "values": true, "value": true, "identity": true,
}

// fixtureDeniedWords are refused anywhere in a fixture statement.
// (Table options after the column list are checked by checkCreateTail;
// these are words that place or read files, or query, inside it.)
var fixtureDeniedWords = map[string]bool{
	"select": true, "directory": true, "tablespace": true, "outfile": true, "dumpfile": true, "infile": true,
}

// fixtureValueWords may stand alone in an INSERT's VALUES.
var fixtureValueWords = map[string]bool{"null": true, "true": true, "false": true, "default": true, "cast": true, "as": true, "array": true, "row": true}

// fixtureEngines are the MySQL storage engines a fixture table may name.
var fixtureEngines = map[string]bool{"innodb": true, "aria": true, "myisam": true, "memory": true}

// checkFixtureShape checks the statement whose tokens are toks (text its
// text), which fixtureTarget accepted.
func (l sqlLexer) checkFixtureShape(text string, toks []sqlToken) error {
	tok := func(i int) string {
		if i < 0 || i >= len(toks) {
			return ""
		}
		return text[toks[i].start:toks[i].end]
	}
	word := func(i int) string {
		if i < 0 || i >= len(toks) || toks[i].kind != tokName || toks[i].quoted {
			return ""
		}
		return strings.ToLower(toks[i].name)
	}
	isLiteral := func(i int) bool {
		if i < 0 || i >= len(toks) || toks[i].kind != tokOther {
			return false
		}
		c := tok(i)[0]
		return c == '\'' || c == '"' || c == '$' || c == '.' || isDigit(c) || ((c == 'e' || c == 'E' || c == 'u' || c == 'U') && len(tok(i)) > 1)
	}
	// Where the table name ends, the statement's body begins.
	i := 1
	creates := toks[0].word("create")
	if creates {
		i = 2
		if word(i) == "if" {
			i += 3
		}
	} else if toks[1].word("into") {
		i = 2
	}
	i++
	if toks[i-1].kind == tokName && i+1 < len(toks) && toks[i].kind == tokDot {
		i += 2
	}
	if !l.postgres && (strings.Contains(text, "/*!") || strings.Contains(text, "/*M!")) {
		// MySQL runs an executable comment's text, MariaDB skips one
		// gated on a version above its own: what the server runs cannot
		// be told from the text.
		return fmt.Errorf("a fixture statement may not hold an executable comment (/*! … */): what the server runs of it depends on its version")
	}
	for k := i; k < len(toks); k++ {
		if w := word(k); fixtureDeniedWords[w] {
			return fmt.Errorf("a fixture statement may not use %s: it runs on the live server as written; a fixture only creates and fills the test's own tables", strings.ToUpper(w))
		}
	}
	if creates {
		if err := l.checkCreateTail(toks, i, tok, word); err != nil {
			return err
		}
	}
	for k := i; k < len(toks); k++ {
		if tok(k) == "(" && k > i {
			prev := word(k - 1)
			before := word(k - 2)
			// A qualified name before "(" is a table's only after
			// REFERENCES (REFERENCES s.t (id)); anywhere else it is a
			// function's (pg_catalog.pg_read_file(…)).
			qualifiedTable := k-4 >= 0 && toks[k-2].kind == tokDot && word(k-4) == "references"
			ok := qualifiedTable || (toks[k-2].kind != tokDot && (fixtureParenWords[prev] || before == "key" || before == "index" || before == "references" || before == "constraint")) ||
				toks[k-1].kind != tokName
			if !ok {
				return fmt.Errorf("a fixture statement may not call %s(…): it runs on the live server as written, where a function can read or write the server's files; write literal values (or the rows as a CSV fixture)", tok(k-1))
			}
		}
	}
	if !creates {
		return checkInsertValues(toks, i, tok, word, isLiteral)
	}
	return nil
}

// checkCreateTail checks a CREATE TABLE from its column list on: nothing
// after it but, on MySQL, ENGINE (of fixtureEngines), character set,
// collation, comment and AUTO_INCREMENT.
func (l sqlLexer) checkCreateTail(toks []sqlToken, i int, tok func(int) string, word func(int) string) error {
	if tok(i) != "(" {
		return fmt.Errorf("a fixture CREATE TABLE lists its columns in parentheses after the table's name, and nothing else (no AS, no LIKE outside them)")
	}
	depth := 0
	k := i
	for ; k < len(toks); k++ {
		switch tok(k) {
		case "(":
			depth++
		case ")":
			depth--
		}
		if depth == 0 {
			break
		}
	}
	bad := func(k int) error {
		return fmt.Errorf("a fixture CREATE TABLE may not set %q after its columns: it runs on the live server as written; only ENGINE (InnoDB, Aria, MyISAM, MEMORY), CHARSET, COLLATE, COMMENT and AUTO_INCREMENT are taken, on MySQL", tok(k))
	}
	for k++; k < len(toks); {
		if l.postgres {
			return bad(k)
		}
		w := word(k)
		if w == "default" {
			k++
			w = word(k)
		}
		switch w {
		case "engine", "charset", "collate", "comment", "auto_increment", "character":
		default:
			return bad(k)
		}
		k++
		if w == "character" {
			if word(k) != "set" {
				return bad(k)
			}
			k++
		}
		if tok(k) == "=" {
			k++
		}
		if k >= len(toks) {
			return bad(k - 1)
		}
		if w == "engine" && !fixtureEngines[word(k)] {
			return fmt.Errorf("a fixture table's ENGINE may be InnoDB, Aria, MyISAM or MEMORY, not %q: other engines reach files or other servers", tok(k))
		}
		k++
	}
	return nil
}

// checkInsertValues checks an INSERT from after its table's name: an
// optional column list, then VALUES (or VALUE) and lists of literals.
func checkInsertValues(toks []sqlToken, i int, tok func(int) string, word func(int) string, isLiteral func(int) bool) error {
	if tok(i) == "(" {
		for i++; i < len(toks) && tok(i) != ")"; i++ {
			if toks[i].kind != tokName && tok(i) != "," {
				return fmt.Errorf("a fixture INSERT's column list holds column names only")
			}
		}
		i++
	}
	if w := word(i); w != "values" && w != "value" {
		return fmt.Errorf("a fixture INSERT gives its rows as VALUES (…) of literals: it runs on the live server as written; write the rows out (or as a CSV fixture)")
	}
	afterCast := false // names after :: or AS are a type's words
	for k := i + 1; k < len(toks); k++ {
		t := tok(k)
		switch {
		case isLiteral(k):
			afterCast = false
		case toks[k].kind == tokName:
			w := word(k)
			switch {
			case afterCast || fixtureValueWords[w]:
				afterCast = afterCast || w == "as"
			case isLiteral(k + 1):
				// A typed literal: DATE '2024-05-03', X'0A'.
			default:
				return fmt.Errorf("a fixture INSERT's VALUES hold literals only, not %q: it runs on the live server as written", t)
			}
		case t == ":":
			afterCast = tok(k+1) == ":" || afterCast
		case t == "(" || t == ")" || t == "," || t == "-" || t == "+" || t == "[" || t == "]":
			if t != "(" && t != "[" {
				afterCast = afterCast && (t == ")" || t == "]")
			}
			if t == "," {
				afterCast = false
			}
		default:
			return fmt.Errorf("a fixture INSERT's VALUES hold literals only, not %q: it runs on the live server as written", t)
		}
	}
	return nil
}
