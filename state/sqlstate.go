package state

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/backflowhq/backflow/redact"
	"github.com/backflowhq/backflow/spec"
)

// The database backends keep the state in a schema of a PostgreSQL
// database, or in a database of a MySQL or MariaDB server (sqlBackend).
// Every runner pointed at it shares it. Tables (schema version 1):
//
//	schema_version  version, applied_at, applied_by: one row per migration
//	meta            the one row of lineage and serial
//	syncs           id, name: the syncs that have state
//	snapshot        sync_id, k, hash, vals: what the destination last
//	                accepted, keyed by (sync_id, k); vals in the
//	                self-describing value encoding (appendNamedValues)
//	failures        sync_id, k, operation, error, attempts, first_failed,
//	                last_failed, unknown: the failure index
//	inflight        sync_id, req, sent_at, recs: per request sent whose
//	                outcomes are not all recorded, the records (operation
//	                and key, packed) still waiting for theirs
//	runs            id (append order), sync, run, status, started,
//	                row_logs (whether they are kept), record (the Run, JSON)
//	row_logs        sync, run, seq, k, operation, status, error, attempts
//	locks           sync, lock_id, operation, who, pid, since, session: the
//	                holder of each sync's lock
//
// Keys are bytes (bytea, VARBINARY) in byte order, as Go compares strings.
// Times are kept to the microsecond.
//
// An apply's Checkpoint is one transaction: the outcomes recorded since the
// last one, all or nothing; InFlight commits the records about to be sent
// before they are. Outcomes are written into that transaction in batches
// as they are recorded, so memory holds a batch, not a checkpoint (a
// reset-cdc is one checkpoint of every row). So there is no journal: a crash loses nothing
// checkpointed, and records left in flight without an outcome are read back as
// failure entries whose outcome is unknown, like the local folder's.
//
// Each sync has its own lock: a session-level advisory lock (PostgreSQL,
// pg_try_advisory_lock) or a named lock (MySQL, GET_LOCK), held by a
// connection kept for the life of the Held, so the database releases it
// when the holder's session ends however it ends. See sqllock.go.

// Defaults of the database backends' arguments.
const (
	SQLDefaultSchema         = "backflow"
	SQLDefaultConnectTimeout = 10 * time.Second
	SQLDefaultTimeout        = 5 * time.Minute
)

// MaxSQLKeyBytes is the longest key the database backends store (index
// entries are bounded: about 2.7 kB in PostgreSQL, 3 kB in MySQL).
const MaxSQLKeyBytes = 2048

// SchemaVersionError reports a database state schema created or upgraded
// by a newer backflow.
type SchemaVersionError struct {
	Location  string
	Version   int // the schema's version
	Supported int // the newest version this build reads
}

func (e *SchemaVersionError) Error() string {
	return fmt.Sprintf("state in %s has schema version %d; this build of backflow reads versions up to %d: upgrade backflow (the state is left as it is)",
		e.Location, e.Version, e.Supported)
}

var identifierRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// CheckSchemaName refuses a schema (MySQL: database) name backflow would
// create tables in that is not a plain identifier of at most 63
// characters, or that the server keeps for itself (SystemSchema): the
// state backend's schema and a source's cdc_schema.
func CheckSchemaName(s string) error {
	if !identifierRE.MatchString(s) {
		return &spec.Problem{Summary: "Invalid schema name", Detail: fmt.Sprintf("%q is not a plain identifier: use letters, digits and _, starting with a letter or _, at most 63 characters.", s)}
	}
	if SystemSchema(s) {
		return &spec.Problem{Summary: "Invalid schema name", Detail: fmt.Sprintf("%q is a schema the database server keeps for itself: name a schema of backflow's own, such as %q.", s, SQLDefaultSchema)}
	}
	return nil
}

// SystemSchema says whether name is a schema (MySQL: a database) that
// PostgreSQL or MySQL keep for themselves: backflow creates no table
// there. PostgreSQL's pg_* and information_schema; MySQL's mysql, sys,
// performance_schema and information_schema; in any case.
func SystemSchema(name string) bool {
	l := strings.ToLower(name)
	return strings.HasPrefix(l, "pg_") || l == "information_schema" || l == "mysql" || l == "sys" || l == "performance_schema"
}

func sqlSpec(mysqlDB bool) spec.Spec {
	schemaDoc := "The PostgreSQL schema holding the state tables, created on first use (without privileges for PUBLIC)."
	dsnDoc := "Connection string of the PostgreSQL database (URL or key=value); read it with env() to keep it out of the config."
	dsnExample := `dsn = env("BACKFLOW_STATE_DSN")`
	if mysqlDB {
		schemaDoc = "The database (schema) holding the state tables, created on first use; the DSN's own database is not used."
		dsnDoc = "Connection string in go-sql-driver form, user:password@tcp(host:3306)/; read it with env() to keep it out of the config."
	}
	return spec.Spec{Args: []spec.Arg{
		{Name: "dsn", Kind: spec.String, Required: true, Sensitive: true, Doc: dsnDoc, Example: dsnExample},
		{Name: "schema", Kind: spec.String, Default: SQLDefaultSchema, Check: CheckSchemaName, Doc: schemaDoc, Example: `schema = "backflow"`},
		{Name: "connect_timeout", Kind: spec.Duration, Default: SQLDefaultConnectTimeout,
			Doc: "Bound of connecting: TCP, TLS and authentication.", Example: `connect_timeout = "3s"`},
		{Name: "timeout", Kind: spec.Duration, Default: SQLDefaultTimeout,
			Doc: "Bound of one state operation (a load, a checkpoint or one batch of it, a commit): a server that stops answering fails the command after it.", Example: `timeout = "1m"`},
	}}
}

