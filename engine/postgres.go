package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/backflowhq/backflow/schema"
)

// pgSource is a Source over one pgx connection, opened again when a
// cancelled or failed query broke it. A query holds mu until its Rows are
// closed (a connection runs one query at a time).
type pgSource struct {
	mu   sync.Mutex
	cfg  *pgx.ConnConfig
	conn *pgx.Conn
	// nonstandard: the server has standard_conforming_strings off, so
	// backslashes escape in '…' strings. Atomic, as mu is held while a
	// query's rows are read.
	nonstandard atomic.Bool
	errs        liveErrors
}

var _ Source = (*pgSource)(nil)

// OpenPostgres connects to PostgreSQL (pgx, one connection) within
// opts.ConnectTimeout (per host when the DSN lists several).
//
// Every model query, and every column description, runs in its own
// transaction, BEGIN READ ONLY with SET LOCAL statement_timeout to the
// query timeout, rolled back once its rows are read; the query goes
// through the extended protocol, which takes one statement only, so a
// model cannot end the transaction and go on. The client bounds the query
// too: when the query timeout (plus a short grace) or the caller's context
// ends, the server is sent a cancel request, and the connection is dropped
// if the server does not answer it promptly.
//
// Values: numeric is a decimal string (exact), timestamptz, timestamp
// (taken as UTC) and date time.Time in UTC ('infinity' and '-infinity'
// their text), bytea []byte, json and jsonb
// their JSON text, types without a portable counterpart (uuid, interval,
// arrays, …) their PostgreSQL text form. Errors name the server by
// host:port and never carry the DSN, its password, user, database or
// option values.
func OpenPostgres(ctx context.Context, dsn string, opts LiveOptions) (Source, error) {
	opts = opts.withDefaults()
	secrets := dsnSecrets(dsn)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("parsing the PostgreSQL DSN: invalid DSN (expected postgres://user:password@host:port/database)")
	}
	if cfg.Password != "" {
		secrets = append(secrets, cfg.Password)
	}
	words := []string{cfg.User, cfg.Database}
	for k, v := range cfg.RuntimeParams {
		words = append(words, k, v)
	}
	for _, fb := range cfg.Fallbacks {
		if fb.TLSConfig != nil {
			words = append(words, fb.TLSConfig.ServerName)
		}
	}
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	if strings.HasPrefix(cfg.Host, "/") {
		addr = cfg.Host // a Unix socket directory
	}
	cfg.ConnectTimeout = opts.ConnectTimeout
	cfg.DialFunc = (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext
	// Only extended-protocol modes: one statement per query.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeDescribeExec
	cfg.StatementCacheCapacity = 0
	cfg.DescriptionCacheCapacity = 0
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: cancelGrace}
	}
	s := &pgSource{cfg: cfg, errs: newLiveErrors("PostgreSQL", addr, opts, secrets, words)}
	if _, err := s.connect(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// connect returns the open connection, opening one when there is none or
// the last one broke. The caller holds mu.
func (s *pgSource) connect(ctx context.Context) (*pgx.Conn, error) {
	if s.conn != nil && !s.conn.IsClosed() {
		return s.conn, nil
	}
	conn, err := pgx.ConnectConfig(ctx, s.cfg)
	if err != nil {
		var ce *pgconn.ConnectError
		if errors.As(err, &ce) {
			// Its message starts with the user and database; the
			// per-host errors it wraps name host:port only.
			err = &scrubbedError{msg: ce.Unwrap().Error(), cause: err}
		}
		return nil, s.errs.connectError(ctx, err)
	}
	s.conn = conn
	s.nonstandard.Store(conn.PgConn().ParameterStatus("standard_conforming_strings") == "off")
	return conn, nil
}

func (s *pgSource) lexer() sqlLexer { return postgresLexer(!s.nonstandard.Load()) }

// pgQuery is one model query in flight on the source's connection.
type pgQuery struct {
	s      *pgSource
	conn   *pgx.Conn
	ctx    context.Context // the caller's
	qctx   context.Context // bounded by the query timeout
	cancel context.CancelFunc
	// scratch: the query runs in a test's scratch transaction, which
	// pgScratch.Close ends; end only releases the query's context.
	scratch bool
	// own: the query runs on a connection of its own (QueryShared), not
	// the source's: end closes it, and mu is not held.
	own bool
}

// begin takes the connection and opens the read-only transaction. On
// success the caller owns mu until end.
func (s *pgSource) begin(ctx context.Context) (*pgQuery, error) { return s.beginWith(ctx, Tuning{}) }

// beginWith is begin with settings local to the transaction, and the
// guarded tables locked.
func (s *pgSource) beginWith(ctx context.Context, tu Tuning) (*pgQuery, error) {
	return s.beginAs(ctx, tu, "BEGIN TRANSACTION READ ONLY")
}

// beginAs is beginWith with the transaction opened by begin.
func (s *pgSource) beginAs(ctx context.Context, tu Tuning, begin string) (*pgQuery, error) {
	s.mu.Lock()
	conn, err := s.connect(ctx)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	return s.open(&pgQuery{s: s, conn: conn, ctx: ctx}, tu, begin)
}

// open starts q's transaction with begin, sets tu's settings and locks its
// guarded tables. On failure q is ended.
func (s *pgSource) open(q *pgQuery, tu Tuning, begin string) (*pgQuery, error) {
	ctx, conn := q.ctx, q.conn
	q.qctx, q.cancel = context.WithTimeout(ctx, s.errs.opts.QueryTimeout+cancelGrace)
	// Without arguments Exec uses the simple protocol, which runs both
	// statements in one round trip.
	setup := begin + fmt.Sprintf("; SET LOCAL statement_timeout = %d", pgStatementTimeout(s.errs.opts.QueryTimeout)) + pgSessionPins
	for _, st := range tu.Settings {
		if !plainName(st.Name) {
			return nil, q.end(fmt.Errorf("setting %q: not a plain name", st.Name))
		}
		setup += fmt.Sprintf("; SET LOCAL %s = '%s'", st.Name, strings.ReplaceAll(st.Value, "'", "''"))
	}
	if len(tu.Guard) > 0 {
		setup += fmt.Sprintf("; SET LOCAL lock_timeout = %d", max(tu.GuardWait.Milliseconds(), 1))
	}
	if _, err := conn.Exec(q.qctx, setup); err != nil {
		return nil, q.end(s.errs.queryError(ctx, q.qctx, "starting a read-only transaction", err, false))
	}
	if len(tu.Guard) == 0 {
		return q, nil
	}
	// One table a statement, so that a lock timeout names its table.
	lx := postgresLexer(true)
	for _, t := range tu.Guard {
		if _, err := conn.Exec(q.qctx, "LOCK TABLE "+lx.quote(t.Schema)+"."+lx.quote(t.Name)+" IN ACCESS SHARE MODE"); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "55P03" { // lock_not_available: lock_timeout
				return nil, q.end(&LockError{Server: s.errs.kind, Addr: s.errs.addr, Table: t, Wait: tu.GuardWait,
					Err: &scrubbedError{msg: s.errs.secrets.String(err.Error()), cause: err}})
			}
			return nil, q.end(s.errs.queryError(ctx, q.qctx, "locking "+t.Schema+"."+t.Name+" for reading", err, serverTimeoutPG(err)))
		}
	}
	// The query's other tables wait as the session's setting says: its
	// value when the transaction began, since backflow sets none of the
	// session's own (SET LOCAL only, in transactions rolled back).
	if _, err := conn.Exec(q.qctx, "SET LOCAL lock_timeout TO DEFAULT"); err != nil {
		return nil, q.end(s.errs.queryError(ctx, q.qctx, "starting a read-only transaction", err, false))
	}
	return q, nil
}

