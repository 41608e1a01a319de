package pushdown

import (
	"fmt"
	"strings"

	"github.com/backflowhq/backflow/schema"
)

// Dialect is the SQL spoken by the source.
type Dialect string

const (
	Postgres Dialect = "postgres"
	MySQL    Dialect = "mysql" // MySQL and MariaDB
)

// Tables kept in the owned schema.
const (
	rowsTable  = "cdc_rows"
	syncsTable = "cdc_syncs"
)

// Names of the columns the diff statement adds after the model's.
const (
	colDBKey   = "__bf_k"
	colDBHash  = "__bf_h"
	colSKey    = "__bf_skey"
	colSHash   = "__bf_shash"
	colSVals   = "__bf_svals"
	colSynced  = "__bf_synced"
	colFailed  = "__bf_failed"
	colSDBHash = "__bf_sdbhash"
	colCand    = "__bf_cand"
	colKind    = "__bf_kind"
	colN       = "__bf_n"
)

// extraCols is how many columns the statement adds after the model's.
const extraCols = 11

func (d Dialect) ident(s string) string {
	if d == MySQL {
		return "`" + strings.ReplaceAll(s, "`", "``") + "`"
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// lit quotes a string literal. Both dialects double single quotes; MySQL
// also reads backslashes as escapes (unless NO_BACKSLASH_ESCAPES), so a
// literal holding one is written as hex instead.
func (d Dialect) lit(s string) string {
	if d == MySQL && strings.ContainsAny(s, "\\\x00") {
		return fmt.Sprintf("_utf8mb4 X'%X'", s)
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func (d Dialect) table(schemaName, name string) string {
	return d.ident(schemaName) + "." + d.ident(name)
}

// ddl creates the owned schema and its tables.
func (d Dialect) ddl(schemaName string) []string {
	rows, syncs := d.table(schemaName, rowsTable), d.table(schemaName, syncsTable)
	if d == MySQL {
		return []string{
			"CREATE DATABASE IF NOT EXISTS " + d.ident(schemaName),
			"CREATE TABLE IF NOT EXISTS " + rows + ` (sync VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, dbkey VARBINARY(32) NOT NULL,
				bkey LONGBLOB NOT NULL, dbhash VARBINARY(16) NOT NULL, hash BIGINT NOT NULL, vals LONGBLOB NULL, synced BOOLEAN NOT NULL, failed BOOLEAN NOT NULL,
				PRIMARY KEY (sync, dbkey)) ENGINE=InnoDB`,
			"CREATE TABLE IF NOT EXISTS " + syncs + ` (sync VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
				fingerprint VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL) ENGINE=InnoDB`,
		}
	}
	return []string{
		"CREATE SCHEMA IF NOT EXISTS " + d.ident(schemaName),
		"CREATE TABLE IF NOT EXISTS " + rows + ` (sync text NOT NULL, dbkey text NOT NULL, bkey text NOT NULL, dbhash text NOT NULL,
			hash bigint NOT NULL, vals bytea, synced boolean NOT NULL, failed boolean NOT NULL, PRIMARY KEY (sync, dbkey))`,
		"CREATE TABLE IF NOT EXISTS " + syncs + ` (sync text PRIMARY KEY, fingerprint text NOT NULL)`,
	}
}

// encode is the text a MySQL value is hashed by: 'N' for NULL, otherwise
// 'V', the byte length and the bytes of its text form (a FLOAT through
// DOUBLE, whose text form is exact where FLOAT's is rounded to 6 digits).
func mysqlEncode(col string, t schema.Type) string {
	v := "q." + MySQL.ident(col)
	if t == schema.TypeFloat {
		v = "CAST(" + v + " AS DOUBLE)"
	}
	b := "CAST(" + v + " AS BINARY)"
	return fmt.Sprintf("IF(%s IS NULL, 'N', CONCAT('V', LENGTH(%s), ':', %s))", v, b, b)
}

// keyExpr is the database's key of a row: NULL when a key column is NULL.
// PostgreSQL: the text of the key column, or of the row of key columns
// (quoted, unambiguous); MySQL: SHA-256 of the key columns' encodings
// (binary, so that no collation folds case or trailing spaces).
func (d Dialect) keyExpr(keys []string, types map[string]schema.Type) string {
	var nulls []string
	for _, k := range keys {
		nulls = append(nulls, "q."+d.ident(k)+" IS NULL")
	}
	if d == MySQL {
		var enc []string
		for _, k := range keys {
			enc = append(enc, mysqlEncode(k, types[k]))
		}
		return fmt.Sprintf("IF(%s, NULL, UNHEX(SHA2(CONCAT(%s), 256)))", strings.Join(nulls, " OR "), strings.Join(enc, ", "))
	}
	if len(keys) == 1 {
		return "CAST(q." + d.ident(keys[0]) + " AS text)"
	}
	var cols []string
	for _, k := range keys {
		cols = append(cols, "q."+d.ident(k))
	}
	return fmt.Sprintf("CASE WHEN %s THEN NULL ELSE CAST(ROW(%s) AS text) END", strings.Join(nulls, " OR "), strings.Join(cols, ", "))
}

// hashExpr is the database's hash of the columns the diff depends on. It
// need not equal backflow's hash: it is compared only with what the same
// expression stored.
func (d Dialect) hashExpr(cols []string, types map[string]schema.Type) string {
	if d == MySQL {
		if len(cols) == 0 {
			return "UNHEX(MD5(''))"
		}
		var enc []string
		for _, c := range cols {
			enc = append(enc, mysqlEncode(c, types[c]))
		}
		return "UNHEX(MD5(CONCAT(" + strings.Join(enc, ", ") + ")))"
	}
	var qc []string
	for _, c := range cols {
		qc = append(qc, "q."+d.ident(c))
	}
	return "md5(CAST(ROW(" + strings.Join(qc, ", ") + ") AS text))"
}

// statement is the one query diffing a sync: the model's rows that need a
// look (kind 'row'), the snapshot entries no row matches ('gone'), and a
// count of the rows settled in the database ('same'). Every row carries
// the model's columns, then the extra columns named above.
type statement struct {
	d           Dialect
	schema      string
	sync        string
	query       string
	cols        []schema.Column
	keys        []string
	hashed      []string
	fingerprint string
	all         bool // mode "all": every row is sent, none is settled
	tables      bool // the snapshot tables exist
}

func (st statement) sql() string {
	d := st.d
	types := map[string]schema.Type{}
	for _, c := range st.cols {
		types[c.Name] = c.Type
	}
	var snap, fp string
	if st.tables {
		snap = fmt.Sprintf("SELECT dbkey, bkey, dbhash, hash, vals, synced, failed FROM %s WHERE sync = %s", d.table(st.schema, rowsTable), d.lit(st.sync))
		fp = fmt.Sprintf("SELECT COUNT(*) AS n FROM %s WHERE sync = %s AND fingerprint = %s", d.table(st.schema, syncsTable), d.lit(st.sync), d.lit(st.fingerprint))
	} else if d == MySQL {
		snap = "SELECT CAST(NULL AS BINARY) AS dbkey, CAST(NULL AS BINARY) AS bkey, CAST(NULL AS BINARY) AS dbhash, CAST(NULL AS SIGNED) AS hash, CAST(NULL AS BINARY) AS vals, FALSE AS synced, FALSE AS failed FROM DUAL WHERE FALSE"
		fp = "SELECT 0 AS n"
	} else {
		snap = "SELECT NULL::text AS dbkey, NULL::text AS bkey, NULL::text AS dbhash, NULL::bigint AS hash, NULL::bytea AS vals, false AS synced, false AS failed WHERE false"
		fp = "SELECT 0 AS n"
	}
	query := strings.TrimRight(strings.TrimSpace(st.query), "; \t\r\n")
	all := ""
	if st.all {
		all = " OR 1 = 1"
	}
	nulls := strings.Repeat("NULL, ", len(st.cols))
	var b strings.Builder
	fmt.Fprintf(&b, "WITH m AS (SELECT q.*, %s AS %s, %s AS %s FROM (\n%s\n) q),\n", d.keyExpr(st.keys, types), colDBKey, d.hashExpr(st.hashed, types), colDBHash, query)
	fmt.Fprintf(&b, "s AS (%s),\n", snap)
	fmt.Fprintf(&b, "d AS (SELECT %[1]s FROM m WHERE %[1]s IS NOT NULL GROUP BY %[1]s HAVING COUNT(*) > 1),\n", colDBKey)
	fmt.Fprintf(&b, "f AS (%s),\n", fp)
	fmt.Fprintf(&b, "j AS (SELECT m.*, s.bkey AS %s, s.hash AS %s, s.vals AS %s, s.synced AS %s, s.failed AS %s, s.dbhash AS %s,\n",
		colSKey, colSHash, colSVals, colSynced, colFailed, colSDBHash)
	fmt.Fprintf(&b, "  COALESCE(m.%[1]s IS NULL OR s.dbkey IS NULL OR s.failed OR NOT s.synced OR s.dbhash <> m.%[2]s OR d.%[1]s IS NOT NULL OR (SELECT n FROM f) = 0%[3]s, 1 = 1) AS %[4]s\n",
		colDBKey, colDBHash, all, colCand)
	fmt.Fprintf(&b, "  FROM m LEFT JOIN s ON s.dbkey = m.%[1]s LEFT JOIN d ON d.%[1]s = m.%[1]s)\n", colDBKey)
	fmt.Fprintf(&b, "SELECT j.*, 'row' AS %s, CAST(NULL AS %s) AS %s FROM j WHERE %s\n", colKind, map[Dialect]string{Postgres: "bigint", MySQL: "SIGNED"}[d], colN, colCand)
	fmt.Fprintf(&b, "UNION ALL SELECT %ss.dbkey, NULL, s.bkey, s.hash, s.vals, s.synced, s.failed, s.dbhash, NULL, 'gone', NULL FROM s WHERE NOT EXISTS (SELECT 1 FROM m WHERE m.%s = s.dbkey)\n", nulls, colDBKey)
	fmt.Fprintf(&b, "UNION ALL SELECT %sNULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'same', COUNT(*) FROM j WHERE NOT %s", nulls, colCand)
	return b.String()
}

// existsSQL counts the snapshot tables present in the owned schema.
func (d Dialect) existsSQL(schemaName string) string {
	return fmt.Sprintf("SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = %s AND table_name IN (%s, %s)",
		d.lit(schemaName), d.lit(rowsTable), d.lit(syncsTable))
}
