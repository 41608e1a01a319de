package engine

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/dolthub/go-mysql-server/memory"
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"
	"github.com/dolthub/vitess/go/vt/sqlparser"
)

// The embedded engine runs SQL from the config and its fixtures, which are
// untrusted input (pull requests run validate, test and plan). It is a
// sandbox in two layers:
//
//  1. Every statement is parsed before it runs, and the parsed statement is
//     what runs. A fixture statement must be CREATE TABLE (columns spelled
//     out) or INSERT … VALUES; a model query must be one SELECT. Any use of
//     the engine's file features (SELECT … INTO OUTFILE / DUMPFILE,
//     LOAD DATA [LOCAL] INFILE, LOAD_FILE()) is refused, wherever in the
//     statement it appears (a subquery, a column DEFAULT, …), and so is
//     SLEEP(), which would only hold up the machine running the query.
//  2. The engine itself cannot reach files: secure_file_priv names a
//     directory that cannot exist, so INTO OUTFILE / DUMPFILE and LOAD DATA
//     fail and LOAD_FILE reads nothing, and LOAD_FILE is replaced by a
//     function that refuses to be called. LOAD DATA LOCAL has no client to
//     read from.

// noFileDir is the secure_file_priv of every embedded engine: a path below
// a character device, which no one can create, so go-mysql-server's check
// that a file lies inside it always fails.
const noFileDir = "/dev/null/backflow-reads-and-writes-no-files"

var confineOnce sync.Once

// confineFileAccess points go-mysql-server's process-wide secure_file_priv
// at noFileDir. It is not a dynamic variable, so no statement can change it.
func confineFileAccess() {
	confineOnce.Do(func() {
		if err := sql.SystemVariables.AssignValues(map[string]any{"secure_file_priv": noFileDir}); err != nil {
			panic(fmt.Sprintf("engine: setting secure_file_priv: %v", err))
		}
	})
}

// sandboxProvider is the engine's database provider: the memory provider,
// plus a LOAD_FILE that refuses to run and string functions bounded in the
// size of what they build (bounded.go); the catalog asks the provider for
// a function before its built-ins.
type sandboxProvider struct {
	*memory.DbProvider
}

var _ sql.FunctionProvider = sandboxProvider{}

// Function implements sql.FunctionProvider.
func (sandboxProvider) Function(_ *sql.Context, name string) (sql.Function, bool) {
	if strings.EqualFold(name, "load_file") {
		return sql.Function1{Name: "load_file", Fn: func(arg sql.Expression) sql.Expression {
			return noLoadFile{arg}
		}}, true
	}
	return boundedFunction(name)
}

// noLoadFile stands in for LOAD_FILE(arg): evaluating it is an error.
type noLoadFile struct{ arg sql.Expression }

var _ sql.Expression = noLoadFile{}

func (n noLoadFile) Resolved() bool                        { return n.arg.Resolved() }
func (n noLoadFile) String() string                        { return "LOAD_FILE(" + n.arg.String() + ")" }
func (noLoadFile) Type() sql.Type                          { return types.LongBlob }
func (noLoadFile) IsNullable() bool                        { return true }
func (noLoadFile) Eval(*sql.Context, sql.Row) (any, error) { return nil, errLoadFile }
func (n noLoadFile) Children() []sql.Expression            { return []sql.Expression{n.arg} }

func (n noLoadFile) WithChildren(children ...sql.Expression) (sql.Expression, error) {
	if len(children) != 1 {
		return nil, sql.ErrInvalidChildrenNumber.New(n, len(children), 1)
	}
	return noLoadFile{children[0]}, nil
}

var errLoadFile = errors.New("LOAD_FILE() reads a file of the machine running backflow, which the embedded engine does not allow; remove it")

// refusal is a statement the sandbox does not run: a title-case summary
// for diagnostics and a full-sentence detail.
type refusal struct {
	summary string
	detail  string
}

func (r *refusal) Error() string { return strings.TrimSuffix(r.detail, ".") }

