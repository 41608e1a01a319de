package engine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/schema"
)

const (
	postgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	mysqlDSN    = "root@tcp(127.0.0.1:3306)/test"
)

// guard bounds a test that talks to a server, so that a hang fails the
// test instead of stalling the run.
func guard(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// unreachable skips the test outside CI, and fails it under CI, where the
// servers are part of the job.
func unreachable(t *testing.T, what string, err error) {
	t.Helper()
	if os.Getenv("CI") == "" {
		t.Skipf("%s unreachable (set CI to make this fail): %v", what, err)
	}
	t.Fatalf("%s unreachable in CI: %v", what, err)
}

// liveDB is one kind of live server as the tests see it: a way to open the
// source under test, and an administrative connection that sets up and
// checks tables behind the source's back.
type liveDB struct {
	name  string
	dsn   string
	open  func(context.Context, string, LiveOptions) (Source, error)
	admin func(t *testing.T, stmt string)
	query func(t *testing.T, q string) string // first column of the first row, as text
}

func postgresDB(t *testing.T) liveDB {
	t.Helper()
	ctx := guard(t)
	conn, err := pgx.Connect(ctx, postgresDSN)
	if err != nil {
		unreachable(t, "PostgreSQL", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	var mu sync.Mutex
	return liveDB{
		name: "postgres", dsn: postgresDSN, open: OpenPostgres,
		admin: func(t *testing.T, stmt string) {
			t.Helper()
			mu.Lock()
			defer mu.Unlock()
			if _, err := conn.Exec(ctx, stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		},
		query: func(t *testing.T, q string) string {
			t.Helper()
			mu.Lock()
			defer mu.Unlock()
			var s *string
			if err := conn.QueryRow(ctx, q).Scan(&s); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			if s == nil {
				return "NULL"
			}
			return *s
		},
	}
}

func mysqlDB(t *testing.T) liveDB {
	t.Helper()
	ctx := guard(t)
	cfg, err := mysql.ParseDSN(mysqlDSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MultiStatements = true
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { _ = db.Close() })
	if err := db.PingContext(ctx); err != nil {
		unreachable(t, "MySQL", err)
	}
	return liveDB{
		name: "mysql", dsn: mysqlDSN, open: OpenMySQL,
		admin: func(t *testing.T, stmt string) {
			t.Helper()
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		},
		query: func(t *testing.T, q string) string {
			t.Helper()
			var s sql.NullString
			if err := db.QueryRowContext(ctx, q).Scan(&s); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			if !s.Valid {
				return "NULL"
			}
			return s.String
		},
	}
}

func (d liveDB) source(t *testing.T, opts LiveOptions) Source {
	t.Helper()
	src, err := d.open(guard(t), d.dsn, opts)
	if err != nil {
		t.Fatalf("opening %s: %v", d.name, err)
	}
	t.Cleanup(func() { _ = src.Close() })
	return src
}

func uniqueTable(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), time.Now().UnixNano()%1_000_000_000)
}

// collectLive reads every row of query.
func collectLive(ctx context.Context, src Source, query string) ([]schema.Column, [][]any, error) {
	return collectTuned(ctx, src, query, Tuning{})
}

// collectTuned is collectLive through QueryTuned with tuning.
func collectTuned(ctx context.Context, src Source, query string, tuning Tuning) ([]schema.Column, [][]any, error) {
	rows, err := QueryTuned(ctx, src, query, tuning)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var out [][]any
	for rows.Next() {
		out = append(out, append([]any(nil), rows.Row()...))
	}
	if err := rows.Err(); err != nil {
		return nil, out, err
	}
	return rows.Columns(), out, rows.Close()
}

var (
	wantTS    = time.Date(2024, 5, 3, 11, 57, 0, 123456000, time.UTC)
	wantDate  = time.Date(2024, 5, 3, 0, 0, 0, 0, time.UTC)
	wantBytes = []byte{0x00, 'h', 'i', 0xff}
)

const bigDecimal = "12345678901234567890.123456789"

func TestPostgresTypes(t *testing.T) {
	db := postgresDB(t)
	src := db.source(t, LiveOptions{})
	table := uniqueTable("backflow_engine_pgtypes")
	db.admin(t, `CREATE TABLE `+table+` (id BIGINT PRIMARY KEY, s TEXT, i BIGINT, small SMALLINT, f DOUBLE PRECISION,
		r REAL, d NUMERIC(40,9), b BOOLEAN, raw BYTEA, day DATE, ts TIMESTAMP(6), tstz TIMESTAMPTZ(6),
		jb JSONB, j JSON, u UUID, arr INT[], iv INTERVAL, arr2 INT[][], tarr TEXT[], empty INT[])`)
	t.Cleanup(func() { db.admin(t, "DROP TABLE IF EXISTS "+table) })
	db.admin(t, `INSERT INTO `+table+` VALUES
		(1, 'héllo', -9007199254740993, 3, 0.1, 1.1, `+bigDecimal+`, true, '\x006869ff', '2024-05-03',
		 '2024-05-03 11:57:00.123456', '2024-05-03 13:57:00.123456+02',
		 '{"big": 12345678901234567890123, "a": {"b": [1, 2.50, {"c": null}]}}',
		 '{"a": {"b": [1, 2.50, {"c": null}]},  "big": 12345678901234567890123}',
		 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{1,2,3}', '1 day 02:00:00', '{{1,2},{3,4}}', '{"a b",NULL,"c,d"}', '{}'),
		(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`)
	query := "SELECT * FROM " + table + " ORDER BY id"

	want := []struct {
		typ schema.Type
		val any
	}{
		{schema.TypeInt, int64(1)},
		{schema.TypeString, "héllo"},
		{schema.TypeInt, int64(-9007199254740993)},
		{schema.TypeInt, int64(3)},
		{schema.TypeFloat, 0.1},
		{schema.TypeFloat, 1.1},
		{schema.TypeDecimal, bigDecimal},
		{schema.TypeBool, true},
		{schema.TypeBytes, wantBytes},
		{schema.TypeTimestamp, wantDate},
		{schema.TypeTimestamp, wantTS},
		{schema.TypeTimestamp, wantTS},
		{schema.TypeJSON, `{"a":{"b":[1,2.50,{"c":null}]},"big":12345678901234567890123}`},
		{schema.TypeJSON, `{"a":{"b":[1,2.50,{"c":null}]},"big":12345678901234567890123}`},
		{schema.TypeString, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{schema.TypeString, "{1,2,3}"},
		{schema.TypeString, "1 day 02:00:00"},
		// Arrays keep their dimensions.
		{schema.TypeString, "{{1,2},{3,4}}"},
		{schema.TypeString, `{"a b",NULL,"c,d"}`},
		{schema.TypeString, "{}"},
	}
	checkTypes(t, src, query, want)

	// The same values whatever the role's or the DSN's settings: the rows
	// arrive as text, whose form these settings change.
	odd := db
	odd.dsn += "&options=" + strings.NewReplacer(" ", "%20", "=", "%3D", ",", "%2C", "/", "%2F").Replace(
		"-c extra_float_digits=0 -c DateStyle=German,DMY -c IntervalStyle=iso_8601 -c bytea_output=escape -c TimeZone=Pacific/Kiritimati")
	checkTypes(t, odd.source(t, LiveOptions{}), query, want)
	// And a model's dates are UTC's, as on MySQL sources.
	_, rows, err := collectLive(guard(t), odd.source(t, LiveOptions{}), "SELECT TIMESTAMPTZ '2024-05-03 23:30:00+00'::date AS d, current_setting('TimeZone') AS tz")
	if err != nil {
		t.Fatal(err)
	}
	if got := rows[0]; !reflect.DeepEqual(got, []any{wantDate, "UTC"}) {
		t.Errorf("a model under TimeZone Pacific/Kiritimati read %v, want [%v UTC]", got, wantDate)
	}
}

func TestMySQLTypes(t *testing.T) {
	db := mysqlDB(t)
	src := db.source(t, LiveOptions{})
	table := uniqueTable("backflow_engine_mytypes")
	db.admin(t, `CREATE TABLE `+table+` (id BIGINT PRIMARY KEY, s VARCHAR(100), i BIGINT, small SMALLINT, f DOUBLE,
		r FLOAT, d DECIMAL(40,9), b BOOL, raw VARBINARY(10), day DATE, ts DATETIME(6), tstz TIMESTAMP(6) NULL,
		j JSON, u INT UNSIGNED, blob_col BLOB)`)
	t.Cleanup(func() { db.admin(t, "DROP TABLE IF EXISTS "+table) })
	db.admin(t, `SET time_zone = '+02:00'`)
	db.admin(t, `INSERT INTO `+table+` VALUES
		(1, 'héllo', -9007199254740993, 3, 0.1, 1.1, `+bigDecimal+`, true, X'006869ff', '2024-05-03',
		 '2024-05-03 11:57:00.123456', '2024-05-03 11:57:00.123456',
		 '{"a": {"b": [1, 2.50, {"c": null}]}, "big": 12345678901234567890123}', 4294967295, X'00ff'),
		(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`)
	// The TIMESTAMP was written in a +02:00 session: the instant is 09:57 UTC.
	wantInstant := wantTS.Add(-2 * time.Hour)
	query := "SELECT * FROM " + table + " ORDER BY id"
	want := []struct {
		typ schema.Type
		val any
	}{
		{schema.TypeInt, int64(1)},
		{schema.TypeString, "héllo"},
		{schema.TypeInt, int64(-9007199254740993)},
		{schema.TypeInt, int64(3)},
		{schema.TypeFloat, 0.1},
		{schema.TypeFloat, 1.1},
		{schema.TypeDecimal, bigDecimal},
		{schema.TypeInt, int64(1)}, // TINYINT(1): see Retype
		{schema.TypeBytes, wantBytes},
		{schema.TypeTimestamp, wantDate},
		{schema.TypeTimestamp, wantTS},
		{schema.TypeTimestamp, wantInstant},
		{schema.TypeString, `{"a": {"b": [1, 2.50, {"c": null}]}, "big": 12345678901234567890123}`}, // MariaDB: LONGTEXT
		{schema.TypeInt, int64(4294967295)},
		{schema.TypeBytes, []byte{0x00, 0xff}},
	}
	if !strings.Contains(strings.ToLower(db.query(t, "SELECT VERSION()")), "mariadb") {
		want[12] = struct {
			typ schema.Type
			val any
		}{schema.TypeJSON, `{"a":{"b":[1,2.50,{"c":null}]},"big":12345678901234567890123}`}
	}
	checkTypes(t, src, query, want)

	// Retype reads the flag as bool and MariaDB's JSON as JSON.
	rsrc := Retype(src, map[string]schema.Type{"b": schema.TypeBool, "j": schema.TypeJSON})
	want[7].typ, want[7].val = schema.TypeBool, true
	want[12].typ, want[12].val = schema.TypeJSON, `{"a":{"b":[1,2.50,{"c":null}]},"big":12345678901234567890123}`
	checkTypes(t, rsrc, query, want)
}

func checkTypes(t *testing.T, src Source, query string, want []struct {
	typ schema.Type
	val any
}) {
	t.Helper()
	ctx := guard(t)
	described, err := src.Schema(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	cols, rows, err := collectLive(ctx, src, query)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cols, described) {
		t.Errorf("Schema and Query disagree:\n%v\n%v", described, cols)
	}
	if len(cols) != len(want) || len(rows) != 2 {
		t.Fatalf("got %d columns and %d rows, want %d and 2", len(cols), len(rows), len(want))
	}
	for i, w := range want {
		c := cols[i]
		if c.Type != w.typ {
			t.Errorf("column %s (%s): type %s, want %s", c.Name, c.DBType, c.Type, w.typ)
		}
		if got := rows[0][i]; !reflect.DeepEqual(got, w.val) {
			t.Errorf("column %s (%s): %#v (%T), want %#v (%T)", c.Name, c.DBType, got, got, w.val, w.val)
		}
		if i > 0 && rows[1][i] != nil {
			t.Errorf("column %s (%s): NULL read as %#v", c.Name, c.DBType, rows[1][i])
		}
	}
}

func TestPostgresReadOnly(t *testing.T) {
	db := postgresDB(t)
	src := db.source(t, LiveOptions{})
	table := uniqueTable("backflow_engine_pgro")
	fn := table + "_fn"
	seq := table + "_seq"
	db.admin(t, `CREATE TABLE `+table+` (id BIGINT PRIMARY KEY, email TEXT)`)
	db.admin(t, `CREATE SEQUENCE `+seq)
	db.admin(t, `CREATE FUNCTION `+fn+`() RETURNS bigint LANGUAGE sql AS $$ INSERT INTO `+table+` VALUES (99, 'x') RETURNING id $$`)
	t.Cleanup(func() {
		db.admin(t, "DROP FUNCTION IF EXISTS "+fn+"()")
		db.admin(t, "DROP TABLE IF EXISTS "+table)
		db.admin(t, "DROP SEQUENCE IF EXISTS "+seq)
	})
	db.admin(t, `INSERT INTO `+table+` VALUES (1, 'a@x.io'), (2, 'b@x.io')`)
	snapshot := func() string {
		return db.query(t, `SELECT string_agg(id || '=' || email, ',' ORDER BY id) FROM `+table) + " seq " +
			db.query(t, `SELECT last_value || '/' || is_called FROM `+seq)
	}
	before := snapshot()
	for _, tc := range []struct{ query, message string }{
		{`DELETE FROM ` + table + ` RETURNING id`, "cannot execute DELETE in a read-only transaction"},
		{`WITH gone AS (DELETE FROM ` + table + ` RETURNING id) SELECT id FROM gone`, "in a read-only transaction"},
		{`UPDATE ` + table + ` SET email = 'z' RETURNING id`, "cannot execute UPDATE in a read-only transaction"},
		{`SELECT ` + fn + `() AS id`, "cannot execute INSERT in a read-only transaction"},
		{`SELECT nextval('` + seq + `') AS id`, "cannot execute nextval() in a read-only transaction"},
		{`SELECT 1 AS id; DELETE FROM ` + table, "cannot insert multiple commands into a prepared statement"},
		{`DROP TABLE ` + table, "cannot execute DROP TABLE in a read-only transaction"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			ctx := guard(t)
			// Neither describing nor running the model may change anything.
			_, _ = src.Schema(ctx, tc.query)
			_, _, err := collectLive(ctx, src, tc.query)
			if err == nil || !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %v, want one saying %q", err, tc.message)
			}
			if after := snapshot(); after != before {
				t.Errorf("table changed: %s, was %s", after, before)
			}
		})
	}
	// A model that ends its transaction leaves the next one read-only.
	ctx := guard(t)
	_, _, _ = collectLive(ctx, src, "COMMIT")
	if _, _, err := collectLive(ctx, src, `DELETE FROM `+table+` RETURNING id`); err == nil {
		t.Error("a DELETE after a COMMIT model ran")
	}
	if after := snapshot(); after != before {
		t.Errorf("table changed: %s, was %s", after, before)
	}
	// The source still reads after all these failures.
	if _, rows, err := collectLive(ctx, src, "SELECT count(*) FROM "+table); err != nil || !reflect.DeepEqual(rows, [][]any{{int64(2)}}) {
		t.Errorf("count after failures: %v %v", rows, err)
	}
}

// TestMySQLQueryTuned checks that QueryTuned sets its settings for its
// query alone: the connection that had them is not used again, and a
// setting that is not a plain name and a number or a word is refused.
func TestMySQLQueryTuned(t *testing.T) {
	db := mysqlDB(t)
	src := db.source(t, LiveOptions{})
	ctx := guard(t)
	const query = "SELECT @@SESSION.tmp_table_size AS v"
	global := db.query(t, "SELECT @@GLOBAL.tmp_table_size")
	want := "33554432"
	if global == want {
		want = "50331648"
	}
	_, rows, err := collectTuned(ctx, src, query, Tuning{Settings: []Setting{{Name: "tmp_table_size", Value: want}}})
	if err != nil || len(rows) != 1 || fmt.Sprint(rows[0][0]) != want {
		t.Fatalf("tuned: %v %v, want tmp_table_size %s", rows, err, want)
	}
	for i := 0; i < 3; i++ { // whichever pooled connection comes
		_, rows, err = collectLive(ctx, src, query)
		if err != nil || len(rows) != 1 || fmt.Sprint(rows[0][0]) != global {
			t.Fatalf("a query after the tuned one: %v %v, want the server's tmp_table_size %s", rows, err, global)
		}
	}
	for _, st := range []Setting{{Name: "tmp_table_size = 1, SESSION sql_mode", Value: "1"}, {Name: "tmp_table_size", Value: "1; DROP TABLE t"}, {Name: "tmp_table_size", Value: "'1'"}} {
		if _, _, err := collectTuned(ctx, src, query, Tuning{Settings: []Setting{st}}); err == nil {
			t.Errorf("setting %+v was taken", st)
		}
	}
}

func TestMySQLReadOnly(t *testing.T) {
	db := mysqlDB(t)
	// multiStatements in the DSN must not let a model run a second statement.
	db.dsn += "?multiStatements=true"
	src := db.source(t, LiveOptions{})
	table := uniqueTable("backflow_engine_myro")
	proc := table + "_p"
	db.admin(t, `CREATE TABLE `+table+` (id BIGINT PRIMARY KEY, email VARCHAR(100))`)
	db.admin(t, `CREATE PROCEDURE `+proc+`() BEGIN INSERT INTO `+table+` VALUES (99, 'x'); SELECT 1 AS id; END`)
	t.Cleanup(func() {
		db.admin(t, "DROP PROCEDURE IF EXISTS "+proc)
		db.admin(t, "DROP TABLE IF EXISTS "+table)
	})
	db.admin(t, `INSERT INTO `+table+` VALUES (1, 'a@x.io'), (2, 'b@x.io')`)
	snapshot := func() string {
		return db.query(t, `SELECT GROUP_CONCAT(id, '=', email ORDER BY id) FROM `+table)
	}
	before := snapshot()
	readOnly := "READ ONLY transaction"
	if !strings.Contains(strings.ToLower(db.query(t, "SELECT VERSION()")), "mariadb") {
		readOnly = "READ ONLY transaction" // MySQL: Cannot execute statement in a READ ONLY transaction.
	}
	for _, tc := range []struct{ query, message string }{
		{`DELETE FROM ` + table, readOnly},
		{`INSERT INTO ` + table + ` VALUES (3, 'c')`, readOnly},
		{`UPDATE ` + table + ` SET email = 'z'`, readOnly},
		{`DELETE FROM ` + table + ` RETURNING id`, readOnly},
		{`DROP TABLE ` + table, readOnly},
		{`CALL ` + proc + `()`, readOnly},
		{`SELECT 1 AS id; DELETE FROM ` + table, "You have an error in your SQL syntax"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			ctx := guard(t)
			_, _ = src.Schema(ctx, tc.query)
			_, _, err := collectLive(ctx, src, tc.query)
			if err == nil || !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %v, want one saying %q", err, tc.message)
			}
			if after := snapshot(); after != before {
				t.Errorf("table changed: %s, was %s", after, before)
			}
		})
	}
	ctx := guard(t)
	_, _, _ = collectLive(ctx, src, "COMMIT")
	if _, _, err := collectLive(ctx, src, `DELETE FROM `+table); err == nil {
		t.Error("a DELETE after a COMMIT model ran")
	}
	if after := snapshot(); after != before {
		t.Errorf("table changed: %s, was %s", after, before)
	}
	if _, rows, err := collectLive(ctx, src, "SELECT COUNT(*) FROM "+table); err != nil || !reflect.DeepEqual(rows, [][]any{{int64(2)}}) {
		t.Errorf("count after failures: %v %v", rows, err)
	}
}

