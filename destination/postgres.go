package destination

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The postgres driver's defaults for lock_timeout (the session's
// lock_timeout: how long a statement waits for a lock before the batch is
// reported retryable) and connect_timeout (connecting, TLS and
// authentication included). The bound of one request is the common
// timeout argument (destination.PolicySpec).
const (
	PostgresDefaultLockTimeout    = 5 * time.Second
	PostgresDefaultConnectTimeout = 10 * time.Second
)

// Postgres is the `postgres` driver (pgx). A batch's upserts and inserts
// of at least PostgresBulkMinRows records are written with one
// INSERT … SELECT … FROM unnest(…) [ON CONFLICT (key) DO UPDATE] whose
// parameters are one text array per column (see pgbulk.go); smaller groups
// are one multi-row INSERT … ON CONFLICT. Each Write takes a connection of its own,
// at most max_in_flight at once (see pgPool).
type Postgres struct {
	sqlWriter
	pg    *pgPool
	where string // "database X on host:port", for messages; never the DSN
}

// PostgresBulkMinRows is the size from which a batch's upserts or inserts
// go as the bulk statement. Smaller groups take the multi-row statement,
// which pgx prepares once per shape and the server then plans no more.
const PostgresBulkMinRows = 500

// pgPool is the driver's connections: at most max of them, opened when a
// request finds none idle, each used by one request at a time. A
// connection that broke, or was left inside a transaction, is dropped and
// replaced on the next use. (pgx's pool package is not a dependency of
// this module.)
type pgPool struct {
	cfg     *pgx.ConnConfig
	addr    string        // host:port, for messages
	timeout time.Duration // connecting
	// slots holds a token per connection in use or being opened.
	slots chan struct{}
	// freed gets a signal when a connection goes back idle.
	freed chan struct{}

	// noCopyWhere is set once the server refused a COPY's WHERE clause
	// (an engine speaking the protocol without it): COPYs go without.
	noCopyWhere atomic.Bool

	mu   sync.Mutex
	idle []*pgSession // most recently used last
	open int          // connections open, idle or in use
	// described counts the times the writer dropped a table's
	// description (the table may have changed): a session whose
	// statements were prepared before deallocates them first, or pgx
	// would bind values with the parameter types of the table as it was.
	described atomic.Int64
}

// tablesChanged implements describedConn.
func (p *pgPool) tablesChanged() { p.described.Add(1) }

// pgSession is one connection of the pool.
type pgSession struct {
	conn *pgx.Conn
	// described is the pool's described when the session's prepared
	// statements were last known to fit the tables.
	described int64
	// bulk names the bulk statements prepared in the session, by their
	// text (prepareBulk).
	bulk map[string]string
	// rowByRow: the server's COPY writes small batches faster a row at a
	// time than through its multi-insert buffer (copyRowByRow).
	rowByRow bool
}

func newPgPool(cfg *pgx.ConnConfig, addr string, timeout time.Duration, size int) *pgPool {
	return &pgPool{cfg: cfg, addr: addr, timeout: timeout, slots: make(chan struct{}, max(size, 1)), freed: make(chan struct{}, 1)}
}

// acquire returns a live connection for one request, connecting within the
// connect timeout if none is idle, after waiting (under ctx) for one of the
// pool's slots. Every acquire is followed by one release.
//
// A server refusing one more connection (too many connections, for the
// server or the role) while the pool has some open is no failure: the
// request waits for one of those to be free, so max_in_flight above the
// server's limit costs waiting, not failed batches.
func (p *pgPool) acquire(ctx context.Context) (*pgSession, error) {
	s, err := p.acquireConn(ctx)
	if err != nil {
		return nil, err
	}
	if g := p.described.Load(); s.described != g {
		// A table changed since the session prepared its statements, or
		// the session lost one (lostStatement): they all go.
		if err := s.conn.DeallocateAll(ctx); err != nil {
			p.release(s)
			return nil, err
		}
		s.described, s.bulk = g, nil
	}
	return s, nil
}