// end rolls the transaction back (a model query never commits), drops a
// connection that cannot be trusted any more, releases mu and returns err.
func (q *pgQuery) end(err error) error {
	if q.scratch {
		q.cancel()
		return err
	}
	if q.own {
		// A connection of the query's own (QueryShared): closed, which
		// ends its transaction.
		defer q.cancel()
		rctx, cancel := context.WithTimeout(context.Background(), cancelGrace)
		defer cancel()
		_ = q.conn.Close(rctx)
		return err
	}
	defer q.s.mu.Unlock()
	defer q.cancel()
	if !q.conn.IsClosed() {
		rctx, cancel := context.WithTimeout(context.Background(), cancelGrace)
		defer cancel()
		if _, rerr := q.conn.Exec(rctx, "ROLLBACK"); rerr != nil || q.conn.PgConn().TxStatus() != 'I' {
			_ = q.conn.Close(rctx)
		}
	}
	return err
}

func serverTimeoutPG(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "57014" && strings.Contains(pe.Message, "statement timeout")
}

// Query runs a model query and streams its rows. An error the server
// raises before the first row (a failed cast, a division by zero, a write
// refused in the read-only transaction) is returned here.
func (s *pgSource) Query(ctx context.Context, query string) (Rows, error) {
	return s.QueryTuned(ctx, query, Tuning{})
}

