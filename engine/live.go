package engine

import (
	"bytes"
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/backflowhq/backflow/redact"
	"github.com/backflowhq/backflow/schema"
)

// Defaults of LiveOptions, declared once so a config spec can quote them.
const (
	// DefaultConnectTimeout bounds opening one connection to a live source:
	// TCP connect, TLS and authentication handshakes and session setup. A
	// reachable database answers in milliseconds; ten seconds leaves room
	// for a slow network or a cold TLS handshake and still fails a CI job
	// quickly when the host is down or a firewall drops packets.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultQueryTimeout bounds one model query (or the description of its
	// columns), from sending it to reading its last row. Ten minutes is far
	// more than a model over millions of rows needs on a healthy database,
	// and still ends a stalled server or network well within a CI job.
	DefaultQueryTimeout = 10 * time.Minute
)

// cancelGrace is how long the client waits for the server to confirm a
// cancelled query (Ctrl-C, or the client-side query deadline) before it
// drops the connection. It is also the head start the server's own
// statement timeout gets over the client's deadline, so that the server's
// message is the one reported when both would fire.
const cancelGrace = 2 * time.Second

// LiveOptions tune a live PostgreSQL or MySQL source. The zero value means
// the defaults; the options replace the DSN's own connect_timeout (pgx) or
// timeout (MySQL) parameter.
type LiveOptions struct {
	// ConnectTimeout bounds opening one connection, handshakes included
	// (per host when a PostgreSQL DSN lists several). 0 means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// QueryTimeout bounds each model query and each column description.
	// The server enforces it (PostgreSQL statement_timeout, MariaDB
	// max_statement_time, MySQL max_execution_time) and the client does
	// too, so a server or network that stops answering cannot hold a
	// command much longer: the client gives the server cancelGrace (2s)
	// more to report its own timeout, then cancels the query and, on
	// PostgreSQL, drops the connection after another 2s without an
	// answer. 0 means DefaultQueryTimeout.
	QueryTimeout time.Duration
}

func (o LiveOptions) withDefaults() LiveOptions {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = DefaultQueryTimeout
	}
	return o
}

// TimeoutError reports that a live source did not answer within one of
// its limits. errors.Is(err, context.DeadlineExceeded) holds for it.
type TimeoutError struct {
	Server  string        // "PostgreSQL", "MySQL" or "MariaDB"
	Addr    string        // host:port of the server
	Op      string        // "connect" or "query"
	Limit   time.Duration // the limit that ran out
	Setting string        // the option that sets the limit: "connect_timeout" or "query_timeout"
	Err     error         // what the driver or server said, secrets removed
}

func (e *TimeoutError) Error() string {
	what := "no answer"
	if e.Op == "query" {
		what = "the model query did not finish"
	}
	msg := fmt.Sprintf("%s at %s: %s within %s (%s)", e.Server, e.Addr, what, e.Limit, e.Setting)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *TimeoutError) Unwrap() error { return e.Err }

// Timeout marks the error as a timeout, like net.Error.
func (e *TimeoutError) Timeout() bool { return true }

func (e *TimeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// liveErrors turns driver errors into messages that name the server by
// host:port and never carry the DSN, its password, user, database or
// option values.
type liveErrors struct {
	kind string // "PostgreSQL" or "MySQL", for messages
	addr string // host:port
	opts LiveOptions
	// secrets masks every message: the DSN, its password, and every value
	// read through env(); conn also masks, in connection errors, the user,
	// database and option values where they stand as words.
	secrets, conn *redact.Redactor
}

// newLiveErrors masks secrets everywhere and words in connection errors.
func newLiveErrors(kind, addr string, opts LiveOptions, secrets, words []string) liveErrors {
	l := liveErrors{kind: kind, addr: addr, opts: opts, secrets: redact.New().With(secrets...)}
	l.conn = l.secrets.With()
	l.conn.AddWords(words...)
	return l
}

// scrubbedError is an error whose message has secrets replaced; the cause
// is kept for errors.Is / errors.As.
type scrubbedError struct {
	msg   string
	cause error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.cause }

// connectError explains a failed connection attempt. ctx is the caller's
// context: when it ended first, the attempt was interrupted, not timed out.
func (l *liveErrors) connectError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return &scrubbedError{msg: fmt.Sprintf("connecting to %s at %s: interrupted (%v)", l.kind, l.addr, context.Cause(ctx)), cause: ctx.Err()}
	}
	cause := l.conn.String(err.Error())
	if isTimeout(err) {
		return &TimeoutError{Server: l.kind, Addr: l.addr, Op: "connect", Limit: l.opts.ConnectTimeout, Setting: "connect_timeout",
			Err: &scrubbedError{msg: cause, cause: err}}
	}
	return &scrubbedError{msg: fmt.Sprintf("connecting to %s at %s: %s", l.kind, l.addr, cause), cause: err}
}

