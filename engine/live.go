package engine

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/backflowhq/backflow/schema"
)

// liveSource is a Source over a database/sql pool (MySQL).
// Its errors never contain the DSN or its password.
type liveSource struct {
	db      *sql.DB
	kind    string // "mysql", for messages
	typeOf  func(dbType string) schema.Type
	secrets []string // strings scrubbed from every error
}

var _ Source = (*liveSource)(nil)

// OpenPostgres connects to PostgreSQL (pgx, one connection) and checks
// the connection. Numeric values are decimal strings, timestamptz values
// time.Time in UTC, json/jsonb their JSON text. Queries on one Source are
// serialised: a Query holds the connection until its Rows are closed.
func OpenPostgres(ctx context.Context, dsn string) (Source, error) {
	secrets := dsnSecrets(dsn)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, scrub(errors.New("parsing the PostgreSQL DSN: invalid DSN (expected postgres://user:password@host:port/database)"), secrets)
	}
	if cfg.Password != "" {
		secrets = append(secrets, cfg.Password)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, scrub(fmt.Errorf("connecting to PostgreSQL: %w", err), secrets)
	}
	return &pgSource{conn: conn, secrets: secrets}, nil
}

// OpenMySQL connects to MySQL or MariaDB (go-sql-driver/mysql) and checks
// the connection. DATETIME values are read as time.Time in UTC whatever the
// DSN says; DECIMAL values are decimal strings.
func OpenMySQL(ctx context.Context, dsn string) (Source, error) {
	secrets := dsnSecrets(dsn)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, scrub(errors.New("parsing the MySQL DSN: invalid DSN (expected user:password@tcp(host:port)/database)"), secrets)
	}
	if cfg.Passwd != "" {
		secrets = append(secrets, cfg.Passwd)
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, scrub(fmt.Errorf("configuring MySQL: %w", err), secrets)
	}
	s := &liveSource{db: sql.OpenDB(conn), kind: "mysql", typeOf: mysqlType, secrets: secrets}
	if err := s.db.PingContext(ctx); err != nil {
		_ = s.db.Close()
		return nil, s.scrub(fmt.Errorf("connecting to MySQL: %w", err))
	}
	return s, nil
}

// dsnSecrets lists what must never appear in an error: the DSN itself and
// any password a URL-style DSN carries.
func dsnSecrets(dsn string) []string {
	out := []string{dsn}
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			out = append(out, p, url.QueryEscape(p))
		}
	}
	if at := strings.LastIndex(dsn, "@"); at > 0 {
		if _, p, ok := strings.Cut(dsn[:at], ":"); ok && p != "" && !strings.HasPrefix(p, "//") {
			out = append(out, p)
		}
	}
	return out
}

// scrubbedError is an error whose message has secrets replaced; the cause
// is kept for errors.Is / errors.As.
type scrubbedError struct {
	msg   string
	cause error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.cause }

func scrub(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "***")
		}
	}
	return &scrubbedError{msg: msg, cause: err}
}

func (s *liveSource) scrub(err error) error { return scrub(err, s.secrets) }

// Query runs a model query and streams its rows.
func (s *liveSource) Query(ctx context.Context, query string) (Rows, error) {
	rows, err := s.db.QueryContext(ctx, query)
	if err != nil {
		return nil, s.scrub(fmt.Errorf("%s query: %w", s.kind, err))
	}
	cols, err := s.columns(rows)
	if err != nil {
		_ = rows.Close()
		return nil, err
	}
	r := &liveRows{s: s, rows: rows, cols: cols, raw: make([]any, len(cols)), ptrs: make([]any, len(cols)), row: make([]any, len(cols))}
	for i := range r.raw {
		r.ptrs[i] = &r.raw[i]
	}
	return r, nil
}

// Schema returns the columns of query by running it wrapped in LIMIT 0.
func (s *liveSource) Schema(ctx context.Context, query string) ([]schema.Column, error) {
	q := strings.TrimRight(strings.TrimSpace(query), ";")
	rows, err := s.db.QueryContext(ctx, "SELECT * FROM ("+q+") backflow_schema LIMIT 0")
	if err != nil {
		return nil, s.scrub(fmt.Errorf("%s query schema: %w", s.kind, err))
	}
	defer rows.Close()
	return s.columns(rows)
}