// pgStatementTimeout is the statement_timeout (milliseconds) of a query
// timeout: PostgreSQL takes at most 2³¹-1 (24.8 days), and refuses the
// whole setting above; a longer query_timeout is then the client's alone.
func pgStatementTimeout(d time.Duration) int64 {
	return min(max(d.Milliseconds(), 1), math.MaxInt32)
}

// pgSessionPins fixes, in every model query's transaction, the settings
// the values' text depends on: most types arrive as text (pgResultFormats), and a
// role's or a DSN's own settings (extra_float_digits = 0 rounds 0.1 + 0.2
// to 0.3, DateStyle German or IntervalStyle iso_8601 are not read back,
// bytea_output escape is misread) would change what is planned and sent.
// Warehouse CDC's statement relies on them too: its keys and hashes are
// made of these text forms.
// TimeZone is UTC, as on MySQL sources (time_zone '+00:00'): a model's
// ts::date is the same on every runner. extra_float_digits 3 is exact on
// every server (PostgreSQL 12 and later take any value above 0 as the
// shortest exact form).
const pgSessionPins = "; SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'" +
	"; SET LOCAL extra_float_digits = 3; SET LOCAL bytea_output = 'hex'"

// pgResultFormats asks for numerics as text, the decimal string backflow
// keeps, rather than in binary to be formatted again digit by digit;
// startRows reads them as the text sent. Integers, floats, booleans, dates,
// times and UUIDs come in binary: cheaper to read than their text, and
// exact whatever the session (pgx decodes both forms to the same values).
// Any type not listed comes as text. Every model query passes it.
var pgResultFormats = pgx.QueryResultFormatsByOID{
	pgtype.NumericOID: pgx.TextFormatCode,
	pgtype.Int2OID:    pgx.BinaryFormatCode, pgtype.Int4OID: pgx.BinaryFormatCode, pgtype.Int8OID: pgx.BinaryFormatCode,
	pgtype.Float4OID: pgx.BinaryFormatCode, pgtype.Float8OID: pgx.BinaryFormatCode, pgtype.BoolOID: pgx.BinaryFormatCode,
	pgtype.DateOID: pgx.BinaryFormatCode, pgtype.TimestampOID: pgx.BinaryFormatCode, pgtype.TimestamptzOID: pgx.BinaryFormatCode,
	pgtype.UUIDOID: pgx.BinaryFormatCode,
}

// QueryTuned implements Tuner: SET LOCAL each setting in the query's
// read-only transaction, and lock the guarded tables in ACCESS SHARE
// mode under a lock_timeout of their own (none for Query).
func (s *pgSource) QueryTuned(ctx context.Context, query string, tuning Tuning) (Rows, error) {
	q, err := s.beginWith(ctx, tuning)
	if err != nil {
		return nil, err
	}
	return s.runOn(q, query)
}