// lostStatement marks s when err says a statement prepared in it is gone
// (DEALLOCATE or DISCARD run in the session, a pooler handing over
// another server connection): its prepared statements are dropped when it
// is next acquired. It returns err.
func (s *pgSession) lostStatement(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "26000" { // invalid_sql_statement_name
		s.described = -1
	}
	return err
}

func (p *pgPool) acquireConn(ctx context.Context) (*pgSession, error) {
	for {
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for a connection: %w", ctx.Err())
		}
		p.mu.Lock()
		for len(p.idle) > 0 {
			s := p.idle[len(p.idle)-1]
			p.idle = p.idle[:len(p.idle)-1]
			if !s.conn.IsClosed() {
				p.mu.Unlock()
				return s, nil
			}
			p.open--
		}
		p.mu.Unlock()
		s, err := p.connect(ctx)
		if err == nil {
			return s, nil
		}
		<-p.slots
		var pe *pgconn.PgError
		p.mu.Lock()
		others := p.open
		p.mu.Unlock()
		if !errors.As(err, &pe) || pe.Code != "53300" || others == 0 {
			return nil, err
		}
		select {
		case <-p.freed:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for a connection (the server takes no more than %d of ours): %w", others, ctx.Err())
		}
	}
}

// connect opens a connection within the connect timeout.
func (p *pgPool) connect(ctx context.Context) (*pgSession, error) {
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, p.cfg)
	if err != nil {
		return nil, newConnectError(p.addr, p.timeout, cctx, pgConnectMessage(err), err)
	}
	p.mu.Lock()
	p.open++
	p.mu.Unlock()
	return &pgSession{conn: conn, described: p.described.Load(), rowByRow: copyRowByRow(conn.PgConn().ParameterStatus("server_version"))}, nil
}

// release gives s back: idle if it can serve the next request, closed
// otherwise.
func (p *pgPool) release(s *pgSession) {
	if s.conn.IsClosed() || s.conn.PgConn().TxStatus() != 'I' {
		ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
		s.conn.Close(ctx)
		cancel()
		p.mu.Lock()
		p.open--
		p.mu.Unlock()
	} else {
		p.mu.Lock()
		p.idle = append(p.idle, s)
		p.mu.Unlock()
	}
	<-p.slots
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

// with runs fn on a connection of the pool.
func (p *pgPool) with(ctx context.Context, fn func(conn *pgx.Conn) error) error {
	s, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	defer p.release(s)
	return s.lostStatement(fn(s.conn))
}

// pgPerDial is how pgx starts the message of one address's failure.
var pgPerDial = regexp.MustCompile(`^\S+ \([^)]*\): `)

// pgConnectMessage is a failed connection's message without what pgx
// prefixes it with: the DSN's user and database, the address (which
// connectError names itself).
func pgConnectMessage(err error) string {
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) {
		return err.Error()
	}
	inner := errors.Unwrap(ce)
	if inner == nil {
		return "connection failed"
	}
	// One line per attempt (TLS then plain, several hosts), each prefixed
	// with its address; the same failure twice is said once.
	var parts []string
	for _, line := range strings.Split(inner.Error(), "\n") {
		line = pgPerDial.ReplaceAllString(strings.TrimSpace(line), "")
		if line != "" && !slices.Contains(parts, line) {
			parts = append(parts, line)
		}
	}
	return strings.Join(parts, "; ")
}

// begin implements sqlConn. Nothing is sent yet: BEGIN and the setting
// go as one simple query before the transaction's first statement
// (pgTx.start), unless that statement is the transaction's only one, a
// COPY, which goes with the setting as one implicit transaction instead
// (pgTx.bulkInsert).
func (p *pgPool) begin(ctx context.Context, setting string) (sqlTx, error) {
	s, err := p.acquire(ctx)
	if err != nil {
		return nil, err
	}
	return &pgTx{s: s, pool: p, setting: setting}, nil
}

// close says goodbye to the server on every idle connection, within the
// connect timeout: a server that stopped answering cannot hold up the end
// of a command.
func (p *pgPool) close() error {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	var errs []error
	for _, s := range idle {
		ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
		errs = append(errs, s.conn.Close(ctx))
		cancel()
	}
	return errors.Join(errs...)
}

