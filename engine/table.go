package engine

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dolthub/go-mysql-server/memory"
	"github.com/dolthub/go-mysql-server/sql"

	"github.com/backflowhq/backflow/schema"
)

// fixtureTable is a fixture table stored column by column: typed slices
// instead of a boxed sql.Row per row, so a million-row fixture loads by
// appending to slices (no row-at-a-time inserter, no per-value boxing) and
// holds about the bytes of its values. Rows are boxed only as they are read.
//
// Every call comes from go-mysql-server under the Embedded mutex. A scan
// reads the columns as they were when it started, so rows appended by a
// later INSERT (a .sql fixture adding rows to a CSV table) are not seen by
// it and do not disturb it.
type fixtureTable struct {
	name   string
	schema sql.Schema
	cols   []column
	rows   int
}

var (
	_ memory.MemTable     = (*fixtureTable)(nil)
	_ sql.InsertableTable = (*fixtureTable)(nil)
	_ sql.StatisticsTable = (*fixtureTable)(nil)
)

func (t *fixtureTable) Name() string               { return t.name }
func (t *fixtureTable) String() string             { return t.name }
func (t *fixtureTable) Schema() sql.Schema         { return t.schema }
func (t *fixtureTable) Collation() sql.CollationID { return sql.Collation_Default }

// IgnoreSessionData tells the memory database to serve the table as is,
// not through a memory session's copy of *memory.Table data.
func (t *fixtureTable) IgnoreSessionData() bool { return true }

// UnderlyingTable is part of memory.MemTable; the memory database asks for
// it only of tables that use session data, which this one does not.
func (t *fixtureTable) UnderlyingTable() *memory.Table { return nil }

func (t *fixtureTable) RowCount(*sql.Context) (uint64, bool, error) { return uint64(t.rows), true, nil }

func (t *fixtureTable) DataLength(*sql.Context) (uint64, error) {
	var n uint64
	for i := range t.cols {
		n += t.cols[i].bytes()
	}
	return n, nil
}

// fixturePartition is the one partition of a fixture table: rows come out
// in the order they were loaded.
type fixturePartition struct{}

func (fixturePartition) Key() []byte { return []byte("0") }

func (t *fixtureTable) Partitions(*sql.Context) (sql.PartitionIter, error) {
	return sql.PartitionsToPartitionIter(fixturePartition{}), nil
}

func (t *fixtureTable) PartitionRows(*sql.Context, sql.Partition) (sql.RowIter, error) {
	return &fixtureRows{cols: append([]column(nil), t.cols...), n: t.rows}, nil
}

// fixtureRows boxes the rows of a snapshot of a table's columns.
type fixtureRows struct {
	cols []column
	n, i int
}

func (r *fixtureRows) Next(*sql.Context) (sql.Row, error) {
	if r.i >= r.n {
		return nil, io.EOF
	}
	row := make(sql.Row, len(r.cols))
	for c := range r.cols {
		row[c] = r.cols[c].value(r.i)
	}
	r.i++
	return row, nil
}

func (r *fixtureRows) Close(*sql.Context) error { return nil }

// Inserter lets a .sql fixture add rows to a CSV or JSONL table. The rows
// of one statement are added when it completes, all or none.
func (t *fixtureTable) Inserter(*sql.Context) sql.RowInserter { return &fixtureInserter{t: t} }

type fixtureInserter struct {
	t    *fixtureTable
	rows []sql.Row
}

func (ins *fixtureInserter) StatementBegin(*sql.Context) {}

func (ins *fixtureInserter) DiscardChanges(*sql.Context, error) error {
	ins.rows = nil
	return nil
}

func (ins *fixtureInserter) StatementComplete(*sql.Context) error { return nil }

func (ins *fixtureInserter) Insert(_ *sql.Context, row sql.Row) error {
	if len(row) != len(ins.t.cols) {
		return fmt.Errorf("table %s has %d columns, the row %d values", ins.t.name, len(ins.t.cols), len(row))
	}
	for c, v := range row {
		if !ins.t.cols[c].accepts(v) {
			return fmt.Errorf("column %s of table %s cannot hold a value of Go type %T", ins.t.schema[c].Name, ins.t.name, v)
		}
	}
	ins.rows = append(ins.rows, row)
	return nil
}

