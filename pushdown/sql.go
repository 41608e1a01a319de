package pushdown

import (
	"fmt"
	"strconv"
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
// cdc_rows is narrow, what the first pass over every key reads; cdc_vals
// holds backflow's key, hash and values, read for the rows returned only.
const (
	rowsTable  = "cdc_rows"
	valsTable  = "cdc_vals"
	syncsTable = "cdc_syncs"
)

// Names of the columns the diff statement adds after the model's, in
// their order.
const (
	colDBKey   = "__bf_k"      // the row's database key
	colDBHash  = "__bf_h"      // the row's database hash
	colSDBKey  = "__bf_sk"     // the table row's database key (NULL: none)
	colSDBHash = "__bf_sdbh"   // the database hash stored
	colSynced  = "__bf_synced" // the record is in the snapshot
	colFailed  = "__bf_failed" // the record is in the failure index
	colSKey    = "__bf_skey"   // backflow's key stored
	colSHash   = "__bf_shash"  // backflow's hash stored
	colSVals   = "__bf_svals"  // the values last accepted
	colKind    = "__bf_kind"   // 'row', 'gone' or 'same'
	colN       = "__bf_n"      // for 'same': the rows settled
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
	rows, vals, syncs := d.table(schemaName, rowsTable), d.table(schemaName, valsTable), d.table(schemaName, syncsTable)
	if d == MySQL {
		const sync = "sync VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"
		const lineage = "lineage VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL"
		return []string{
			"CREATE DATABASE IF NOT EXISTS " + d.ident(schemaName),
			"CREATE TABLE IF NOT EXISTS " + rows + " (" + sync + ", dbkey VARBINARY(32) NOT NULL, dbhash VARBINARY(16) NOT NULL, synced BOOLEAN NOT NULL, failed BOOLEAN NOT NULL, PRIMARY KEY (sync, dbkey)) ENGINE=InnoDB",
			"CREATE TABLE IF NOT EXISTS " + vals + " (" + sync + ", dbkey VARBINARY(32) NOT NULL, bkey LONGBLOB NOT NULL, hash BIGINT NOT NULL, vals LONGBLOB NULL, PRIMARY KEY (sync, dbkey)) ENGINE=InnoDB",
			"CREATE TABLE IF NOT EXISTS " + syncs + " (" + sync + " PRIMARY KEY, fingerprint VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, " + lineage + ") ENGINE=InnoDB",
		}
	}
	return []string{
		"CREATE SCHEMA IF NOT EXISTS " + d.ident(schemaName),
		"CREATE TABLE IF NOT EXISTS " + rows + " (sync text NOT NULL, dbkey text NOT NULL, dbhash text NOT NULL, synced boolean NOT NULL, failed boolean NOT NULL, PRIMARY KEY (sync, dbkey))",
		"CREATE TABLE IF NOT EXISTS " + vals + " (sync text NOT NULL, dbkey text NOT NULL, bkey text NOT NULL, hash bigint NOT NULL, vals bytea, PRIMARY KEY (sync, dbkey))",
		"CREATE TABLE IF NOT EXISTS " + syncs + " (sync text PRIMARY KEY, fingerprint text NOT NULL, lineage text NULL)",
	}
}

// mysqlEncode is the text a MySQL value is hashed by: 'N' for NULL, otherwise
// 'V', the byte length and the bytes of its text form (a FLOAT through
// DOUBLE, whose text form is exact where FLOAT's is rounded to 6 digits).
func mysqlEncode(from, col string, t schema.Type) string {
	v := from + "." + MySQL.ident(col)
	if t == schema.TypeFloat {
		v = "CAST(" + v + " AS DOUBLE)"
	}
	b := "CAST(" + v + " AS BINARY)"
	return fmt.Sprintf("IF(%s IS NULL, 'N', CONCAT('V', LENGTH(%s), ':', %s))", v, b, b)
}

// keyExpr is the database's key of a row, never NULL: nullKey when a key
// column is NULL. PostgreSQL: 'k' and the text of the key column, or of
// the row of key columns (quoted, unambiguous); MySQL: SHA-256 of the key
// columns' encodings (binary, so that no collation folds case or trailing
// spaces), cast to its 32 bytes: UNHEX of SHA2's text is typed four times
// as wide on a utf8mb4 connection, and the statement's temporary tables
// with it.
func (d Dialect) keyExpr(keys []string, types map[string]schema.Type, padded map[string]bool) string {
	return d.keyExprOf("q", keys, types, padded)
}

// keyExprOf is keyExpr of the key columns of the relation named from.
func (d Dialect) keyExprOf(from string, keys []string, types map[string]schema.Type, padded map[string]bool) string {
	var nulls []string
	for _, k := range keys {
		nulls = append(nulls, from+"."+d.ident(k)+" IS NULL")
	}
	if d == MySQL {
		var enc []string
		for _, k := range keys {
			enc = append(enc, mysqlEncode(from, k, types[k]))
		}
		return fmt.Sprintf("IF(%s, %s, CAST(UNHEX(SHA2(CONCAT(%s), 256)) AS BINARY(32)))", strings.Join(nulls, " OR "), d.nullKey(), strings.Join(enc, ", "))
	}
	// PostgreSQL. A float key column is read as itself plus zero, which
	// turns -0 into 0: one key to backflow, so one text here.
	col := func(k string) string {
		if types[k] == schema.TypeFloat {
			return "(" + from + "." + d.ident(k) + " + '0')"
		}
		return from + "." + d.ident(k)
	}
	var text string
	switch {
	case len(keys) == 1 && padded[keys[0]]:
		// character(n): with its padding, as backflow reads the key (a
		// cast to text drops it; a row's text, below, keeps it).
		text = "CASE WHEN " + col(keys[0]) + " IS NOT NULL THEN 'k' || concat(" + col(keys[0]) + ") END"
	case len(keys) == 1:
		text = "'k' || CAST(" + col(keys[0]) + " AS text)"
	default:
		var cols []string
		for _, k := range keys {
			cols = append(cols, col(k))
		}
		text = "'k' || CAST(ROW(" + strings.Join(cols, ", ") + ") AS text)"
	}
	if longKeys(keys, types) {
		// The table's primary key holds the key's text, and a B-tree
		// entry at most 2,704 bytes: a longer key is its MD5 ('h'
		// keeps it apart from every text key).
		text = fmt.Sprintf("CASE WHEN octet_length(%[1]s) > %[2]d THEN 'h' || md5(%[1]s) ELSE %[1]s END", text, maxKeyText)
	}
	// Compared and grouped as bytes (COLLATE "C"): under a column's
	// nondeterministic collation, keys backflow tells apart ('a', 'A')
	// would be one.
	if len(keys) == 1 {
		return "(COALESCE(" + text + ", 'n') COLLATE \"C\")"
	}
	return fmt.Sprintf("(CASE WHEN %s THEN 'n' ELSE %s END COLLATE \"C\")", strings.Join(nulls, " OR "), text)
}

// byValue says whether PostgreSQL groups the model's rows by the key
// columns' values rather than by the key's text: when every key column is
// an integer, two keys are equal exactly when their texts are.
func byValue(keys []string, types map[string]schema.Type) bool {
	for _, k := range keys {
		if types[k] != schema.TypeInt {
			return false
		}
	}
	return true
}

// maxKeyText is the longest key text (bytes) PostgreSQL's table keeps as
// it is; longer ones are kept as their MD5.
const maxKeyText = 1024

// longKeys says whether a key of these columns can be longer than
// maxKeyText: not when every column is of a type of bounded text.
func longKeys(keys []string, types map[string]schema.Type) bool {
	for _, k := range keys {
		switch types[k] {
		case schema.TypeInt, schema.TypeFloat, schema.TypeBool, schema.TypeTimestamp:
		default:
			return true
		}
	}
	return len(keys) > 16
}

// nullKey is the database key of rows with a NULL key column; no record
// of the table has it.
func (d Dialect) nullKey() string {
	if d == MySQL {
		return "X'00'"
	}
	return "'n'"
}

// paddedType says whether a PostgreSQL column of database type dbType is
// character(n), whose padding a cast to text drops (hashExpr, keyExprOf).
func paddedType(dbType string) bool { return dbType == "bpchar" }

// hashExpr is the database's hash of the columns the diff depends on. It
// need not equal backflow's hash: it is compared only with what the same
// expression stored.
//
// padded are PostgreSQL character(n) columns: a cast to text drops their
// padding, which backflow reads ('a' as 'a    ' in a character(5)), so a
// change of n alone would hash alike while backflow sends the new
// padding; their output function's text (concat) keeps it.
func (d Dialect) hashExpr(cols []string, types map[string]schema.Type, padded map[string]bool, method string) string {
	if d == MySQL {
		if len(cols) == 0 {
			return "CAST(UNHEX(MD5('')) AS BINARY(16))"
		}
		var enc []string
		for _, c := range cols {
			enc = append(enc, mysqlEncode("q", c, types[c]))
		}
		return "CAST(UNHEX(MD5(CONCAT(" + strings.Join(enc, ", ") + "))) AS BINARY(16))"
	}
	var qc []string
	for _, c := range cols {
		v := "q." + d.ident(c)
		if method == hashRecord {
			switch types[c] {
			case schema.TypeInt, schema.TypeBool, schema.TypeTimestamp, schema.TypeBytes:
				// Hashed by their type: equal values are identical ones.
			default:
				// Text: numeric 1.0 and 1.00, float 0 and -0, and
				// types without a hash function are told apart; as
				// bytes (COLLATE "C"), so that a nondeterministic
				// collation does not hash 'a' and 'A' alike.
				if padded[c] {
					v = "concat(" + v + ") COLLATE \"C\""
				} else {
					v = "CAST(" + v + " AS text) COLLATE \"C\""
				}
			}
		}
		qc = append(qc, v)
	}
	if method == hashRecord {
		// A bigint: cheaper to group than text; written as text where
		// it is compared with the table or returned (hashText).
		return "hash_record_extended(ROW(" + strings.Join(qc, ", ") + "), 0)"
	}
	return "md5(CAST(ROW(" + strings.Join(qc, ", ") + ") AS text))"
}

// Hash methods of PostgreSQL: hash_record_extended (PostgreSQL 14 and
// later) hashes most values without writing them as text, four times
// faster than md5 of the row's text, which every engine speaking the
// protocol has. MySQL has one method.
const (
	hashMD5    = "md5"
	hashRecord = "hash_record"
)

// statement is the one query diffing a sync: the model's rows that need a
// look (kind 'row'), the snapshot entries no row matches ('gone'), and a
// count of the rows settled in the database ('same'; on MySQL the table's
// row count, 'entries', from which Diff counts them). Every row carries
// the model's columns, then the extra columns named above.
//
// The model's query runs twice: once narrow (key and hash of every row,
// grouped by key, so that duplicated keys are found and nothing wide is
// kept), joined with the table (MySQL: grouped with the table's rows);
// once for the rows needing a look only, joined with the few keys the
// first pass picked.
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
	method      string
	// part of parts (PostgreSQL, parts > 1): the statement diffs only the
	// keys of its part, the model's rows and the table's rows alike
	// (splitParts), so that its parts can run at once.
	part, parts int
}

