package engine

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestScratchRewrite(t *testing.T) {
	names := func(lx sqlLexer, tables ...string) *scratchNames {
		n := newScratchNames(lx, "bt_main")
		for _, tb := range tables {
			s, tbl, err := splitTableName(tb)
			if err != nil {
				t.Fatal(err)
			}
			n.add(s, tbl)
		}
		return n
	}
	pg := postgresLexer(true)
	my := mysqlLexer("STRICT_TRANS_TABLES")
	for _, tc := range []struct {
		name  string
		lx    sqlLexer
		query string
		want  string
	}{
		{"postgres: only the reference, not strings, comments or dollar quotes", pg,
			"SELECT u.first_name || ' ' || u.last_name, 'analytics.users', $$analytics.users$$, $x$ analytics.users $x$, E'it\\'s analytics.users' -- analytics.users\n FROM analytics.users u /* analytics.users /* nested */ analytics.users */ WHERE u.email ILIKE '%@x.org'",
			"SELECT u.first_name || ' ' || u.last_name, 'analytics.users', $$analytics.users$$, $x$ analytics.users $x$, E'it\\'s analytics.users' -- analytics.users\n FROM \"bt_main_analytics\".users u /* analytics.users /* nested */ analytics.users */ WHERE u.email ILIKE '%@x.org'"},
		{"postgres: quoted names, spaces around the dot, column references", pg,
			`SELECT "analytics"."users".id, Analytics . Users.name FROM "analytics"."users", "Analytics".users`,
			`SELECT "bt_main_analytics"."users".id, "bt_main_analytics" . Users.name FROM "bt_main_analytics"."users", "Analytics".users`},
		{"postgres: tables of the schema the test gives no rows stay", pg,
			"SELECT * FROM analytics.users JOIN analytics.orders USING (id) JOIN users USING (id)",
			`SELECT * FROM "bt_main_analytics".users JOIN analytics.orders USING (id) JOIN users USING (id)`},
		{"mysql: backticks, # comments, double-quoted strings, db.table.column", my,
			"SELECT `analytics`.`users`.email, \"analytics.users\", other.analytics.users # analytics.users\nFROM analytics.users -- analytics.users\n",
			"SELECT `bt_main_analytics`.`users`.email, \"analytics.users\", other.analytics.users # analytics.users\nFROM `bt_main_analytics`.users -- analytics.users\n"},
		{"mysql: backslash escapes in strings", my,
			`SELECT 'it\'s analytics.users' FROM analytics.users`,
			"SELECT 'it\\'s analytics.users' FROM `bt_main_analytics`.users"},
		{"mysql with ANSI_QUOTES", mysqlLexer("ANSI_QUOTES,NO_BACKSLASH_ESCAPES"),
			`SELECT 'a\' FROM "analytics"."users"`,
			"SELECT 'a\\' FROM `bt_main_analytics`.\"users\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := names(tc.lx, "analytics.users", "users").rewriteQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("rewrite:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
	if _, err := names(pg, "a.b").rewriteQuery("SELECT 'open"); err == nil || !strings.Contains(err.Error(), "unterminated string starting at line 1") {
		t.Errorf("unterminated string: %v", err)
	}
	if _, err := names(my, "a.b").rewriteQuery("SELECT 1 /* open"); err == nil || !strings.Contains(err.Error(), "unterminated comment") {
		t.Errorf("unterminated comment: %v", err)
	}
	n := names(pg, "analytics.users")
	if msg := n.unmap(`relation "bt_main_analytics.orders" does not exist; relation "bt_main.x"`); msg != `relation "analytics.orders" does not exist; relation "x"` {
		t.Errorf("unmap: %s", msg)
	}
}

func TestScratchScripts(t *testing.T) {
	fx := &LiveFixtures{Scripts: []LiveScript{{Shown: "f/a.sql", Text: `
-- the users; a semicolon in a string: ';'
CREATE TABLE IF NOT EXISTS analytics.users (id int, note text);
INSERT INTO analytics.users VALUES (1, 'a;b');
insert analytics.users (id) VALUES (2);
`}}}
	names, stmts, err := planScratch(mysqlLexer(""), fx, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(stmts) != 3 || stmts[0].at != "f/a.sql:3" || stmts[1].at != "f/a.sql:4" || !stmts[0].create || stmts[1].create {
		t.Fatalf("statements: %+v", stmts)
	}
	want := "INSERT INTO `" + names.main + "_analytics`.users VALUES (1, 'a;b')"
	if stmts[1].text != want {
		t.Errorf("rewritten: %s, want %s", stmts[1].text, want)
	}
	for _, tc := range []struct{ script, want string }{
		{"DROP TABLE analytics.users", "f.sql:1: only CREATE TABLE and INSERT"},
		{"UPDATE users SET x = 1", "f.sql:1: only CREATE TABLE and INSERT"},
		{"CREATE VIEW v AS SELECT 1", "f.sql:1: only CREATE TABLE and INSERT"},
		{"CREATE TABLE a (id int);\n\nINSERT INTO prod.users VALUES (1)", "f.sql:3: INSERT into prod.users, which no earlier CREATE TABLE"},
		{"INSERT INTO a VALUES (1);\nCREATE TABLE a (id int)", "f.sql:1: INSERT into a, which no earlier CREATE TABLE"},
		{"CREATE TABLE a.b.c (id int)", "more than two parts"},
		{"CREATE TABLE 'x' (id int)", "names no table"},
		// What a statement may do on the server: only create and fill.
		{"CREATE TABLE a (id int, e text);\nINSERT INTO a SELECT 3, lo_from_bytea(424242, 'x'::bytea)::text", "f.sql:2: a fixture statement may not use SELECT"},
		{"CREATE TABLE a (id int, e text);\nINSERT INTO a VALUES (2, lo_export(424242, '/tmp/x')::text)", "may not call lo_export(…)"},
		{"CREATE TABLE a (id int, e text);\nINSERT INTO a VALUES (2, pg_read_file('/etc/hostname'))", "may not call pg_read_file(…)"},
		{"CREATE TABLE a (id int, e text);\nINSERT INTO a VALUES (2, current_setting ('data_directory'))", "may not call current_setting(…)"},
		{"CREATE TABLE a (id int, e text);\nINSERT INTO a VALUES (2, \"load_file\"('/etc/hostname'))", "may not call"},
		{"CREATE TABLE a (id int, e text);\nINSERT INTO a VALUES (2, @@datadir)", `literals only, not "@"`},
		{"CREATE TABLE a (id int, e text);\nINSERT INTO a VALUES (2, e)", `literals only, not "e"`},
		{"CREATE TABLE a (id int, e text);\nINSERT INTO a VALUES (1, 'x') ON CONFLICT DO NOTHING", `literals only, not "ON"`},
		{"CREATE TABLE a (id int CHECK (lo_export(1, '/tmp/x') > 0))", "may not call lo_export(…)"},
		{"CREATE TABLE a (id int DEFAULT nextval('s'))", "may not call nextval(…)"},
		{"CREATE TABLE a (id int) TABLESPACE pg_default", "may not use TABLESPACE"},
		{"CREATE TABLE a (id int) WITH (fillfactor = 70)", `may not set "WITH" after its columns`},
		{"CREATE TABLE a AS SELECT 1", "may not use SELECT"},
		{"CREATE TABLE a (id int) INHERITS (b)", `may not set "INHERITS"`},
	} {
		_, _, err := planScratch(postgresLexer(true), &LiveFixtures{Scripts: []LiveScript{{Shown: "f.sql", Text: tc.script}}}, time.Now())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.script, err, tc.want)
		}
	}
}

// TestFixtureShapes: what fixtures commonly write passes the shape check,
// and what places files or reaches other servers on MySQL does not.
func TestFixtureShapes(t *testing.T) {
	for _, tc := range []struct {
		mysql         bool
		script, wrong string
	}{
		{false, `CREATE TABLE IF NOT EXISTS s.users (id bigint PRIMARY KEY, name character varying(20) NOT NULL, amount numeric(10,2) DEFAULT 0,
			at timestamp(3) with time zone, tags text[], flag boolean DEFAULT false, CONSTRAINT pos CHECK (amount >= 0), UNIQUE (name));
		 INSERT INTO s.users (id, name, amount, at, tags, flag) VALUES (1, 'Ada', -1.5e3, '2024-05-03 11:57:00+00'::timestamptz, '{a,b}'::text[], TRUE),
			(2, E'Al\nan', CAST('2.50' AS numeric(10,2)), TIMESTAMP '2024-05-03 11:57:00', ARRAY['x'], NULL), (3, 'x', DEFAULT, NULL, ARRAY[]::text[], false);`, ""},
		{true, "CREATE TABLE users (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, name VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, kind ENUM('a','b'), bits BIT(8), `flag` TINYINT(1), PRIMARY KEY (id), UNIQUE KEY uk (name), KEY k2 (kind)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin COMMENT='fixture';\n" +
			"INSERT INTO users VALUES (1, 'Ada', 'a', b'101', 1), (2, _utf8mb4'Alan', 'b', X'0A', -1);", ""},
		{true, "CREATE TABLE users (id int) DATA DIRECTORY = '/tmp/x'", "may not use DIRECTORY"},
		{true, "CREATE TABLE users (id int) ENGINE=CONNECT table_type=CSV file_name='/etc/passwd'", `ENGINE may be InnoDB, Aria, MyISAM or MEMORY, not "CONNECT"`},
		{true, "CREATE TABLE users (id int) ENGINE=FEDERATED CONNECTION='mysql://u@h/db/t'", `not "FEDERATED"`},
		{true, "CREATE TABLE users (id int) /*!50100 PARTITION BY HASH (id) */", "executable comment"},
		{true, "CREATE TABLE users (id int) PARTITION BY HASH (id)", `may not set "PARTITION"`},
		{true, "CREATE TABLE users (id int, e text);\nINSERT INTO users VALUES (2, LOAD_FILE('/etc/hostname'))", "may not call LOAD_FILE(…)"},
		{true, "CREATE TABLE users (id int, e text);\nINSERT INTO users SELECT 2, @@datadir", "may not use SELECT"},
		{true, "CREATE TABLE t (id int primary key, v text);\nINSERT INTO t VALUES (1, /*M!999999 ' */ LOAD_FILE(0x2f6574632f686f73746e616d65) /*M!999999 ' */)", "executable comment"},
		{true, "CREATE TABLE t (id int /*!50000 , v text */)", "executable comment"},
		{false, "CREATE TABLE t (id int primary key, v text DEFAULT pg_catalog.pg_read_file('/etc/hostname'))", "may not call pg_read_file(…)"},
		{false, "CREATE TABLE t (id int, o oid DEFAULT \"pg_catalog\".lo_export(1, '/tmp/x'))", "may not call lo_export(…)"},
		{false, "CREATE TABLE t (id int REFERENCES s.other (id), o int CHECK (o > 0))", ""},
	} {
		lx := postgresLexer(true)
		if tc.mysql {
			lx = mysqlLexer("")
		}
		_, _, err := planScratch(lx, &LiveFixtures{Scripts: []LiveScript{{Shown: "f.sql", Text: tc.script}}}, time.Now())
		if tc.wrong == "" && err != nil {
			t.Errorf("%q: %v", tc.script, err)
		}
		if tc.wrong != "" && (err == nil || !strings.Contains(err.Error(), tc.wrong)) {
			t.Errorf("%q: got %v, want %q", tc.script, err, tc.wrong)
		}
	}
}

func TestScratchNames(t *testing.T) {
	now := time.Unix(1700000000, 0)
	name := newScratchName(now)
	if got, ok := scratchCreated(name); !ok || !got.Equal(now) {
		t.Errorf("scratchCreated(%s) = %v, %v", name, got, ok)
	}
	if got, ok := scratchCreated(name + "_analytics"); !ok || !got.Equal(now) {
		t.Errorf("a schema's scratch: %v, %v", got, ok)
	}
	for _, other := range []string{"backflow_test_x", "backflow_test_zz_nothex00", "backflow_testing_1_deadbeef", "backflow_test_1_deadbeefx"} {
		if _, ok := scratchCreated(other); ok {
			t.Errorf("%s read as a scratch name", other)
		}
	}
	n := newScratchNames(postgresLexer(true), name)
	n.add("analytics", "users")
	n.add(strings.Repeat("s", 60), "t")
	all := n.all()
	if len(all) != 3 || all[0] != name || all[1] != name+"_2" || all[2] != name+"_analytics" {
		t.Errorf("scratch schemas: %v", all)
	}
	for _, s := range all {
		if len(s) > maxNameLen {
			t.Errorf("%s is longer than %d", s, maxNameLen)
		}
	}
}

func TestReadLiveFixtures(t *testing.T) {
	fsys := fstest.MapFS{
		"fx/analytics.users.csv": {Data: []byte("id,name,signup,score,active\n1,Ann,2024-01-02T03:04:05Z,1.5,true\n2,Bob,,2,false\n")},
		"fx/events.jsonl":        {Data: []byte(`{"id": 1, "payload": {"a": [1, 2]}}` + "\n")},
		"fx/schema.sql":          {Data: []byte("CREATE TABLE x (id int);")},
		"fx/notes.txt":           {Data: []byte("ignored")},
		"fx/bad.name.here.csv":   {Data: []byte("id\n1\n")},
	}
	fx, diags := ReadLiveFixtures(Fixtures{FS: fsys, Dir: "fx", Display: "tests/fx"})
	if len(diags) != 1 || !strings.Contains(diags[0].Detail, `"bad.name.here.csv" does not give a table name`) || diags[0].Subject.Filename != "tests/fx/bad.name.here.csv" {
		t.Fatalf("diagnostics: %v", diags)
	}
	if len(fx.Tables) != 2 || len(fx.Scripts) != 1 || fx.Scripts[0].Shown != "tests/fx/schema.sql" {
		t.Fatalf("fixtures: %+v", fx)
	}
	users := fx.Tables[0]
	if users.Schema != "analytics" || users.Name != "users" || users.From != "tests/fx/analytics.users.csv" {
		t.Errorf("table: %+v", users)
	}
	var types []string
	for _, c := range users.Columns {
		types = append(types, c.Name+" "+c.Type.String())
	}
	if got := strings.Join(types, ", "); got != "id int, name string, signup timestamp, score float, active bool" {
		t.Errorf("inferred: %s", got)
	}
	want := [][]any{{int64(1), "Ann", time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), 1.5, true}, {int64(2), "Bob", nil, 2.0, false}}
	if !reflect.DeepEqual(users.Rows, want) {
		t.Errorf("rows: %#v", users.Rows)
	}
	if ev := fx.Tables[1]; ev.Name != "events" || ev.Columns[1].Type.String() != "json" || compactJSON(fmt.Sprint(ev.Rows[0][1])) != `{"a":[1,2]}` {
		t.Errorf("events: %+v", ev)
	}
	// An inline table replaces the file's.
	if err := fx.AddTable("Analytics.Users", []string{"id"}, [][]any{{int64(7)}}, "tests.hcl:3"); err != nil {
		t.Fatal(err)
	}
	if len(fx.Tables) != 2 || fx.Tables[0].From != "tests.hcl:3" || fx.Tables[0].Rows[0][0] != int64(7) {
		t.Errorf("after AddTable: %+v", fx.Tables[0])
	}
	if err := fx.AddTable("a.b.c", []string{"id"}, nil, ""); err == nil {
		t.Error("a three-part name was taken")
	}
}