// A query that fails on the server while it runs reports the server's
// message from Query when it fails before the first row, and from Err
// when it fails later.
func TestLiveRunTimeErrors(t *testing.T) {
	for _, tc := range []struct {
		db       func(*testing.T) liveDB
		query    string
		message  string
		rowsRead int
	}{
		{postgresDB, "SELECT CAST(email AS int) AS id FROM (VALUES ('a@x.io')) v(email)", `invalid input syntax for type integer: "a@x.io"`, -1},
		{postgresDB, "SELECT 1/0 AS id", "division by zero", -1},
		{postgresDB, "SELECT 1/(5-g) AS id FROM generate_series(1, 10) g", "division by zero", 4},
		{mysqlDB, "SELECT (SELECT 1 UNION SELECT 2) AS id", "Subquery returns more than 1 row", -1},
	} {
		t.Run(tc.query, func(t *testing.T) {
			db := tc.db(t)
			src := db.source(t, LiveOptions{})
			ctx := guard(t)
			rows, err := src.Query(ctx, tc.query)
			if tc.rowsRead < 0 {
				if err == nil || !strings.Contains(err.Error(), tc.message) {
					t.Fatalf("Query error %v, want one saying %q", err, tc.message)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			n := 0
			for rows.Next() {
				n++
			}
			if err := rows.Err(); err == nil || !strings.Contains(err.Error(), tc.message) || n != tc.rowsRead {
				t.Errorf("after %d rows, Err %v; want %d rows and an error saying %q", n, err, tc.rowsRead, tc.message)
			}
		})
	}
}

func TestLiveBlackHoleConnectTimeout(t *testing.T) {
	addr := testdb.BlackHole(t)
	opts := LiveOptions{ConnectTimeout: 300 * time.Millisecond}
	for _, tc := range []struct {
		name string
		open func(context.Context, string, LiveOptions) (Source, error)
		dsn  string
	}{
		{"postgres", OpenPostgres, "postgres://canaryuser:canarypass@" + addr + "/canarydb?application_name=canaryopt"},
		{"mysql", OpenMySQL, "canaryuser:canarypass@tcp(" + addr + ")/canarydb?canaryvar=canaryopt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.open(guard(t), tc.dsn, opts)
			var te *TimeoutError
			if !errors.As(err, &te) || te.Op != "connect" || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v (%T), want a connect timeout", err, err)
			}
			msg := err.Error()
			t.Log(msg)
			if !strings.Contains(msg, addr) || !strings.Contains(msg, "connect_timeout") {
				t.Errorf("message %q does not name %s and the setting", msg, addr)
			}
			if strings.Contains(msg, "canary") {
				t.Errorf("message %q shows the DSN's user, database, password or options", msg)
			}
		})
	}
}