// pgTx is one batch's transaction on a connection of the pool, which it
// gives back when it ends.
type pgTx struct {
	s    *pgSession
	pool *pgPool
	// setting is the statement run after BEGIN, "" for none.
	setting string
	// tx is the transaction once BEGIN was sent (start); nil before, and
	// when the transaction was one statement the server committed or
	// rolled back on its own (alone).
	tx    pgx.Tx
	alone bool
}

// start sends BEGIN and the setting, in one round trip, unless they were
// sent.
func (t *pgTx) start(ctx context.Context) error {
	if t.tx != nil {
		return nil
	}
	if t.alone {
		return errors.New("a statement after the transaction's only one") // a bug in the caller
	}
	var opts pgx.TxOptions
	if t.setting != "" {
		opts.BeginQuery = "BEGIN; " + t.setting
	}
	tx, err := t.s.conn.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	t.tx = tx
	return nil
}

func (t *pgTx) exec(ctx context.Context, query string, args ...any) (int64, error) {
	if err := t.start(ctx); err != nil {
		return 0, err
	}
	tag, err := t.tx.Exec(ctx, query, args...)
	if err != nil {
		return 0, t.s.lostStatement(err)
	}
	return tag.RowsAffected(), nil
}

func (t *pgTx) strings(ctx context.Context, query string, args ...any) ([]string, error) {
	if err := t.start(ctx); err != nil {
		return nil, err
	}
	rows, err := t.tx.Query(ctx, query, args...)
	if err != nil {
		return nil, t.s.lostStatement(err)
	}
	vals, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return vals, t.s.lostStatement(err)
}

// commit commits the transaction; one that sent no BEGIN has nothing to
// commit (no statement, or one the server committed with it).
func (t *pgTx) commit(ctx context.Context) error {
	defer t.pool.release(t.s)
	if t.tx == nil {
		return nil
	}
	return t.tx.Commit(ctx)
}

func (t *pgTx) rollback(ctx context.Context) error {
	defer t.pool.release(t.s)
	if t.tx == nil {
		return nil
	}
	return t.tx.Rollback(ctx)
}

var postgresDialect = sqlDialect{
	quoteIdent:  func(name string) string { return quoteQualified(`"`, name) },
	placeholder: func(n int) string { return "$" + strconv.Itoa(n) },
	upsertTail: func(key string, fields []string) string {
		if len(fields) == 0 {
			return "ON CONFLICT (" + quoteWith(`"`, key) + ") DO NOTHING"
		}
		sets := make([]string, len(fields))
		for i, f := range fields {
			q := quoteWith(`"`, f)
			sets[i] = q + " = EXCLUDED." + q
		}
		return "ON CONFLICT (" + quoteWith(`"`, key) + ") DO UPDATE SET " + strings.Join(sets, ", ")
	},
	maxParams: 65535,
	classify:  classifyPostgres,
	lockWaited: func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "55P03" // lock_not_available
	},
	duplicateKey: func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "23505" // unique_violation
	},
	keyText:   func(key string) string { return key + "::text" },
	keysTaken: postgresKeysTaken,
	keysTwins: postgresKeysTwins,
	keysEcho: func(table, key, dbType string, lock bool) string {
		q := "SELECT k.t FROM unnest($1::text[]) AS k(t) JOIN " + table + " AS d ON d." + key + " = k.t::" + dbType
		if lock {
			q += " FOR UPDATE OF d SKIP LOCKED"
		}
		return q
	},
	// time.Time for date, timestamp and timestamptz; text for types pgx
	// cannot encode an int64 or bool into (enums, domains over them, …).
	timeStyle:       timeNative,
	otherAsText:     true,
	specialDecimals: true,
	// The command tag counts the rows written: COPY's and INSERT's leave
	// out those a BEFORE ROW trigger returned NULL for, an upsert's (ON
	// CONFLICT DO UPDATE) counts the rows inserted and updated. With
	// rules, the tag is the count of the statement the rules leave: a
	// conditional DO INSTEAD rule's rows are left out (DO INSTEAD NOTHING
	// as intended; rows a rule sends to another table too, so a record
	// only that other table holds is rejected: it is not in the table
	// the sync names), an unconditional DO INSTEAD rule's own query of
	// the same kind gives the count, or else 0. A short count rejects
	// the batch; a rule adding rows could hide a skipped one, which
	// nothing else tells. A trigger that writes the row itself and
	// returns NULL (partitioning by trigger, before declarative
	// partitioning; a merge done by the trigger) looks the same as one
	// that drops it: its records are rejected, the safe side.
	countsRows: true,
	skipHow:    "a BEFORE ROW trigger returning NULL, or a DO INSTEAD rule",
}