// splitParts is how many parts a split statement has: two, one a core of
// the server's (PostgreSQL 15 runs a full join in one process). A key's
// part is a function of its text (keyExpr), computed from the model's row
// and from the table's dbkey: for a single integer column the parity of
// the number, which is the parity of its text's last digit; otherwise the
// text's hash.
const splitParts = 2

// modelPart is the part (0 or 1) of the model row q's key, computed before
// grouping.
func (st statement) modelPart(types map[string]schema.Type, padded map[string]bool) string {
	if len(st.keys) == 1 && types[st.keys[0]] == schema.TypeInt {
		// NULL is the key 'n', whose last character is no odd digit.
		return "COALESCE(CAST(q." + st.d.ident(st.keys[0]) + " AS bigint) & 1, 0)"
	}
	return "(hashtext(" + st.d.keyExpr(st.keys, types, padded) + ") & 1)"
}

// tablePart is the part of a table row's dbkey, as modelPart.
func (st statement) tablePart(types map[string]schema.Type) string {
	if len(st.keys) == 1 && types[st.keys[0]] == schema.TypeInt {
		return "(CASE WHEN right(dbkey, 1) IN ('1', '3', '5', '7', '9') THEN 1 ELSE 0 END)"
	}
	return "(hashtext(dbkey COLLATE \"C\") & 1)"
}

