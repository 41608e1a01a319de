package destination

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MySQL is the `mysql` driver (go-sql-driver/mysql; MySQL and MariaDB).
// Upserts are one multi-row INSERT ... ON DUPLICATE KEY UPDATE per batch.
type MySQL struct {
	sqlWriter
	db    *sql.DB
	where string // "database X on host:port", for messages; never the DSN
}

var mysqlDialect = sqlDialect{
	keysTaken:   mysqlKeysTaken,
	quoteIdent:  func(name string) string { return quoteQualified("`", name) },
	placeholder: func(int) string { return "?" },
	upsertTail: func(key string, fields []string) string {
		if len(fields) == 0 {
			k := quoteWith("`", key)
			return "ON DUPLICATE KEY UPDATE " + k + " = " + k
		}
		sets := make([]string, len(fields))
		for i, f := range fields {
			q := quoteWith("`", f)
			// VALUES() works on MariaDB and MySQL (deprecated, not removed,
			// in MySQL 8); the row-alias form is MySQL-only.
			sets[i] = q + " = VALUES(" + q + ")"
		}
		return "ON DUPLICATE KEY UPDATE " + strings.Join(sets, ", ")
	},
	maxParams: 65535,
	classify:  classifyMySQL,
	lockWaited: func(err error) bool {
		var me *mysql.MySQLError
		return errors.As(err, &me) && me.Number == 1205 // lock wait timeout exceeded
	},
	keyText: func(key string) string { return "CAST(" + key + " AS CHAR)" },
	boolText: func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	},
	// DATETIME and TIMESTAMP take 'YYYY-MM-DD HH:MM:SS.ffffff' in strict
	// mode (not RFC 3339), independent of the DSN's loc; TIMESTAMP reads it
	// in the session's time_zone, which OpenMySQL sets to UTC.
	timeStyle:  timeText,
	fracDigits: 6,
	// No countsRows: a MySQL or MariaDB trigger cannot skip a row (it
	// can only fail the statement with SIGNAL), and the rows affected of
	// INSERT … ON DUPLICATE KEY UPDATE count 1 per row inserted, 2 per
	// row updated and 0 per row left as it was, which says nothing of
	// rows skipped.
}

// The mysql driver's defaults for lock_timeout (the session's
// innodb_lock_wait_timeout, in whole seconds, at least 1: how long a
// statement waits for a row lock before the batch is reported retryable;
// the server's own default is 50 seconds) and connect_timeout (TCP, TLS,
// handshake and authentication). The bound of one request is the common
// timeout argument.
const (
	MySQLDefaultLockTimeout    = 5 * time.Second
	MySQLDefaultConnectTimeout = 10 * time.Second
)

// classifyMySQL retries lock waits, deadlocks, interrupted queries and
// connection failures; access denied, unknown databases, tables and
// columns and a read-only server are fatal; every other server error (1062
// duplicate, 1048 null, 3819/4025 check, 1366/1406 bad or too long value)
// rejects the batch.
func classifyMySQL(err error) (errClass, bool) {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return classifyMySQLError(me), true
	}
	if errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, mysql.ErrPktSync) || errors.Is(err, mysql.ErrPktSyncMul) {
		return classRetry, false
	}
	return classReject, false
}

func classifyMySQLError(me *mysql.MySQLError) errClass {
	switch me.Number {
	case 1205, // lock wait timeout exceeded
		1213, // deadlock found
		1040, // too many connections
		1053, // server shutdown in progress
		1317, // query execution was interrupted
		1927, // MariaDB: connection was killed
		3024, // MySQL: maximum statement execution time exceeded
		4031: // MySQL: client disconnected by the server
		return classRetry
	case 1044, // access denied for user to database
		1045, // access denied for user (password)
		1142, // command denied to user for table
		1143, // column access denied
		1227, // access denied; a privilege is needed
		1370, // command denied for routine
		1698, // access denied for user (authentication plugin)
		1049, // unknown database
		1146, // table doesn't exist
		1054, // unknown column
		1290, // the server runs with --read-only
		1792: // read-only transaction
		return classFatal
	}
	return classReject
}