// knownScratchRandom makes the random part of the scratch names the test
// creates known (unique to this process), and returns it in hex.
func knownScratchRandom(t *testing.T) string {
	old := scratchRandom
	t.Cleanup(func() { scratchRandom = old })
	pid := uint32(os.Getpid())
	scratchRandom = func(b []byte) { b[0], b[1], b[2], b[3] = 0xfe, byte(pid>>16), byte(pid>>8), byte(pid) }
	var b [4]byte
	scratchRandom(b[:])
	return hex.EncodeToString(b[:])
}

// liveFixture is the test's fixture table analytics-like schema.users,
// with names whose concatenation and case-insensitive match differ from
// MySQL's meaning of || and the embedded engine's lack of ILIKE.
func liveFixture(t *testing.T, schemaName string) *LiveFixtures {
	t.Helper()
	fx := &LiveFixtures{}
	rows := [][]any{
		{int64(1), "Ann", "Lee", "ann@example.com", "2024-01-02T03:04:05Z"},
		{int64(2), "Bob", "Ray", "BOB@Example.COM", "2024-02-03T04:05:06Z"},
		{int64(3), "Cy", "Doe", "cy@other.org", nil},
	}
	if err := fx.AddTable(schemaName+".users", []string{"id", "first_name", "last_name", "email", "signup"}, rows, "test"); err != nil {
		t.Fatal(err)
	}
	return fx
}

