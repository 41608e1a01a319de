package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/backflowhq/backflow/internal/testdb"
)

// The portable values every source of the round-trip matrix returns, as
// the destination's own client reads them back, in canonical text: exact
// integers beyond float64, exact decimals, raw bytes, dates, microsecond
// timestamps (with and without zone, the same instant in UTC), JSON and
// NULL.
var roundTrip = map[string]string{
	"s":  "héllo 'x'",
	"i":  "9007199254740993",
	"f":  "1.5",
	"d":  "12345678901234567890.123456789",
	"b":  "true",
	"bn": "00FF41",
	"dt": "2024-02-29",
	"ts": "2024-03-01 12:34:56.789012",
	"tz": "2024-03-01 12:34:56.789012",
	"j":  `{"a":[1,2,{"b":null}]}`,
	"n":  "NULL",
}

var roundTripColumns = []string{"s", "i", "f", "d", "b", "bn", "dt", "ts", "tz", "j", "n"}

// rtSource is a source of the matrix: its block, and setup of its data.
type rtSource struct {
	name  string
	block func(t *testing.T, dir string) (source, query, columnTypes string)
}

// rtDest is a destination of the matrix: its block and its own reading.
type rtDest struct {
	name  string
	block func(t *testing.T, dir string) (block, table string)
	read  func(t *testing.T, dir, table string) map[string]string
}

// TestRoundTripMatrix sends every portable type from the embedded engine
// and from each live source into each SQL destination, and reads it back
// with the database's own client.
func TestRoundTripMatrix(t *testing.T) {
	for _, src := range rtSources() {
		for _, dst := range rtDests() {
			t.Run(src.name+"_to_"+dst.name, func(t *testing.T) {
				dir := t.TempDir()
				source, query, columnTypes := src.block(t, dir)
				destBlock, table := dst.block(t, dir)
				mapping := make([]string, len(roundTripColumns))
				for i, c := range roundTripColumns {
					mapping[i] = c + ` = "` + c + `"`
				}
				cfg := source + `
model "m" {
  source      = source.src
  query       = "` + query + `"
  primary_key = "k"
  ` + columnTypes + `
}
` + destBlock + `
sync "s" {
  model       = model.m
  destination = destination.dst
  object      = "` + table + `"
  key         = "k"
  mapping     = { ` + strings.Join(mapping, ", ") + ` }
}
`
				if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg), 0o644); err != nil {
					t.Fatal(err)
				}
				if code, out, errOut := backflow("-C", dir, "apply", "--auto-approve"); code != 0 || !strings.Contains(out, "1 accepted, 0 rejected") {
					t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
				}
				got := dst.read(t, dir, table)
				if j1, j2 := canonicalJSON(got["j"]), canonicalJSON(roundTrip["j"]); j1 == j2 {
					got["j"] = roundTrip["j"]
				}
				if !reflect.DeepEqual(got, roundTrip) {
					for _, c := range roundTripColumns {
						if got[c] != roundTrip[c] {
							t.Errorf("column %s: got %q, want %q", c, got[c], roundTrip[c])
						}
					}
				}
			})
		}
	}
}

