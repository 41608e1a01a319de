package engine

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/backflowhq/backflow/schema"
)

var _ FixtureRunner = (*pgSource)(nil)

// Server names the server for messages.
func (s *pgSource) Server() string { return s.errs.kind + " at " + s.errs.addr }

// pgScratch runs a test's model on fixtures in one transaction of the
// source's connection that is never committed: the scratch schemas, their
// tables and rows are created in it, the transaction is then made read
// only for the model, and Close rolls it back. Nothing of a test is ever
// visible to another session, and nothing can be left behind: a process
// killed mid-test drops its connection, and the server rolls back.
type pgScratch struct {
	s      *pgSource
	conn   *pgx.Conn
	names  *scratchNames
	closed bool
}

var _ Scratch = (*pgScratch)(nil)

// OnFixtures loads fx into scratch schemas. The source's connection is
// taken until the returned Scratch is closed.
//
// Statements, in one transaction: BEGIN READ WRITE with the query timeout
// as statement_timeout; CREATE SCHEMA for each scratch schema; search_path
// set to the main scratch schema followed by the session's own (so
// functions and types resolve as in production); the fixture scripts;
// CREATE TABLE and multi-row INSERTs for the other tables (every value sent
// as text, which the server converts to the column's type); SET
// TRANSACTION READ ONLY.
func (s *pgSource) OnFixtures(ctx context.Context, fx *LiveFixtures) (Scratch, error) {
	s.mu.Lock()
	conn, err := s.connect(ctx)
	if err != nil {
		s.mu.Unlock()
		return nil, &UnavailableError{err}
	}
	sc := &pgScratch{s: s, conn: conn}
	if err := sc.load(ctx, fx); err != nil {
		_ = sc.Close()
		return nil, err
	}
	return sc, nil
}

// exec runs one statement through the extended protocol (one statement
// only), bounded like a query.
func (sc *pgScratch) exec(ctx context.Context, text string, args ...any) error {
	qctx, cancel := context.WithTimeout(ctx, sc.s.errs.opts.QueryTimeout+cancelGrace)
	defer cancel()
	_, err := sc.conn.Exec(qctx, text, append([]any{pgx.QueryExecModeExec}, args...)...)
	if err != nil {
		return sc.s.errs.queryError(ctx, qctx, "statement", err, serverTimeoutPG(err))
	}
	return nil
}

func (sc *pgScratch) load(ctx context.Context, fx *LiveFixtures) error {
	errs := &sc.s.errs
	qctx, cancel := context.WithTimeout(ctx, errs.opts.QueryTimeout+cancelGrace)
	defer cancel()
	unavailable := func(what string, err error) error {
		return &UnavailableError{errs.queryError(ctx, qctx, what, err, false)}
	}
	// The settings of the model queries (pgSessionPins): a test's model
	// reads what a plan's reads, and its fixtures' literals are read as
	// the same session would.
	setup := fmt.Sprintf("BEGIN TRANSACTION READ WRITE; SET LOCAL statement_timeout = %d", pgStatementTimeout(errs.opts.QueryTimeout)) + pgSessionPins
	if _, err := sc.conn.Exec(qctx, setup); err != nil {
		return unavailable("starting a transaction", err)
	}
	var path, standard string
	if err := sc.conn.QueryRow(qctx, "SELECT current_setting('search_path'), current_setting('standard_conforming_strings')").Scan(&path, &standard); err != nil {
		return unavailable("reading the session's settings", err)
	}
	names, stmts, err := planScratch(postgresLexer(standard == "on"), fx, time.Now())
	if err != nil {
		return err
	}
	sc.names = names
	for _, name := range names.all() {
		if _, err := sc.conn.Exec(qctx, "CREATE SCHEMA "+names.lx.quote(name), pgx.QueryExecModeExec); err != nil {
			return unavailable("creating the scratch schema "+name, err)
		}
	}
	if _, err := sc.conn.Exec(qctx, "SELECT set_config('search_path', $1, true)", names.lx.quote(names.main)+", "+path); err != nil {
		return unavailable("setting the search_path", err)
	}
	return sc.loadRest(ctx, fx, stmts)
}

func (sc *pgScratch) loadRest(ctx context.Context, fx *LiveFixtures, stmts []scriptStatement) error {
	d := fixtureDialect{
		lx:          sc.names.lx,
		exec:        sc.exec,
		columnType:  pgColumnType,
		fold:        strings.ToLower,
		value:       pgText,
		placeholder: func(i int) string { return "$" + strconv.Itoa(i) },
		maxParams:   65535,
	}
	if err := d.load(ctx, sc.names, stmts, fx, sc.s.Server()); err != nil {
		return err
	}
	return sc.exec(ctx, "SET TRANSACTION READ ONLY")
}

// pgColumnType is the type a fixture column is created with.
func pgColumnType(c schema.Column) string {
	switch c.Type {
	case schema.TypeInt:
		return "bigint"
	case schema.TypeFloat:
		return "double precision"
	case schema.TypeBool:
		return "boolean"
	case schema.TypeBytes:
		return "bytea"
	case schema.TypeTimestamp:
		return "timestamptz"
	case schema.TypeDecimal:
		return "numeric"
	case schema.TypeJSON:
		return "jsonb"
	}
	return "text"
}