// proxy forwards loopback connections to a server until stall is called;
// from then on it forwards nothing, in either direction, and answers no
// new connection, holding every socket open.
type proxy struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	stalled bool
	stop    chan struct{}
	conns   []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, stop: make(chan struct{})}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) stall() {
	p.mu.Lock()
	p.stalled = true
	p.mu.Unlock()
}

func (p *proxy) isStalled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stalled
}

func (p *proxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.track(c)
		if p.isStalled() {
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.track(s)
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

func (p *proxy) pipe(from, to net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if p.isStalled() {
			<-p.stop
			return
		}
		if n > 0 {
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	for _, c := range p.conns {
		_ = c.Close()
	}
}

// A server that answered the handshake and then stops answering, before a
// query or in the middle of its rows, is bounded by the query timeout.
func TestLiveStalledServerQueryTimeout(t *testing.T) {
	for _, tc := range []struct {
		name   string
		db     func(*testing.T) liveDB
		target string
		dsn    func(addr string) string
		query  string
	}{
		{"postgres", postgresDB, "127.0.0.1:5432",
			func(addr string) string { return "postgres://postgres@" + addr + "/test?sslmode=disable" },
			// Both series are small and made at once; their product streams
			// (and costs too little for JIT compilation to delay the first row).
			"SELECT a.g * 1000 + b.g AS g, repeat('x', 500) AS pad FROM generate_series(1, 1000) a(g), generate_series(1, 1000) b(g)"},
		{"mysql", mysqlDB, "127.0.0.1:3306",
			func(addr string) string { return "root@tcp(" + addr + ")/test" },
			"SELECT a.seq AS g, REPEAT('x', 200) AS pad FROM seq_1_to_5000 a, seq_1_to_1000 b"},
	} {
		for _, when := range []string{"before the query", "mid-rows"} {
			t.Run(tc.name+" "+when, func(t *testing.T) {
				db := tc.db(t)
				if tc.name == "mysql" && !strings.Contains(strings.ToLower(db.query(t, "SELECT VERSION()")), "mariadb") {
					t.Skip("the query uses MariaDB's sequence tables")
				}
				p := newProxy(t, tc.target)
				ctx := guard(t)
				// The server's own timeout is far away: only the client can end this.
				src, err := tc.db(t).open(ctx, tc.dsn(p.addr()), LiveOptions{ConnectTimeout: 2 * time.Second, QueryTimeout: 500 * time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				defer src.Close()
				if when == "before the query" {
					p.stall()
				}
				rows, err := src.Query(ctx, tc.query)
				if when == "mid-rows" {
					if err != nil {
						t.Fatalf("the query failed before the stall: %v", err)
					}
					p.stall()
				}
				if err == nil {
					for rows.Next() {
					}
					err = rows.Err()
					_ = rows.Close()
				}
				t.Log(err)
				var te *TimeoutError
				if !errors.As(err, &te) || te.Op != "query" {
					t.Fatalf("got %v (%T), want a query timeout", err, err)
				}
				if ctx.Err() != nil {
					t.Fatal("the guard ran out: the query timeout did not end the query")
				}
				if !strings.Contains(err.Error(), p.addr()) || !strings.Contains(err.Error(), "query_timeout") {
					t.Errorf("message %q does not name the server and the setting", err)
				}
			})
		}
	}
}

// The server's own statement timeout ends a slow query and its message is
// kept.
func TestLiveServerStatementTimeout(t *testing.T) {
	for _, tc := range []struct {
		db      func(*testing.T) liveDB
		query   string
		message string
	}{
		{postgresDB, "SELECT pg_sleep(30) AS id", "canceling statement due to statement timeout"},
		{mysqlDB, "SELECT COUNT(*) AS n FROM seq_1_to_1000000 a, seq_1_to_1000000 b", "max_statement_time exceeded"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			db := tc.db(t)
			if strings.Contains(tc.query, "seq_1_to") && !strings.Contains(strings.ToLower(db.query(t, "SELECT VERSION()")), "mariadb") {
				t.Skip("the query uses MariaDB's sequence tables")
			}
			src := db.source(t, LiveOptions{QueryTimeout: 300 * time.Millisecond})
			ctx := guard(t)
			_, _, err := collectLive(ctx, src, tc.query)
			var te *TimeoutError
			if !errors.As(err, &te) || te.Op != "query" || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("got %v, want a query timeout saying %q", err, tc.message)
			}
			// The source still works.
			if _, rows, err := collectLive(ctx, src, "SELECT 7 AS n"); err != nil || !reflect.DeepEqual(rows, [][]any{{int64(7)}}) {
				t.Errorf("after the timeout: %v %v", rows, err)
			}
		})
	}
}

// Cancelling the context (Ctrl-C) ends a running model query, on the
// server too.
func TestLiveCancelEndsServerQuery(t *testing.T) {
	for _, tc := range []struct {
		db      func(*testing.T) liveDB
		query   func(marker string) string
		running func(marker string) string // counts the server's statements that carry the marker
	}{
		{postgresDB,
			func(m string) string { return "SELECT pg_sleep(120) AS id /* " + m + " */" },
			func(m string) string {
				return "SELECT count(*)::text FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%" + m + " */'"
			}},
		{mysqlDB,
			// BENCHMARK, not SLEEP: MariaDB ends a SLEEP whose client went away,
			// but runs a busy statement on until it is killed.
			func(m string) string { return "SELECT BENCHMARK(1000000000000, MD5('x')) AS id /* " + m + " */" },
			func(m string) string {
				return "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND = 'Query' AND INFO LIKE '%" + m + " */'"
			}},
	} {
		db := tc.db(t)
		t.Run(db.name, func(t *testing.T) {
			// A query the cancellation failed to end still ends on the
			// server after 40s, later than the test waits for it.
			src := db.source(t, LiveOptions{QueryTimeout: 40 * time.Second})
			marker := uniqueTable("backflow_cancel")
			guardCtx := guard(t)
			ctx, cancel := context.WithCancel(guardCtx)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, _, err := collectLive(ctx, src, tc.query(marker))
				done <- err
			}()
			waitFor(t, guardCtx, func() bool { return db.query(t, tc.running(marker)) == "1" }, "the query to start")
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("got %v, want an error wrapping context.Canceled", err)
				}
				var te *TimeoutError
				if errors.As(err, &te) {
					t.Errorf("a cancelled query reported as a timeout: %v", err)
				}
			case <-guardCtx.Done():
				t.Fatal("the cancelled query did not return")
			}
			endCtx, cancelEnd := context.WithTimeout(guardCtx, 20*time.Second)
			defer cancelEnd()
			waitFor(t, endCtx, func() bool { return db.query(t, tc.running(marker)) == "0" }, "the server to end the query")
		})
	}
}