func canonicalJSON(s string) string {
	var v any
	if json.Unmarshal([]byte(s), &v) != nil {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

const rtQuery = "SELECT k, s, i, f, d, b, bn, dt, ts, tz, j, n FROM "

func rtSources() []rtSource {
	return []rtSource{
		{"embedded", func(t *testing.T, dir string) (string, string, string) {
			os.MkdirAll(filepath.Join(dir, "data"), 0o755)
			fixture := `CREATE TABLE rt (k INT, s VARCHAR(100), i BIGINT, f DOUBLE, d DECIMAL(30,9), b BOOLEAN, bn VARBINARY(10),
  dt DATE, ts DATETIME(6), tz DATETIME(6), j JSON, n VARCHAR(10));
INSERT INTO rt VALUES (1, 'héllo ''x''', 9007199254740993, 1.5, 12345678901234567890.123456789, TRUE, X'00FF41',
  '2024-02-29', '2024-03-01 12:34:56.789012', '2024-03-01 12:34:56.789012', '{"a":[1,2,{"b":null}]}', NULL);
`
			if err := os.WriteFile(filepath.Join(dir, "data/rt.sql"), []byte(fixture), 0o644); err != nil {
				t.Fatal(err)
			}
			return "source \"src\" {\n  type     = \"embedded\"\n  fixtures = \"data\"\n}\n", rtQuery + "rt", ""
		}},
		{"postgres", func(t *testing.T, dir string) (string, string, string) {
			conn := testdb.Postgres(t)
			table := testdb.PostgresTable(t, conn, `k int PRIMARY KEY, s text, i bigint, f double precision, d numeric(30,9), b boolean, bn bytea,
				dt date, ts timestamp(6), tz timestamptz(6), j jsonb, n text`)
			testdb.PostgresExec(t, conn, "INSERT INTO "+table+` VALUES (1, 'héllo ''x''', 9007199254740993, 1.5, 12345678901234567890.123456789, true, '\x00ff41',
				'2024-02-29', '2024-03-01 12:34:56.789012', '2024-03-01 13:34:56.789012+01', '{"a":[1,2,{"b":null}]}', NULL)`)
			return "source \"src\" {\n  type = \"postgres\"\n  dsn  = \"" + testdb.PostgresDSN + "\"\n}\n", rtQuery + table, ""
		}},
		{"mariadb", func(t *testing.T, dir string) (string, string, string) {
			db := testdb.MariaDB(t)
			table := testdb.MariaDBTable(t, db, `k INT PRIMARY KEY, s VARCHAR(100), i BIGINT, f DOUBLE, d DECIMAL(30,9), b TINYINT(1), bn VARBINARY(10),
				dt DATE, ts DATETIME(6), tz TIMESTAMP(6) NULL, j JSON, n VARCHAR(10)`)
			testdb.MariaDBExec(t, db, "SET time_zone = '+00:00'", "INSERT INTO "+table+` VALUES (1, 'héllo ''x''', 9007199254740993, 1.5, 12345678901234567890.123456789, 1, X'00FF41',
				'2024-02-29', '2024-03-01 12:34:56.789012', '2024-03-01 12:34:56.789012', '{"a":[1,2,{"b":null}]}', NULL)`)
			return "source \"src\" {\n  type = \"mysql\"\n  dsn  = \"" + testdb.MariaDBDSN + "\"\n}\n", rtQuery + table, `column_types = { b = "bool", j = "json" }`
		}},
	}
}

func rtDests() []rtDest {
	return []rtDest{
		{"sqlite",
			func(t *testing.T, dir string) (string, string) {
				return `destination "dst" {
  type     = "sqlite"
  path     = "dst.db"
  init_sql = "CREATE TABLE IF NOT EXISTS rt (k INTEGER PRIMARY KEY, s TEXT, i INTEGER, f REAL, d TEXT, b BOOLEAN, bn BLOB, dt DATE, ts DATETIME, tz DATETIME, j JSON, n TEXT)"
}
`, "rt"
			},
			func(t *testing.T, dir, table string) map[string]string {
				db, err := sql.Open("sqlite", filepath.Join(dir, "dst.db"))
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				return scanText(t, db.QueryRow(`SELECT s, CAST(i AS TEXT), CAST(f AS TEXT), d, CASE b WHEN 1 THEN 'true' WHEN 0 THEN 'false' END,
					hex(bn), CAST(dt AS TEXT), CAST(ts AS TEXT), CAST(tz AS TEXT), j, COALESCE(n, 'NULL') FROM `+table+` WHERE k = 1`))
			}},
		{"postgres",
			func(t *testing.T, dir string) (string, string) {
				table := testdb.PostgresTable(t, testdb.Postgres(t), `k int PRIMARY KEY, s text, i bigint, f double precision, d numeric(30,9), b boolean, bn bytea,
					dt date, ts timestamp(6), tz timestamptz(6), j jsonb, n text`)
				return "destination \"dst\" {\n  type = \"postgres\"\n  dsn  = \"" + testdb.PostgresDSN + "\"\n}\n", table
			},
			func(t *testing.T, dir, table string) map[string]string {
				conn := testdb.Postgres(t)
				row := conn.QueryRow(context.Background(), `SELECT s, i::text, f::text, d::text, b::text, upper(encode(bn, 'hex')), dt::text,
					to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US'), to_char(tz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), j::text, COALESCE(n, 'NULL') FROM `+table+` WHERE k = 1`)
				return scanText(t, row)
			}},
		{"mariadb",
			func(t *testing.T, dir string) (string, string) {
				table := testdb.MariaDBTable(t, testdb.MariaDB(t), `k INT PRIMARY KEY, s VARCHAR(100), i BIGINT, f DOUBLE, d DECIMAL(30,9), b BOOLEAN, bn VARBINARY(10),
					dt DATE, ts DATETIME(6), tz TIMESTAMP(6) NULL, j JSON, n VARCHAR(10)`)
				return "destination \"dst\" {\n  type = \"mysql\"\n  dsn  = \"" + testdb.MariaDBDSN + "\"\n}\n", table
			},
			func(t *testing.T, dir, table string) map[string]string {
				db := testdb.MariaDB(t)
				conn, err := db.Conn(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				if _, err := conn.ExecContext(context.Background(), "SET time_zone = '+00:00'"); err != nil {
					t.Fatal(err)
				}
				return scanText(t, conn.QueryRowContext(context.Background(), `SELECT s, CAST(i AS CHAR), CAST(f AS CHAR), CAST(d AS CHAR), IF(b, 'true', 'false'), HEX(bn),
					CAST(dt AS CHAR), DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s.%f'), DATE_FORMAT(tz, '%Y-%m-%d %H:%i:%s.%f'), JSON_COMPACT(j), COALESCE(n, 'NULL') FROM `+table+` WHERE k = 1`))
			}},
	}
}

type scanner interface{ Scan(dest ...any) error }

func scanText(t *testing.T, row scanner) map[string]string {
	t.Helper()
	vals := make([]sql.NullString, len(roundTripColumns))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := row.Scan(ptrs...); err != nil {
		t.Fatalf("reading back: %v", err)
	}
	out := map[string]string{}
	for i, c := range roundTripColumns {
		out[c] = fmt.Sprint(vals[i].String)
		if !vals[i].Valid {
			out[c] = "<null>"
		}
	}
	return out
}
