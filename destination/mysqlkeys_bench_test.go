package destination_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/internal/testdb"
)

// BenchmarkMySQLTextKeys writes 50 batches of 1,000 upserts of new
// VARCHAR keys per op, the key column under a collation that takes keys
// of different bytes for one (utf8mb4_general_ci: each batch's keys are
// looked up after its upsert, keysAfter) and under a byte-wise one
// (utf8mb4_nopad_bin: no lookup). The difference is the lookup's cost.
//
//	go test -run '^$' -bench MySQLTextKeys -benchtime 3x ./destination/
func BenchmarkMySQLTextKeys(b *testing.B) {
	for _, coll := range []string{"utf8mb4_general_ci", "utf8mb4_nopad_bin"} {
		b.Run(coll, func(b *testing.B) {
			admin := testdb.MariaDB(b)
			table := testdb.MariaDBTable(b, admin, "k VARCHAR(40) COLLATE "+coll+" PRIMARY KEY, v VARCHAR(40), n BIGINT")
			ctx := context.Background()
			d, err := destination.OpenMySQL(ctx, config(b, "mysql", "app", "", map[string]any{"dsn": mysqlDSN()}))
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			next := 0
			for b.Loop() {
				for range 50 {
					recs := make([]destination.Record, 1000)
					for i := range recs {
						k := fmt.Sprintf("key-%08d", next)
						next++
						recs[i] = destination.Record{Key: k, KeyValue: k, Op: destination.OpUpsert, New: true, Fields: map[string]any{"v": "value " + k, "n": int64(next)}}
					}
					if o := d.Write(ctx, &destination.Batch{Object: table, KeyField: "k", Fields: []string{"v", "n"}, Records: recs}); o.Err != nil {
						b.Fatal(o.Err)
					}
				}
			}
		})
	}
}