// classifyPostgres retries lock and statement timeouts, serialization
// failures, deadlocks, resource shortages, shutdowns and connection
// failures; authentication and permission failures, unknown tables,
// columns, schemas and databases and a read-only server are fatal;
// everything else the server said (23xxx constraints, 22xxx data) rejects
// the batch.
func classifyPostgres(err error) (errClass, bool) {
	var st *staleTypesError
	var cs *copiedShortError
	var cw *copyWhereError
	if errors.As(err, &st) || errors.As(err, &cs) || errors.As(err, &cw) {
		return classRetry, true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return classifyPgError(pe), true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) || errors.Is(err, pgconn.ErrConnClosed) {
		return classRetry, false
	}
	return classReject, false
}

func classifyPgError(pe *pgconn.PgError) errClass {
	switch {
	case pe.Code == "42501" && (pe.Routine == "ExecWithCheckOptions" ||
		strings.HasPrefix(pe.Message, "new row violates row-level security policy")):
		// A policy's WITH CHECK refusing a row: about the data, like a
		// CHECK constraint, not a permission every write lacks. The
		// server function that raises it (reported in any language)
		// tells it from a missing permission (aclcheck_error); the
		// English message does for servers that do not report it.
		return classReject
	case pe.Code == "26000": // invalid_sql_statement_name: the session lost a prepared statement
		return classRetry
	case pe.Code == "55P03", // lock_not_available (lock_timeout)
		pe.Code == "40001",                // serialization_failure
		pe.Code == "40P01",                // deadlock_detected
		pe.Code == "57014",                // query_canceled (statement_timeout)
		strings.HasPrefix(pe.Code, "08"),  // connection exception
		strings.HasPrefix(pe.Code, "53"),  // insufficient resources
		strings.HasPrefix(pe.Code, "57P"): // shutdown, cannot connect now
		return classRetry
	case strings.HasPrefix(pe.Code, "28"), // invalid authorization (password, role)
		pe.Code == "42501", // insufficient_privilege
		pe.Code == "42P01", // undefined_table
		pe.Code == "42703", // undefined_column
		pe.Code == "3D000", // invalid_catalog_name: no such database
		pe.Code == "3F000", // invalid_schema_name
		pe.Code == "25006": // read_only_sql_transaction: a standby
		return classFatal
	}
	return classReject
}

