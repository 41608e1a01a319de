package state

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Bulk statements: PostgreSQL binds one array per column and unnests them
// (one statement text, however many rows); MySQL sends multi-row VALUES
// lists, bounded in rows and bytes.

// colKind is the Go type of a bulk column.
type colKind int

const (
	colBytes colKind = iota // []byte: bytea, VARBINARY, BLOB
	colInt                  // int64
	colText                 // string
	colTime                 // time.Time
	colBool                 // bool
)

var pgArrayTypes = [...]string{colBytes: "bytea[]", colInt: "int8[]", colText: "text[]", colTime: "timestamptz[]", colBool: "bool[]"}

// bulkInsert describes an INSERT of many rows.
type bulkInsert struct {
	table  string
	cols   []string
	kinds  []colKind
	key    []string // the conflict target (primary key); nil: plain insert
	update []string // columns replaced on conflict
}

const (
	pgBulkRows    = 5000
	mysqlBulkRows = 1000
	mysqlBulkSize = 2 << 20 // bytes of values per statement (escaping may double them)
)

// insert inserts n rows; row(i, dst) fills dst (len(cols)) with row i.
func (b *sqlBackend) insert(ctx context.Context, tx *sql.Tx, bi bulkInsert, n int, row func(i int, dst []any)) error {
	if n == 0 {
		return nil
	}
	if b.pg {
		return b.insertPG(ctx, tx, bi, n, row)
	}
	return b.insertMySQL(ctx, tx, bi, n, row)
}

func (b *sqlBackend) insertPG(ctx context.Context, tx *sql.Tx, bi bulkInsert, n int, row func(int, []any)) error {
	var s strings.Builder
	fmt.Fprintf(&s, "INSERT INTO %s (%s) SELECT * FROM unnest(", b.table(bi.table), strings.Join(bi.cols, ", "))
	for j, k := range bi.kinds {
		if j > 0 {
			s.WriteString(", ")
		}
		fmt.Fprintf(&s, "$%d::%s", j+1, pgArrayTypes[k])
	}
	s.WriteString(")")
	if bi.key != nil {
		fmt.Fprintf(&s, " ON CONFLICT (%s) DO UPDATE SET ", strings.Join(bi.key, ", "))
		for j, c := range bi.update {
			if j > 0 {
				s.WriteString(", ")
			}
			fmt.Fprintf(&s, "%s = EXCLUDED.%s", c, c)
		}
	}
	stmt := s.String()
	vals := make([]any, len(bi.cols))
	for start := 0; start < n; start += pgBulkRows {
		m := min(pgBulkRows, n-start)
		arrays := make([]any, len(bi.cols))
		for j, k := range bi.kinds {
			switch k {
			case colBytes:
				arrays[j] = make([][]byte, 0, m)
			case colInt:
				arrays[j] = make([]int64, 0, m)
			case colText:
				arrays[j] = make([]string, 0, m)
			case colTime:
				arrays[j] = make([]time.Time, 0, m)
			case colBool:
				arrays[j] = make([]bool, 0, m)
			}
		}
		for i := start; i < start+m; i++ {
			row(i, vals)
			for j, k := range bi.kinds {
				switch k {
				case colBytes:
					arrays[j] = append(arrays[j].([][]byte), vals[j].([]byte))
				case colInt:
					arrays[j] = append(arrays[j].([]int64), vals[j].(int64))
				case colText:
					arrays[j] = append(arrays[j].([]string), vals[j].(string))
				case colTime:
					arrays[j] = append(arrays[j].([]time.Time), vals[j].(time.Time))
				case colBool:
					arrays[j] = append(arrays[j].([]bool), vals[j].(bool))
				}
			}
		}
		if _, err := tx.ExecContext(ctx, stmt, arrays...); err != nil {
			return err
		}
	}
	return nil
}

func (b *sqlBackend) insertMySQL(ctx context.Context, tx *sql.Tx, bi bulkInsert, n int, row func(int, []any)) error {
	head := fmt.Sprintf("INSERT INTO %s (%s) VALUES ", b.table(bi.table), strings.Join(bi.cols, ", "))
	tuple := inClause(len(bi.cols))
	var tail string
	if bi.key != nil {
		sets := make([]string, len(bi.update))
		for j, c := range bi.update {
			sets[j] = fmt.Sprintf("%s = VALUES(%s)", c, c)
		}
		tail = " ON DUPLICATE KEY UPDATE " + strings.Join(sets, ", ")
	}
	var args []any
	var s strings.Builder
	rows, size := 0, 0
	flush := func() error {
		if rows == 0 {
			return nil
		}
		s.WriteString(tail)
		_, err := tx.ExecContext(ctx, s.String(), args...)
		args, rows, size = args[:0], 0, 0
		s.Reset()
		return err
	}
	vals := make([]any, len(bi.cols))
	for i := range n {
		row(i, vals)
		if rows == 0 {
			s.WriteString(head)
		} else {
			s.WriteString(", ")
		}
		s.WriteString(tuple)
		for _, v := range vals {
			switch x := v.(type) {
			case []byte:
				size += len(x)
			case string:
				size += len(x)
			default:
				size += 8
			}
			args = append(args, v)
		}
		rows++
		if rows >= mysqlBulkRows || size >= mysqlBulkSize {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// deleteKeys deletes the rows of keys of a sync from a table keyed by
// (sync_id, k).
func (b *sqlBackend) deleteKeys(ctx context.Context, tx *sql.Tx, table string, syncID int64, keys []string) error {
	if b.pg {
		stmt := b.q(`DELETE FROM {` + table + `} WHERE sync_id = ? AND k = ANY(?::bytea[])`)
		for start := 0; start < len(keys); start += pgBulkRows {
			chunk := keys[start:min(start+pgBulkRows, len(keys))]
			ks := make([][]byte, len(chunk))
			for i, k := range chunk {
				ks[i] = []byte(k)
			}
			if _, err := tx.ExecContext(ctx, stmt, syncID, ks); err != nil {
				return err
			}
		}
		return nil
	}
	for start := 0; start < len(keys); start += mysqlBulkRows {
		chunk := keys[start:min(start+mysqlBulkRows, len(keys))]
		args := make([]any, 0, len(chunk)+1)
		args = append(args, syncID)
		for _, k := range chunk {
			args = append(args, []byte(k))
		}
		if _, err := tx.ExecContext(ctx, b.q(`DELETE FROM {`+table+`} WHERE sync_id = ? AND k IN `+inClause(len(chunk))), args...); err != nil {
			return err
		}
	}
	return nil
}
