package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dolthub/go-mysql-server/sql"
)

// panickingTable is a fixture table whose scan panics, as go-mysql-server
// does on queries it mishandles.
type panickingTable struct{ *fixtureTable }

func (panickingTable) PartitionRows(*sql.Context, sql.Partition) (sql.RowIter, error) {
	return panickingRows{}, nil
}

type panickingRows struct{}

func (panickingRows) Next(*sql.Context) (sql.Row, error) {
	panic("index out of range [3] with length 3")
}
func (panickingRows) Close(*sql.Context) error { return nil }

func TestEnginePanicIsAnError(t *testing.T) {
	e := NewEmbedded()
	defer e.Close()
	if err := e.AddTable("t", []string{"id"}, [][]any{{1}}); err != nil {
		t.Fatal(err)
	}
	tbl, _, err := e.db.GetTableInsensitive(e.sqlContext(context.Background()), "t")
	if err != nil {
		t.Fatal(err)
	}
	e.db.AddTable("boom", panickingTable{tbl.(*fixtureTable)})

	_, err = queryAll(e, "SELECT id FROM boom")
	if err == nil || !strings.Contains(err.Error(), "embedded engine failed on this query (index out of range") {
		t.Fatalf("error = %v, want the engine's panic as an error", err)
	}
	// The engine's lock was released: it still answers.
	rows, err := queryAll(e, "SELECT id FROM t")
	if err != nil || len(rows) != 1 {
		t.Fatalf("after the panic: rows %v, error %v", rows, err)
	}
}

// TestQueryTimeout checks that a model query the engine would run for
// hours (a filter that rejects every row of a large cross join) fails at
// the source's query_timeout, naming it.
func TestQueryTimeout(t *testing.T) {
	e := NewEmbedded()
	defer e.Close()
	e.SetQueryTimeout(100 * time.Millisecond)
	rows := make([][]any, 2000)
	for i := range rows {
		rows[i] = []any{i}
	}
	if err := e.AddTable("n", []string{"i"}, rows); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := queryAll(e, "SELECT a.i FROM n a, n b, n c WHERE a.i + b.i + c.i < 0")
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(fmt.Sprint(err), "did not finish within 100ms (query_timeout)") {
			t.Fatalf("error = %v, want the query_timeout", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the query ran on 30 s past its 100 ms query_timeout")
	}
}

// A query the engine computes without scanning a table (a cross join of
// CTEs, where go-mysql-server never looks at the context) still ends at
// its query_timeout: the rows end with the timeout, the engine refuses
// other queries while the abandoned one runs, and takes them again once
// it has ended.
func TestQueryTimeoutEndsAQueryThatNeverLooks(t *testing.T) {
	e := NewEmbedded()
	defer e.Close()
	e.SetQueryTimeout(100 * time.Millisecond)
	// About a million combinations: seconds of work, no row.
	_, err := queryAll(e, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 100) SELECT a.i FROM n a, n b, n c WHERE a.i + b.i + c.i < 0")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(fmt.Sprint(err), "did not finish within 100ms (query_timeout)") {
		t.Fatalf("error = %v, want the query_timeout", err)
	}
	stuck := e.stuck.Load()
	if stuck == nil {
		t.Fatal("the query ended at its timeout, yet the engine did not note it still running")
	}
	if _, err := queryAll(e, "SELECT 1"); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("a query while the abandoned one runs: %v, want a refusal saying it still runs", err)
	}
	<-stuck.ended
	e.SetQueryTimeout(DefaultQueryTimeout)
	got, err := queryAll(e, "SELECT 1")
	if err != nil || len(got) != 1 {
		t.Fatalf("once it ended: %v rows, error %v", got, err)
	}
}

// The caller's context ending (as Ctrl-C cancels the command's) ends such
// a query as well, with no query_timeout of the source's own: the rows end
// while the engine still computes, and the source says so.
func TestCallersContextEndsAQueryThatNeverLooks(t *testing.T) {
	e := NewEmbedded()
	defer e.Close()
	e.SetQueryTimeout(0)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	rows, err := e.Query(ctx, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 100) SELECT a.i FROM n a, n b, n c WHERE a.i + b.i + c.i < 0")
	if err != nil {
		t.Fatal(err)
	}
	if rows.Next() {
		t.Fatal("a row from a query that has none")
	}
	if err := rows.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want the caller's context's end", err)
	}
	rows.Close()
	stuck := e.stuck.Load()
	if stuck == nil {
		t.Fatal("the rows ended with the caller's context, yet the engine did not note the query still running")
	}
	if _, err := queryAll(e, "SELECT 1"); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("a query while the abandoned one runs: %v, want a refusal saying it still runs", err)
	}
	<-stuck.ended
}