func TestPostgresFixtures(t *testing.T) {
	db := postgresDB(t)
	ctx := guard(t)
	real := strings.ToLower(uniqueTable("bf_real"))
	db.admin(t, "CREATE SCHEMA "+real)
	t.Cleanup(func() { db.admin(t, "DROP SCHEMA "+real+" CASCADE") })
	db.admin(t, "CREATE TABLE "+real+".users (id int, first_name text, last_name text, email text, signup timestamptz)")
	db.admin(t, "INSERT INTO "+real+".users VALUES (9, 'Real', 'Row', 'real@example.com', now())")
	db.admin(t, "CREATE TABLE "+real+".orders (id int)")
	src := db.source(t, LiveOptions{}).(FixtureRunner)
	if got := src.Server(); got != "PostgreSQL at 127.0.0.1:5432" {
		t.Errorf("Server() = %q", got)
	}
	leftovers := func() string {
		return db.query(t, "SELECT count(*)::text FROM pg_namespace WHERE nspname LIKE 'backflow\\_test\\_%'")
	}

	sc, err := src.OnFixtures(ctx, liveFixture(t, real))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sc.Close() }) // a scratch left open holds the source
	schemas := sc.Schemas()
	if len(schemas) != 2 || schemas[1] != schemas[0]+"_"+real {
		t.Errorf("scratch schemas: %v", schemas)
	}
	_, rows, err := collectLive(ctx, sc, "SELECT id, first_name || ' ' || last_name AS full_name, signup FROM "+real+".users WHERE email ILIKE '%@example.com' ORDER BY id;")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]any{{int64(1), "Ann Lee", time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}, {int64(2), "Bob Ray", time.Date(2024, 2, 3, 4, 5, 6, 0, time.UTC)}}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("model on the fixtures: %#v, want %#v", rows, want)
	}
	// The scratch schemas exist in the test's transaction only.
	_, rows, err = collectLive(ctx, sc, fmt.Sprintf("SELECT count(*) FROM pg_namespace WHERE nspname IN ('%s', '%s')", schemas[0], schemas[1]))
	if err != nil || rows[0][0] != int64(2) {
		t.Errorf("scratch schemas seen by the test: %v %v", rows, err)
	}
	if n := leftovers(); n != "0" {
		t.Errorf("another session sees %s scratch schemas", n)
	}
	// The model runs read-only.
	if _, _, err := collectLive(ctx, sc, "INSERT INTO "+real+".users (id) VALUES (4) RETURNING id"); err == nil || !strings.Contains(err.Error(), "read-only transaction") {
		t.Errorf("a write in the scratch transaction: %v", err)
	}
	if err := sc.Close(); err != nil {
		t.Fatal(err)
	}
	if n := leftovers(); n != "0" {
		t.Errorf("%s scratch schemas left after Close", n)
	}
	if got := db.query(t, "SELECT count(*)::text FROM "+real+".users"); got != "1" {
		t.Errorf("the real table holds %s rows, want its own 1", got)
	}

	t.Run("the model queries' settings, whatever the role's or the DSN's", func(t *testing.T) {
		odd := db
		odd.dsn += "&options=" + strings.NewReplacer(" ", "%20", "=", "%3D", "/", "%2F").Replace("-c TimeZone=Pacific/Kiritimati -c bytea_output=escape")
		sc, err := odd.source(t, LiveOptions{}).(FixtureRunner).OnFixtures(ctx, liveFixture(t, real))
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		_, rows, err := collectLive(ctx, sc, "SELECT signup::date::text, current_setting('TimeZone'), '\\x41ff'::bytea FROM "+real+".users ORDER BY id LIMIT 1")
		if err != nil {
			t.Fatal(err)
		}
		if want := []any{"2024-01-02", "UTC", []byte{0x41, 0xff}}; !reflect.DeepEqual(rows[0], want) {
			t.Errorf("a test's model read %#v, want %#v (as plan reads it)", rows[0], want)
		}
	})

	t.Run("reading a table the test gives no rows", func(t *testing.T) {
		sc, err := src.OnFixtures(ctx, liveFixture(t, real))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sc.Close() }) // a scratch left open holds the source
		defer sc.Close()
		_, _, err = collectLive(ctx, sc, "SELECT u.id FROM "+real+".users u JOIN "+real+".orders o ON o.id = u.id")
		if err == nil || !strings.Contains(err.Error(), "the model reads "+real+".orders, which the test gives no rows") {
			t.Errorf("got %v", err)
		}
		// An unqualified name resolves in the scratch schema first, then on
		// the session's search_path, where the check finds it.
		db.admin(t, "CREATE TABLE public."+real+" (id int)")
		t.Cleanup(func() { db.admin(t, "DROP TABLE public."+real) })
		_, _, err = collectLive(ctx, sc, "SELECT id FROM "+real)
		if err == nil || !strings.Contains(err.Error(), "the model reads public."+real+", which the test gives no rows") {
			t.Errorf("an unqualified production table: %v", err)
		}
		_, _, err = collectLive(ctx, sc, "SELECT id FROM nowhere")
		if err == nil || !strings.Contains(err.Error(), `relation "nowhere" does not exist`) || strings.Contains(err.Error(), scratchPrefix) {
			t.Errorf("an unknown table: %v", err)
		}
	})

	t.Run("declared types", func(t *testing.T) {
		fx := liveFixture(t, real)
		fx.Scripts = []LiveScript{{Shown: "fx/users.sql", Text: "CREATE TABLE " + real + ".users (id int PRIMARY KEY, first_name varchar(10), last_name text, email text, signup date, balance numeric(10,2) DEFAULT 1.5);\n" +
			"INSERT INTO " + real + ".users (id) VALUES (99);"}}
		sc, err := src.OnFixtures(ctx, fx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sc.Close() }) // a scratch left open holds the source
		defer sc.Close()
		_, rows, err := collectLive(ctx, sc, "SELECT pg_typeof(id)::text, pg_typeof(signup)::text, round(balance * 3, 1)::text, signup FROM "+real+".users ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		// The table block replaced the script's row, in the declared types.
		if len(rows) != 3 || !reflect.DeepEqual(rows[0], []any{"integer", "date", "4.5", time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)}) {
			t.Errorf("declared table: %#v", rows)
		}
	})

	t.Run("a failed load leaves nothing and frees the source", func(t *testing.T) {
		fx := liveFixture(t, real)
		fx.Scripts = []LiveScript{{Shown: "fx/bad.sql", Text: "CREATE TABLE t (id int);\nINSERT INTO t VALUES ('not a number');"}}
		_, err := src.OnFixtures(ctx, fx)
		var ue *UnavailableError
		if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "fx/bad.sql:2: PostgreSQL at 127.0.0.1:5432:") || !strings.Contains(err.Error(), "invalid input syntax for type integer") {
			t.Errorf("got %v", err)
		}
		if _, rows, err := collectLive(ctx, src, "SELECT 1 AS one"); err != nil || rows[0][0] != int64(1) {
			t.Errorf("the source after a failed load: %v %v", rows, err)
		}
	})

	t.Run("an interrupted model leaves nothing", func(t *testing.T) {
		sc, err := src.OnFixtures(ctx, liveFixture(t, real))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sc.Close() }) // a scratch left open holds the source
		qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if _, _, err := collectLive(qctx, sc, "SELECT id FROM "+real+".users, pg_sleep(30)"); !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			t.Errorf("interrupted model: %v", err)
		}
		if err := sc.Close(); err != nil {
			t.Fatal(err)
		}
		if n := leftovers(); n != "0" {
			t.Errorf("%s scratch schemas left", n)
		}
		if _, rows, err := collectLive(ctx, src, "SELECT 1 AS one"); err != nil || rows[0][0] != int64(1) {
			t.Errorf("the source after an interrupted test: %v %v", rows, err)
		}
	})
}

