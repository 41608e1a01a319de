package engine

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/backflowhq/backflow/schema"
)

// mysqlSource is a Source over a database/sql pool of go-sql-driver/mysql
// connections, to MySQL or MariaDB.
type mysqlSource struct {
	db      *sql.DB
	mariadb bool
	lx      sqlLexer // as the server reads SQL in the DSN's sql_mode
	errs    liveErrors
}

var _ Source = (*mysqlSource)(nil)

// OpenMySQL connects to MySQL or MariaDB (go-sql-driver/mysql) and checks
// the connection, within opts.ConnectTimeout.
//
// Every model query, and every column description, runs on one connection
// in a read-only transaction (START TRANSACTION READ ONLY, with the session
// read-only too) that is rolled back after its rows are read, under the
// query timeout: MariaDB max_statement_time, or MySQL max_execution_time
// (which MySQL applies to SELECT only), and a client-side deadline. A
// query cancelled by its context is killed on the server (KILL QUERY). The
// DSN cannot turn on multi-statement queries.
//
// Values: DATE, DATETIME and TIMESTAMP are time.Time in UTC (the session
// time zone is UTC, so TIMESTAMP values are the instants stored); a zero
// or invalid date the server keeps ('0000-00-00', '2024-02-30' under
// ALLOW_INVALID_DATES) is its text, as stored: no date stands for it (a
// MySQL or SQLite destination gets that text, others reject the record).
// DECIMAL a
// decimal string, binary strings and BLOBs []byte. MySQL's JSON type is
// JSON text; MariaDB's JSON is an alias of LONGTEXT and reads as a string
// (use Retype to read it as JSON). TINYINT(1) is an int: the driver does
// not report the display width that would tell it from TINYINT (use Retype
// to read it as bool). Errors name the server by host:port and never carry
// the DSN, its password, user, database or option values.
func OpenMySQL(ctx context.Context, dsn string, opts LiveOptions) (Source, error) {
	opts = opts.withDefaults()
	secrets := dsnSecrets(dsn)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, errors.New("parsing the MySQL DSN: invalid DSN (expected user:password@tcp(host:port)/database)")
	}
	if cfg.Passwd != "" {
		secrets = append(secrets, cfg.Passwd)
	}
	words := []string{cfg.User, cfg.DBName}
	for k, v := range cfg.Params {
		words = append(words, k, v)
	}
	addr := cfg.Addr
	if cfg.Net == "unix" {
		addr = "unix:" + cfg.Addr
	}
	s := &mysqlSource{errs: newLiveErrors("MySQL", addr, opts, secrets, words)}
	// Dates arrive as their text and are parsed strictly (liveValue): the
	// driver's own parsing makes '0000-00-00' year 1 and '2024-02-30' March
	// 1st, dates the table does not hold.
	cfg.ParseTime = false
	cfg.Loc = time.UTC
	cfg.MultiStatements = false // one statement per query: a model cannot end its transaction and go on
	cfg.Timeout = opts.ConnectTimeout
	cfg.Logger = quietLogger{} // errors are returned; the driver's own log lines would only repeat them on stderr
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, s.errs.connectError(ctx, err)
	}
	s.db = sql.OpenDB(conn)
	s.db.SetMaxIdleConns(1)

	cctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	var version, mode string
	if err := s.db.QueryRowContext(cctx, "SELECT VERSION(), @@SESSION.sql_mode").Scan(&version, &mode); err != nil {
		_ = s.db.Close()
		return nil, s.errs.connectError(ctx, err)
	}
	s.mariadb = strings.Contains(strings.ToLower(version), "mariadb")
	s.lx = mysqlLexer(mode)
	if s.mariadb {
		s.errs.kind = "MariaDB"
	}
	return s, nil
}

func (s *mysqlSource) lexer() sqlLexer { return s.lx }

type quietLogger struct{}

func (quietLogger) Print(...any) {}

