package destination_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/backflowhq/backflow/destination"
)

// queryProxy forwards PostgreSQL connections to target, reading the
// simple queries clients send (COPY goes as one): it keeps their text,
// and sends the server rewrite's version of each.
type queryProxy struct {
	ln      net.Listener
	target  string
	rewrite func(string) string

	mu      sync.Mutex
	queries []string
}

func newQueryProxy(t testing.TB, rewrite func(string) string) *queryProxy {
	t.Helper()
	u, err := url.Parse(postgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &queryProxy{ln: ln, target: u.Host, rewrite: rewrite}
	t.Cleanup(func() { ln.Close() })
	go acceptDialing(ln, p.target, func(c, up net.Conn) {
		go func() {
			defer c.Close()
			defer up.Close()
			io.Copy(c, up)
		}()
		go func() {
			defer c.Close()
			defer up.Close()
			p.forward(c, up)
		}()
	})
	return p
}

// dsn is the test server's DSN through the proxy.
func (p *queryProxy) dsn(t testing.TB) string {
	u, err := url.Parse(postgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.ln.Addr().String()
	return u.String()
}

// forward copies a client's messages to the server: the startup message
// as it is (sslmode=disable: no SSL request first), then typed messages,
// a simple query ('Q') rewritten.
func (p *queryProxy) forward(c, up net.Conn) {
	var n [4]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return
	}
	startup := make([]byte, binary.BigEndian.Uint32(n[:])-4)
	if _, err := io.ReadFull(c, startup); err != nil {
		return
	}
	if _, err := up.Write(append(n[:], startup...)); err != nil {
		return
	}
	for {
		var head [5]byte
		if _, err := io.ReadFull(c, head[:]); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(head[1:])-4)
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		if head[0] == 'Q' && len(body) > 0 {
			q := string(body[:len(body)-1])
			p.mu.Lock()
			p.queries = append(p.queries, q)
			p.mu.Unlock()
			if p.rewrite != nil {
				q = p.rewrite(q)
			}
			body = append([]byte(q), 0)
			binary.BigEndian.PutUint32(head[1:], uint32(len(body)+4))
		}
		if _, err := up.Write(append(head[:], body...)); err != nil {
			return
		}
	}
}

// copies returns the COPY statements sent so far, and forgets them.
func (p *queryProxy) copies() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, q := range p.queries {
		if i := strings.Index(q, "COPY "); i >= 0 {
			out = append(out, q[i:])
		}
	}
	p.queries = nil
	return out
}