// startRows wraps a query's result, reading its first row (so that an
// error the server raises before it is returned here).
func (s *pgSource) startRows(q *pgQuery, rows pgx.Rows) (Rows, error) {
	fields := rows.FieldDescriptions()
	r := &pgRows{q: q, rows: rows, cols: s.columns(q.conn, fields), oids: make([]uint32, len(fields)),
		raw: make([]any, len(fields)), json: make([][]byte, len(fields)), ptrs: make([]any, len(fields)), row: make([]any, len(fields))}
	tm := q.conn.TypeMap()
	for i, f := range fields {
		r.oids[i] = f.DataTypeOID
		switch {
		case r.cols[i].Type == schema.TypeJSON || f.DataTypeOID == pgtype.NumericOID:
			r.ptrs[i] = &r.json[i] // the text as sent, never decoded
		case r.cols[i].Type == schema.TypeString && isArray(tm, f.DataTypeOID):
			// Scanned into an any, an array is flattened ({{1,2},{3,4}}
			// read as {1,2,3,4}); pgtype.Array keeps its dimensions for
			// its text form.
			if r.arrs == nil {
				r.arrs = make([]*pgtype.Array[any], len(fields))
			}
			r.arrs[i] = new(pgtype.Array[any])
			r.ptrs[i] = r.arrs[i]
		default:
			r.ptrs[i] = &r.raw[i]
		}
	}
	if !r.advance() {
		if err := r.Err(); err != nil {
			r.closeRows()
			return nil, q.end(err)
		}
		r.done = true
	} else {
		r.ready = true
	}
	return r, nil
}

// Schema returns the columns of query by describing it as a prepared
// statement, without running it.
func (s *pgSource) Schema(ctx context.Context, query string) ([]schema.Column, error) {
	q, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	sd, err := q.conn.Prepare(q.qctx, "", strings.TrimRight(strings.TrimSpace(query), ";"))
	if err != nil {
		return nil, q.end(s.errs.queryError(ctx, q.qctx, "query schema", err, serverTimeoutPG(err)))
	}
	return s.columns(q.conn, sd.Fields), q.end(nil)
}

// columns describes a result. PostgreSQL does not report nullability of
// result columns, so every column is nullable.
func (s *pgSource) columns(conn *pgx.Conn, fields []pgconn.FieldDescription) []schema.Column {
	cols := make([]schema.Column, len(fields))
	tm := conn.TypeMap()
	for i, f := range fields {
		name := fmt.Sprintf("oid %d", f.DataTypeOID)
		if t, ok := tm.TypeForOID(f.DataTypeOID); ok {
			name = t.Name
		}
		cols[i] = schema.Column{Name: f.Name, Type: postgresType(f.DataTypeOID), Nullable: true, DBType: name}
	}
	return cols
}

// Close closes the connection.
func (s *pgSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), cancelGrace)
	defer cancel()
	return s.errs.secrets.Error(s.conn.Close(ctx))
}

func postgresType(oid uint32) schema.Type {
	switch oid {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID:
		return schema.TypeInt
	case pgtype.Float4OID, pgtype.Float8OID:
		return schema.TypeFloat
	case pgtype.NumericOID:
		return schema.TypeDecimal
	case pgtype.BoolOID:
		return schema.TypeBool
	case pgtype.ByteaOID:
		return schema.TypeBytes
	case pgtype.TimestampOID, pgtype.TimestamptzOID, pgtype.DateOID:
		return schema.TypeTimestamp
	case pgtype.JSONOID, pgtype.JSONBOID:
		return schema.TypeJSON
	}
	return schema.TypeString
}