// session is the statement that makes a connection fit for a model query:
// read-only, UTC, with the server-side statement timeout, and invalid
// dates allowed (ALLOW_INVALID_DATES added to the session's SQL mode):
// a date the table keeps ('2024-02-30') stays as it is where the server
// would otherwise make it '0000-00-00' (a UNION, as warehouse CDC's
// statement has, converts its rows). It runs before every query, since a
// model may have changed its session.
func (s *mysqlSource) session() string {
	limit := s.errs.opts.QueryTimeout
	const dates = ", SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'ALLOW_INVALID_DATES')"
	if s.mariadb {
		return fmt.Sprintf("SET SESSION max_statement_time = %s, SESSION tx_read_only = 1, SESSION time_zone = '+00:00'"+dates,
			strconv.FormatFloat(limit.Seconds(), 'f', 3, 64))
	}
	return fmt.Sprintf("SET SESSION max_execution_time = %d, SESSION transaction_read_only = 1, SESSION time_zone = '+00:00'"+dates,
		max(limit.Milliseconds(), 1))
}

// serverTimeout tells whether err is the server's statement timeout.
func serverTimeout(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1969 || me.Number == 3024) // MariaDB max_statement_time, MySQL max_execution_time
}

// myQuery is one model query in flight: its connection, read-only
// transaction and the hook that kills it on the server when ctx ends.
type myQuery struct {
	s      *mysqlSource
	ctx    context.Context // the caller's
	qctx   context.Context // bounded by the query timeout
	cancel context.CancelFunc
	conn   *sql.Conn
	tx     *sql.Tx
	stop   func() bool // unregisters the KILL QUERY hook
	failed bool        // the connection must not be reused
	// keepConn: the connection is a test's scratch connection, which
	// myScratch.Close releases; end only ends the transaction.
	keepConn bool
}

// begin takes a connection (opening one within the connect timeout) and
// starts a read-only transaction on it.
func (s *mysqlSource) begin(ctx context.Context) (*myQuery, error) { return s.beginWith(ctx, Tuning{}) }

// beginWith is begin with the guarded tables read, and with session
// settings, which last beyond the query: a connection that had them is
// closed after it rather than going back to the pool (the guard's own
// lock_wait_timeout is set back before the query).
func (s *mysqlSource) beginWith(ctx context.Context, tu Tuning) (*myQuery, error) {
	setup := s.session()
	for _, st := range tu.Settings {
		if !plainName(st.Name) || strings.Contains(st.Name, ".") {
			return nil, fmt.Errorf("setting %q: not a plain name", st.Name)
		}
		// A number or a word (ON, OFF): nothing to quote or escape.
		if _, err := strconv.ParseInt(st.Value, 10, 64); err != nil && !plainName(st.Value) {
			return nil, fmt.Errorf("setting %s: %q is neither a number nor a word", st.Name, st.Value)
		}
		setup += ", SESSION " + st.Name + " = " + st.Value
	}
	q := &myQuery{s: s, ctx: ctx, failed: len(tu.Settings) > 0}
	q.qctx, q.cancel = context.WithTimeout(ctx, s.errs.opts.QueryTimeout+cancelGrace)
	cctx, cancel := context.WithTimeout(q.qctx, s.errs.opts.ConnectTimeout)
	conn, err := s.db.Conn(cctx)
	cancel()
	if err != nil {
		q.cancel()
		return nil, s.errs.connectError(ctx, err)
	}
	q.conn = conn
	if _, err := conn.ExecContext(q.qctx, setup); err != nil {
		return nil, q.end(s.errs.queryError(ctx, q.qctx, "session setup", err, false))
	}
	var id int64
	var lockWait string // the session's, restored once the guarded tables are read
	if err := conn.QueryRowContext(q.qctx, "SELECT CONNECTION_ID(), @@SESSION.lock_wait_timeout").Scan(&id, &lockWait); err != nil {
		return nil, q.end(s.errs.queryError(ctx, q.qctx, "session setup", err, false))
	}
	q.stop = context.AfterFunc(q.qctx, func() { s.kill(id) })
	tx, err := conn.BeginTx(q.qctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, q.end(s.errs.queryError(ctx, q.qctx, "starting a read-only transaction", err, false))
	}
	q.tx = tx
	if len(tu.Guard) == 0 {
		return q, nil
	}
	if _, err := strconv.ParseFloat(lockWait, 64); err != nil {
		return nil, q.end(fmt.Errorf("%s at %s: lock_wait_timeout %q is not a number", s.errs.kind, s.errs.addr, lockWait))
	}
	// A table read in a transaction keeps its metadata lock to the
	// transaction's end: reading none of its rows takes it, under a
	// lock_wait_timeout of its own. The query's other tables then wait
	// as the session's setting says.
	wait := max(int64(tu.GuardWait/time.Second), 1)
	if _, err := tx.ExecContext(q.qctx, "SET SESSION lock_wait_timeout = "+strconv.FormatInt(wait, 10)); err != nil {
		return nil, q.end(s.errs.queryError(ctx, q.qctx, "session setup", err, false))
	}
	for _, t := range tu.Guard {
		if _, err := tx.ExecContext(q.qctx, "SELECT 1 FROM "+s.lx.quote(t.Schema)+"."+s.lx.quote(t.Name)+" LIMIT 0"); err != nil {
			var me *mysql.MySQLError
			if errors.As(err, &me) && me.Number == 1205 { // ER_LOCK_WAIT_TIMEOUT
				return nil, q.end(&LockError{Server: s.errs.kind, Addr: s.errs.addr, Table: t, Wait: time.Duration(wait) * time.Second,
					Err: &scrubbedError{msg: s.errs.secrets.String(err.Error()), cause: err}})
			}
			return nil, q.end(s.errs.queryError(ctx, q.qctx, "reading "+t.Schema+"."+t.Name, err, serverTimeout(err)))
		}
	}
	if _, err := tx.ExecContext(q.qctx, "SET SESSION lock_wait_timeout = "+lockWait); err != nil {
		return nil, q.end(s.errs.queryError(ctx, q.qctx, "session setup", err, false))
	}
	return q, nil
}

