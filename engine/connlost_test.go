package engine_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/backflowhq/backflow/engine"
)

// TestConnectionLost: a session the server ended (killed, shut down) is
// a lost connection, which errors say to run again after; a statement's
// own error is not.
func TestConnectionLost(t *testing.T) {
	for _, tt := range []struct {
		err  error
		lost bool
	}{
		{&pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}, true},
		{fmt.Errorf("write: %w", &pgconn.PgError{Code: "57P02", Message: "terminating connection because of crash of another server process"}), true},
		{&mysql.MySQLError{Number: 1927, Message: "Connection was killed"}, true},
		{mysql.ErrInvalidConn, true},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{&pgconn.PgError{Code: "55P03", Message: "lock timeout"}, false},
		{&pgconn.PgError{Code: "23505", Message: "duplicate key"}, false},
		{&mysql.MySQLError{Number: 1205, Message: "Lock wait timeout exceeded"}, false},
		{errors.New("syntax error"), false},
	} {
		if got := engine.ConnectionLost(tt.err); got != tt.lost {
			t.Errorf("ConnectionLost(%v) = %v, want %v", tt.err, got, tt.lost)
		}
	}
}