func registerSQL(r *Registry) {
	r.Register(Driver{
		Type: spec.Type{Name: "postgres", Doc: "A schema in a PostgreSQL database, shared by every runner: checkpoints are transactions, and each sync has its own lock (a session advisory lock), so runners apply different syncs at once.",
			Spec: sqlSpec(false)},
		Open: func(ctx context.Context, cfg Config) (Backend, error) { return openSQL(ctx, cfg, true, nil) },
	})
	r.Register(Driver{
		Type: spec.Type{Name: "mysql", Doc: "A database of a MySQL or MariaDB server, shared by every runner: checkpoints are transactions, and each sync has its own lock (GET_LOCK), so runners apply different syncs at once.",
			Spec: sqlSpec(true)},
		Open: func(ctx context.Context, cfg Config) (Backend, error) { return openSQL(ctx, cfg, false, nil) },
	})
}

// sqlBackend is the state in a database.
type sqlBackend struct {
	pg         bool
	db         *sql.DB
	schema     string
	where      string // "postgres schema "x" on host:port", for messages
	redact     *redact.Redactor
	timeout    time.Duration
	migrations []migration

	// ready is set once the schema is known to exist at the current
	// version; before, reads find an empty state and writes create it.
	ready atomic.Bool

	mu   sync.Mutex
	held map[string]*sqlHeld // sync → the lock this backend holds on it
}

// openSQL connects to the database of cfg. migs replaces the schema
// migrations (tests); nil uses the built-in ones.
func openSQL(ctx context.Context, cfg Config, pg bool, migs []migration) (*sqlBackend, error) {
	kind := "mysql"
	if pg {
		kind = "postgres"
	}
	dsn := cfg.Args.String("dsn")
	if dsn == "" {
		return nil, fmt.Errorf("the %s state backend needs a dsn", kind)
	}
	schema := cfg.Args.String("schema")
	if schema == "" {
		schema = SQLDefaultSchema
	}
	if err := CheckSchemaName(schema); err != nil {
		return nil, fmt.Errorf("state schema: %w", err)
	}
	connectTimeout := cfg.Args.Duration("connect_timeout")
	if connectTimeout <= 0 {
		connectTimeout = SQLDefaultConnectTimeout
	}
	timeout := cfg.Args.Duration("timeout")
	if timeout <= 0 {
		timeout = SQLDefaultTimeout
	}
	red := redact.New(dsn)
	b := &sqlBackend{pg: pg, schema: schema, redact: red, timeout: timeout, held: map[string]*sqlHeld{}, migrations: migs}
	if b.migrations == nil {
		b.migrations = builtinMigrations
	}
	var addr string
	if pg {
		cc, err := pgx.ParseConfig(dsn)
		if err != nil {
			// The parse error may quote the DSN; say only that it is invalid.
			return nil, errors.New("invalid postgres dsn in the state block")
		}
		cc.ConnectTimeout = connectTimeout
		if cc.RuntimeParams == nil {
			cc.RuntimeParams = map[string]string{}
		}
		if _, ok := cc.RuntimeParams["application_name"]; !ok {
			cc.RuntimeParams["application_name"] = "backflow state"
		}
		addr = net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port)))
		b.db = stdlib.OpenDB(*cc)
		b.where = fmt.Sprintf("postgres schema %q on %s", schema, addr)
	} else {
		mc, err := mysql.ParseDSN(dsn)
		if err != nil {
			return nil, errors.New("invalid mysql dsn in the state block")
		}
		mc.Timeout = connectTimeout
		mc.ParseTime = true
		mc.Loc = time.UTC
		mc.InterpolateParams = true
		mc.MultiStatements = false
		mc.Logger = &mysql.NopLogger{}
		if mc.Params == nil {
			mc.Params = map[string]string{}
		}
		mc.Params["time_zone"] = "'+00:00'"
		connector, err := mysql.NewConnector(mc)
		if err != nil {
			return nil, errors.New("invalid mysql dsn in the state block")
		}
		addr = mc.Addr
		b.db = sql.OpenDB(connector)
		b.where = fmt.Sprintf("mysql database %q on %s", schema, addr)
	}
	b.db.SetConnMaxIdleTime(time.Minute)
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := b.db.PingContext(pctx); err != nil {
		b.db.Close()
		msg := b.redact.String(err.Error())
		if errors.Is(pctx.Err(), context.DeadlineExceeded) {
			msg = fmt.Sprintf("no answer within %v (connect_timeout)", connectTimeout)
		}
		return nil, fmt.Errorf("connect to the state database at %s: %s", addr, msg)
	}
	if _, err := b.present(ctx); err != nil {
		b.db.Close()
		return nil, err
	}
	return b, nil
}

