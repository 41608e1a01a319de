package destination

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// writerOf is the SQL writer of a postgres, mysql or sqlite destination.
func writerOf(d Destination) *sqlWriter {
	switch x := d.(type) {
	case *Postgres:
		return &x.sqlWriter
	case *MySQL:
		return &x.sqlWriter
	case *SQLite:
		return &x.sqlWriter
	}
	panic(fmt.Sprintf("%T is no SQL destination", d))
}

// Statements is how many statements d has sent (not BEGIN or COMMIT).
func Statements(d Destination) int64 { return writerOf(d).statements.Load() }

// Bulks is how many bulk statements (INSERT … SELECT … FROM unnest) a
// postgres destination has sent.
func Bulks(d Destination) int64 { return d.(*Postgres).bulks.Load() }

// BulkAhead is how many bulk statements of a postgres destination sent
// the parameters PrepareBatch made.
func BulkAhead(d Destination) int64 { return writerOf(d).bulkAhead.Load() }

// InsertedNew is how many batches d wrote with their new records
// (Record.New) inserted rather than upserted.
func InsertedNew(d Destination) int64 { return writerOf(d).insertedNew.Load() }

// Careful reports whether a postgres or mysql destination writes with the
// lock step first (it met a row lock held elsewhere).
func Careful(d Destination) bool { return writerOf(d).careful.Load() }

// PreparedHits is how many statements d ran prepared from its statement
// cache, or -1 for a driver without one.
func PreparedHits(d Destination) int64 {
	var c sqlConn
	switch x := d.(type) {
	case *MySQL:
		c = x.conn
	case *SQLite:
		c = x.conn
	default:
		return -1
	}
	if db, ok := c.(sqlDB); ok && db.stmts != nil {
		return db.stmts.hits.Load()
	}
	return -1
}

// SessionSetting runs query, which returns one value, on d's own
// connection: what a session setting is there.
func SessionSetting(d Destination, query string) (string, error) {
	ctx := context.Background()
	var s string
	switch x := d.(type) {
	case *Postgres:
		err := x.pg.with(ctx, func(conn *pgx.Conn) error { return conn.QueryRow(ctx, query).Scan(&s) })
		return s, err
	case *MySQL:
		err := x.db.QueryRowContext(ctx, query).Scan(&s)
		return s, err
	case *SQLite:
		err := x.db.QueryRowContext(ctx, query).Scan(&s)
		return s, err
	}
	return "", fmt.Errorf("no session for %T", d)
}

// SessionExec runs statement on a postgres destination's own connection.
func SessionExec(d Destination, statement string) error {
	ctx := context.Background()
	return d.(*Postgres).pg.with(ctx, func(conn *pgx.Conn) error { _, err := conn.Exec(ctx, statement); return err })
}

// ForgetTable makes a SQL destination describe object again on its next
// Write, as it does after an error that may come from a changed table.
func ForgetTable(d Destination, object string) { writerOf(d).forget(object) }

// SetCarefulFor sets how many batches in a row must find no row held
// elsewhere before a careful postgres or mysql destination writes without
// the lock step again.
func SetCarefulFor(d Destination, n int64) { writerOf(d).carefulFor = n }

// SetSkipLocked turns the lock step of a postgres or mysql destination on
// or off, so benchmarks can compare it with narrowing down.
func SetSkipLocked(d Destination, on bool) { writerOf(d).skipLocked = on }

// SetBulkMinRows sets the size from which a postgres destination writes a
// group of upserts or inserts with the bulk statement (0: never), so tests
// can run small batches through either path.
func SetBulkMinRows(d Destination, n int) { d.(*Postgres).bulkMinRows = n }

// SettingInBatch reads query (one value) in a transaction begun the way
// an optimistic batch of d begins (optimistic) or a careful one.
func SettingInBatch(ctx context.Context, d Destination, optimistic bool, query string) (string, error) {
	w := writerOf(d)
	setting := w.carefulBegin
	if optimistic {
		setting = w.optimisticBegin
	}
	var got string
	err := w.inTx(ctx, setting, func(tx sqlTx) error {
		vals, err := tx.strings(ctx, query)
		if err == nil && len(vals) == 1 {
			got = vals[0]
		}
		return err
	})
	return got, err
}

// PreparedBulk reports whether PrepareBatch made the parameters of b's
// bulk statement.
func PreparedBulk(b *Batch) bool {
	p, ok := b.prepared.(*preparedWrite)
	return ok && p.wr.bulk != nil
}
