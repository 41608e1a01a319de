package destination

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteMaxParams is below modernc's SQLITE_MAX_VARIABLE_NUMBER (32766)
// with room to spare.
const sqliteMaxParams = 30000

// SQLite is the `sqlite` driver: a database file written through
// modernc.org/sqlite (pure Go) in WAL mode.
type SQLite struct {
	sqlWriter
	db   *sql.DB
	path string // Config.Path as the user wrote it, for messages
}

var sqliteDialect = sqlDialect{
	quoteIdent:  func(name string) string { return quoteWith(`"`, name) },
	placeholder: func(int) string { return "?" },
	upsertTail: func(key string, fields []string) string {
		if len(fields) == 0 {
			return "ON CONFLICT(" + quoteWith(`"`, key) + ") DO NOTHING"
		}
		sets := make([]string, len(fields))
		for i, f := range fields {
			q := quoteWith(`"`, f)
			sets[i] = q + " = excluded." + q
		}
		return "ON CONFLICT(" + quoteWith(`"`, key) + ") DO UPDATE SET " + strings.Join(sets, ", ")
	},
	maxParams: sqliteMaxParams,
	classify:  classifySQLite,
}

// classifySQLite retries what another connection or the file system caused
// (busy, locked, interrupted, I/O) and rejects what the data caused.
func classifySQLite(err error) errClass {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return classReject
	}
	switch se.Code() & 0xff { // primary result code; extended codes add bits above
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_INTERRUPT,
		sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL:
		return classRetry
	}
	return classReject
}

// OpenSQLite opens the database file at the path argument (relative to
// cfg.Dir unless absolute), creating it if needed, and runs init_sql once.
// lock_timeout is the busy timeout: a write that waits longer for another
// connection's lock fails as retryable.
func OpenSQLite(ctx context.Context, cfg Config) (Destination, error) {
	path, initSQL := cfg.Args.String("path"), cfg.Args.String("init_sql")
	if path == "" {
		return nil, fmt.Errorf("destination %q: sqlite needs a path", cfg.Name)
	}
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("destination %q: sqlite path %q must not contain '?'", cfg.Name, path)
	}
	p := path
	if !filepath.IsAbs(p) && cfg.Dir != "" {
		p = filepath.Join(cfg.Dir, p)
	}
	timeout := cfg.Args.Duration("lock_timeout")
	ms := max(timeout.Milliseconds(), 1)
	// _txlock=immediate takes the write lock at BEGIN, where the busy
	// timeout applies, instead of failing later on a lock upgrade.
	dsn := p + "?_pragma=busy_timeout(" + strconv.FormatInt(ms, 10) + ")&_pragma=journal_mode(WAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("destination %q: open %s: %w", cfg.Name, path, err)
	}
	// One connection: calls are serialised anyway, and one connection keeps
	// per-connection settings and the file's locks simple.
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("destination %q: open %s: %w", cfg.Name, path, err)
	}
	if strings.TrimSpace(initSQL) != "" {
		if _, err := db.ExecContext(ctx, initSQL); err != nil {
			db.Close()
			return nil, fmt.Errorf("destination %q: init_sql on %s: %w", cfg.Name, path, err)
		}
	}
	return &SQLite{sqlWriter: sqlWriter{conn: sqlDB{db}, dialect: sqliteDialect}, db: db, path: path}, nil
}

// Prepare checks that object exists with the key and every field as
// columns, and that the key column is the table's single-column PRIMARY KEY
// or has a UNIQUE index: upserts need it for ON CONFLICT, and a key that
// matches several rows would make updates and deletes touch all of them.
func (s *SQLite) Prepare(ctx context.Context, object, keyField string, fields []string) error {
	rows, err := s.db.QueryContext(ctx, `SELECT name, pk FROM pragma_table_info(?)`, object)
	if err != nil {
		return fmt.Errorf("inspect table %q in %s: %w", object, s.path, err)
	}
	var columns []string
	var pkCols []string
	for rows.Next() {
		var name string
		var pk int
		if err := rows.Scan(&name, &pk); err != nil {
			rows.Close()
			return fmt.Errorf("inspect table %q in %s: %w", object, s.path, err)
		}
		columns = append(columns, name)
		if pk > 0 {
			pkCols = append(pkCols, name)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("inspect table %q in %s: %w", object, s.path, err)
	}
	if len(columns) == 0 {
		return fmt.Errorf("table %q not found in %s", object, s.path)
	}
	if err := checkColumns(object, keyField, fields, columns, true); err != nil {
		return fmt.Errorf("%w in %s", err, s.path)
	}
	if len(pkCols) == 1 && strings.EqualFold(pkCols[0], keyField) {
		return nil
	}
	// A unique, non-partial index on exactly the key column.
	var n int
	err = s.db.QueryRowContext(ctx, `
		SELECT count(*) FROM pragma_index_list(?1) AS l
		WHERE l."unique" = 1 AND l.partial = 0
		  AND (SELECT count(*) FROM pragma_index_info(l.name)) = 1
		  AND (SELECT name FROM pragma_index_info(l.name)) = ?2 COLLATE NOCASE`,
		object, keyField).Scan(&n)
	if err != nil {
		return fmt.Errorf("inspect indexes of table %q in %s: %w", object, s.path, err)
	}
	if n == 0 {
		return fmt.Errorf("key column %q of table %q in %s has no PRIMARY KEY or UNIQUE constraint; "+
			"upserts by key need one (add UNIQUE to the column or CREATE UNIQUE INDEX)", keyField, object, s.path)
	}
	return nil
}