// OpenMySQL connects with cfg.DSN (go-sql-driver format,
// user:pass@tcp(host:port)/db) and runs cfg.InitSQL once, which may hold
// several statements. cfg.LockTimeout (default MySQLDefaultLockTimeout,
// rounded up to whole seconds) is the session's innodb_lock_wait_timeout.
// On servers with FOR UPDATE SKIP LOCKED (MariaDB 10.6, MySQL 8.0 and
// later) rows another transaction holds are skipped and answered as
// retryable records; a lock wait that still happens ends after LockTimeout,
// and the batch is retryable. Batches run at READ COMMITTED, which takes no
// gap locks.
//
// Connecting is bounded by cfg.ConnectTimeout (default
// MySQLDefaultConnectTimeout, or the DSN's timeout for the TCP dial), every
// request by cfg.Timeout (default MySQLDefaultTimeout), whatever the
// caller's context: a connection that stops answering makes a Write
// retryable after Timeout. Errors never contain the DSN or its password;
// connection errors name host:port.
func OpenMySQL(ctx context.Context, cfg Config) (Destination, error) {
	dsn, initSQL := cfg.Args.String("dsn"), cfg.Args.String("init_sql")
	if cfg.ReadOnly {
		initSQL = "" // inspecting never changes the database
	}
	if dsn == "" {
		return nil, fmt.Errorf("destination %q: mysql needs a dsn", cfg.Name)
	}
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("destination %q: invalid mysql dsn", cfg.Name)
	}
	scrub := scrubber(cfg.Redact, dsn, mc.Passwd)
	where := fmt.Sprintf("database %q on %s", mc.DBName, mc.Addr)
	lockTimeout := cfg.Args.Duration("lock_timeout")
	timeout := cfg.Policy.Timeout
	connectTimeout := connectTimeoutOf(cfg, mc.Timeout)
	mc.Timeout = connectTimeout // the TCP dial; ping bounds the handshake
	secs := int64((lockTimeout + time.Second - 1) / time.Second)
	if mc.Params == nil {
		mc.Params = map[string]string{}
	}
	lockWaitSecs := strconv.FormatInt(max(secs, 1), 10)
	mc.Params["innodb_lock_wait_timeout"] = lockWaitSecs
	if _, ok := mc.Params["time_zone"]; !ok {
		// Times are written in UTC; a TIMESTAMP column converts from the
		// session's time zone.
		mc.Params["time_zone"] = "'+00:00'"
	}
	mc.Params["sql_mode"] = strictMode(mc.Params["sql_mode"])
	// Rows matched, not rows changed: an update that writes the values a
	// row already has still found its record.
	mc.ClientFoundRows = true
	// The driver logs lost connections to stderr; they are the errors
	// Write returns (and classifies) already.
	mc.Logger = &mysql.NopLogger{}

	if strings.TrimSpace(initSQL) != "" {
		ic := mc.Clone()
		ic.MultiStatements = true
		ictx, cancel := context.WithTimeout(ctx, timeout)
		err := execOnce(ictx, ic, initSQL)
		cancel()
		if err != nil {
			var ce *connectError
			if errors.As(err, &ce) {
				return nil, fmt.Errorf("destination %q: %w", cfg.Name, scrub(err))
			}
			return nil, fmt.Errorf("destination %q: init_sql on %s: %w", cfg.Name, where, scrub(err))
		}
	}
	connector, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("destination %q: invalid mysql dsn", cfg.Name)
	}
	db := sql.OpenDB(connector)
	if err := ping(ctx, db, mc.Addr, connectTimeout); err != nil {
		db.Close()
		return nil, fmt.Errorf("destination %q: %w", cfg.Name, scrub(err))
	}
	vctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var version string
	if err := db.QueryRowContext(vctx, `SELECT VERSION()`).Scan(&version); err != nil {
		db.Close()
		return nil, fmt.Errorf("destination %q: server version on %s: %w", cfg.Name, where, scrub(err))
	}
	m := &MySQL{db: db, where: where}
	m.sqlWriter = sqlWriter{
		conn: sqlDB{db: db, opts: &sql.TxOptions{Isolation: sql.LevelReadCommitted}, stmts: newStmtCache(db)}, dialect: mysqlDialect,
		scrub: scrub, describe: m.describe, skipLocked: mysqlSkipsLocked(version), timeout: timeout,
		// The session's setting, in whole seconds: set for the optimistic
		// transaction, set back for the careful ones once a batch met a
		// held row.
		optimisticBegin: "SET SESSION innodb_lock_wait_timeout = " + optimisticLockWait(version),
		carefulBegin:    "SET SESSION innodb_lock_wait_timeout = " + lockWaitSecs,
	}
	return m, nil
}