// waitFor polls cond until it holds, failing the test when ctx ends first.
func waitFor(t *testing.T, ctx context.Context, cond func() bool, what string) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-tick.C:
		}
	}
}

func TestLiveErrorsHideDSN(t *testing.T) {
	ctx := guard(t)
	for _, tc := range []struct {
		open func(context.Context, string, LiveOptions) (Source, error)
		dsn  string
	}{
		{OpenPostgres, "postgres://bob:s3cretpw@127.0.0.1:1/canarydb?sslmode=disable"},
		{OpenMySQL, "bob:s3cretpw@tcp(127.0.0.1:1)/canarydb"},
		{OpenMySQL, "bob:s3cretpw@nonsense"},
		{OpenPostgres, "postgres://bob:s3cretpw@[::1"},
		// Reachable servers refusing the user or database.
		{OpenPostgres, "postgres://canaryuser:s3cretpw@127.0.0.1:5432/test?sslmode=disable"},
		{OpenPostgres, "postgres://postgres@127.0.0.1:5432/canarydb?sslmode=disable"},
		{OpenMySQL, "canaryuser:s3cretpw@tcp(127.0.0.1:3306)/test"},
		{OpenMySQL, "root@tcp(127.0.0.1:3306)/canarydb"},
		{OpenMySQL, "root@tcp(127.0.0.1:3306)/test?canaryvar=canaryopt"},
	} {
		_, err := tc.open(ctx, tc.dsn, LiveOptions{ConnectTimeout: 2 * time.Second})
		if err == nil {
			t.Errorf("opening %s succeeded", strings.ReplaceAll(tc.dsn, "s3cretpw", "***"))
			continue
		}
		for _, bad := range []string{"s3cretpw", "bob", "canary", tc.dsn} {
			if strings.Contains(err.Error(), bad) {
				t.Errorf("error leaks %q: %v", bad, err)
			}
		}
	}
}