// queryError explains a failed model query. ctx is the caller's context,
// qctx the one bounded by the query timeout; serverTimeout says whether
// the server reported its own statement timeout.
func (l *liveErrors) queryError(ctx, qctx context.Context, what string, err error, serverTimeout bool) error {
	if err == nil {
		return nil
	}
	var te *TimeoutError
	if errors.As(err, &te) {
		return err // a reconnect that timed out, already explained
	}
	msg := l.secrets.String(err.Error())
	if ctx.Err() != nil {
		return &scrubbedError{msg: fmt.Sprintf("%s %s: interrupted (%v)", l.kind, what, context.Cause(ctx)), cause: ctx.Err()}
	}
	if serverTimeout || qctx.Err() != nil || isTimeout(err) {
		return &TimeoutError{Server: l.kind, Addr: l.addr, Op: "query", Limit: l.opts.QueryTimeout, Setting: "query_timeout",
			Err: &scrubbedError{msg: what + ": " + msg, cause: err}}
	}
	if ConnectionLost(err) {
		msg += " (the server closed the connection during the query: the session was killed, the server restarted, or something between cut it; run again: a plan writes nothing)"
	}
	return &scrubbedError{msg: l.kind + " " + what + ": " + msg, cause: err}
}

// ConnectionLost says whether err is a connection the server (or what is
// between) closed mid-statement, which the MySQL driver reports only as
// "invalid connection", or one the server said it was ending: PostgreSQL's
// session terminated (pg_terminate_backend, a shutdown: SQLSTATE 57P01,
// 57P02), MariaDB's connection killed (error 1927).
func ConnectionLost(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "57P01" || pe.Code == "57P02") {
		return true
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == 1927 {
		return true
	}
	return errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.ErrUnexpectedEOF)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
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

// liveValue converts a value a driver returned to the Go type Rows
// promises for t.
func liveValue(t schema.Type, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	if b, ok := v.([]byte); ok && t != schema.TypeBytes {
		v = string(b)
	}
	switch t {
	case schema.TypeInt:
		// An unsigned integer above int64's range (MySQL BIGINT UNSIGNED)
		// stays a uint64, which plans, state and destinations carry.
		switch x := v.(type) {
		case int64:
			return v, nil // already boxed
		case string:
			i, err := strconv.ParseInt(x, 10, 64)
			if err != nil && errors.Is(err, strconv.ErrRange) && x != "" && x[0] != '-' {
				if u, uerr := strconv.ParseUint(x, 10, 64); uerr == nil {
					return u, nil
				}
			}
			return i, err
		case uint64:
			if x > math.MaxInt64 {
				return v, nil
			}
			return int64(x), nil
		default:
			return toInt64(x)
		}
	case schema.TypeFloat:
		switch x := v.(type) {
		case float64:
			return v, nil
		case float32:
			// The float64 nearest the float32's shortest decimal form:
			// a REAL 1.1 reads as 1.1, not 1.100000023841858.
			return strconv.ParseFloat(strconv.FormatFloat(float64(x), 'g', -1, 32), 64)
		case string:
			return strconv.ParseFloat(x, 64)
		}
	case schema.TypeDecimal:
		switch x := v.(type) {
		case string:
			// PostgreSQL's numeric 'NaN', 'Infinity' and '-Infinity'
			// stay as their text, which a PostgreSQL destination takes
			// back (others reject the record): no number stands for them.
			return v, nil
		case int64:
			return strconv.FormatInt(x, 10), nil
		}
	case schema.TypeBool:
		switch x := v.(type) {
		case bool:
			return v, nil
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
			if zeroOrInvalidDate(x) {
				return v, nil
			}
		}
	case schema.TypeJSON:
		if x, ok := v.(string); ok {
			return compactJSON(x), nil
		}
	case schema.TypeString:
		switch x := v.(type) {
		case string:
			return v, nil // already boxed: no copy of the string header
		case time.Time:
			return x.UTC().Format(time.RFC3339Nano), nil
		default:
			return fmt.Sprint(x), nil
		}
	}
	return nil, fmt.Errorf("unexpected value of Go type %T for a %s column", v, t)
}

// zeroOrInvalidDate reports whether s is a date in MySQL's text form
// (YYYY-MM-DD, then optionally HH:MM:SS and a fraction) that names no
// day: a zero date or part ('0000-00-00', '2024-00-15'), or a day its
// month lacks ('2024-02-30'), which MySQL keeps under some SQL modes.
// Such a value is carried as its text rather than moved to a real date.
func zeroOrInvalidDate(s string) bool {
	if !schema.DateShaped(s) {
		return false
	}
	_, ok := parseTime(s)
	return !ok
}

// compactJSON drops insignificant white space, keeping every number
// literal as the database wrote it (never through float64).
func compactJSON(s string) string {
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		return s
	}
	return b.String()
}
