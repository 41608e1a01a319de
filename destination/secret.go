package destination

import (
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
)

// scrubbedError is an error whose message had connection secrets removed.
// Unwrap still reaches the original so classification keeps working; only
// the message is what users and logs see.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// scrubber returns a function that replaces every non-empty secret in an
// error's message with "***". Longer secrets are replaced first so a DSN is
// removed whole before the password inside it.
func scrubber(secrets ...string) func(error) error {
	var s []string
	for _, x := range secrets {
		if x != "" {
			s = append(s, x)
		}
	}
	return func(err error) error {
		if err == nil {
			return nil
		}
		msg := err.Error()
		changed := false
		for _, x := range s {
			if strings.Contains(msg, x) {
				msg = strings.ReplaceAll(msg, x, "***")
				changed = true
			}
		}
		if !changed {
			return err
		}
		return &scrubbedError{msg: msg, err: err}
	}
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