func TestConnectionErrorsMaskWords(t *testing.T) {
	l := newLiveErrors("PostgreSQL", "h:1", LiveOptions{}, []string{"postgres://bob:pw@h/db"}, []string{"bob", "5432", "x"})
	got := l.conn.String(`FATAL: password authentication failed for user "bob" (bobby, bob@x, bob) on 5432`)
	want := `FATAL: password authentication failed for user "(sensitive)" (bobby, (sensitive)@x, (sensitive)) on 5432`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if q := l.secrets.String(`relation "bob" does not exist`); q != `relation "bob" does not exist` {
		t.Errorf("query errors keep names: %s", q)
	}
}

// TestMySQLKilledQuerySaysSo: a model query whose session is killed
// (KILL, a restart, a proxy cutting it) fails saying what happened, not
// only the driver's "invalid connection".
func TestMySQLKilledQuerySaysSo(t *testing.T) {
	db := mysqlDB(t)
	src := db.source(t, LiveOptions{})
	ctx := guard(t)
	marker := uniqueTable("bfkill")
	done := make(chan error, 1)
	go func() {
		_, _, err := collectLive(ctx, src, "SELECT SLEEP(30) AS "+marker)
		done <- err
	}()
	var id string
	for id == "" || id == "NULL" {
		select {
		case err := <-done:
			t.Fatalf("the query ended before it was killed: %v", err)
		default:
		}
		// Polling the server for the query to start, not ordering events.
		time.Sleep(5 * time.Millisecond)
		id = db.query(t, "SELECT MAX(id) FROM information_schema.processlist WHERE info LIKE '%AS "+marker+"%' AND info NOT LIKE '%processlist%'")
	}
	db.admin(t, "KILL CONNECTION "+id)
	err := <-done
	if err == nil {
		t.Fatal("the killed query succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "closed the connection") && !strings.Contains(msg, "killed") {
		t.Fatalf("a killed query says: %v", msg)
	}
	t.Logf("%v", err)
}

// TestQueryTunedGuard checks that a guarded query's other tables wait as
// the session says (the guard's lock wait is its own: the DSN's setting
// is back for the query), and that a guarded table another session locks
// is a *LockError naming it once the guard's wait runs out.
func TestQueryTunedGuard(t *testing.T) {
	for _, c := range []struct {
		db             liveDB
		dsn, schema, q string
		want           string
	}{
		{postgresDB(t), postgresDSN + "&lock_timeout=7000", "public", "SELECT current_setting('lock_timeout') AS v", "7s"},
		{mysqlDB(t), mysqlDSN + "?lock_wait_timeout=77", "test", "SELECT @@SESSION.lock_wait_timeout AS v", "77"},
	} {
		t.Run(c.db.name, func(t *testing.T) {
			table := uniqueTable("backflow_engine_guard")
			c.db.admin(t, "CREATE TABLE "+table+" (id integer)")
			t.Cleanup(func() { c.db.admin(t, "DROP TABLE "+table) })
			c.db.dsn = c.dsn
			src := c.db.source(t, LiveOptions{})
			ctx := guard(t)
			tu := Tuning{Guard: []Table{{Schema: c.schema, Name: table}}, GuardWait: time.Second}
			_, rows, err := collectTuned(ctx, src, c.q, tu)
			if err != nil || len(rows) != 1 || fmt.Sprint(rows[0][0]) != c.want {
				t.Fatalf("guarded query: %v %v, want the DSN's %s", rows, err, c.want)
			}
			if c.db.name != "postgres" {
				return // the admin pool cannot hold a lock on one connection
			}
			c.db.admin(t, "BEGIN")
			c.db.admin(t, "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE")
			start := time.Now()
			_, _, err = collectTuned(ctx, src, c.q, tu)
			took := time.Since(start)
			c.db.admin(t, "ROLLBACK")
			var le *LockError
			if !errors.As(err, &le) || le.Table != tu.Guard[0] || !strings.Contains(err.Error(), "pg_locks") {
				t.Fatalf("guarded query of a locked table: %v, want a LockError naming %s", err, table)
			}
			if took > 10*time.Second {
				t.Fatalf("the guard waited %v, want about 1s", took)
			}
		})
	}
}

// checkRowsRead creates a table of db from columns (an id first), fills it
// with insert (SQL after INSERT INTO the table), and checks that src reads
// the columns of query (cols, from the table, by id) as want.
func checkRowsRead(t *testing.T, db liveDB, src Source, columns, insert, cols string, want [][]any) {
	t.Helper()
	table := uniqueTable("backflow_engine_rows")
	db.admin(t, `CREATE TABLE `+table+` (`+columns+`)`)
	t.Cleanup(func() { db.admin(t, "DROP TABLE IF EXISTS "+table) })
	db.admin(t, strings.ReplaceAll(insert, "TABLE", table))
	_, rows, err := collectLive(guard(t), src, "SELECT "+cols+" FROM "+table+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("rows %#v, want %#v", rows, want)
	}
}

// TestMySQLZeroAndInvalidDates: dates MySQL keeps but no calendar has
// ('0000-00-00', a zero month or day, February 30th, under
// ALLOW_INVALID_DATES) are read as their text, not moved to other days
// (year 1, the month before, March 1st) as the driver's own parsing does.
func TestMySQLZeroAndInvalidDates(t *testing.T) {
	db := mysqlDB(t)
	checkRowsRead(t, db, db.source(t, LiveOptions{}), `id BIGINT PRIMARY KEY, d DATE, dt DATETIME(3)`,
		`SET SESSION sql_mode = 'ALLOW_INVALID_DATES'; INSERT INTO TABLE VALUES (1, '0000-00-00', '0000-00-00 00:00:00'), (2, '2024-00-15', '2024-02-30 10:00:00.250'),
		(3, '2024-02-29', '2024-02-29 23:59:59.999')`, "d, dt", [][]any{
			{"0000-00-00", "0000-00-00 00:00:00.000"},
			{"2024-00-15", "2024-02-30 10:00:00.250"},
			{time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), time.Date(2024, 2, 29, 23, 59, 59, 999e6, time.UTC)},
		})
}

