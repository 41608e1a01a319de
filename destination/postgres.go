package destination

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Postgres is the `postgres` driver (pgx). Upserts are one multi-row
// INSERT ... ON CONFLICT (key) DO UPDATE per batch.
type Postgres struct {
	sqlWriter
	pg    *pgConn
	where string // "database X on host:port", for messages; never the DSN
}

// pgConn is one pgx connection, reopened on the next use after it broke.
// (pgx's database/sql adapter would pull in its pool package, which this
// module does not require.)
type pgConn struct {
	cfg  *pgx.ConnConfig
	conn *pgx.Conn
}

// get returns a live connection, connecting if there is none.
func (c *pgConn) get(ctx context.Context) (*pgx.Conn, error) {
	if c.conn != nil && !c.conn.IsClosed() {
		return c.conn, nil
	}
	conn, err := pgx.ConnectConfig(ctx, c.cfg)
	if err != nil {
		return nil, err
	}
	c.conn = conn
	return conn, nil
}

func (c *pgConn) begin(ctx context.Context) (sqlTx, error) {
	conn, err := c.get(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return pgTx{tx}, nil
}

func (c *pgConn) close() error {
	if c.conn == nil {
		return nil
	}
	return c.conn.Close(context.Background())
}

type pgTx struct{ tx pgx.Tx }

func (t pgTx) exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := t.tx.Exec(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (t pgTx) commit(ctx context.Context) error   { return t.tx.Commit(ctx) }
func (t pgTx) rollback(ctx context.Context) error { return t.tx.Rollback(ctx) }

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
}

// classifyPostgres retries lock and statement timeouts, serialization
// failures, deadlocks, resource shortages, shutdowns and connection failures;
// everything else the server said (23xxx constraints, 22xxx data, 42xxx
// unknown names) rejects the batch.
func classifyPostgres(err error) errClass {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "55P03", // lock_not_available (lock_timeout)
			pe.Code == "40001",                // serialization_failure
			pe.Code == "40P01",                // deadlock_detected
			pe.Code == "57014",                // query_canceled (statement_timeout)
			strings.HasPrefix(pe.Code, "08"),  // connection exception
			strings.HasPrefix(pe.Code, "53"),  // insufficient resources
			strings.HasPrefix(pe.Code, "57P"): // shutdown, cannot connect now
			return classRetry
		}
		return classReject
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || pgconn.Timeout(err) || isConnectionError(err) {
		return classRetry
	}
	return classReject
}

// OpenPostgres connects with the dsn argument and runs init_sql once.
// lock_timeout is the session's lock_timeout: a statement that waits longer
// for a row lock fails, and the batch is retryable. Errors never contain the
// DSN or its password.
func OpenPostgres(ctx context.Context, cfg Config) (Destination, error) {
	dsn, initSQL := cfg.Args.String("dsn"), cfg.Args.String("init_sql")
	if dsn == "" {
		return nil, fmt.Errorf("destination %q: postgres needs a dsn", cfg.Name)
	}
	pc, err := pgx.ParseConfig(dsn)
	if err != nil {
		// The parse error may quote the DSN; say only that it is invalid.
		return nil, fmt.Errorf("destination %q: invalid postgres dsn", cfg.Name)
	}
	scrub := scrubber(dsn, pc.Password)
	timeout := cfg.Args.Duration("lock_timeout")
	if pc.RuntimeParams == nil {
		pc.RuntimeParams = map[string]string{}
	}
	pc.RuntimeParams["lock_timeout"] = strconv.FormatInt(max(timeout.Milliseconds(), 1), 10)
	where := fmt.Sprintf("database %q on %s:%d", pc.Database, pc.Host, pc.Port)
	pg := &pgConn{cfg: pc}
	conn, err := pg.get(ctx)
	if err != nil {
		return nil, fmt.Errorf("destination %q: connect to %s: %w", cfg.Name, where, scrub(err))
	}
	if strings.TrimSpace(initSQL) != "" {
		// Without arguments pgx uses the simple protocol, which runs
		// several statements.
		if _, err := conn.Exec(ctx, initSQL); err != nil {
			pg.close()
			return nil, fmt.Errorf("destination %q: init_sql on %s: %w", cfg.Name, where, scrub(err))
		}
	}
	return &Postgres{sqlWriter: sqlWriter{conn: pg, dialect: postgresDialect, scrub: scrub}, pg: pg, where: where}, nil
}

// Prepare checks that object (optionally schema-qualified) exists with the
// key and every field as columns (exact case, as written), and that a
// unique index or constraint covers exactly the key column, without which
// ON CONFLICT (key) fails.
func (p *Postgres) Prepare(ctx context.Context, object, keyField string, fields []string) error {
	rel := quoteQualified(`"`, object)
	conn, err := p.pg.get(ctx)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", p.where, p.scrub(err))
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, rel).Scan(&exists); err != nil {
		return fmt.Errorf("look up table %q in %s: %w", object, p.where, p.scrub(err))
	}
	if !exists {
		return fmt.Errorf("table %q not found in %s", object, p.where)
	}
	rows, err := conn.Query(ctx, `SELECT attname FROM pg_attribute
		WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, rel)
	if err != nil {
		return fmt.Errorf("list columns of %q in %s: %w", object, p.where, p.scrub(err))
	}
	var columns []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			rows.Close()
			return fmt.Errorf("list columns of %q in %s: %w", object, p.where, p.scrub(err))
		}
		columns = append(columns, c)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list columns of %q in %s: %w", object, p.where, p.scrub(err))
	}
	if err := checkColumns(object, keyField, fields, columns, false); err != nil {
		return fmt.Errorf("%w in %s", err, p.where)
	}
	var unique bool
	err = conn.QueryRow(ctx, `SELECT EXISTS (
		SELECT 1 FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
		WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indnkeyatts = 1
		  AND i.indpred IS NULL AND i.indexprs IS NULL AND a.attname = $2)`, rel, keyField).Scan(&unique)
	if err != nil {
		return fmt.Errorf("inspect indexes of %q in %s: %w", object, p.where, p.scrub(err))
	}
	if !unique {
		return fmt.Errorf("key column %q of table %q in %s has no PRIMARY KEY or UNIQUE constraint; "+
			"upserts by key need one (ON CONFLICT)", keyField, object, p.where)
	}
	return nil
}