// kill stops connection id's running statement from another connection:
// the driver only closes its socket when a context ends, and the server
// would otherwise run the statement on until its timeout.
func (s *mysqlSource) kill(id int64) {
	ctx, cancel := context.WithTimeout(context.Background(), s.errs.opts.ConnectTimeout)
	defer cancel()
	_, _ = s.db.ExecContext(ctx, "KILL QUERY "+strconv.FormatInt(id, 10))
}

// end rolls the transaction back and returns the connection to the pool,
// or drops it when anything went wrong. It returns err.
func (q *myQuery) end(err error) error {
	if err != nil || q.qctx.Err() != nil {
		q.failed = true
	}
	if q.stop != nil {
		q.stop()
	}
	if q.tx != nil {
		if rerr := q.tx.Rollback(); rerr != nil {
			q.failed = true
		}
	}
	if q.keepConn {
		q.cancel()
		return err
	}
	if q.failed {
		// database/sql closes a connection whose Raw callback reports it bad.
		_ = q.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	_ = q.conn.Close()
	q.cancel()
	return err
}

// Query runs a model query and streams its rows. An error the server
// raises before the first row (a failed cast, a division by zero, a write
// refused in the read-only transaction) is returned here.
func (s *mysqlSource) Query(ctx context.Context, query string) (Rows, error) {
	return s.QueryTuned(ctx, query, Tuning{})
}

// QueryTuned implements Tuner: each setting is set for the session of the
// query, whose connection is then closed (never reused with them), and
// the guarded tables are read first under a lock_wait_timeout of their
// own.
func (s *mysqlSource) QueryTuned(ctx context.Context, query string, tuning Tuning) (Rows, error) {
	q, err := s.beginWith(ctx, tuning)
	if err != nil {
		return nil, err
	}
	rows, err := q.tx.QueryContext(q.qctx, query)
	if err != nil {
		return nil, q.end(s.errs.queryError(ctx, q.qctx, "query", err, serverTimeout(err)))
	}
	return s.startRows(q, rows)
}

// startRows wraps a query's result, reading its first row (so that an
// error the server raises before it is returned here).
func (s *mysqlSource) startRows(q *myQuery, rows *sql.Rows) (Rows, error) {
	cols, err := s.columns(rows)
	if err != nil {
		_ = rows.Close()
		return nil, q.end(s.errs.queryError(q.ctx, q.qctx, "query", err, false))
	}
	r := &mysqlRows{q: q, rows: rows, cols: cols, raw: make([]any, len(cols)), ptrs: make([]any, len(cols)), row: make([]any, len(cols))}
	for i := range r.raw {
		r.ptrs[i] = &r.raw[i]
	}
	if !r.advance() {
		if err := r.Err(); err != nil {
			_ = r.Close()
			return nil, err
		}
		r.done = true
	} else {
		r.ready = true
	}
	return r, nil
}

// Schema returns the columns of query by running it wrapped in LIMIT 0.
func (s *mysqlSource) Schema(ctx context.Context, query string) ([]schema.Column, error) {
	q, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := q.tx.QueryContext(q.qctx, "SELECT * FROM (\n"+s.lx.subquery(query)+"\n) backflow_schema LIMIT 0")
	if err != nil {
		return nil, q.end(s.errs.queryError(ctx, q.qctx, "query schema", err, serverTimeout(err)))
	}
	cols, err := s.columns(rows)
	cerr := rows.Close()
	if err == nil {
		err = cerr
	}
	if err != nil {
		return nil, q.end(s.errs.queryError(ctx, q.qctx, "query schema", err, false))
	}
	return cols, q.end(nil)
}

func (s *mysqlSource) columns(rows *sql.Rows) ([]schema.Column, error) {
	cts, err := rows.ColumnTypes()
	if err != nil {
		return nil, err
	}
	cols := make([]schema.Column, len(cts))
	for i, ct := range cts {
		nullable, ok := ct.Nullable()
		cols[i] = schema.Column{Name: ct.Name(), Type: mysqlType(ct.DatabaseTypeName()), Nullable: nullable || !ok, DBType: strings.ToLower(ct.DatabaseTypeName())}
	}
	return cols, nil
}

// Close closes the connection pool.
func (s *mysqlSource) Close() error { return s.errs.secrets.Error(s.db.Close()) }

func mysqlType(name string) schema.Type {
	switch strings.TrimPrefix(name, "UNSIGNED ") {
	case "TINYINT", "SMALLINT", "MEDIUMINT", "INT", "BIGINT", "YEAR":
		return schema.TypeInt
	case "FLOAT", "DOUBLE":
		return schema.TypeFloat
	case "DECIMAL":
		return schema.TypeDecimal
	case "BIT", "BLOB", "TINYBLOB", "MEDIUMBLOB", "LONGBLOB", "BINARY", "VARBINARY", "GEOMETRY":
		return schema.TypeBytes
	case "DATE", "DATETIME", "TIMESTAMP":
		return schema.TypeTimestamp
	case "JSON":
		return schema.TypeJSON
	}
	return schema.TypeString
}

// mysqlRows adapts *sql.Rows, converting each value to its column's type.
// Close rolls back the query's transaction.
type mysqlRows struct {
	q       *myQuery
	rows    *sql.Rows
	cols    []schema.Column
	raw     []any
	ptrs    []any
	row     []any
	err     error
	ready   bool // row holds a row read ahead by Query
	done    bool
	closeMu sync.Mutex
	closed  bool
}

func (r *mysqlRows) Columns() []schema.Column { return r.cols }

func (r *mysqlRows) Next() bool {
	if r.ready {
		r.ready = false
		return true
	}
	if r.done {
		return false
	}
	if !r.advance() {
		r.done = true
		return false
	}
	return true
}

func (r *mysqlRows) advance() bool {
	if r.err != nil || !r.rows.Next() {
		return false
	}
	if err := r.rows.Scan(r.ptrs...); err != nil {
		r.err = err
		return false
	}
	for i, v := range r.raw {
		x, err := liveValue(r.cols[i].Type, v)
		if err != nil {
			r.err = &scrubbedError{msg: fmt.Sprintf("%s query: column %s (%s): %v", r.q.s.errs.kind, r.cols[i].Name, r.cols[i].DBType, err), cause: err}
			return false
		}
		r.row[i] = x
	}
	return true
}

func (r *mysqlRows) Row() []any { return r.row }

func (r *mysqlRows) Err() error {
	err := r.err
	if err == nil {
		err = r.rows.Err()
	}
	if err == nil {
		return nil
	}
	var se *scrubbedError
	if errors.As(err, &se) {
		return err
	}
	return r.q.s.errs.queryError(r.q.ctx, r.q.qctx, "query", err, serverTimeout(err))
}

func (r *mysqlRows) Close() error {
	r.closeMu.Lock()
	defer r.closeMu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.rows.Close()
	if err != nil {
		err = r.q.s.errs.queryError(r.q.ctx, r.q.qctx, "query", err, serverTimeout(err))
	}
	if rerr := r.Err(); rerr != nil && err == nil {
		r.q.failed = true
	}
	return r.q.end(err)
}