// OpenPostgres connects with cfg.DSN and runs cfg.InitSQL once.
// cfg.LockTimeout (default PostgresDefaultLockTimeout) is the session's
// lock_timeout. Rows another transaction holds are skipped (FOR UPDATE SKIP
// LOCKED) and answered as retryable records; a lock wait that still happens
// (a key another transaction is inserting) ends after LockTimeout, and the
// batch is retryable. Errors never contain the DSN or its password.
//
// Connecting (TCP, TLS, authentication) is bounded by cfg.ConnectTimeout
// (default PostgresDefaultConnectTimeout, or the DSN's connect_timeout),
// every request by cfg.Timeout (default PostgresDefaultTimeout), whatever
// the caller's context: a connection that stops answering makes a Write
// retryable after Timeout. Connection errors name host:port, never the
// DSN's user, database, password or options.
func OpenPostgres(ctx context.Context, cfg Config) (Destination, error) {
	dsn, initSQL := cfg.Args.String("dsn"), cfg.Args.String("init_sql")
	if cfg.ReadOnly {
		initSQL = "" // inspecting never changes the database
	}
	if dsn == "" {
		return nil, fmt.Errorf("destination %q: postgres needs a dsn", cfg.Name)
	}
	pc, err := pgx.ParseConfig(dsn)
	if err != nil {
		// The parse error may quote the DSN; say only that it is invalid.
		return nil, fmt.Errorf("destination %q: invalid postgres dsn", cfg.Name)
	}
	scrub := scrubber(cfg.Redact, dsn, pc.Password)
	lockTimeout := cfg.Args.Duration("lock_timeout")
	timeout := cfg.Policy.Timeout
	connectTimeout := connectTimeoutOf(cfg, pc.ConnectTimeout)
	if pc.RuntimeParams == nil {
		pc.RuntimeParams = map[string]string{}
	}
	pc.RuntimeParams["lock_timeout"] = durationMillis(lockTimeout)
	pc.ConnectTimeout = connectTimeout
	addr := net.JoinHostPort(pc.Host, strconv.Itoa(int(pc.Port)))
	where := fmt.Sprintf("database %q on %s", pc.Database, addr)
	pg := newPgPool(pc, addr, connectTimeout, cfg.Policy.MaxInFlight)
	s, err := pg.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("destination %q: %w", cfg.Name, scrub(err))
	}
	if strings.TrimSpace(initSQL) != "" {
		// Without arguments pgx uses the simple protocol, which runs
		// several statements.
		ictx, cancel := context.WithTimeout(ctx, timeout)
		_, err := s.conn.Exec(ictx, initSQL)
		cancel()
		if err != nil {
			pg.release(s)
			pg.close()
			return nil, fmt.Errorf("destination %q: init_sql on %s: %w", cfg.Name, where, scrub(err))
		}
	}
	pg.release(s)
	p := &Postgres{pg: pg, where: where}
	p.sqlWriter = sqlWriter{conn: pg, dialect: postgresDialect, scrub: scrub, describe: p.describe, skipLocked: true, timeout: timeout,
		// SET LOCAL: the bound ends with the transaction.
		optimisticBegin: "SET LOCAL lock_timeout = '" + strconv.FormatInt(lockWait.Milliseconds(), 10) + "ms'",
		bulkMinRows:     PostgresBulkMinRows}
	return p, nil
}

// ConcurrentWrites implements ConcurrentWriter: each Write takes a
// connection of the pool for its transaction.
func (p *Postgres) ConcurrentWrites() {}

// describe reads object's columns and their types (domains by their base
// type).
func (p *Postgres) describe(ctx context.Context, object string) (*table, error) {
	rel := quoteQualified(`"`, object)
	s, err := p.pg.acquire(ctx)
	if err != nil {
		return nil, p.scrub(err)
	}
	defer p.pg.release(s)
	t, err := p.describeOn(ctx, s.conn, object, rel)
	return t, s.lostStatement(err)
}

