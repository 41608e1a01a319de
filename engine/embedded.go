package engine

import (
	"github.com/hashicorp/hcl/v2"
)

// Embedded is an in-process go-mysql-server database loaded from fixtures.
type Embedded struct{}

// NewEmbedded returns an empty embedded database.
func NewEmbedded() *Embedded { panic("TODO") }

// LoadDir loads every *.csv, *.jsonl and *.sql file of dir as tables (the
// table name is the file name without extension; .sql files are run as
// statements). types overrides inferred column types: table → column → type
// name (ParseType). A table loaded again replaces the earlier one. Problems
// are diagnostics naming the file and line.
func (e *Embedded) LoadDir(dir string, types map[string]map[string]string) hcl.Diagnostics {
	panic("TODO")
}

// AddTable creates (or replaces) a table from rows given in Go values
// (nil, int64, float64, string, bool); column types are inferred as for CSV.
func (e *Embedded) AddTable(name string, columns []string, rows [][]any) error { panic("TODO") }
