package destination

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
)

// What each SQL driver makes of the errors a batch can end with: a lost
// connection is retryable however it is worded or wrapped, the database's
// own answer decides otherwise, and what no batch can get past is fatal.
func TestClassify(t *testing.T) {
	pg := &sqlWriter{dialect: postgresDialect}
	my := &sqlWriter{dialect: mysqlDialect}
	lite := &sqlWriter{dialect: sqliteDialect}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	pipe := &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}
	lost := []error{
		pgconn.ErrConnClosed,
		fmt.Errorf("begin transaction: %w", pgconn.ErrConnClosed),
		io.ErrUnexpectedEOF,
		fmt.Errorf("receive message failed: %w", io.ErrUnexpectedEOF),
		fmt.Errorf("commit: %v", io.ErrUnexpectedEOF), // the chain lost on the way
		errors.New("conn closed"),
		reset,
		fmt.Errorf("upsert t: %w", pipe),
		net.ErrClosed,
		errors.New("write tcp 127.0.0.1:1->127.0.0.1:2: use of closed network connection"),
		mysql.ErrInvalidConn,
		driver.ErrBadConn,
		fmt.Errorf("lock rows of t: %w", driver.ErrBadConn),
	}
	for _, w := range []*sqlWriter{pg, my, lite} {
		for _, err := range lost {
			if got := w.classify(context.Background(), err); got != classRetry {
				t.Errorf("%T %v: class %d, want retry", w.dialect.classify, err, got)
			}
		}
		if got := w.classify(context.Background(), &fatalError{errors.New(`table "t" not found`)}); got != classFatal {
			t.Errorf("a missing table: class %d, want fatal", got)
		}
	}
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	if got := pg.classify(expired, errors.New("whatever")); got != classRetry {
		t.Errorf("an ended context: class %d, want retry", got)
	}

	for _, tc := range []struct {
		w    *sqlWriter
		err  error
		want errClass
	}{
		{pg, &pgconn.PgError{Code: "28P01", Message: "password authentication failed"}, classFatal},
		{pg, &pgconn.PgError{Code: "28000"}, classFatal},
		{pg, &pgconn.PgError{Code: "42501", Message: "permission denied for table t"}, classFatal},
		// A row a row-level security policy refuses is about the row: told
		// from a missing permission by the server function that raised it,
		// whatever the server's language (lc_messages), else by the
		// English message (servers that do not say where).
		{pg, &pgconn.PgError{Code: "42501", Message: `new row violates row-level security policy for table "t"`}, classReject},
		{pg, &pgconn.PgError{Code: "42501", Message: `neue Zeile verletzt Policy für Sicherheit auf Zeilenebene für Tabelle »t«`, Routine: "ExecWithCheckOptions"}, classReject},
		{pg, &pgconn.PgError{Code: "42501", Message: "keine Berechtigung für Tabelle t", Routine: "aclcheck_error"}, classFatal},
		{pg, &pgconn.PgError{Code: "42P01"}, classFatal},
		{pg, &pgconn.PgError{Code: "42703"}, classFatal},
		{pg, &pgconn.PgError{Code: "3D000"}, classFatal},
		{pg, &pgconn.PgError{Code: "55P03"}, classRetry},
		{pg, &pgconn.PgError{Code: "26000", Message: `prepared statement "backflow_bulk_1" does not exist`}, classRetry},
		{pg, &pgconn.PgError{Code: "40P01"}, classRetry},
		{pg, &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}, classRetry},
		{pg, &pgconn.PgError{Code: "08006"}, classRetry},
		{pg, &pgconn.PgError{Code: "23505"}, classReject},
		// A value quoted in the server's message is not a lost connection.
		{pg, &pgconn.PgError{Code: "22P02", Message: `invalid input syntax for type integer: "unexpected EOF"`}, classReject},
		{my, &mysql.MySQLError{Number: 1045}, classFatal},
		{my, &mysql.MySQLError{Number: 1044}, classFatal},
		{my, &mysql.MySQLError{Number: 1142}, classFatal},
		{my, &mysql.MySQLError{Number: 1143}, classFatal},
		{my, &mysql.MySQLError{Number: 1146}, classFatal},
		{my, &mysql.MySQLError{Number: 1054}, classFatal},
		{my, &mysql.MySQLError{Number: 1205}, classRetry},
		{my, &mysql.MySQLError{Number: 1062, Message: "Duplicate entry 'broken pipe' for key 'PRIMARY'"}, classReject},
		{pg, errors.New("failed to encode args[3]"), classReject},
	} {
		if got := tc.w.classify(context.Background(), tc.err); got != tc.want {
			t.Errorf("%v: class %d, want %d", tc.err, got, tc.want)
		}
	}
}