func TestMySQLFixtures(t *testing.T) {
	db := mysqlDB(t)
	ctx := guard(t)
	real := strings.ToLower(uniqueTable("bf_real"))
	db.admin(t, "CREATE DATABASE "+real)
	t.Cleanup(func() { db.admin(t, "DROP DATABASE "+real) })
	db.admin(t, "CREATE TABLE "+real+".users (id int, first_name text, last_name text, email text, signup datetime)")
	db.admin(t, "INSERT INTO "+real+".users VALUES (9, 'Real', 'Row', 'real@example.com', now())")
	db.admin(t, "CREATE TABLE "+real+".orders (id int)")
	src := db.source(t, LiveOptions{}).(FixtureRunner)
	if got := src.Server(); got != "MariaDB at 127.0.0.1:3306" && got != "MySQL at 127.0.0.1:3306" {
		t.Errorf("Server() = %q", got)
	}
	exists := func(name string) bool {
		return db.query(t, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '"+name+"'") == "1"
	}
	// Left behind by runs killed two hours and one minute ago.
	stale := scratchPrefix + strconv.FormatInt(time.Now().Add(-2*time.Hour).Unix(), 36) + "_deadbeef"
	young := scratchPrefix + strconv.FormatInt(time.Now().Add(-time.Minute).Unix(), 36) + "_deadbeef"
	for _, name := range []string{stale, young} {
		db.admin(t, "CREATE DATABASE IF NOT EXISTS "+name)
	}
	t.Cleanup(func() { db.admin(t, "DROP DATABASE IF EXISTS "+young); db.admin(t, "DROP DATABASE IF EXISTS "+stale) })

	sc, err := src.OnFixtures(ctx, liveFixture(t, real))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sc.Close() }) // a scratch left open holds the source
	if exists(stale) || !exists(young) {
		t.Errorf("sweep: the two-hour-old scratch database exists %v (want false), the new one %v (want true)", exists(stale), exists(young))
	}
	schemas := sc.Schemas()
	for _, s := range schemas {
		if !exists(s) {
			t.Errorf("scratch database %s does not exist during the test", s)
		}
	}
	_, rows, err := collectLive(ctx, sc, "SELECT id, CONCAT(first_name, ' ', last_name) AS full_name, signup FROM "+real+".users WHERE email LIKE '%@example.com' ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]any{{int64(1), "Ann Lee", time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}, {int64(2), "Bob Ray", time.Date(2024, 2, 3, 4, 5, 6, 0, time.UTC)}}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("model on the fixtures: %#v, want %#v", rows, want)
	}
	if _, _, err := collectLive(ctx, sc, "SELECT u.id FROM "+real+".users u JOIN "+real+".orders o ON o.id = u.id"); err == nil || !strings.Contains(err.Error(), "the model reads "+real+".orders, which the test gives no rows") {
		t.Errorf("reading a table the test gives no rows: %v", err)
	}
	if _, _, err := collectLive(ctx, sc, "SELECT id FROM nowhere"); err == nil || !strings.Contains(err.Error(), "nowhere' doesn't exist") || strings.Contains(err.Error(), scratchPrefix) {
		t.Errorf("an unknown table: %v", err)
	}
	if err := sc.Close(); err != nil {
		t.Fatal(err)
	}
	for _, s := range schemas {
		if exists(s) {
			t.Errorf("scratch database %s left after Close", s)
		}
	}
	if got := db.query(t, "SELECT COUNT(*) FROM "+real+".users"); got != "1" {
		t.Errorf("the real table holds %s rows, want its own 1", got)
	}

	t.Run("a failed load drops what it created", func(t *testing.T) {
		marker := knownScratchRandom(t)
		fx := liveFixture(t, real)
		fx.Scripts = []LiveScript{{Shown: "fx/bad.sql", Text: "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1, 2);"}}
		_, err := src.OnFixtures(ctx, fx)
		if err == nil || !strings.Contains(err.Error(), "fx/bad.sql:2: MariaDB at 127.0.0.1:3306:") || !strings.Contains(err.Error(), "Column count doesn't match") {
			t.Errorf("got %v", err)
		}
		if n := db.query(t, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '"+scratchPrefix+"%\\_"+marker+"%'"); n != "0" {
			t.Errorf("%s scratch databases left by the failed load", n)
		}
		if _, rows, err := collectLive(ctx, src, "SELECT 1 AS one"); err != nil || rows[0][0] != int64(1) {
			t.Errorf("the source after a failed load: %v %v", rows, err)
		}
	})
}