// partFilter is the condition keeping the rows of the statement's part,
// given their part: written "<> the other part" rather than "= this part",
// since the planner estimates an equality on an expression at half a
// percent of the rows, and would then hash a grouping it does in key order.
func (st statement) partFilter(part string) string {
	return fmt.Sprintf("%s <> %d", part, 1-st.part)
}

func (st statement) sql() string {
	d := st.d
	types, padded := map[string]schema.Type{}, map[string]bool{}
	for _, c := range st.cols {
		types[c.Name] = c.Type
		padded[c.Name] = paddedType(c.DBType)
	}
	var rows, vals, fp string
	split := st.parts > 1 && d == Postgres
	modelWhere, tableAnd := "", ""
	if split {
		modelWhere = " WHERE " + st.partFilter(st.modelPart(types, padded))
		tableAnd = " AND " + st.partFilter(st.tablePart(types))
	}
	if st.tables {
		rows = fmt.Sprintf("(SELECT dbkey, dbhash, synced, failed FROM %s WHERE sync = %s%s)", d.table(st.schema, rowsTable), d.lit(st.sync), tableAnd)
		vals = fmt.Sprintf("(SELECT dbkey, bkey, hash, vals FROM %s WHERE sync = %s)", d.table(st.schema, valsTable), d.lit(st.sync))
		fp = fmt.Sprintf("(SELECT COUNT(*) FROM %s WHERE sync = %s AND fingerprint = %s)", d.table(st.schema, syncsTable), d.lit(st.sync), d.lit(st.fingerprint))
	} else if d == MySQL {
		rows = "(SELECT CAST(NULL AS BINARY) AS dbkey, CAST(NULL AS BINARY) AS dbhash, FALSE AS synced, FALSE AS failed FROM DUAL WHERE FALSE)"
		vals = "(SELECT CAST(NULL AS BINARY) AS dbkey, CAST(NULL AS BINARY) AS bkey, CAST(NULL AS SIGNED) AS hash, CAST(NULL AS BINARY) AS vals FROM DUAL WHERE FALSE)"
		fp = "0"
	} else {
		rows = "(SELECT NULL::text AS dbkey, NULL::text AS dbhash, false AS synced, false AS failed WHERE false)"
		vals = "(SELECT NULL::text AS dbkey, NULL::text AS bkey, NULL::bigint AS hash, NULL::bytea AS vals WHERE false)"
		fp = "0"
	}
	query := st.query // engine.Subquery's: no semicolon ends it
	key, hash := d.keyExpr(st.keys, types, padded), d.hashExpr(st.hashed, types, padded, st.method)
	hashText := func(h string) string {
		if d == Postgres && st.method == hashRecord {
			return "CAST(" + h + " AS text)"
		}
		return h
	}
	all := ""
	if st.all {
		all = " OR 1 = 1"
	}
	var b strings.Builder
	if d == MySQL {
		// MariaDB computes a common table expression again at every
		// reference, so the keys needing a look and the gone ones come
		// from one aggregate, referenced twice: the model's keys and
		// hashes and the table's rows, grouped by key (a join of the two
		// needs an index lookup per model row and, without a full join,
		// a second pass over the model for the gone keys). cand: the key
		// needs a look: NULL, duplicated, new, failed, pending or
		// changed, or every key when the fingerprint changed.
		cand := fmt.Sprintf("k = %s OR nm > 1 OR gsk IS NULL OR gfailed OR NOT gsynced OR gdbh <> gh OR %s = 0%s", d.nullKey(), fp, all)
		fmt.Fprintf(&b, "WITH c AS (SELECT k, gsk AS sk, CASE WHEN nm = 0 THEN 'gone' ELSE 'row' END AS kind FROM (\n")
		fmt.Fprintf(&b, "  SELECT k, SUM(src) AS nm, MIN(h) AS gh, MAX(sk) AS gsk, MAX(dbhash) AS gdbh, MAX(synced) AS gsynced, MAX(failed) AS gfailed FROM (\n")
		fmt.Fprintf(&b, "    SELECT %s AS k, %s AS h, 1 AS src, CAST(NULL AS BINARY) AS sk, CAST(NULL AS BINARY) AS dbhash, NULL AS synced, NULL AS failed FROM (\n%s\n) q\n", key, hash, query)
		fmt.Fprintf(&b, "    UNION ALL SELECT s.dbkey, NULL, 0, s.dbkey, s.dbhash, s.synced, s.failed FROM %s s) u\n", rows)
		fmt.Fprintf(&b, "  GROUP BY k HAVING nm = 0 OR %s) x)\n", cand)
	} else {
		// cand: as above, of a key grouped (g) and its table row (s).
		cand := fmt.Sprintf("g.k = %s OR g.n > 1 OR s.dbkey IS NULL OR s.failed OR NOT s.synced OR s.dbhash <> %s OR %s = 0%s", d.nullKey(), hashText("g.h"), fp, all)
		// carried: columns of g that c carries too (the key's values).
		carried := ""
		if byValue(st.keys, types) {
			// Grouped by the key columns themselves, their text made
			// once per key: integers sort and compare cheaper than text,
			// and a model read in key order (a table's primary key) is
			// grouped as it is read, without sorting it.
			// A key with a NULL column is one group, as its text is
			// one: every column NULL.
			var kc, nulls, sel, by []string
			for _, k := range st.keys {
				kc = append(kc, "q."+d.ident(k))
				nulls = append(nulls, "q."+d.ident(k)+" IS NULL")
			}
			for i, k := range st.keys {
				v := kc[i]
				if len(kc) > 1 {
					v = fmt.Sprintf("CASE WHEN %s THEN NULL ELSE %s END", strings.Join(nulls, " OR "), v)
				}
				sel = append(sel, v+" AS "+d.ident(k))
				by = append(by, v)
			}
			// The key's values go along, so that the second pass picks
			// the model's rows by them (byValues).
			var vals []string
			for i, k := range st.keys {
				vals = append(vals, "x."+d.ident(k)+" AS "+keyValueCol(i))
				carried += ", g." + keyValueCol(i)
			}
			fmt.Fprintf(&b, "WITH g AS (SELECT %s AS k, %s, x.__bf_n AS n, x.__bf_h AS h FROM (SELECT %s, COUNT(*) AS __bf_n, MIN(%s) AS __bf_h FROM (\n%s\n) q%s GROUP BY %s) x),\n",
				d.keyExprOf("x", st.keys, types, padded), strings.Join(vals, ", "), strings.Join(sel, ", "), hash, query, modelWhere, strings.Join(by, ", "))
		} else {
			fmt.Fprintf(&b, "WITH g AS (SELECT k, COUNT(*) AS n, MIN(h) AS h FROM (SELECT %s AS k, %s AS h FROM (\n%s\n) q%s) x GROUP BY k),\n", key, hash, query, modelWhere)
		}
		// c: one row per key needing a look or gone. Every other table
		// row is a settled key, so the rows settled are counted below
		// from the table instead of by aggregating a million rows to one.
		// c carries its table row's columns, so that the rows returned
		// need not be joined with the table again (a hash of every
		// table row, to look up the few).
		fmt.Fprintf(&b, "c AS (SELECT COALESCE(g.k, s.dbkey) AS k%s, s.dbkey AS sk, s.dbhash AS sdbh, s.synced AS ssynced, s.failed AS sfailed, CASE WHEN g.k IS NULL THEN 'gone' ELSE 'row' END AS kind FROM g FULL JOIN %s s ON s.dbkey = g.k\n", carried, rows)
		fmt.Fprintf(&b, "  WHERE g.k IS NULL OR %s),\n", cand)
		// n: the table's row count, once, and whether the keys picked
		// are few enough beside it to look their values up one by one.
		// Split, the first part counts every row of the sync and the
		// others none: each table row is in one part's c or settled, so
		// the parts' 'same' figures (total less the table rows of their
		// c) add up to the rows settled, for one scan of the table
		// instead of one per part.
		total := fmt.Sprintf("SELECT COUNT(*) AS total FROM %s s", rows)
		if split && st.part == 0 {
			total = fmt.Sprintf("SELECT COUNT(*) AS total FROM %s WHERE sync = %s", d.table(st.schema, rowsTable), d.lit(st.sync))
		} else if split {
			total = "SELECT 0 AS total"
		}
		fmt.Fprintf(&b, "n AS (SELECT t.total, %s AS lookup FROM (%s) t)\n", st.lookupExpr(), total)
	}
	// snap: the snapshot's columns of a row returned, and the joins they
	// come from. MySQL looks the table rows up by key (c.sk).
	snap := []string{"r.dbkey", "r.dbhash", "r.synced", "r.failed", "v.bkey", "v.hash", "v.vals"}
	joins := fmt.Sprintf("LEFT JOIN %s r ON r.dbkey = c.sk LEFT JOIN %s v ON v.dbkey = c.sk", rows, vals)
	if d == Postgres {
		snap = []string{"c.sk", "c.sdbh", "c.ssynced", "c.sfailed", "v.bkey", "v.hash", "v.vals"}
		joins = fmt.Sprintf("LEFT JOIN %s v ON v.dbkey = c.sk", vals)
		if st.tables {
			snap = []string{"c.sk", "c.sdbh", "c.ssynced", "c.sfailed", "COALESCE(v1.bkey, v2.bkey)", "COALESCE(v1.hash, v2.hash)", "COALESCE(v1.vals, v2.vals)"}
			joins = st.pgValueJoins(tableAnd)
		}
	}
	fmt.Fprintf(&b, "SELECT m.*, %s, 'row' AS %s, CAST(NULL AS %s) AS %s\n",
		aliased(snap, colSDBKey, colSDBHash, colSynced, colFailed, colSKey, colSHash, colSVals), colKind, map[Dialect]string{Postgres: "bigint", MySQL: "SIGNED"}[d], colN)
	// PostgreSQL: the model's rows are first narrowed to the few keys
	// picked (a semi-join hashing those keys); joined with c directly, it
	// hashed every model row to probe them with the few.
	model := func(where string) string {
		return fmt.Sprintf("SELECT q.*, %s AS %s, %s AS %s FROM (\n%s\n) q%s", key, colDBKey, hashText(hash), colDBHash, query, where)
	}
	m := model("")
	if d == Postgres {
		m = model(fmt.Sprintf(" WHERE %s IN (SELECT k FROM c WHERE kind = 'row')", key))
		if byValue(st.keys, types) {
			m = st.byValues(model)
		}
	}
	fmt.Fprintf(&b, "  FROM (%s) m JOIN c ON c.k = m.%s AND c.kind = 'row' %s\n", m, colDBKey, joins)
	nulls := strings.Repeat("NULL, ", len(st.cols))
	if d == MySQL {
		nulls = mysqlNulls(st.cols)
		fmt.Fprintf(&b, "UNION ALL SELECT %[1]sr.dbkey, NULL, %[2]s, 'gone', NULL FROM c JOIN %[3]s r ON r.dbkey = c.sk LEFT JOIN %[4]s v ON v.dbkey = c.sk WHERE c.kind = 'gone'\n", nulls, strings.Join(snap, ", "), rows, vals)
		// The table's rows: those the statement did not return are the
		// settled keys (Diff counts them), c not being computed again.
		fmt.Fprintf(&b, "UNION ALL SELECT %sNULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'entries', (SELECT COUNT(*) FROM %s s)", nulls, rows)
	} else {
		// A gone key is a table row (c.sk is set).
		fmt.Fprintf(&b, "UNION ALL SELECT %[1]sc.sk, NULL, %[2]s, 'gone', NULL FROM c %[3]s WHERE c.kind = 'gone'\n", nulls, strings.Join(snap, ", "), joins)
		// A table row is matched by one key (keys are grouped) and is
		// settled, returned with that key, or gone: the settled ones are
		// the table's rows less those c holds.
		fmt.Fprintf(&b, "UNION ALL SELECT %sNULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'same', (SELECT total FROM n) - (SELECT COUNT(c.sk) FROM c)", nulls)
	}
	return b.String()
}

