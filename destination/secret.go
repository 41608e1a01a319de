package destination

import (
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/backflowhq/backflow/redact"
)

// scrubber masks, in an error's message, the Redactor's secrets (every
// value read through env(), and its secret parts) and these: a DSN and its
// password, an http destination's URL and headers, whether they came from
// env() or were written in the config.
func scrubber(r *redact.Redactor, secrets ...string) func(error) error {
	return r.With(secrets...).Error
}

// isConnectionError reports failures of the connection rather than of the
// statement: refused, reset, closed, broken, timed out. Such a batch may be
// resent: what was not committed was rolled back, and a commit whose answer
// was lost is written again by the resend (upserts, deletes and clears by
// key are idempotent). Errors that lost their chain on the way (formatted
// with %v by a library) are recognised by their message.
func isConnectionError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ETIMEDOUT) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return true
	}
	msg := err.Error()
	for _, s := range connectionLossMessages {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// connectionLossMessages are how lost connections read in the messages of
// the standard library and the drivers (pgx, go-sql-driver/mysql).
var connectionLossMessages = []string{
	"conn closed", "unexpected EOF", "connection reset by peer", "broken pipe",
	"use of closed network connection", "driver: bad connection", "invalid connection",
	"connection refused", "i/o timeout", "server closed the connection",
}