// parseStatement parses one statement as go-mysql-server would for this
// session (its sql_mode decides how double quotes read). It returns nil,
// nil for text that holds only comments.
func parseStatement(sctx *sql.Context, text string) (sqlparser.Statement, error) {
	stmt, _, _, err := sql.GlobalParser.ParseWithOptions(sctx, text, ';', false, sql.LoadSqlMode(sctx).ParserOptions())
	if errors.Is(err, sqlparser.ErrEmpty) {
		return nil, nil
	}
	if err != nil {
		return nil, sql.ErrSyntaxError.New(err.Error())
	}
	return stmt, nil
}

// checkModel refuses a model query that is not one SELECT or that uses a
// file feature.
func checkModel(stmt sqlparser.Statement, text string) error {
	if r := fileAccess(stmt); r != nil {
		return r
	}
	sel, ok := stmt.(sqlparser.SelectStatement)
	if !ok {
		return &refusal{
			summary: "Model Is Not A Query",
			detail:  fmt.Sprintf("A model must be one SELECT statement, and this is %s statement. Write the model as a SELECT.", article(statementKind(text))),
		}
	}
	if sel.GetInto() != nil {
		return &refusal{
			summary: "Model Is Not A Query",
			detail:  "A model must return its rows, and SELECT … INTO stores them in variables instead. Remove the INTO clause.",
		}
	}
	return nil
}

// checkFixture refuses a fixture statement other than CREATE TABLE with
// its columns spelled out or INSERT … VALUES into an unqualified table, and
// any statement using a file feature.
func checkFixture(stmt sqlparser.Statement, text string) error {
	if r := fileAccess(stmt); r != nil {
		return r
	}
	notAllowed := func(what, instead string) error {
		return &refusal{
			summary: "Statement Not Allowed In Fixture",
			detail:  fmt.Sprintf("Fixture files may only create tables and insert rows; remove this %s%s.", what, instead),
		}
	}
	switch s := stmt.(type) {
	case *sqlparser.DDL:
		if s.Action != sqlparser.CreateStr || s.ViewSpec != nil || s.TriggerSpec != nil || s.ProcedureSpec != nil ||
			s.EventSpec != nil || (s.TableSpec == nil && s.OptLike == nil && s.OptSelect == nil) {
			return notAllowed(statementKind(text)+" statement", "")
		}
		if s.OptSelect != nil {
			return notAllowed("CREATE TABLE … SELECT", " (list the rows with INSERT … VALUES instead)")
		}
		if s.OptLike != nil {
			return notAllowed("CREATE TABLE … LIKE", " (spell out the columns instead)")
		}
		return checkFixtureTable(s.Table)
	case *sqlparser.Insert:
		switch s.Rows.(type) {
		case sqlparser.Values, sqlparser.AliasedValues, *sqlparser.AliasedValues:
		default:
			return notAllowed("INSERT … SELECT", " (list the rows with VALUES instead)")
		}
		if s.With != nil {
			return notAllowed("WITH clause", " (list the rows with VALUES instead)")
		}
		return checkFixtureTable(s.Table)
	}
	return notAllowed(statementKind(text)+" statement", "")
}

// checkFixtureTable requires a fixture statement's table to be one of the
// fixtures database.
func checkFixtureTable(t sqlparser.TableName) error {
	q := t.DbQualifier.String()
	if q == "" || strings.EqualFold(q, embeddedDatabase) {
		return nil
	}
	return &refusal{
		summary: "Statement Not Allowed In Fixture",
		detail:  fmt.Sprintf("Fixture files may only create tables and insert rows of the fixtures themselves; remove the database name %q from table %s.", q, t.Name.String()),
	}
}

var (
	typeInto     = reflect.TypeFor[*sqlparser.Into]()
	typeLoad     = reflect.TypeFor[*sqlparser.Load]()
	typeFuncExpr = reflect.TypeFor[*sqlparser.FuncExpr]()
)

const sleepFound = "SLEEP()"