// mysqlNulls is the model's columns as NULLs in a branch of a UNION ALL
// that keeps their types: MySQL and MariaDB type an unsigned integer
// column UNION ALL a plain NULL (signed) as DECIMAL(20,0), which would
// reach rules and plans as decimal strings where the model's own query
// gives integers. Every other type comes through a plain NULL as it is.
func mysqlNulls(cols []schema.Column) string {
	var b strings.Builder
	for _, c := range cols {
		if isUnsignedInt(c.DBType) {
			b.WriteString("CAST(NULL AS UNSIGNED), ")
		} else {
			b.WriteString("NULL, ")
		}
	}
	return b.String()
}

// isUnsignedInt says whether a MySQL column's type, as the driver names
// it (lower-cased), is an unsigned integer.
func isUnsignedInt(dbType string) bool {
	switch strings.TrimPrefix(dbType, "unsigned ") {
	case dbType:
		return false
	case "tinyint", "smallint", "mediumint", "int", "bigint":
		return true
	}
	return false
}

// keyValueCol is the column of g and c holding the value of the key's
// i-th column (keys grouped by value).
func keyValueCol(i int) string { return "__bf_v" + strconv.Itoa(i) }

// byValues is the second pass's model rows when keys are grouped by
// value: the rows whose key values c picked, found by those few values
// (hashed, or looked up in the model's index on its key), not by the key
// text of every row (the text of 5 million keys made again, and hashed, to
// find 50,000). A row with a NULL key column matches no value: such rows
// come from a second branch, which runs only when c picked the NULL key
// (a one-time filter), so that it costs nothing otherwise.
func (st statement) byValues(model func(where string) string) string {
	d := st.d
	var qc, cc, nulls []string
	for i, k := range st.keys {
		qc = append(qc, "q."+d.ident(k))
		cc = append(cc, keyValueCol(i))
		nulls = append(nulls, "q."+d.ident(k)+" IS NULL")
	}
	lhs := qc[0]
	if len(qc) > 1 {
		lhs = "(" + strings.Join(qc, ", ") + ")"
	}
	return model(fmt.Sprintf(" WHERE %s IN (SELECT %s FROM c WHERE kind = 'row')", lhs, strings.Join(cc, ", "))) +
		"\nUNION ALL " + model(fmt.Sprintf(" WHERE EXISTS (SELECT 1 FROM c WHERE k = %s) AND (%s)", d.nullKey(), strings.Join(nulls, " OR ")))
}

