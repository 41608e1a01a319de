package destination

import (
	"fmt"
	"testing"
)

// peopleTable is the benchmark harness's table as the postgres driver
// describes it: id bigint, then text, bigint, double precision and
// boolean columns.
func peopleTable() *table {
	col := func(name, dbType, cast string, kind colKind) column {
		return column{name: name, dbType: dbType, castType: cast, kind: kind}
	}
	return &table{columns: []column{
		col("id", "bigint", "pg_catalog.int8", kindInt),
		col("email", "text", "pg_catalog.text", kindText),
		col("name", "text", "pg_catalog.text", kindText),
		col("company", "text", "pg_catalog.text", kindText),
		col("country", "text", "pg_catalog.text", kindText),
		col("score", "bigint", "pg_catalog.int8", kindInt),
		col("ltv", "double precision", "pg_catalog.float8", kindFloat),
		col("active", "boolean", "pg_catalog.bool", kindBool),
	}}
}

// peopleBatch is a batch of n upserts of the harness's rows, their values
// in order (Record.Values) as a plan read back from disk hands them over;
// isNew marks them as adds.
func peopleBatch(n int, isNew bool) *Batch {
	countries := []string{"DE", "FR", "US", "GB", "JP"}
	b := &Batch{Object: "people", KeyField: "id", Fields: []string{"email", "name", "company", "country", "score", "ltv", "active"}}
	for i := 1; i <= n; i++ {
		id := int64(i + 1000)
		b.Records = append(b.Records, Record{Key: fmt.Sprint(id), KeyValue: id, Op: OpUpsert, New: isNew, Values: []any{
			fmt.Sprintf("user%d@example.com", i), fmt.Sprintf("User %d", i), fmt.Sprintf("Company %d", i%5000),
			countries[i%len(countries)], int64(i%1000 + 1000), float64(i%100000) + float64(i%100)/100, i%7 != 0,
		}})
	}
	return b
}

// BenchmarkPreparePostgresBatch is what PrepareBatch costs the postgres
// driver per batch of 1,000 records of the harness's table: their values
// converted and the bulk path's body made (COPY text for adds, the unnest
// statement's arrays for changes), without a database; the arrays are
// given back after each, as Write does.
//
//	go test -run '^$' -bench PreparePostgresBatch -benchmem ./destination/
func BenchmarkPreparePostgresBatch(b *testing.B) {
	for _, adds := range []bool{true, false} {
		b.Run(map[bool]string{true: "adds", false: "changes"}[adds], func(b *testing.B) {
			w := &sqlWriter{dialect: postgresDialect, bulkMinRows: PostgresBulkMinRows, tables: map[string]*table{"people": peopleTable()}}
			batch := peopleBatch(1000, adds)
			for b.Loop() {
				batch.prepared = nil
				w.PrepareBatch(batch)
				p := batch.prepared.(*preparedWrite)
				if p.wr.bulk == nil || !p.wr.bulk.ok || p.wr.bulk.insert != adds {
					b.Fatalf("no bulk body made: %+v", p.wr.bulk)
				}
				w.giveBack(p.wr) // as Write does once written
			}
		})
	}
}

// A write's arrays given back are used by the next batch's: nothing of the
// earlier batch shows through, be it a value where the later one has none
// (NULL) or a longer body.
func TestWriteBuffersReused(t *testing.T) {
	w := &sqlWriter{dialect: postgresDialect, bulkMinRows: 2, tables: map[string]*table{"people": peopleTable()}}
	first := peopleBatch(3, true)
	w.PrepareBatch(first)
	p := first.prepared.(*preparedWrite)
	if p.wr.bulk == nil || !p.wr.bulk.ok {
		t.Fatal("no COPY text made")
	}
	w.giveBack(p.wr)
	if len(w.spare) != 1 {
		t.Fatalf("%d spare buffers, want 1", len(w.spare))
	}
	second := peopleBatch(2, true)
	for i := range second.Records {
		second.Records[i].Values = make([]any, len(second.Fields)) // every field NULL
	}
	w.PrepareBatch(second)
	p = second.prepared.(*preparedWrite)
	if len(w.spare) != 0 || p.wr.bufs == nil {
		t.Fatal("the spare buffers were not used")
	}
	want := "1001\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\n1002\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\n"
	if got := string(p.wr.bulk.data); got != want {
		t.Errorf("COPY text %q, want %q", got, want)
	}
	for i, vals := range p.wr.vals {
		for j, v := range vals {
			if v != nil {
				t.Errorf("record %d field %d: %v, want nil", i, j, v)
			}
		}
	}
}
