package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// hostCanary is the content of a file outside the fixtures that no query
// or fixture may read.
const hostCanary = "host-secret-5f1c0d"

// hostFiles returns a readable host file holding hostCanary and a folder
// in which nothing may be created.
func hostFiles(t *testing.T) (secret, outDir string) {
	t.Helper()
	secret = filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(secret, []byte(hostCanary+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return secret, t.TempDir()
}

// assertNothingWritten fails if outDir holds any file.
func assertNothingWritten(t *testing.T, outDir string) {
	t.Helper()
	ents, err := os.ReadDir(outDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		t.Errorf("the engine created %s on the host", filepath.Join(outDir, ent.Name()))
	}
}

// assertNoCanary fails if any table of e holds the host canary.
func assertNoCanary(t *testing.T, e *Embedded, tables ...string) {
	t.Helper()
	for _, table := range tables {
		_, rows := collect(t, e, "SELECT * FROM "+table)
		for _, r := range rows {
			if strings.Contains(fmt.Sprint(r...), hostCanary) {
				t.Errorf("table %s holds the host file's content: %v", table, r)
			}
		}
	}
}

func TestFixtureFileAccessRefused(t *testing.T) {
	secret, out := hostFiles(t)
	tests := []struct {
		name  string
		sql   string
		line  int
		about string // in the detail
	}{
		{"dumpfile", "SELECT 'x' INTO DUMPFILE '" + out + "/dump';", 1, "INTO DUMPFILE writes"},
		{"outfile", "CREATE TABLE t (a TEXT);\nINSERT INTO t VALUES ('x');\nSELECT a FROM t INTO OUTFILE '" + out + "/out';", 3, "INTO OUTFILE writes"},
		{"load data", "CREATE TABLE t (a TEXT);\n\nLOAD DATA INFILE '" + secret + "' INTO TABLE t;", 3, "LOAD DATA INFILE reads"},
		{"load data local", "CREATE TABLE t (a TEXT);\nLOAD DATA LOCAL INFILE '" + secret + "' INTO TABLE t;", 2, "LOAD DATA INFILE reads"},
		{"load_file in values", "CREATE TABLE t (a LONGTEXT);\nINSERT INTO t VALUES (load_file('" + secret + "'));", 2, "LOAD_FILE() reads"},
		{"load_file in subquery", "CREATE TABLE t (a LONGTEXT);\nINSERT INTO t VALUES ((SELECT LOAD_FILE('" + secret + "')));", 2, "LOAD_FILE() reads"},
		{"load_file as default", "CREATE TABLE t (a LONGBLOB DEFAULT (LOAD_FILE('" + secret + "')));\nINSERT INTO t VALUES ();", 1, "LOAD_FILE() reads"},
		{"executable comment", "CREATE TABLE t (a TEXT);\n/*!50000 SELECT 'x' INTO DUMPFILE '" + out + "/c' */;", 2, "INTO DUMPFILE writes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFixtures(t, map[string]string{"s.sql": tt.sql})
			e := NewEmbedded()
			defer e.Close()
			diags := e.LoadDir(dir, nil)
			if len(diags) != 1 {
				t.Fatalf("want one diagnostic, got %d: %s", len(diags), diags.Error())
			}
			d := diags[0]
			if d.Summary != "File Access Not Allowed" || !strings.Contains(d.Detail, tt.about) || d.Subject.Start.Line != tt.line {
				t.Errorf("got %s at line %d: %s", d.Summary, d.Subject.Start.Line, d.Detail)
			}
			if strings.Contains(diags.Error(), hostCanary) {
				t.Errorf("diagnostic shows the host file: %s", diags.Error())
			}
			assertNothingWritten(t, out)
			if _, rows := collect(t, e, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'fixtures'"); len(rows) == 1 {
				assertNoCanary(t, e, "t")
			}
		})
	}
}

func TestFixtureAllowlist(t *testing.T) {
	refused := map[string]string{ // statement → the part of the detail naming it
		"CREATE USER eve@'%' IDENTIFIED BY 'x'":                          "this CREATE USER statement",
		"GRANT ALL ON *.* TO root@localhost":                             "this GRANT statement",
		"SET GLOBAL local_infile = 1":                                    "this SET GLOBAL statement",
		"SET @@global.secure_file_priv = ''":                             "this SET statement",
		"DROP DATABASE fixtures":                                         "this DROP DATABASE statement",
		"CREATE DATABASE other":                                          "this CREATE DATABASE statement",
		"USE mysql":                                                      "this USE statement",
		"DROP TABLE IF EXISTS t":                                         "this DROP TABLE statement",
		"ALTER TABLE t ADD COLUMN b INT":                                 "this ALTER TABLE statement",
		"CREATE INDEX i ON t (a)":                                        "this CREATE INDEX statement",
		"CREATE VIEW v AS SELECT 1":                                      "this CREATE VIEW statement",
		"CREATE TRIGGER g BEFORE INSERT ON t FOR EACH ROW SET NEW.a = 1": "this CREATE TRIGGER statement",
		"CREATE PROCEDURE p() SELECT 1":                                  "this CREATE PROCEDURE statement",
		"PREPARE s FROM 'SELECT 1'":                                      "this PREPARE statement",
		"CALL p()":                                                       "this CALL statement",
		"SELECT * FROM t":                                                "this SELECT statement",
		"UPDATE t SET a = 2":                                             "this UPDATE statement",
		"DELETE FROM t":                                                  "this DELETE statement",
		"CREATE TABLE u AS SELECT * FROM t":                              "CREATE TABLE … SELECT",
		"CREATE TABLE u LIKE t":                                          "CREATE TABLE … LIKE",
		"INSERT INTO t SELECT 5":                                         "INSERT … SELECT",
		"INSERT INTO mysql.user (Host, User) VALUES ('%', 'eve')":        `database name "mysql"`,
		"CREATE TABLE information_schema.x (a INT)":                      `database name "information_schema"`,
	}
	for stmt, want := range refused {
		t.Run(stmt, func(t *testing.T) {
			dir := writeFixtures(t, map[string]string{"s.sql": "CREATE TABLE t (a INT);\nINSERT INTO t VALUES (1);\n-- next\n" + stmt + ";\nINSERT INTO t VALUES (3);"})
			e := NewEmbedded()
			defer e.Close()
			diags := e.LoadDir(dir, nil)
			if len(diags) != 1 {
				t.Fatalf("want one diagnostic, got %d: %s", len(diags), diags.Error())
			}
			d := diags[0]
			if d.Summary != "Statement Not Allowed In Fixture" || d.Subject.Start.Line != 4 ||
				!strings.HasPrefix(d.Detail, "Fixture files may only create tables and insert rows") || !strings.Contains(d.Detail, want) {
				t.Errorf("got %s at line %d: %s", d.Summary, d.Subject.Start.Line, d.Detail)
			}
			// The statements before ran; the refused one and those after did not.
			if _, rows := collect(t, e, "SELECT a FROM t"); len(rows) != 1 || rows[0][0] != int64(1) {
				t.Errorf("table t holds %v, want the one row inserted before the refused statement", rows)
			}
		})
	}
}

func TestFixtureStatementsAllowed(t *testing.T) {
	dir := writeFixtures(t, map[string]string{"s.sql": "# a comment\n/* another */\n" +
		"CREATE TABLE IF NOT EXISTS fixtures.t (a INT NOT NULL, b VARCHAR(10) DEFAULT 'x', c TEXT DEFAULT (CONCAT('a', 'b')));\n" +
		"INSERT INTO t (a) VALUES (1);\n" +
		"INSERT INTO t SET a = 2, b = 'y';\n" +
		"REPLACE INTO t VALUES (3, UPPER('z'), NULL);\n"})
	e := NewEmbedded()
	defer e.Close()
	mustLoad(t, e, dir, nil)
	_, rows := collect(t, e, "SELECT a, b, c FROM t ORDER BY a")
	want := fmt.Sprint([][]any{{int64(1), "x", "ab"}, {int64(2), "y", "ab"}, {int64(3), "Z", nil}})
	if fmt.Sprint(rows) != want {
		t.Errorf("got %v, want %s", rows, want)
	}
}

func TestModelFileAccessRefused(t *testing.T) {
	secret, out := hostFiles(t)
	e := NewEmbedded()
	defer e.Close()
	if err := e.AddTable("users", []string{"id", "name"}, [][]any{{1, "ann"}}); err != nil {
		t.Fatal(err)
	}
	tests := map[string]string{ // query → the error's telling part
		"SELECT LOAD_FILE('" + secret + "') AS x":                                 "LOAD_FILE() reads a file",
		"SELECT id FROM users WHERE name <> (SELECT load_file('" + secret + "'))": "LOAD_FILE() reads a file",
		"SELECT id, name FROM users INTO OUTFILE '" + out + "/o'":                 "INTO OUTFILE writes a file",
		"SELECT name FROM users LIMIT 1 INTO DUMPFILE '" + out + "/d'":            "INTO DUMPFILE writes a file",
		"SELECT 1 UNION SELECT 2 INTO OUTFILE '" + out + "/u'":                    "INTO",
		"LOAD DATA INFILE '" + secret + "' INTO TABLE users":                      "LOAD DATA INFILE reads a file",
		"DROP TABLE users":                                       "A model must be one SELECT statement, and this is a DROP TABLE statement",
		"INSERT INTO users VALUES (2, 'x')":                      "and this is an INSERT statement",
		"SET GLOBAL local_infile = 1":                            "and this is a SET GLOBAL statement",
		"SELECT 1; DROP TABLE users":                             "syntax error",
		"SELECT id, SLEEP(1000000) FROM users":                   "SLEEP() only holds up the run",
		"SELECT id FROM users WHERE (SELECT sleep(1000000)) = 0": "SLEEP() only holds up the run",
		"  -- nothing\n":                                         "the query is empty",
	}
	for query, want := range tests {
		t.Run(query, func(t *testing.T) {
			_, err := e.Query(context.Background(), query)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Query: got error %v, want one containing %q", err, want)
			}
			_, err = e.Schema(context.Background(), query)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Schema: got error %v, want one containing %q", err, want)
			}
			if err != nil && strings.Contains(err.Error(), hostCanary) {
				t.Errorf("error shows the host file: %v", err)
			}
		})
	}
	assertNothingWritten(t, out)
	assertNoCanary(t, e, "users")
	// INTO variables touches no file, but a model must return rows.
	if _, err := e.Query(context.Background(), "SELECT id FROM users INTO @x"); err == nil || !strings.Contains(err.Error(), "Remove the INTO clause") {
		t.Errorf("SELECT … INTO @x: got error %v", err)
	}
	if _, rows := collect(t, e, "SELECT CONCAT('load_file', name) FROM users;"); len(rows) != 1 || rows[0][0] != "load_fileann" {
		t.Errorf("a string mentioning load_file: got %v", rows)
	}
}