// aliased is exprs, each with its alias, comma-separated.
func aliased(exprs []string, aliases ...string) string {
	out := make([]string, len(exprs))
	for i, e := range exprs {
		out[i] = e + " AS " + aliases[i]
	}
	return strings.Join(out, ", ")
}

// Values lookup: how PostgreSQL reads the values stored (cdc_vals) of the
// keys picked. One by one through the table's primary key when they are
// few beside the table (under 1 in lookupFactor of its rows: a look-up
// costs about as much as hashing 20 table rows), else by hashing the
// table once. Both joins are in the statement; n.lookup, computed once
// c is known, gates them, so that only one runs.
const lookupFactor = 20

// lookupMode forces one way in tests (0: by lookupFactor).
var lookupMode int

const (
	lookupAlways = 1
	lookupNever  = 2
)

func (st statement) lookupExpr() string {
	switch lookupMode {
	case lookupAlways:
		return "true"
	case lookupNever:
		return "false"
	}
	if st.parts <= 1 {
		return fmt.Sprintf("t.total > %d * (SELECT COUNT(*) FROM c)", lookupFactor)
	}
	// Split: a part's c holds about its share of the keys picked. The
	// parts that count nothing judge by the table's size on disk (a row
	// takes about 100 bytes), known without reading it.
	size := "t.total"
	if st.part > 0 {
		size = fmt.Sprintf("(SELECT COALESCE(pg_relation_size(to_regclass(%s)), 0) / 100)", st.d.lit(st.d.table(st.schema, rowsTable)))
	}
	return fmt.Sprintf("%s > %d * %d * (SELECT COUNT(*) FROM c)", size, lookupFactor, st.parts)
}