// fileAccess finds a use of the engine's file features (or of SLEEP)
// anywhere in a parsed statement. The parser's own walker skips parts of some statements
// (column defaults, for one), so every field of the syntax tree is visited.
func fileAccess(stmt sqlparser.Statement) *refusal {
	found := ""
	seen := make(map[uintptr]bool)
	var visit func(v reflect.Value)
	visit = func(v reflect.Value) {
		if found != "" {
			return
		}
		switch v.Kind() {
		case reflect.Interface:
			if !v.IsNil() {
				visit(v.Elem())
			}
		case reflect.Pointer:
			if v.IsNil() || seen[v.Pointer()] {
				return
			}
			seen[v.Pointer()] = true
			if v.CanInterface() {
				switch v.Type() {
				case typeInto:
					into := v.Interface().(*sqlparser.Into)
					if into.Outfile != "" {
						found = "SELECT … INTO OUTFILE writes"
					} else if into.Dumpfile != "" {
						found = "SELECT … INTO DUMPFILE writes"
					}
				case typeLoad:
					found = "LOAD DATA INFILE reads"
				case typeFuncExpr:
					switch name := v.Interface().(*sqlparser.FuncExpr).Name.String(); {
					case strings.EqualFold(name, "load_file"):
						found = "LOAD_FILE() reads"
					case strings.EqualFold(name, "sleep"):
						found = sleepFound
					}
				}
			}
			visit(v.Elem())
		case reflect.Struct:
			for i := range v.NumField() {
				visit(v.Field(i))
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				visit(v.Index(i))
			}
		case reflect.Map:
			it := v.MapRange()
			for it.Next() {
				visit(it.Value())
			}
		}
	}
	visit(reflect.ValueOf(stmt))
	switch found {
	case "":
		return nil
	case sleepFound:
		// Not a file, but the same kind of harm to the machine running
		// backflow: SLEEP(1e9) would hold a pull request's CI job until
		// it is killed.
		return &refusal{
			summary: "Sleep Not Allowed",
			detail:  "SLEEP() only holds up the run, which the embedded engine does not allow; remove it.",
		}
	}
	return &refusal{
		summary: "File Access Not Allowed",
		detail:  found + " a file of the machine running backflow, which the embedded engine does not allow; remove it.",
	}
}

// statementKind names a statement by its leading keywords, for messages:
// "DROP TABLE", "SET GLOBAL", "GRANT", "SELECT".
func statementKind(text string) string {
	words := strings.Fields(strings.ToUpper(stripLeadingComments(text)))
	if len(words) == 0 {
		return "empty"
	}
	kind := trimWord(words[0])
	switch kind {
	case "CREATE", "DROP", "ALTER", "LOAD", "SET", "RENAME", "LOCK", "UNLOCK", "TRUNCATE", "START", "FLUSH",
		"CHANGE", "RESET", "INSTALL", "UNINSTALL", "SHOW":
		for _, w := range words[1:] {
			w = trimWord(w)
			switch w {
			case "OR", "REPLACE", "TEMPORARY", "UNIQUE", "FULLTEXT", "SPATIAL", "DEFINER":
				continue
			}
			if w != "" && strings.Trim(w, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") == "" {
				kind += " " + w
			}
			break
		}
	}
	return kind
}

// article prefixes a or an to a keyword.
func article(kind string) string {
	if kind != "" && strings.ContainsRune("AEIOUaeiou", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}

func trimWord(w string) string {
	return strings.TrimFunc(w, func(r rune) bool { return (r < 'A' || r > 'Z') && r != '_' })
}

// stripLeadingComments drops comments before a statement's first keyword;
// the text of a MySQL executable comment (/*! … */) is kept.
func stripLeadingComments(s string) string {
	for {
		s = strings.TrimSpace(s)
		switch {
		case strings.HasPrefix(s, "/*!"):
			s = strings.TrimLeft(s[3:], "0123456789")
		case strings.HasPrefix(s, "/*"):
			end := strings.Index(s, "*/")
			if end < 0 {
				return ""
			}
			s = s[end+2:]
		case strings.HasPrefix(s, "--"), strings.HasPrefix(s, "#"):
			end := strings.IndexByte(s, '\n')
			if end < 0 {
				return ""
			}
			s = s[end+1:]
		default:
			return s
		}
	}
}