// ping connects db to addr within timeout (TCP, TLS, handshake,
// authentication).
func ping(ctx context.Context, db *sql.DB, addr string, timeout time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := db.PingContext(cctx); err != nil {
		return newConnectError(addr, timeout, cctx, err.Error(), err)
	}
	return nil
}

// isMariaDB reports whether a server of version (SELECT VERSION()) is
// MariaDB rather than MySQL.
func isMariaDB(version string) bool { return strings.Contains(strings.ToLower(version), "mariadb") }

// optimisticLockWait is innodb_lock_wait_timeout for a batch written
// without the lock step: MariaDB (10.3 and later) takes 0, no wait at all;
// MySQL takes no less than 1 second.
func optimisticLockWait(version string) string {
	if isMariaDB(version) {
		return "0"
	}
	return strconv.FormatInt(int64(max(lockWait, time.Second)/time.Second), 10)
}

// mysqlSkipsLocked reports whether a server of version (SELECT VERSION())
// knows FOR UPDATE SKIP LOCKED: MariaDB from 10.6, MySQL from 8.0.1.
func mysqlSkipsLocked(version string) bool {
	var major, minor, patch int
	fmt.Sscanf(version, "%d.%d.%d", &major, &minor, &patch)
	if isMariaDB(version) {
		return major > 10 || (major == 10 && minor >= 6)
	}
	return major > 8 || (major == 8 && (minor > 0 || patch >= 1))
}