// TestEngineConfined checks the second layer: statements that reach the
// engine without the parse check still touch no host file.
func TestEngineConfined(t *testing.T) {
	secret, out := hostFiles(t)
	e := NewEmbedded()
	defer e.Close()
	if err := e.AddTable("users", []string{"id", "name"}, [][]any{{1, "ann"}}); err != nil {
		t.Fatal(err)
	}
	run := func(query string) ([][]any, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		sctx := e.sqlContext(context.Background())
		_, iter, _, err := e.eng.Query(sctx, query)
		if err != nil {
			return nil, err
		}
		defer iter.Close(sctx)
		var rows [][]any
		for {
			r, err := iter.Next(sctx)
			if errors.Is(err, io.EOF) {
				return rows, nil
			}
			if err != nil {
				return rows, err
			}
			rows = append(rows, r)
		}
	}
	for _, q := range []string{
		"SELECT 'x' INTO DUMPFILE '" + out + "/dump'",
		"SELECT name FROM users INTO OUTFILE '" + out + "/out'",
		"LOAD DATA INFILE '" + secret + "' INTO TABLE users",
		"LOAD DATA LOCAL INFILE '" + secret + "' INTO TABLE users",
		"SELECT LOAD_FILE('" + secret + "')",
		"SET GLOBAL secure_file_priv = ''",
	} {
		rows, err := run(q)
		if err == nil {
			t.Errorf("%s: no error (rows %v)", q, rows)
		}
		if strings.Contains(fmt.Sprint(rows, err), hostCanary) {
			t.Errorf("%s: host file read: %v %v", q, rows, err)
		}
	}
	assertNothingWritten(t, out)
	assertNoCanary(t, e, "users")
}

// The diagnostics of refused statements are full sentences on the file.
func TestRefusalDiagnosticShape(t *testing.T) {
	dir := writeFixtures(t, map[string]string{"a.sql": "DROP DATABASE fixtures;", "b.sql": "SELECT LOAD_FILE('/etc/hostname');"})
	e := NewEmbedded()
	defer e.Close()
	diags := e.LoadDir(dir, nil)
	if len(diags) != 2 {
		t.Fatalf("want 2 diagnostics, got %s", diags.Error())
	}
	for _, d := range diags {
		if d.Severity != hcl.DiagError || filepath.Dir(d.Subject.Filename) != dir || !strings.HasSuffix(d.Detail, ".") {
			t.Errorf("diagnostic %s: %s / %s", d.Subject.Filename, d.Summary, d.Detail)
		}
	}
}
