package destination

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"

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

// QueryLog is what a postgres destination's connections opened after
// LogQueries sent: the text of each simple query (Query message) and the
// number of extended-protocol Syncs; each is one round trip.
type QueryLog struct {
	mu      sync.Mutex
	queries []string
	syncs   int
}

// Taken returns what was logged since the last call.
func (l *QueryLog) Taken() (queries []string, syncs int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	queries, syncs = l.queries, l.syncs
	l.queries, l.syncs = nil, 0
	return queries, syncs
}

// LogQueries logs what the connections of a postgres destination send
// from now on: its idle connections are closed, so that every request
// connects anew.
func LogQueries(d Destination) *QueryLog {
	p := d.(*Postgres).pg
	l := &QueryLog{}
	dial := p.cfg.DialFunc
	p.cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &loggedConn{Conn: c, log: l}, nil
	}
	p.close()
	return l
}

// loggedConn reads the messages written to a connection (the frontend's
// side of the protocol) into its log.
type loggedConn struct {
	net.Conn
	log *QueryLog
	// started: the untyped messages before authentication (SSL request,
	// startup) are over.
	started bool
	msg     []byte // the message being written, as far as it came
}

func (c *loggedConn) Write(b []byte) (int, error) {
	c.msg = append(c.msg, b...)
	for {
		head := 5 // type and length
		if !c.started {
			head = 4 // length only
		}
		if len(c.msg) < head {
			break
		}
		n := head - 4 + int(binary.BigEndian.Uint32(c.msg[head-4:]))
		if len(c.msg) < n {
			break
		}
		m := c.msg[:n]
		c.msg = c.msg[n:]
		if !c.started {
			// The SSL and GSS encryption requests come before the startup
			// message.
			if code := binary.BigEndian.Uint32(m[4:]); code != 80877103 && code != 80877104 {
				c.started = true
			}
			continue
		}
		c.log.mu.Lock()
		switch m[0] {
		case 'Q':
			c.log.queries = append(c.log.queries, string(m[5:len(m)-1]))
		case 'S':
			c.log.syncs++
		}
		c.log.mu.Unlock()
	}
	return c.Conn.Write(b)
}

// SetMaxAnswer bounds the HTTP answers read to n bytes until the test ends.
func SetMaxAnswer(t interface{ Cleanup(func()) }, n int) {
	was := maxAnswer
	maxAnswer = n
	t.Cleanup(func() { maxAnswer = was })
}