func (s *liveSource) columns(rows *sql.Rows) ([]schema.Column, error) {
	cts, err := rows.ColumnTypes()
	if err != nil {
		return nil, s.scrub(fmt.Errorf("%s query columns: %w", s.kind, err))
	}
	cols := make([]schema.Column, len(cts))
	for i, ct := range cts {
		nullable, ok := ct.Nullable()
		cols[i] = schema.Column{Name: ct.Name(), Type: s.typeOf(ct.DatabaseTypeName()), Nullable: nullable || !ok, DBType: strings.ToLower(ct.DatabaseTypeName())}
	}
	return cols, nil
}

// Close closes the connection pool.
func (s *liveSource) Close() error { return s.scrub(s.db.Close()) }

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

// liveRows adapts *sql.Rows, converting each value to its column's type.
type liveRows struct {
	s    *liveSource
	rows *sql.Rows
	cols []schema.Column
	raw  []any
	ptrs []any
	row  []any
	err  error
}

func (r *liveRows) Columns() []schema.Column { return r.cols }

func (r *liveRows) Next() bool {
	if r.err != nil || !r.rows.Next() {
		return false
	}
	if err := r.rows.Scan(r.ptrs...); err != nil {
		r.err = r.s.scrub(fmt.Errorf("%s query: %w", r.s.kind, err))
		return false
	}
	for i, v := range r.raw {
		x, err := liveValue(r.cols[i].Type, v)
		if err != nil {
			r.err = fmt.Errorf("%s query: column %s (%s): %w", r.s.kind, r.cols[i].Name, r.cols[i].DBType, err)
			return false
		}
		r.row[i] = x
	}
	return true
}

func (r *liveRows) Row() []any { return r.row }

func (r *liveRows) Err() error {
	if r.err != nil {
		return r.err
	}
	return r.s.scrub(r.rows.Err())
}

func (r *liveRows) Close() error { return r.s.scrub(r.rows.Close()) }

// liveValue converts a value database/sql scanned into `any` to the Go type
// Rows promises for t.
func liveValue(t schema.Type, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	if b, ok := v.([]byte); ok && t != schema.TypeBytes {
		v = string(b)
	}
	switch t {
	case schema.TypeInt:
		switch x := v.(type) {
		case string:
			return strconv.ParseInt(x, 10, 64)
		default:
			return toInt64(x)
		}
	case schema.TypeFloat:
		switch x := v.(type) {
		case float64:
			return x, nil
		case float32:
			return float64(x), nil
		case string:
			return strconv.ParseFloat(x, 64)
		}
	case schema.TypeDecimal:
		switch x := v.(type) {
		case string:
			return x, nil
		case float64:
			return strconv.FormatFloat(x, 'f', -1, 64), nil
		case int64:
			return strconv.FormatInt(x, 10), nil
		}
	case schema.TypeBool:
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			return strconv.ParseBool(x)
		default:
			i, err := toInt64(x)
			return i != 0, err
		}
	case schema.TypeBytes:
		switch x := v.(type) {
		case []byte:
			return append([]byte(nil), x...), nil
		case string:
			return []byte(x), nil
		}
	case schema.TypeTimestamp:
		switch x := v.(type) {
		case time.Time:
			return x.UTC(), nil
		case string:
			if ts, ok := parseTime(x); ok {
				return ts, nil
			}
		}
	case schema.TypeJSON:
		switch x := v.(type) {
		case string:
			return x, nil
		default:
			b, err := json.Marshal(x)
			return string(b), err
		}
	case schema.TypeString:
		switch x := v.(type) {
		case string:
			return x, nil
		case time.Time:
			return x.UTC().Format(time.RFC3339Nano), nil
		default:
			return fmt.Sprint(x), nil
		}
	}
	return nil, fmt.Errorf("unexpected value of Go type %T for a %s column", v, t)
}
