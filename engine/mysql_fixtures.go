package engine

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dolthub/vitess/go/vt/sqlparser"

	"github.com/backflowhq/backflow/schema"
)

var _ FixtureRunner = (*mysqlSource)(nil)

// Server names the server for messages.
func (s *mysqlSource) Server() string { return s.errs.kind + " at " + s.errs.addr }

// myScratch runs a test's model on fixtures in scratch databases, on one
// connection of its own. MySQL cannot roll DDL back, so the databases are
// created and filled for real (autocommit), and Close drops them; a
// process killed before Close leaves them behind, and a later test run on
// the same server drops every scratch database older than an hour (the
// age is in the name).
type myScratch struct {
	s      *mysqlSource
	conn   *sql.Conn
	id     int64 // the connection's id, to KILL QUERY it
	names  *scratchNames
	closed bool
}

var _ Scratch = (*myScratch)(nil)

// OnFixtures loads fx into scratch databases.
//
// On a connection of its own: the session is made read-write, in UTC,
// with the query timeout (MariaDB max_statement_time); scratch databases
// older than an hour are dropped; CREATE DATABASE for each scratch
// database (utf8mb4), USE the main one; the fixture scripts; CREATE TABLE
// and multi-row INSERTs for the other tables. Then the session is made
// read-only as for any model query, and each query runs in a read-only
// transaction.
func (s *mysqlSource) OnFixtures(ctx context.Context, fx *LiveFixtures) (Scratch, error) {
	cctx, cancel := context.WithTimeout(ctx, s.errs.opts.ConnectTimeout)
	conn, err := s.db.Conn(cctx)
	cancel()
	if err != nil {
		return nil, &UnavailableError{s.errs.connectError(ctx, err)}
	}
	sc := &myScratch{s: s, conn: conn}
	if err := sc.load(ctx, fx); err != nil {
		if cerr := sc.Close(); cerr != nil {
			err = fmt.Errorf("%w; %v", err, cerr)
		}
		return nil, err
	}
	return sc, nil
}

func (sc *myScratch) exec(ctx context.Context, text string, args ...any) error {
	qctx, cancel := context.WithTimeout(ctx, sc.s.errs.opts.QueryTimeout+cancelGrace)
	defer cancel()
	if _, err := sc.conn.ExecContext(qctx, text, args...); err != nil {
		return sc.s.errs.queryError(ctx, qctx, "statement", err, serverTimeout(err))
	}
	return nil
}

// writable is the statement that makes the session fit for loading.
func (s *mysqlSource) writable() string {
	if s.mariadb {
		return fmt.Sprintf("SET SESSION tx_read_only = 0, SESSION time_zone = '+00:00', SESSION max_statement_time = %s",
			strconv.FormatFloat(s.errs.opts.QueryTimeout.Seconds(), 'f', 3, 64))
	}
	return "SET SESSION transaction_read_only = 0, SESSION time_zone = '+00:00'"
}

func (sc *myScratch) load(ctx context.Context, fx *LiveFixtures) error {
	unavailable := func(what string, err error) error {
		return &UnavailableError{fmt.Errorf("%s: %w", what, err)}
	}
	if err := sc.exec(ctx, sc.s.writable()); err != nil {
		return unavailable("session setup", err)
	}
	var mode string
	if err := sc.conn.QueryRowContext(ctx, "SELECT @@SESSION.sql_mode, CONNECTION_ID()").Scan(&mode, &sc.id); err != nil {
		return unavailable("session setup", sc.s.errs.queryError(ctx, ctx, "session setup", err, false))
	}
	sc.sweep(ctx)
	names, stmts, err := planScratch(mysqlLexer(mode), fx, time.Now())
	if err != nil {
		return err
	}
	sc.names = names
	for _, name := range names.all() {
		if err := sc.exec(ctx, "CREATE DATABASE "+names.lx.quote(name)+" CHARACTER SET utf8mb4"); err != nil {
			return unavailable("creating the scratch database "+name, err)
		}
	}
	if err := sc.exec(ctx, "USE "+names.lx.quote(names.main)); err != nil {
		return unavailable("using the scratch database", err)
	}
	d := fixtureDialect{
		lx:          names.lx,
		exec:        sc.exec,
		columnType:  mysqlColumnType,
		fold:        func(s string) string { return s },
		value:       func(v any) any { return v },
		placeholder: func(int) string { return "?" },
		maxParams:   65535,
	}
	if err := d.load(ctx, names, stmts, fx, sc.s.Server()); err != nil {
		return err
	}
	if err := sc.exec(ctx, sc.s.session()); err != nil {
		return unavailable("session setup", err)
	}
	return nil
}