func (ins *fixtureInserter) Close(*sql.Context) error {
	for _, row := range ins.rows {
		for c, v := range row {
			ins.t.cols[c].appendStored(v)
		}
	}
	ins.t.rows += len(ins.rows)
	ins.rows = nil
	return nil
}

// column holds one column's values in the slice of its kind; NULLs are
// bits of nulls (missing words: not null).
type column struct {
	kind   schema.Type
	ints   []int64   // TypeInt
	floats []float64 // TypeFloat
	bools  []int8    // TypeBool, as go-mysql-server's BOOLEAN stores it
	times  []instant // TypeTimestamp
	strs   []strRef  // TypeString, the bytes in store
	store  *stringStore
	others []any // every other type: the go-mysql-server storage value
	nulls  []uint64
	n      int
}

// instant is a UTC time without time.Time's location pointer, so the
// collector need not scan a timestamp column.
type instant struct {
	sec  int64
	nsec int32
}

func newColumn(kind schema.Type, capacity int) column {
	c := column{kind: kind}
	switch kind {
	case schema.TypeInt:
		c.ints = make([]int64, 0, capacity)
	case schema.TypeFloat:
		c.floats = make([]float64, 0, capacity)
	case schema.TypeBool:
		c.bools = make([]int8, 0, capacity)
	case schema.TypeTimestamp:
		c.times = make([]instant, 0, capacity)
	case schema.TypeString:
		c.strs = make([]strRef, 0, capacity)
		c.store = &stringStore{}
	default:
		c.others = make([]any, 0, capacity)
	}
	return c
}

func (c *column) isNull(i int) bool {
	w := i / 64
	return w < len(c.nulls) && c.nulls[w]&(1<<(i%64)) != 0
}

// appendNull adds a NULL (a zero value in the kind's slice).
func (c *column) appendNull() {
	w := c.n / 64
	for len(c.nulls) <= w {
		c.nulls = append(c.nulls, 0)
	}
	c.nulls[w] |= 1 << (c.n % 64)
	switch c.kind {
	case schema.TypeInt:
		c.ints = append(c.ints, 0)
	case schema.TypeFloat:
		c.floats = append(c.floats, 0)
	case schema.TypeBool:
		c.bools = append(c.bools, 0)
	case schema.TypeTimestamp:
		c.times = append(c.times, instant{})
	case schema.TypeString:
		c.strs = append(c.strs, 0)
	default:
		c.others = append(c.others, nil)
	}
	c.n++
}

func (c *column) appendInt(v int64)     { c.ints = append(c.ints, v); c.n++ }
func (c *column) appendFloat(v float64) { c.floats = append(c.floats, v); c.n++ }
func (c *column) appendBool(v int8)     { c.bools = append(c.bools, v); c.n++ }
func (c *column) appendString(v string) { c.strs = append(c.strs, c.store.add(v)); c.n++ }
func (c *column) appendOther(v any)     { c.others = append(c.others, v); c.n++ }

func (c *column) appendTime(v time.Time) {
	c.times = append(c.times, instant{sec: v.Unix(), nsec: int32(v.Nanosecond())})
	c.n++
}

// accepts reports whether v is a storage value of the column's kind.
func (c *column) accepts(v any) bool {
	var ok bool
	switch c.kind {
	case schema.TypeInt:
		_, ok = v.(int64)
	case schema.TypeFloat:
		_, ok = v.(float64)
	case schema.TypeBool:
		_, ok = v.(int8)
	case schema.TypeTimestamp:
		_, ok = v.(time.Time)
	case schema.TypeString:
		_, ok = v.(string)
	default:
		ok = true
	}
	return ok || v == nil
}