// serverMajor is the test server's major version.
func serverMajor(t testing.TB) int {
	var v int
	if err := pgAdmin(t).QueryRow(context.Background(), "SELECT current_setting('server_version_num')::int / 10000").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// adds are records new to backflow with ids from to from+n-1.
func adds(from, n int) []destination.Record {
	var recs []destination.Record
	for id := from; id < from+n; id++ {
		r := contact(int64(id), destination.OpUpsert, "e@x", "n")
		r.New = true
		recs = append(recs, r)
	}
	return recs
}

// wantIDs checks that table holds the ids 1 to n.
func wantIDs(t testing.TB, h *sqlHarness, table string, n int) {
	t.Helper()
	got := h.rows(t, table)
	for id := 1; id <= n; id++ {
		if _, ok := got[int64(id)]; !ok {
			t.Fatalf("table lacks id %d (%d rows)", id, len(got))
		}
	}
	if len(got) != n {
		t.Fatalf("table holds %d rows, want %d", len(got), n)
	}
}

const rowByRowClause = "WHERE pg_catalog.random() IS NOT NULL"

// postgresThroughProxy opens a postgres destination, closed at cleanup,
// connecting through a queryProxy with rewrite; every batch of 2 records
// or more takes the bulk paths.
func postgresThroughProxy(t *testing.T, rewrite func(string) string) (*queryProxy, destination.Destination) {
	t.Helper()
	proxy := newQueryProxy(t, rewrite)
	d, err := destination.OpenPostgres(context.Background(), config(t, "postgres", "warehouse", "", map[string]any{"dsn": proxy.dsn(t)}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	destination.SetBulkMinRows(d, 2)
	return proxy, d
}

// On PostgreSQL 12 to 16, a COPY of a batch's adds of up to 2,000 rows
// has the always-true WHERE clause with which the server inserts a row at
// a time (cheaper there than its multi-insert buffer for such sizes); a
// larger one has none, nor does any COPY on other versions. The rows are
// written either way.
func TestPostgresSmallCopiesGoRowByRow(t *testing.T) {
	ctx := context.Background()
	h := postgresHarness(t)
	table := contactsTable(t, h)
	proxy, d := postgresThroughProxy(t, nil)
	major := serverMajor(t)
	rowByRow := major >= 12 && major <= 16

	mustAccept(t, d.Write(ctx, batchFor(table, adds(1, 1000)...)), 1000)
	copies := proxy.copies()
	if len(copies) != 1 || strings.Contains(copies[0], rowByRowClause) != rowByRow {
		t.Fatalf("COPY of 1,000 rows (row by row: %v): %q", rowByRow, copies)
	}
	mustAccept(t, d.Write(ctx, batchFor(table, adds(1001, 2500)...)), 2500)
	copies = proxy.copies()
	if len(copies) != 1 || strings.Contains(copies[0], rowByRowClause) {
		t.Fatalf("COPY of 2,500 rows: %q, want one without %q", copies, rowByRowClause)
	}
	wantIDs(t, h, table, 3500)

	// A partitioned table: the rows go to their partitions.
	parted := uniqueTable()
	mustExec(t, h, `CREATE TABLE `+parted+` (id bigint PRIMARY KEY, email text, name text) PARTITION BY RANGE (id)`)
	dropAtCleanup(t, h, parted)
	mustExec(t, h, `CREATE TABLE `+parted+`_low PARTITION OF `+parted+` FOR VALUES FROM (0) TO (500)`)
	mustExec(t, h, `CREATE TABLE `+parted+`_high PARTITION OF `+parted+` FOR VALUES FROM (500) TO (MAXVALUE)`)
	mustAccept(t, d.Write(ctx, batchFor(parted, adds(1, 1000)...)), 1000)
	if copies := proxy.copies(); len(copies) != 1 || strings.Contains(copies[0], rowByRowClause) != rowByRow {
		t.Fatalf("COPY of 1,000 rows into a partitioned table (row by row: %v): %q", rowByRow, copies)
	}
	wantIDs(t, h, parted, 1000)
	for part, want := range map[string]int{parted + "_low": 499, parted + "_high": 501} {
		if got := len(h.rows(t, part)); got != want {
			t.Errorf("partition %s holds %d rows, want %d", part, got, want)
		}
	}
}

// An engine speaking PostgreSQL's protocol without COPY's WHERE (here the
// proxy makes the clause call a function that does not exist): a COPY
// alone goes again at once without the clause; one in a transaction
// fails retryably, and its retry goes without. No later COPY of the
// destination has it, and every row is written once.
func TestPostgresCopyWithoutWhereGoesPlain(t *testing.T) {
	if m := serverMajor(t); m < 12 || m > 16 {
		t.Skipf("PostgreSQL %d: COPYs go without the clause", m)
	}
	ctx := context.Background()
	h := postgresHarness(t)
	refuse := func(q string) string {
		return strings.ReplaceAll(q, "pg_catalog.random()", "pg_catalog.backflow_no_such_function()")
	}
	for _, alone := range []bool{true, false} {
		t.Run(map[bool]string{true: "alone", false: "in-a-transaction"}[alone], func(t *testing.T) {
			table := contactsTable(t, h)
			proxy, d := postgresThroughProxy(t, refuse)
			recs := adds(1, 10)
			if !alone {
				// A delete with the adds: the COPY is not the batch's
				// only statement.
				recs = append(recs, contact(99, destination.OpDelete, nil, nil))
				o := d.Write(ctx, batchFor(table, recs...))
				if o.Err == nil || !o.Retryable || !strings.Contains(o.Err.Error(), "refused COPY … WHERE") {
					t.Fatalf("first batch: want a retryable refusal of the clause, got %+v", o)
				}
				if got := h.rows(t, table); len(got) != 0 {
					t.Fatalf("the refused batch left rows: %v", got)
				}
			}
			mustAccept(t, d.Write(ctx, batchFor(table, recs...)), len(recs))
			mustAccept(t, d.Write(ctx, batchFor(table, adds(11, 10)...)), 10)
			copies := proxy.copies()
			want := 3 // refused, plain, plain
			if len(copies) != want || !strings.Contains(copies[0], rowByRowClause) {
				t.Fatalf("COPYs %q: want %d, the first with %q", copies, want, rowByRowClause)
			}
			for _, q := range copies[1:] {
				if strings.Contains(q, rowByRowClause) {
					t.Fatalf("a COPY after the refusal has the clause: %q", copies)
				}
			}
			wantIDs(t, h, table, 20)
		})
	}
}
