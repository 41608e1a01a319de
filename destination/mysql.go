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
}

// classifyMySQL retries lock waits, deadlocks, interrupted queries and
// connection failures; every other server error (1062 duplicate, 1048 null,
// 3819/4025 check, 1366/1406 bad or too long value, 1054 unknown column)
// rejects the batch.
func classifyMySQL(err error) errClass {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
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
		}
		return classReject
	}
	if errors.Is(err, mysql.ErrInvalidConn) || isConnectionError(err) {
		return classRetry
	}
	return classReject
}

// OpenMySQL connects with cfg.DSN (go-sql-driver format,
// user:pass@tcp(host:port)/db) and runs cfg.InitSQL once, which may hold
// several statements. lock_timeout (rounded up to whole seconds) is the
// session's innodb_lock_wait_timeout: a statement that waits longer
// for a row lock fails, and the batch is retryable. Errors never contain the
// DSN or its password.
func OpenMySQL(ctx context.Context, cfg Config) (Destination, error) {
	dsn, initSQL := cfg.Args.String("dsn"), cfg.Args.String("init_sql")
	if dsn == "" {
		return nil, fmt.Errorf("destination %q: mysql needs a dsn", cfg.Name)
	}
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("destination %q: invalid mysql dsn", cfg.Name)
	}
	scrub := scrubber(dsn, mc.Passwd)
	where := fmt.Sprintf("database %q on %s", mc.DBName, mc.Addr)
	timeout := cfg.Args.Duration("lock_timeout")
	secs := int64((timeout + time.Second - 1) / time.Second)
	if mc.Params == nil {
		mc.Params = map[string]string{}
	}
	mc.Params["innodb_lock_wait_timeout"] = strconv.FormatInt(max(secs, 1), 10)
	// Rows matched, not rows changed: an update that writes the values a
	// row already has still found its record.
	mc.ClientFoundRows = true

	if strings.TrimSpace(initSQL) != "" {
		ic := mc.Clone()
		ic.MultiStatements = true
		if err := execOnce(ctx, ic, initSQL); err != nil {
			return nil, fmt.Errorf("destination %q: init_sql on %s: %w", cfg.Name, where, scrub(err))
		}
	}
	connector, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("destination %q: invalid mysql dsn", cfg.Name)
	}
	db := sql.OpenDB(connector)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("destination %q: connect to %s: %w", cfg.Name, where, scrub(err))
	}
	return &MySQL{sqlWriter: sqlWriter{conn: sqlDB{db}, dialect: mysqlDialect, scrub: scrub}, db: db, where: where}, nil
}

// execOnce runs query on a connection of its own, closed afterwards.
func execOnce(ctx context.Context, mc *mysql.Config, query string) error {
	connector, err := mysql.NewConnector(mc)
	if err != nil {
		return err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
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

// Prepare checks that object (optionally `db.table`) exists with the key
// and every field as columns (case-insensitive, like MySQL), and that a
// unique index covers exactly the key column, without which ON DUPLICATE KEY
// UPDATE would insert duplicates instead of updating.
func (m *MySQL) Prepare(ctx context.Context, object, keyField string, fields []string) error {
	schema, table := splitSchema(object)
	rows, err := m.db.QueryContext(ctx, `SELECT column_name FROM information_schema.columns
		WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ? ORDER BY ordinal_position`, schema, table)
	if err != nil {
		return fmt.Errorf("list columns of %q in %s: %w", object, m.where, m.scrub(err))
	}
	var columns []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			rows.Close()
			return fmt.Errorf("list columns of %q in %s: %w", object, m.where, m.scrub(err))
		}
		columns = append(columns, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list columns of %q in %s: %w", object, m.where, m.scrub(err))
	}
	if len(columns) == 0 {
		return fmt.Errorf("table %q not found in %s", object, m.where)
	}
	if err := checkColumns(object, keyField, fields, columns, true); err != nil {
		return fmt.Errorf("%w in %s", err, m.where)
	}
	var n int
	err = m.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM (
		SELECT index_name FROM information_schema.statistics
		WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ? AND non_unique = 0
		GROUP BY index_name HAVING COUNT(*) = 1 AND MAX(column_name) = ?) AS u`, schema, table, keyField).Scan(&n)
	if err != nil {
		return fmt.Errorf("inspect indexes of %q in %s: %w", object, m.where, m.scrub(err))
	}
	if n == 0 {
		return fmt.Errorf("key column %q of table %q in %s has no PRIMARY KEY or UNIQUE constraint; "+
			"upserts by key need one (ON DUPLICATE KEY UPDATE)", keyField, object, m.where)
	}
	return nil
}