// Location implements Backend.
func (b *sqlBackend) Location() string { return b.where }

// Close closes the connections (a Held keeps its own until Unlock).
func (b *sqlBackend) Close() error { return b.db.Close() }

// opCtx bounds one state operation.
func (b *sqlBackend) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), b.timeout)
}

// fail wraps a database error: what failed, where, and the driver's message
// with the DSN and its parts masked.
func (b *sqlBackend) fail(what string, err error) error {
	if err == nil {
		return nil
	}
	var sve *SchemaVersionError
	var le *LockedError
	if errors.As(err, &sve) || errors.As(err, &le) {
		return err
	}
	return fmt.Errorf("%s in %s: %w", what, b.where, b.redact.Error(err))
}

// q rewrites a statement for the dialect: {name} becomes the qualified
// table name and, for PostgreSQL, each ? becomes $1, $2, ….
func (b *sqlBackend) q(stmt string) string {
	var out strings.Builder
	n := 0
	for i := 0; i < len(stmt); i++ {
		switch c := stmt[i]; {
		case c == '{':
			j := strings.IndexByte(stmt[i:], '}')
			out.WriteString(b.table(stmt[i+1 : i+j]))
			i += j
		case c == '?' && b.pg:
			n++
			out.WriteString("$" + strconv.Itoa(n))
		default:
			out.WriteByte(c)
		}
	}
	return out.String()
}

// table is a table of the state schema, qualified and quoted.
func (b *sqlBackend) table(name string) string {
	if b.pg {
		return `"` + b.schema + `".` + name
	}
	return "`" + b.schema + "`." + name
}

// latest is the schema version this build writes.
func (b *sqlBackend) latest() int { return b.migrations[len(b.migrations)-1].version }

// present reports whether the schema exists, at the current version. A
// schema of an older version is migrated; a newer one is refused.
func (b *sqlBackend) present(ctx context.Context) (bool, error) {
	if b.ready.Load() {
		return true, nil
	}
	cctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	v, err := b.schemaVersion(cctx, b.db)
	if err != nil {
		return false, err
	}
	switch {
	case v == 0:
		return false, nil
	case v > b.latest():
		return false, &SchemaVersionError{Location: b.where, Version: v, Supported: b.latest()}
	case v < b.latest():
		if err := b.migrate(cctx); err != nil {
			return false, err
		}
	}
	b.ready.Store(true)
	return true, nil
}

// ensure creates or upgrades the schema before a write.
func (b *sqlBackend) ensure() error {
	ok, err := b.present(context.Background())
	if err != nil || ok {
		return err
	}
	ctx, cancel := b.opCtx()
	defer cancel()
	if err := b.migrate(ctx); err != nil {
		return err
	}
	b.ready.Store(true)
	return nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// schemaVersion is the schema's version, 0 when it has no state tables.
func (b *sqlBackend) schemaVersion(ctx context.Context, q querier) (int, error) {
	var exists bool
	var err error
	if b.pg {
		err = q.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, b.table("schema_version")).Scan(&exists)
	} else {
		err = q.QueryRowContext(ctx, `SELECT COUNT(*) > 0 FROM information_schema.tables WHERE table_schema = ? AND table_name = 'schema_version'`, b.schema).Scan(&exists)
	}
	if err != nil {
		return 0, b.fail("read the state schema version", err)
	}
	if !exists {
		return 0, nil
	}
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, b.q(`SELECT MAX(version) FROM {schema_version}`)).Scan(&v); err != nil {
		return 0, b.fail("read the state schema version", err)
	}
	return int(v.Int64), nil
}

// lockKey is the advisory lock key (PostgreSQL) or lock name (MySQL, at
// most 64 characters) of a name within this schema: a sync, or an
// internal lock such as the one serialising migrations.
func (b *sqlBackend) lockKey(name string) (int64, string) { return lockKeyOf(b.schema, name) }

func lockKeyOf(schema, name string) (int64, string) {
	sum := sha256.Sum256([]byte("backflow state lock\x00" + schema + "\x00" + name))
	return int64(binary.BigEndian.Uint64(sum[:8])), "backflow:" + hex.EncodeToString(sum[:20])
}

// SchemaLock is the lock a database backend holds while it creates or
// upgrades its tables in schema: PostgreSQL's advisory lock key and
// MySQL's GET_LOCK name. Whatever else creates tables in that schema (the
// snapshot tables of warehouse CDC, which may share it) takes it too:
// concurrent CREATE … IF NOT EXISTS of one schema or table fail on
// PostgreSQL (a unique violation in its catalog).
func SchemaLock(schema string) (int64, string) { return lockKeyOf(schema, migrateLock) }

// inClause is "(?, ?, …)" with n placeholders.
func inClause(n int) string {
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + ")"
}

// sanitizeText makes s storable in a text column: valid UTF-8, no NUL.
func sanitizeText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}