// sweep drops scratch databases that a killed test run left behind, once
// they are an hour old. It is best effort: a failure only leaves them for
// the next run.
func (sc *myScratch) sweep(ctx context.Context) {
	rows, err := sc.conn.QueryContext(ctx, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'backflow%'")
	if err != nil {
		return
	}
	var stale []string
	for rows.Next() {
		var name string
		if rows.Scan(&name) != nil {
			continue
		}
		if created, ok := scratchCreated(name); ok && time.Since(created) > staleScratch {
			stale = append(stale, name)
		}
	}
	_ = rows.Close()
	for _, name := range stale {
		_ = sc.exec(ctx, "DROP DATABASE IF EXISTS `"+strings.ReplaceAll(name, "`", "``")+"`")
	}
}

// mysqlColumnType is the type a fixture column is created with.
func mysqlColumnType(c schema.Column) string {
	switch c.Type {
	case schema.TypeInt:
		return "BIGINT"
	case schema.TypeFloat:
		return "DOUBLE"
	case schema.TypeBool:
		return "BOOLEAN"
	case schema.TypeBytes:
		return "LONGBLOB"
	case schema.TypeTimestamp:
		return "DATETIME(6)"
	case schema.TypeDecimal:
		if strings.HasPrefix(c.DBType, "decimal(") {
			return strings.ToUpper(c.DBType)
		}
		return "DECIMAL(65,30)"
	case schema.TypeJSON:
		return "JSON"
	}
	return "LONGTEXT"
}

// Schemas lists the scratch databases.
func (sc *myScratch) Schemas() []string { return sc.names.all() }

// begin rewrites a model query, checks what it reads and starts a
// read-only transaction for it on the scratch connection.
func (sc *myScratch) begin(ctx context.Context, query string) (*myQuery, string, error) {
	if sc.closed {
		return nil, "", errors.New("the scratch database is closed")
	}
	text, err := sc.names.rewriteQuery(sc.names.lx.subquery(query))
	if err != nil {
		return nil, "", fmt.Errorf("%s query: %v", sc.s.errs.kind, err)
	}
	if err := sc.checkReads(text); err != nil {
		return nil, "", fmt.Errorf("%s query: %v", sc.s.errs.kind, err)
	}
	q := &myQuery{s: sc.s, ctx: ctx, conn: sc.conn, keepConn: true}
	q.qctx, q.cancel = context.WithTimeout(ctx, sc.s.errs.opts.QueryTimeout+cancelGrace)
	id := sc.id
	q.stop = context.AfterFunc(q.qctx, func() { sc.s.kill(id) })
	tx, err := sc.conn.BeginTx(q.qctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, "", q.end(sc.queryError(q, "starting a read-only transaction", err))
	}
	q.tx = tx
	return q, text, nil
}

// checkReads refuses a query that names a table of a database other than
// the scratch ones and the catalogs (unqualified names resolve in the main
// scratch database). It reads the query with the MySQL grammar of the
// embedded engine; a query that grammar does not take (some MariaDB
// extensions) is not checked.
func (sc *myScratch) checkReads(text string) error {
	stmt, err := sqlparser.Parse(text)
	if err != nil {
		return nil
	}
	scratch := map[string]bool{}
	for _, s := range sc.names.all() {
		scratch[s] = true
	}
	seen := map[string]bool{}
	var outside []string
	_ = sqlparser.Walk(func(node sqlparser.SQLNode) (bool, error) {
		if t, ok := node.(*sqlparser.AliasedTableExpr); ok {
			if tn, ok := t.Expr.(sqlparser.TableName); ok && !tn.DbQualifier.IsEmpty() {
				db := strings.ToLower(tn.DbQualifier.String())
				name := tn.DbQualifier.String() + "." + tn.Name.String()
				if !scratch[db] && !systemSchemas[db] && !seen[name] {
					seen[name] = true
					outside = append(outside, name)
				}
			}
		}
		return true, nil
	}, stmt)
	if len(outside) > 0 {
		return outsideReadsError(outside)
	}
	return nil
}

// queryError explains a failed query with the model's own names.
func (sc *myScratch) queryError(q *myQuery, what string, err error) error {
	err = sc.s.errs.queryError(q.ctx, q.qctx, what, err, serverTimeout(err))
	var te *TimeoutError
	if errors.As(err, &te) {
		return err
	}
	return &scrubbedError{msg: sc.names.unmap(err.Error()), cause: err}
}

// Query runs a model query on the fixtures.
func (sc *myScratch) Query(ctx context.Context, query string) (Rows, error) {
	q, text, err := sc.begin(ctx, query)
	if err != nil {
		return nil, err
	}
	rows, err := q.tx.QueryContext(q.qctx, text)
	if err != nil {
		return nil, q.end(sc.queryError(q, "query", err))
	}
	return sc.s.startRows(q, rows)
}

// Schema describes a model query on the fixtures.
func (sc *myScratch) Schema(ctx context.Context, query string) ([]schema.Column, error) {
	q, text, err := sc.begin(ctx, query)
	if err != nil {
		return nil, err
	}
	rows, err := q.tx.QueryContext(q.qctx, "SELECT * FROM (\n"+text+"\n) backflow_schema LIMIT 0")
	if err != nil {
		return nil, q.end(sc.queryError(q, "query schema", err))
	}
	cols, err := sc.s.columns(rows)
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, q.end(sc.queryError(q, "query schema", err))
	}
	return cols, q.end(nil)
}

// Close drops the scratch databases and the scratch connection (whose
// session it changed). When that connection is broken (a query killed, the
// network gone) it drops them on a fresh one.
func (sc *myScratch) Close() error {
	if sc.closed {
		return nil
	}
	sc.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), sc.s.errs.opts.ConnectTimeout+30*time.Second)
	defer cancel()
	err := sc.drop(ctx, sc.conn)
	if err != nil && sc.names != nil {
		if conn, cerr := sc.s.db.Conn(ctx); cerr == nil {
			err = sc.drop(ctx, conn)
		}
	}
	if err != nil {
		return fmt.Errorf("dropping the scratch databases %s: %v; a later test run on this server drops them once they are an hour old",
			strings.Join(sc.names.all(), ", "), sc.s.errs.secrets.Error(err))
	}
	return nil
}

// drop drops the scratch databases on conn, then discards conn.
func (sc *myScratch) drop(ctx context.Context, conn *sql.Conn) error {
	defer func() {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		_ = conn.Close()
	}()
	if sc.names == nil {
		return nil
	}
	if _, err := conn.ExecContext(ctx, sc.s.writable()); err != nil {
		return err
	}
	for _, name := range sc.names.all() {
		if _, err := conn.ExecContext(ctx, "DROP DATABASE IF EXISTS "+sc.names.lx.quote(name)); err != nil {
			return err
		}
	}
	return nil
}