// execOnce runs query on a connection of its own, closed afterwards.
func execOnce(ctx context.Context, mc *mysql.Config, query string) error {
	connector, err := mysql.NewConnector(mc)
	if err != nil {
		return err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	if err := ping(ctx, db, mc.Addr, mc.Timeout); err != nil {
		return err
	}
	_, err = db.ExecContext(ctx, query)
	return err
}

// splitSchema splits `schema.table`; schema is nil for a bare table name,
// meaning the connection's current database.
func splitSchema(object string) (schema any, table string) {
	if s, t, ok := strings.Cut(object, "."); ok {
		return s, t
	}
	return nil, object
}

// mysqlKeysTaken is sqlDialect.keysTaken. The keys sent are utf8mb4
// strings, compared with the rows' by the key column's own character set
// and collation (named in COLLATE, so that no mix of collations is
// refused), and matches are told apart by their bytes in utf8mb4. Each
// key sent is CONVERTed in its own SELECT: a UNION of bare parameters
// types them as CHAR, whose trailing spaces MariaDB drops.
func mysqlKeysTaken(table, key string, c *column, n int) string {
	var b strings.Builder
	b.WriteString("SELECT CONCAT(LENGTH(x.p), ':', x.p, CONVERT(t." + key + " USING utf8mb4)) FROM (")
	for i := range n {
		if i > 0 {
			b.WriteString(" UNION ALL ")
		}
		b.WriteString("SELECT CONVERT(? USING utf8mb4) AS p")
	}
	b.WriteString(") x JOIN " + table + " t ON t." + key + " = CONVERT(x.p USING " + c.charset + ") COLLATE " + c.collation +
		" WHERE CAST(CONVERT(t." + key + " USING utf8mb4) AS BINARY) <> CAST(x.p AS BINARY)")
	return b.String()
}

// bytewiseCollation says whether a collation tells text apart by its
// bytes alone: binary NO PAD collations (utf8mb4_0900_bin, MariaDB's
// *_nopad_bin). utf8mb4_bin is PAD SPACE: 'a' and 'a ' are one key.
func bytewiseCollation(name string) bool {
	return name == "binary" || strings.HasSuffix(name, "_nopad_bin") || strings.HasSuffix(name, "_0900_bin")
}

// describe reads object's columns, their types and collations.
func (m *MySQL) describe(ctx context.Context, object string) (*table, error) {
	schema, name := splitSchema(object)
	rows, err := m.db.QueryContext(ctx, `SELECT column_name, column_type, data_type, COALESCE(collation_name, ''), COALESCE(character_set_name, ''), is_nullable = 'NO'
		FROM information_schema.columns
		WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ? ORDER BY ordinal_position`, schema, name)
	if err != nil {
		return nil, fmt.Errorf("list columns of %q in %s: %w", object, m.where, m.scrub(err))
	}
	defer rows.Close()
	t := &table{fold: true}
	for rows.Next() {
		var c column
		var dataType, collation, charset string
		if err := rows.Scan(&c.name, &c.dbType, &dataType, &collation, &charset, &c.notNull); err != nil {
			return nil, fmt.Errorf("list columns of %q in %s: %w", object, m.where, m.scrub(err))
		}
		c.kind = mysqlKind(strings.ToLower(dataType), strings.ToLower(c.dbType))
		if c.kind == kindBool && strings.EqualFold(dataType, "tinyint") {
			c.bits = 8 // BOOLEAN is TINYINT(1): it holds -128..127 (0..255 unsigned), and takes them
			c.unsigned = strings.Contains(strings.ToLower(c.dbType), "unsigned")
		}
		c.foldValues = c.kind == kindText && strings.HasSuffix(collation, "_ci")
		// The names go into keysTaken's SQL: plain words only.
		c.keyCheck = c.kind == kindText && !bytewiseCollation(collation) && plainName(collation) && plainName(charset)
		c.collation, c.charset = collation, charset
		c.keyWhy = "collation " + collation + " compares text without regard to some of case, accents or trailing spaces"
		c.keyFix = "give the column a binary collation (utf8mb4_0900_bin on MySQL, utf8mb4_nopad_bin on MariaDB)"
		t.columns = append(t.columns, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list columns of %q in %s: %w", object, m.where, m.scrub(err))
	}
	if len(t.columns) == 0 {
		return nil, &fatalError{notFoundError{fmt.Errorf("table %q not found in %s", object, m.where)}}
	}
	// Its unique indexes, the primary key's too: an upsert's ON DUPLICATE
	// KEY UPDATE takes a duplicate in any of them (table.otherUnique).
	// A row per column (not GROUP_CONCAT, whose text is cut at
	// group_concat_max_len, 1,024 bytes by default, and cannot tell a
	// comma in a name from one between names).
	urows, err := m.db.QueryContext(ctx, `SELECT index_name, column_name
		FROM information_schema.statistics
		WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ? AND non_unique = 0
		ORDER BY index_name, seq_in_index`, schema, name)
	if err != nil {
		return nil, fmt.Errorf("list unique indexes of %q in %s: %w", object, m.where, m.scrub(err))
	}
	defer urows.Close()
	for urows.Next() {
		var index string
		var col sql.NullString // NULL: an expression (MySQL 8)
		if err := urows.Scan(&index, &col); err != nil {
			return nil, fmt.Errorf("list unique indexes of %q in %s: %w", object, m.where, m.scrub(err))
		}
		if n := len(t.uniques); n == 0 || t.uniques[n-1].name != index {
			t.uniques = append(t.uniques, uniqueIndex{name: index})
		}
		u := &t.uniques[len(t.uniques)-1]
		u.cols = append(u.cols, col.String)
	}
	if err := urows.Err(); err != nil {
		return nil, fmt.Errorf("list unique indexes of %q in %s: %w", object, m.where, m.scrub(err))
	}
	return t, nil
}

// mysqlKind is the kind of a column of data_type and column_type (as
// information_schema spells them, lower case). TINYINT(1) is MySQL's
// BOOLEAN.
func mysqlKind(dataType, columnType string) colKind {
	switch dataType {
	case "tinyint":
		if strings.HasPrefix(columnType, "tinyint(1)") {
			return kindBool
		}
		return kindInt
	case "bool", "boolean":
		return kindBool
	case "smallint", "mediumint", "int", "integer", "bigint", "year":
		return kindInt
	case "float", "double", "real":
		return kindFloat
	case "decimal", "numeric":
		return kindDecimal
	case "char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set":
		return kindText
	case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob":
		return kindBytes
	case "date":
		return kindDate
	case "datetime":
		return kindTimestamp
	case "timestamp":
		return kindTimestampTZ
	case "json":
		return kindJSON
	case "uuid":
		return kindUUID
	}
	return kindOther
}

// Prepare checks that object (optionally `db.table`) exists with the key
// and every field as columns (case-insensitive, like MySQL), and that a
// unique index covers exactly the key column, without which ON DUPLICATE KEY
// UPDATE would insert duplicates instead of updating. It reads the columns'
// types, which Write converts values to.
func (m *MySQL) Prepare(ctx context.Context, object, keyField string, fields []string) error {
	ctx, cancel := m.bound(ctx)
	defer cancel()
	t, err := m.refresh(ctx, object)
	if err != nil {
		return err
	}
	if err := checkColumns(object, keyField, fields, t); err != nil {
		return fmt.Errorf("%w in %s", err, m.where)
	}
	schema, name := splitSchema(object)
	var n int
	err = m.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM (
		SELECT index_name FROM information_schema.statistics
		WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ? AND non_unique = 0
		GROUP BY index_name HAVING COUNT(*) = 1 AND MAX(column_name) = ?) AS u`, schema, name, keyField).Scan(&n)
	if err != nil {
		return fmt.Errorf("inspect indexes of %q in %s: %w", object, m.where, m.scrub(err))
	}
	if n == 0 {
		return fmt.Errorf("key column %q of table %q in %s has no PRIMARY KEY or UNIQUE constraint; "+
			"upserts by key need one (ON DUPLICATE KEY UPDATE)", keyField, object, m.where)
	}
	return nil
}

// ConcurrentWrites implements ConcurrentWriter: each Write takes a
// connection of the pool for its transaction.
func (m *MySQL) ConcurrentWrites() {}

// strictMode is the sql_mode of the destination's sessions: the DSN's
// (dsn: its sql_mode parameter, an SQL expression or a bare list of
// modes; "" when it sets none, then the server's) plus STRICT_ALL_TABLES.
// Outside strict mode MySQL and MariaDB write a value a column cannot hold
// clamped or cut (300 into a TINYINT as 127, "abcdef" into VARCHAR(3) as
// "abc") with a warning only, and the record would count as written with
// other values than the model's.
func strictMode(dsn string) string {
	base := "@@SESSION.sql_mode"
	switch {
	case dsn == "":
	case strings.Trim(dsn, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_,") == "":
		base = "'" + dsn + "'" // sql_mode=ANSI,TRADITIONAL
	default:
		base = dsn // sql_mode='ANSI' or an expression
	}
	return "CONCAT(" + base + ", ',STRICT_ALL_TABLES')"
}

// plainName says whether s is a non-empty word of ASCII letters, digits
// and _, as character set and collation names are.
func plainName(s string) bool {
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}