// pgText renders a fixture value as the text PostgreSQL reads for any
// column type (pgx sends a string parameter in text format, and the server
// converts it to the column's type).
func pgText(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case []byte:
		return `\x` + hex.EncodeToString(x)
	case time.Time:
		return x.UTC().Format("2006-01-02 15:04:05.999999999Z07:00")
	}
	return fmt.Sprint(v)
}

// Schemas lists the scratch schemas.
func (sc *pgScratch) Schemas() []string { return sc.names.all() }

// query starts a model query in the scratch transaction: the query is
// rewritten, and its plan checked to read only the test's tables.
func (sc *pgScratch) query(ctx context.Context, query string) (*pgQuery, string, error) {
	if sc.closed {
		return nil, "", errors.New("the scratch schema is closed")
	}
	text, err := sc.names.rewriteQuery(strings.TrimRight(strings.TrimSpace(query), ";"))
	if err != nil {
		return nil, "", fmt.Errorf("PostgreSQL query: %v", err)
	}
	q := &pgQuery{s: sc.s, conn: sc.conn, ctx: ctx, scratch: true}
	q.qctx, q.cancel = context.WithTimeout(ctx, sc.s.errs.opts.QueryTimeout+cancelGrace)
	if err := sc.checkReads(q, text); err != nil {
		return nil, "", q.end(err)
	}
	return q, text, nil
}

// checkReads asks the server which tables the query reads (EXPLAIN
// VERBOSE names each scanned relation and its schema, views expanded) and
// refuses any outside the scratch schemas and the catalogs.
func (sc *pgScratch) checkReads(q *pgQuery, text string) error {
	var plan []byte
	err := sc.conn.QueryRow(q.qctx, "EXPLAIN (VERBOSE, FORMAT JSON) "+text, pgx.QueryExecModeExec).Scan(&plan)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42601" {
		return nil // not a statement EXPLAIN takes (SHOW, VALUES…): it reads no table
	}
	if err != nil {
		return sc.queryError(q, "query", err)
	}
	var tree any
	if err := json.Unmarshal(plan, &tree); err != nil {
		return fmt.Errorf("PostgreSQL query: reading its plan: %v", err)
	}
	scratch := map[string]bool{}
	for _, s := range sc.names.all() {
		scratch[s] = true
	}
	seen := map[string]bool{}
	var outside []string
	var walk func(any)
	walk = func(n any) {
		switch x := n.(type) {
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			if rel, ok := x["Relation Name"].(string); ok {
				sch, _ := x["Schema"].(string)
				name := sch + "." + rel
				if !scratch[sch] && !systemSchemas[sch] && !seen[name] {
					seen[name] = true
					outside = append(outside, name)
				}
			}
			for _, v := range x {
				walk(v)
			}
		}
	}
	walk(tree)
	if len(outside) > 0 {
		return fmt.Errorf("PostgreSQL query: %v", outsideReadsError(outside))
	}
	return nil
}

// queryError explains a failed statement with the model's own names.
func (sc *pgScratch) queryError(q *pgQuery, what string, err error) error {
	err = sc.s.errs.queryError(q.ctx, q.qctx, what, err, serverTimeoutPG(err))
	var te *TimeoutError
	if errors.As(err, &te) {
		return err
	}
	msg := sc.names.unmap(err.Error())
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" {
		msg += " (the test gives no rows for that table: add a table block or fixture file named as the model names it)"
	}
	return &scrubbedError{msg: msg, cause: err}
}

// Query runs a model query on the fixtures.
func (sc *pgScratch) Query(ctx context.Context, query string) (Rows, error) {
	q, text, err := sc.query(ctx, query)
	if err != nil {
		return nil, err
	}
	rows, err := sc.conn.Query(q.qctx, text, pgx.QueryExecModeDescribeExec, pgResultFormats)
	if err != nil {
		return nil, q.end(sc.queryError(q, "query", err))
	}
	return sc.s.startRows(q, rows)
}

// Schema describes a model query on the fixtures.
func (sc *pgScratch) Schema(ctx context.Context, query string) ([]schema.Column, error) {
	q, text, err := sc.query(ctx, query)
	if err != nil {
		return nil, err
	}
	sd, err := sc.conn.Prepare(q.qctx, "", text)
	if err != nil {
		return nil, q.end(sc.queryError(q, "query schema", err))
	}
	return sc.s.columns(sc.conn, sd.Fields), q.end(nil)
}

// Close rolls the transaction back, which drops the scratch schemas with
// everything in them, and gives the source its connection back.
func (sc *pgScratch) Close() error {
	if sc.closed {
		return nil
	}
	sc.closed = true
	defer sc.s.mu.Unlock()
	if sc.conn.IsClosed() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), cancelGrace)
	defer cancel()
	if _, err := sc.conn.Exec(ctx, "ROLLBACK"); err != nil || sc.conn.PgConn().TxStatus() != 'I' {
		// The server rolls back a transaction whose connection ends.
		_ = sc.conn.Close(ctx)
	}
	return nil
}