// TestLiveQueryEndingInAComment: a model query may end in semicolons and
// comments, as in a SQL client, on the source and on a test's fixtures:
// the statement describing its columns nests it whole.
func TestLiveQueryEndingInAComment(t *testing.T) {
	for _, db := range []liveDB{postgresDB(t), mysqlDB(t)} {
		ctx := guard(t)
		real := strings.ToLower(uniqueTable("bf_real"))
		drop := "DROP SCHEMA " + real + " CASCADE"
		if db.name == "mysql" {
			drop = "DROP DATABASE " + real
		}
		db.admin(t, "CREATE SCHEMA "+real)
		t.Cleanup(func() { db.admin(t, drop) })
		db.admin(t, "CREATE TABLE "+real+".users (id int, first_name text, last_name text, email text, signup timestamp)")
		endings := []string{"-- c", "; -- c", " ;\n-- c\n", "; /* c */ ;"}
		if db.name == "mysql" {
			endings = append(endings, "# c", "; # c")
		}
		check := func(name string, s Source) {
			for _, end := range endings {
				query := "SELECT id FROM " + real + ".users " + end
				if cols, err := s.Schema(ctx, query); err != nil || len(cols) != 1 || cols[0].Name != "id" {
					t.Errorf("%s %s: Schema(%q) = %v, %v", db.name, name, query, cols, err)
				}
				if _, _, err := collectLive(ctx, s, query); err != nil {
					t.Errorf("%s %s: Query(%q): %v", db.name, name, query, err)
				}
			}
		}
		src := db.source(t, LiveOptions{})
		check("source", src)
		sc, err := src.(FixtureRunner).OnFixtures(ctx, liveFixture(t, real))
		if err != nil {
			t.Fatal(err)
		}
		check("fixtures", sc)
		if err := sc.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
