package destination

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The sqlite driver's default for lock_timeout (the busy timeout: how long
// a write waits for another connection's lock on the database before the
// batch is reported retryable).
const (
	SQLiteDefaultLockTimeout = time.Second
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
	// Dates and times as SQLite's date functions write them, in UTC, which
	// modernc reads back as time.Time from DATE, DATETIME and TIMESTAMP
	// columns.
	timeStyle:  timeText,
	fracDigits: 9,
	// changes(): an INSERT's rows written, which leaves out those a
	// BEFORE trigger's RAISE(IGNORE) skipped; an upsert's (ON CONFLICT DO
	// UPDATE) rows inserted and updated. Rows written by triggers are not
	// counted.
	countsRows: true,
	skipHow:    "a BEFORE trigger with RAISE(IGNORE)",
}

// classifySQLite retries what another connection or the file system caused
// (busy, locked, interrupted, I/O), is fatal on what makes every write fail
// (a read-only or corrupt file, denied access, an unknown table or
// column) and rejects what the data caused.
func classifySQLite(err error) (errClass, bool) {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return classReject, false
	}
	return classifySQLiteError(se), true
}

func classifySQLiteError(se *sqlite.Error) errClass {
	switch se.Code() & 0xff { // primary result code; extended codes add bits above
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_INTERRUPT,
		sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL:
		return classRetry
	case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return classFatal
	case sqlite3.SQLITE_ERROR:
		// The generic code: unknown names are told by the message.
		if msg := se.Error(); strings.Contains(msg, "no such table") || strings.Contains(msg, "no such column") ||
			strings.Contains(msg, "has no column named") {
			return classFatal
		}
	}
	return classReject
}

// OpenSQLite opens the database file at cfg.Path (relative to cfg.Dir unless
// absolute), creating it if needed, and runs cfg.InitSQL once.
// cfg.LockTimeout (default SQLiteDefaultLockTimeout) is the busy timeout: a
// write that waits longer for another connection's lock fails as retryable.
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
	lockTimeout := cfg.Args.Duration("lock_timeout")
	// _txlock=immediate takes the write lock at BEGIN, where the busy
	// timeout applies, instead of failing later on a lock upgrade.
	dsn := p + "?_pragma=busy_timeout(" + durationMillis(lockTimeout) + ")&_pragma=journal_mode(WAL)&_txlock=immediate"
	if cfg.ReadOnly {
		// Inspect only: never create the file, never write to it.
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("destination %q: database file %s %w; apply creates it", cfg.Name, path, ErrNotCreated)
		}
		dsn = "file:" + p + "?mode=ro&_pragma=busy_timeout(" + durationMillis(lockTimeout) + ")&_pragma=query_only(1)"
		initSQL = ""
	}
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
	s := &SQLite{db: db, path: path}
	s.sqlWriter = sqlWriter{conn: sqlDB{db: db, stmts: newStmtCache(db)}, dialect: sqliteDialect, describe: s.describe, timeout: cfg.Policy.Timeout}
	return s, nil
}

// describe reads object's columns and their declared types.
func (s *SQLite) describe(ctx context.Context, object string) (*table, error) {
	t, _, err := s.tableInfo(ctx, object)
	return t, err
}

// tableInfo reads object's columns and its primary key columns.
func (s *SQLite) tableInfo(ctx context.Context, object string) (*table, []string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, type, pk, "notnull" FROM pragma_table_info(?)`, object)
	if err != nil {
		return nil, nil, fmt.Errorf("inspect table %q in %s: %w", object, s.path, err)
	}
	defer rows.Close()
	t := &table{fold: true}
	var pkCols []string
	for rows.Next() {
		var c column
		var pk int
		if err := rows.Scan(&c.name, &c.dbType, &pk, &c.notNull); err != nil {
			return nil, nil, fmt.Errorf("inspect table %q in %s: %w", object, s.path, err)
		}
		c.kind = sqliteKind(c.dbType)
		t.columns = append(t.columns, c)
		if pk > 0 {
			pkCols = append(pkCols, c.name)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("inspect table %q in %s: %w", object, s.path, err)
	}
	if len(t.columns) == 0 {
		return nil, nil, &fatalError{notFoundError{fmt.Errorf("table %q not found in %s", object, s.path)}}
	}
	return t, pkCols, nil
}

// sqliteKind is the kind of a column declared with declType. SQLite stores
// any value in any column; the declared type says what the table's author
// meant, so the names SQLite's own type affinity ignores (BOOLEAN, DATE,
// DATETIME, TIMESTAMP, JSON, DECIMAL) are recognised first, then affinity's
// rules (INT, CHAR/CLOB/TEXT, BLOB, REAL/FLOA/DOUB).
func sqliteKind(declType string) colKind {
	t := strings.ToUpper(declType)
	switch {
	case strings.Contains(t, "BOOL"):
		return kindBool
	case strings.Contains(t, "DATETIME"), strings.Contains(t, "TIMESTAMP"):
		return kindTimestamp
	case strings.HasPrefix(t, "DATE"):
		return kindDate
	case strings.Contains(t, "JSON"):
		return kindJSON
	case strings.Contains(t, "DECIMAL"), strings.Contains(t, "NUMERIC"):
		return kindDecimal
	case strings.Contains(t, "INT"):
		return kindInt
	case strings.Contains(t, "CHAR"), strings.Contains(t, "CLOB"), strings.Contains(t, "TEXT"):
		return kindText
	case strings.Contains(t, "BLOB"):
		return kindBytes
	case strings.Contains(t, "REAL"), strings.Contains(t, "FLOA"), strings.Contains(t, "DOUB"):
		return kindFloat
	}
	return kindOther
}

// Prepare checks that object exists with the key and every field as
// columns, and that the key column is the table's single-column PRIMARY KEY
// or has a UNIQUE index: upserts need it for ON CONFLICT, and a key that
// matches several rows would make updates and deletes touch all of them.
func (s *SQLite) Prepare(ctx context.Context, object, keyField string, fields []string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	t, pkCols, err := s.tableInfo(ctx, object)
	if err != nil {
		return err
	}
	s.remember(object, t)
	if err := checkColumns(object, keyField, fields, t); err != nil {
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