func (p *Postgres) describeOn(ctx context.Context, conn *pgx.Conn, object, rel string) (*table, error) {
	// insertTriggers: a row trigger that may skip an inserted row (BEFORE
	// or INSTEAD OF INSERT … FOR EACH ROW; tgtype bits: 1 row, 2 before,
	// 4 insert, 64 instead), enabled or not, on the table or a table
	// that inherits from it (its partitions).
	var exists, noCopy, insertTriggers bool
	if err := conn.QueryRow(ctx, `SELECT c.oid IS NOT NULL, COALESCE(c.relrowsecurity OR c.relhasrules, false),
			EXISTS (WITH RECURSIVE tree(oid) AS (
					SELECT c.oid WHERE c.relhastriggers OR c.relkind = 'p'
					UNION SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid)
				SELECT 1 FROM pg_trigger g JOIN tree ON g.tgrelid = tree.oid
				WHERE NOT g.tgisinternal AND g.tgtype & 5 = 5 AND g.tgtype & 66 <> 0)
		FROM (SELECT to_regclass($1) AS oid) r LEFT JOIN pg_class c ON c.oid = r.oid`, rel).Scan(&exists, &noCopy, &insertTriggers); err != nil {
		return nil, fmt.Errorf("look up table %q in %s: %w", object, p.where, p.scrub(err))
	}
	if !exists {
		return nil, &fatalError{notFoundError{fmt.Errorf("table %q not found in %s", object, p.where)}}
	}
	// The bulk path's cast (column.castType) names the type, or a
	// domain's base type, by its schema and internal name: as written by
	// format_type, "character" and "bit" would mean char(1) and bit(1),
	// and a cast to a domain over varchar(5) cuts a longer text where the
	// column's assignment refuses it. A domain over a domain gets none.
	rows, err := conn.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod),
			CASE WHEN t.typtype <> 'd' THEN quote_ident(tn.nspname) || '.' || quote_ident(t.typname)
				WHEN b.typtype <> 'd' THEN quote_ident(bn.nspname) || '.' || quote_ident(b.typname)
				ELSE '' END,
			COALESCE(b.typname, t.typname)::text, COALESCE(b.typcategory, t.typcategory)::text, a.attnotnull,
			a.attidentity = 'a',
			COALESCE((SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) || ' ' || co.collname
				FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
				WHERE co.oid = a.attcollation AND to_jsonb(co) ->> 'collisdeterministic' = 'false'),
				(SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) || ' ' || co.collname
				FROM pg_index i JOIN pg_collation co ON co.oid = i.indcollation[0] JOIN pg_namespace cn ON cn.oid = co.collnamespace
				WHERE i.indrelid = a.attrelid AND i.indkey[0] = a.attnum AND i.indnkeyatts = 1 AND i.indisunique
				  AND to_jsonb(co) ->> 'collisdeterministic' = 'false' ORDER BY i.indexrelid LIMIT 1), ''),
			(WITH RECURSIVE chain(oid, depth) AS (
					SELECT a.atttypid, 0
					UNION ALL SELECT ty.typbasetype, chain.depth + 1 FROM pg_type ty JOIN chain ON ty.oid = chain.oid
					WHERE ty.typtype = 'd' AND chain.depth < 32)
				SELECT ct.typname::text FROM chain JOIN pg_type ct ON ct.oid = chain.oid ORDER BY chain.depth DESC LIMIT 1)
		FROM pg_attribute a
		JOIN pg_type t ON t.oid = a.atttypid
		JOIN pg_namespace tn ON tn.oid = t.typnamespace
		LEFT JOIN pg_type b ON t.typtype = 'd' AND b.oid = t.typbasetype
		LEFT JOIN pg_namespace bn ON bn.oid = b.typnamespace
		WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, rel)
	if err != nil {
		return nil, fmt.Errorf("list columns of %q in %s: %w", object, p.where, p.scrub(err))
	}
	t := &table{noCopy: noCopy, insertTriggers: insertTriggers}
	var name, dbType, castType, typName, category, nondeterministic, baseType string
	var notNull, identity bool
	_, err = pgx.ForEachRow(rows, []any{&name, &dbType, &castType, &typName, &category, &notNull, &identity, &nondeterministic, &baseType}, func() error {
		c := column{name: name, dbType: dbType, castType: castType, kind: postgresKind(typName, category), notNull: notNull, noCopy: identity}
		postgresKeyCheck(&c, baseType, nondeterministic)
		switch typName {
		case "int2":
			c.bits = 16
		case "int4", "float4":
			c.bits = 32
		}
		t.columns = append(t.columns, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list columns of %q in %s: %w", object, p.where, p.scrub(err))
	}
	return t, nil
}

// postgresKeyCheck sets c.keyCheck for a text column that takes keys of
// different bytes for one: of type citext, or character(n) (which pads:
// 'a' and 'a ' are one), or a domain over either at any depth (typName is
// the type under every domain), or of a nondeterministic collation
// (PostgreSQL 12 on; read through to_jsonb so that older servers, whose
// pg_collation lacks the column, read none), its own or that of a unique
// index on it alone (ON CONFLICT compares keys by the index's).
// nondeterministic is the collation's quoted qualified name, a space and
// its name, or "".
func postgresKeyCheck(c *column, typName, nondeterministic string) {
	if c.kind != kindText {
		return
	}
	if typName == "bpchar" {
		c.keyCheck = true
		c.keyWhy = "type character(n) pads text with spaces, so keys that differ by trailing spaces are one"
		c.keyFix = "make the column text or varchar"
	}
	if quoted, name, ok := strings.Cut(nondeterministic, " "); ok {
		c.keyCheck, c.collation = true, quoted
		c.keyWhy = "collation " + name + " is nondeterministic: it takes some texts of different bytes for equal"
		c.keyFix = "give the column a deterministic collation"
		if typName == "citext" {
			c.keyFix = "make the column text of a deterministic collation"
		}
		return
	}
	if typName == "citext" {
		c.keyCheck = true
		c.keyWhy = "type citext compares text without regard to case"
		c.keyFix = "make the column text"
	}
}

// postgresKey is the text expression p as a key of column c: cast to its
// type and, when nondeterministic, in its collation.
func postgresKey(c *column, p string) string {
	e := p + "::" + c.dbType
	if c.collation != "" {
		e += " COLLATE " + c.collation
	}
	return "(" + e + ")"
}

// postgresKeyArray is an array of n text parameters, with their order.
func postgresKeyArray(n int) string {
	var b strings.Builder
	b.WriteString("unnest(ARRAY[")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(i+1) + "::text")
	}
	b.WriteString("]) WITH ORDINALITY")
	return b.String()
}