// pgValueJoins joins c with the values stored, as v1 (looked up: a
// lateral subquery, kept from being flattened into a hash join by OFFSET
// 0) or v2 (hashed), whichever n.lookup says; the other reads nothing.
// tableAnd keeps the hashed table's rows to the statement's part.
func (st statement) pgValueJoins(tableAnd string) string {
	d := st.d
	t, sync := d.table(st.schema, valsTable), d.lit(st.sync)
	return fmt.Sprintf("LEFT JOIN LATERAL (SELECT x.bkey, x.hash, x.vals FROM %[1]s x WHERE (SELECT lookup FROM n) AND x.sync = %[2]s AND x.dbkey = c.sk OFFSET 0) v1 ON true "+
		"LEFT JOIN (SELECT dbkey, bkey, hash, vals FROM %[1]s WHERE sync = %[2]s AND NOT (SELECT lookup FROM n)%[3]s) v2 ON v2.dbkey = c.sk", t, sync, tableAnd)
}

// probeSQL counts the snapshot tables present in the owned schema, reads
// PostgreSQL's version, and counts cdc_syncs' lineage column.
func (d Dialect) probeSQL(schemaName string) string {
	version := "0"
	if d == Postgres {
		version = "CAST(current_setting('server_version_num') AS integer)"
	}
	return fmt.Sprintf("SELECT (SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %[1]s AND table_name IN (%[2]s, %[3]s, %[4]s)) AS n, %[5]s AS v, "+
		"(SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = %[1]s AND table_name = %[4]s AND column_name = 'lineage') AS l",
		d.lit(schemaName), d.lit(rowsTable), d.lit(valsTable), d.lit(syncsTable), version)
}