// appendStored adds a storage value the column accepts.
func (c *column) appendStored(v any) {
	if v == nil {
		c.appendNull()
		return
	}
	switch c.kind {
	case schema.TypeInt:
		c.appendInt(v.(int64))
	case schema.TypeFloat:
		c.appendFloat(v.(float64))
	case schema.TypeBool:
		c.appendBool(v.(int8))
	case schema.TypeTimestamp:
		c.appendTime(v.(time.Time))
	case schema.TypeString:
		c.appendString(v.(string))
	default:
		c.appendOther(v)
	}
}

// value boxes row i's value as go-mysql-server stores it.
func (c *column) value(i int) any {
	if c.isNull(i) {
		return nil
	}
	switch c.kind {
	case schema.TypeInt:
		return c.ints[i]
	case schema.TypeFloat:
		return c.floats[i]
	case schema.TypeBool:
		return c.bools[i]
	case schema.TypeTimestamp:
		return time.Unix(c.times[i].sec, int64(c.times[i].nsec)).UTC()
	case schema.TypeString:
		return c.store.get(c.strs[i])
	default:
		return c.others[i]
	}
}

// bytes estimates the column's size for go-mysql-server's statistics.
func (c *column) bytes() uint64 {
	n := uint64(len(c.ints)*8 + len(c.floats)*8 + len(c.bools) + len(c.times)*16 + len(c.strs)*8 + len(c.others)*16 + len(c.nulls)*8)
	if c.store != nil {
		for _, ch := range c.store.chunks {
			n += uint64(len(ch))
		}
	}
	return n
}

// stringStore holds a string column's bytes in shared chunks, so a value
// costs its bytes plus an 8-byte reference (no string header, and no
// pointer for the collector to scan), and stores a repeated value once
// while the column's values keep repeating.
type stringStore struct {
	chunks    []string
	last      strings.Builder // the chunk being filled, chunks[lastChunk]
	lastChunk int
	intern    map[string]strRef
	hits      int
	misses    int
	off       bool // interning stopped: most values were new
}

// strRef locates a string: chunk<<40 | offset<<20 | length. A length of
// refWhole means the whole chunk (a long string stored alone).
type strRef uint64

const (
	stringChunk = 64 << 10
	// longString is the length from which a string gets a chunk of its own.
	longString = stringChunk / 8
	refWhole   = 1<<20 - 1
	// internLimit is how many distinct values a column interns; past it,
	// interning stops once new values outnumber repeated ones.
	internLimit = 4096
)

func (st *stringStore) get(r strRef) string {
	ch := st.chunks[r>>40]
	off, n := int(r>>20)&refWhole, int(r)&refWhole
	if n == refWhole {
		return ch
	}
	return ch[off : off+n]
}

// add stores s (which the store does not keep) and returns its reference.
func (st *stringStore) add(s string) strRef {
	if !st.off {
		if r, ok := st.intern[s]; ok {
			st.hits++
			return r
		}
		st.misses++
	}
	r := st.copy(s)
	if !st.off {
		if len(st.intern) < internLimit {
			if st.intern == nil {
				st.intern = make(map[string]strRef)
			}
			st.intern[st.get(r)] = r
		} else if st.misses > st.hits {
			st.off, st.intern = true, nil
		}
	}
	return r
}

func (st *stringStore) copy(s string) strRef {
	if len(s) >= longString {
		st.chunks = append(st.chunks, strings.Clone(s))
		return strRef(len(st.chunks)-1)<<40 | refWhole
	}
	if st.last.Len() == 0 || st.last.Cap()-st.last.Len() < len(s) {
		st.last = strings.Builder{}
		st.last.Grow(stringChunk)
		st.chunks = append(st.chunks, "")
		st.lastChunk = len(st.chunks) - 1
	}
	off := st.last.Len()
	st.last.WriteString(s)
	// A Builder never changes bytes once written: earlier strings of the
	// chunk stay valid as it fills.
	st.chunks[st.lastChunk] = st.last.String()
	return strRef(st.lastChunk)<<40 | strRef(off)<<20 | strRef(len(s))
}