// postgresKeysTaken is sqlDialect.keysTaken: the keys sent are matched
// with the rows by the column's type and collation, and told apart from
// their rows' keys by their bytes (collation "C").
func postgresKeysTaken(table, key string, c *column, n int) string {
	return "SELECT octet_length(x.p)::text || ':' || x.p || t." + key + "::text FROM " + postgresKeyArray(n) + " AS x(p, i) JOIN " + table +
		" AS t ON t." + key + " = " + postgresKey(c, "x.p") + " WHERE t." + key + `::text COLLATE "C" <> x.p COLLATE "C"`
}

// postgresKeysTwins is sqlDialect.keysTwins: the n keys sent grouped by
// the column's type and collation, one text per group of more than one,
// each key after its length in bytes and ':', in the order sent.
func postgresKeysTwins(c *column, n int) string {
	return "SELECT string_agg(octet_length(x.p)::text || ':' || x.p, '' ORDER BY x.i) FROM " + postgresKeyArray(n) +
		" AS x(p, i) GROUP BY " + postgresKey(c, "x.p") + " HAVING count(*) > 1"
}

// postgresKind is the kind of a column of base type typName in category
// (pg_type.typcategory).
func postgresKind(typName, category string) colKind {
	switch typName {
	case "int2", "int4", "int8":
		return kindInt
	case "float4", "float8":
		return kindFloat
	case "numeric":
		return kindDecimal
	case "bool":
		return kindBool
	case "bytea":
		return kindBytes
	case "date":
		return kindDate
	case "timestamp":
		return kindTimestamp
	case "timestamptz":
		return kindTimestampTZ
	case "json", "jsonb":
		return kindJSON
	case "uuid":
		return kindUUID
	}
	if category == "S" || category == "E" { // strings, enums
		return kindText
	}
	return kindOther
}

// Prepare checks that object (optionally schema-qualified) exists with the
// key and every field as columns (exact case, as written), and that a
// unique index or constraint covers exactly the key column, without which
// ON CONFLICT (key) fails. It reads the columns' types, which Write converts
// values to.
func (p *Postgres) Prepare(ctx context.Context, object, keyField string, fields []string) error {
	ctx, cancel := p.bound(ctx)
	defer cancel()
	t, err := p.refresh(ctx, object)
	if err != nil {
		return err
	}
	if err := checkColumns(object, keyField, fields, t); err != nil {
		return fmt.Errorf("%w in %s", err, p.where)
	}
	var unique bool
	err = p.pg.with(ctx, func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `SELECT EXISTS (
		SELECT 1 FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
		WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indnkeyatts = 1
		  AND i.indpred IS NULL AND i.indexprs IS NULL AND a.attname = $2)`, quoteQualified(`"`, object), keyField).Scan(&unique)
	})
	if err != nil {
		return fmt.Errorf("inspect indexes of %q in %s: %w", object, p.where, p.scrub(err))
	}
	if !unique {
		return fmt.Errorf("key column %q of table %q in %s has no PRIMARY KEY or UNIQUE constraint; "+
			"upserts by key need one (ON CONFLICT)", keyField, object, p.where)
	}
	return nil
}
