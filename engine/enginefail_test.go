package engine

import (
	"context"
	"strings"
	"testing"

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