// pgRows adapts pgx.Rows; Close ends the query's transaction and releases
// the source's connection.
type pgRows struct {
	q      *pgQuery
	rows   pgx.Rows
	cols   []schema.Column
	oids   []uint32
	raw    []any
	json   [][]byte
	arrs   []*pgtype.Array[any] // for an array column read as text: its value, with its dimensions
	ptrs   []any
	row    []any
	err    error
	ready  bool // row holds a row read ahead by Query
	done   bool
	closed bool
}

func (r *pgRows) Columns() []schema.Column { return r.cols }

func (r *pgRows) Next() bool {
	if r.ready {
		r.ready = false
		return true
	}
	if r.done || r.closed {
		return false
	}
	if !r.advance() {
		r.done = true
		return false
	}
	return true
}

func (r *pgRows) advance() bool {
	if r.err != nil || !r.rows.Next() {
		return false
	}
	if err := r.rows.Scan(r.ptrs...); err != nil {
		r.err = r.q.s.errs.queryError(r.q.ctx, r.q.qctx, "query", err, false)
		return false
	}
	tm := r.q.conn.TypeMap()
	for i, a := range r.arrs {
		if a != nil {
			r.raw[i] = nil
			if a.Valid {
				r.raw[i] = *a
			}
		}
	}
	for i := range r.row {
		x, err := pgValue(tm, r.oids[i], r.cols[i].Type, r.raw[i], r.json[i])
		if err != nil {
			r.err = fmt.Errorf("PostgreSQL query: column %s (%s): %w", r.cols[i].Name, r.cols[i].DBType, err)
			return false
		}
		r.row[i] = x
	}
	return true
}

func (r *pgRows) Row() []any { return r.row }

func (r *pgRows) Err() error {
	if r.err != nil {
		return r.err
	}
	err := r.rows.Err()
	return r.q.s.errs.queryError(r.q.ctx, r.q.qctx, "query", err, serverTimeoutPG(err))
}

// closeRows ends the result on the wire; a cancelled query is told to the
// server, so this returns promptly.
func (r *pgRows) closeRows() {
	r.closed = true
	r.rows.Close()
}

func (r *pgRows) Close() error {
	if r.closed {
		return nil
	}
	r.closeRows()
	return r.q.end(r.Err())
}

// isArray says whether oid is an array type pgx decodes (its codec is an
// ArrayCodec).
func isArray(tm *pgtype.Map, oid uint32) bool {
	t, ok := tm.TypeForOID(oid)
	if !ok {
		return false
	}
	_, ok = t.Codec.(*pgtype.ArrayCodec)
	return ok
}

// pgValue normalises a value pgx decoded. JSON arrives as the text the
// server sent; numerics and types without a portable counterpart go
// through their PostgreSQL text form, so nothing passes through float64.
func pgValue(tm *pgtype.Map, oid uint32, t schema.Type, v any, js []byte) (any, error) {
	if t == schema.TypeJSON {
		if js == nil {
			return nil, nil
		}
		return compactJSON(string(js)), nil
	}
	if oid == pgtype.NumericOID {
		if js == nil {
			return nil, nil
		}
		return liveValue(t, string(js))
	}
	if v == nil {
		return nil, nil
	}
	switch t {
	case schema.TypeDecimal, schema.TypeString:
		if s, ok := v.(string); ok {
			return liveValue(t, s)
		}
		if b, ok := v.([16]byte); ok && oid == pgtype.UUIDOID {
			return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
		}
		text, err := tm.Encode(oid, pgtype.TextFormatCode, v, nil)
		if err != nil {
			return nil, err
		}
		return liveValue(t, string(text))
	case schema.TypeTimestamp:
		if inf, ok := v.(pgtype.InfinityModifier); ok && (inf == pgtype.Infinity || inf == pgtype.NegativeInfinity) {
			// No time stands for it: its text, as the server writes it,
			// which a PostgreSQL destination takes back.
			return inf.String(), nil
		}
		if _, ok := v.(time.Time); !ok {
			return nil, fmt.Errorf("%v cannot be represented as a timestamp", v)
		}
	}
	return liveValue(t, v)
}