// TestMySQLInvalidDatesThroughUnion: a UNION (warehouse CDC's statement
// has one) keeps an invalid date as the table does, rather than making it
// '0000-00-00 00:00:00' as MariaDB does under its default SQL mode.
func TestMySQLInvalidDatesThroughUnion(t *testing.T) {
	db := mysqlDB(t)
	src := db.source(t, LiveOptions{})
	table := uniqueTable("backflow_engine_union")
	db.admin(t, `CREATE TABLE `+table+` (id BIGINT PRIMARY KEY, ts DATETIME)`)
	t.Cleanup(func() { db.admin(t, "DROP TABLE IF EXISTS "+table) })
	db.admin(t, `SET SESSION sql_mode = 'ALLOW_INVALID_DATES'; INSERT INTO `+table+` VALUES (1, '2024-02-30 10:00:00')`)
	_, rows, err := collectLive(guard(t), src, "SELECT ts FROM "+table+" UNION ALL SELECT CAST(NULL AS DATETIME)")
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]any{{"2024-02-30 10:00:00"}, {nil}}; !reflect.DeepEqual(rows, want) {
		t.Errorf("rows %#v, want %#v", rows, want)
	}
}

// TestMySQLUnsignedAboveInt64: a BIGINT UNSIGNED above int64's range reads
// as a uint64 (which plans, state and destinations carry), not as an
// error that failed the whole query.
func TestMySQLUnsignedAboveInt64(t *testing.T) {
	db := mysqlDB(t)
	checkRowsRead(t, db, db.source(t, LiveOptions{}), `id BIGINT PRIMARY KEY, u BIGINT UNSIGNED`,
		`INSERT INTO TABLE VALUES (1, 18446744073709551615), (2, 9223372036854775808), (3, 9223372036854775807), (4, NULL)`, "u",
		[][]any{{uint64(18446744073709551615)}, {uint64(9223372036854775808)}, {int64(9223372036854775807)}, {nil}})
}

// TestPostgresInfinity: 'infinity' and '-infinity' dates and times, and
// numeric 'NaN' and infinities, read as their text (no time or decimal
// stands for them), not as an error that failed the whole query.
func TestPostgresInfinity(t *testing.T) {
	db := postgresDB(t)
	day, at := time.Date(2024, 5, 3, 0, 0, 0, 0, time.UTC), time.Date(2024, 5, 3, 11, 57, 0, 0, time.UTC)
	checkRowsRead(t, db, db.source(t, LiveOptions{}), `id BIGINT PRIMARY KEY, d DATE, ts TIMESTAMP, tz TIMESTAMPTZ, n NUMERIC`,
		`INSERT INTO TABLE VALUES (1, 'infinity', '-infinity', 'infinity', 'NaN'), (2, '2024-05-03', '2024-05-03 11:57:00', '2024-05-03 11:57:00+00', '1.50'),
		(3, NULL, NULL, NULL, 'Infinity'), (4, NULL, NULL, NULL, '-Infinity')`, "d, ts, tz, n",
		[][]any{{"infinity", "-infinity", "infinity", "NaN"}, {day, at, at, "1.50"}, {nil, nil, nil, "Infinity"}, {nil, nil, nil, "-Infinity"}})
}

// TestLiveHugeQueryTimeout: a query_timeout past what a server takes as a
// statement timeout (PostgreSQL: 2³¹-1 ms, 24.8 days) still runs queries;
// the server bounds them at its most, the client at the timeout. Before,
// PostgreSQL refused the setting and with it every query.
func TestLiveHugeQueryTimeout(t *testing.T) {
	for _, db := range []liveDB{postgresDB(t), mysqlDB(t)} {
		t.Run(db.name, func(t *testing.T) {
			ctx := guard(t)
			src := db.source(t, LiveOptions{QueryTimeout: 1000 * time.Hour})
			_, rows, err := collectLive(ctx, src, "SELECT 1 AS x")
			if err != nil || len(rows) != 1 {
				t.Fatalf("a query with a 1000h timeout: %v rows, %v", rows, err)
			}
		})
	}
}
