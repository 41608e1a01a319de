package destination_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/schema"
	"github.com/jackc/pgx/v5"
)

// The round trip of every portable type through each SQL destination: a
// row written from values as a live model produces them, a row written from
// the same values as a saved plan file gives them back (bytes as base64,
// times as RFC 3339 text, integers via json.Number), and a row of NULLs,
// each read back with the database's own client and compared exactly.

// typeFields are the matrix's fields, in column order, with their model
// types. The key field k is a text column written from an integer.
var typeFields = []string{"s", "i", "f", "d", "b", "bin", "dt", "ts", "tz", "j"}

var typeModels = map[string]schema.Type{
	"k": schema.TypeInt, "s": schema.TypeString, "i": schema.TypeInt, "f": schema.TypeFloat, "d": schema.TypeDecimal,
	"b": schema.TypeBool, "bin": schema.TypeBytes, "dt": schema.TypeTimestamp, "ts": schema.TypeTimestamp,
	"tz": schema.TypeTimestamp, "j": schema.TypeJSON,
}

var (
	tmString  = "Zoë \"dq\" 'sq' \\ ✓"
	tmInt     = int64(-9007199254740993) // not a float64
	tmFloat   = 0.1
	tmDecimal = "12345678901234567890.0123456789" // 30 digits: not a float64 either
	tmBytes   = []byte{0, 0xff, 0x10, 'a', 0x80, '\n'}
	tmDate    = time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)
	tmTime    = time.Date(2024, 5, 3, 11, 57, 0, 123456000, time.UTC)
	tmJSON    = `{"a":[1,2.5,"x"],"b":null}`
)

// typeRows are the rows written: key -> field values.
func typeRows() map[int64]map[string]any {
	return map[int64]map[string]any{
		// As a live model gives them.
		1: {"s": tmString, "i": tmInt, "f": tmFloat, "d": tmDecimal, "b": true, "bin": tmBytes,
			"dt": tmDate, "ts": tmTime, "tz": tmTime, "j": tmJSON},
		// As a saved plan file gives them back.
		2: {"s": tmString, "i": json.Number("-9007199254740993"), "f": tmFloat, "d": tmDecimal, "b": true,
			"bin": "AP8QYYAK", "dt": "2024-02-29T00:00:00Z", "ts": "2024-05-03T11:57:00.123456Z",
			"tz": "2024-05-03T11:57:00.123456Z", "j": tmJSON},
		3: {"s": nil, "i": nil, "f": nil, "d": nil, "b": nil, "bin": nil, "dt": nil, "ts": nil, "tz": nil, "j": nil},
	}
}

// typeMatrix is one driver's side of the matrix.
type typeMatrix struct {
	ddl  string // %s: table name; columns k, then typeFields
	open func(t testing.TB) destination.Destination
	exec func(t testing.TB, query string)
	// read reads row k back, one value per typeFields entry, nil for NULL.
	read func(t testing.TB, table string, k string) []any
	// want is row 1 and 2 as read back.
	want []any
}

func testTypeRoundTrip(t *testing.T, m typeMatrix) {
	ctx := context.Background()
	table := fmt.Sprintf("types_%d", time.Now().UnixNano())
	m.exec(t, fmt.Sprintf(m.ddl, table))
	t.Cleanup(func() { m.exec(t, "DROP TABLE "+table) })
	d := m.open(t)
	if err := d.(destination.Preparer).Prepare(ctx, table, "k", typeFields); err != nil {
		t.Fatal(err)
	}
	// Without CheckTypes first (converting by the columns alone), then
	// with it: the same rows come out.
	for _, checked := range []bool{false, true} {
		if checked {
			if err := d.(destination.TypeChecker).CheckTypes(ctx, table, typeModels); err != nil {
				t.Fatalf("CheckTypes: %v", err)
			}
		}
		b := &destination.Batch{Object: table, KeyField: "k", Fields: typeFields}
		for k, fields := range typeRows() {
			b.Records = append(b.Records, destination.Record{Key: fmt.Sprint(k), KeyValue: k, Op: destination.OpUpsert, Fields: fields})
		}
		mustAccept(t, d.Write(ctx, b), 3)
		for _, k := range []string{"1", "2"} {
			if got := m.read(t, table, k); !reflect.DeepEqual(got, m.want) {
				t.Errorf("checked=%v row %s:\n got %#v\nwant %#v", checked, k, got, m.want)
			}
		}
		if got := m.read(t, table, "3"); !reflect.DeepEqual(got, make([]any, len(typeFields))) {
			t.Errorf("checked=%v row of NULLs: got %#v", checked, got)
		}
		m.exec(t, "DELETE FROM "+table)
	}
}

// nullable turns a scanned pointer into its value, or nil.
func nullable[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func utc(p *time.Time) any {
	if p == nil {
		return nil
	}
	return p.UTC()
}

func TestPostgresTypeRoundTrip(t *testing.T) {
	for _, bulkMin := range []int{0, 1} {
		name := map[int]string{0: "statements", 1: "bulk"}[bulkMin]
		t.Run(name, func(t *testing.T) { testPostgresTypeRoundTrip(t, bulkMin) })
	}
}

func testPostgresTypeRoundTrip(t *testing.T, bulkMin int) {
	ctx := context.Background()
	admin := pgAdmin(t)
	testTypeRoundTrip(t, typeMatrix{
		ddl: `CREATE TABLE %s (k text PRIMARY KEY, s text, i bigint, f double precision, d numeric(30,10),
			b boolean, bin bytea, dt date, ts timestamp(6), tz timestamptz, j json)`,
		open: func(t testing.TB) destination.Destination {
			d, err := destination.OpenPostgres(ctx, config(t, "postgres", "warehouse", "", map[string]any{"dsn": postgresDSN()}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			destination.SetBulkMinRows(d, bulkMin)
			return d
		},
		exec: func(t testing.TB, q string) {
			if _, err := admin.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		},
		read: func(t testing.TB, table, k string) []any {
			var s, d, j *string
			var i *int64
			var f *float64
			var b *bool
			var by []byte
			var dt, ts, tz *time.Time
			err := admin.QueryRow(ctx, `SELECT s, i, f, d::text, b, bin, dt, ts, tz, j::text FROM `+table+` WHERE k = $1`, k).
				Scan(&s, &i, &f, &d, &b, &by, &dt, &ts, &tz, &j)
			if err != nil {
				t.Fatal(err)
			}
			var bytes any
			if by != nil {
				bytes = by
			}
			return []any{nullable(s), nullable(i), nullable(f), nullable(d), nullable(b), bytes, utc(dt), utc(ts), utc(tz), nullable(j)}
		},
		want: []any{tmString, tmInt, tmFloat, tmDecimal, true, tmBytes, tmDate, tmTime, tmTime, tmJSON},
	})
}

func TestMySQLTypeRoundTrip(t *testing.T) {
	ctx := context.Background()
	mysqlHarness(t) // skips without a server
	// The database's own reading of the rows: times parsed in a UTC session.
	admin, err := sql.Open("mysql", mysqlDSN()+"?parseTime=true&loc=UTC&time_zone=%27%2B00%3A00%27")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	testTypeRoundTrip(t, typeMatrix{
		ddl: `CREATE TABLE %s (k VARCHAR(20) PRIMARY KEY, s VARCHAR(100), i BIGINT, f DOUBLE, d DECIMAL(30,10),
			b BOOLEAN, bin VARBINARY(50), dt DATE, ts DATETIME(6), tz TIMESTAMP(6) NULL, j JSON) DEFAULT CHARSET=utf8mb4`,
		open: func(t testing.TB) destination.Destination {
			d, err := destination.OpenMySQL(ctx, config(t, "mysql", "app", "", map[string]any{"dsn": mysqlDSN()}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			return d
		},
		exec: func(t testing.TB, q string) {
			if _, err := admin.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		},
		read: func(t testing.TB, table, k string) []any {
			var s, d, j sql.NullString
			var i, b sql.NullInt64
			var f sql.NullFloat64
			var by []byte
			var dt, ts, tz sql.NullTime
			err := admin.QueryRowContext(ctx, "SELECT s, i, f, d, b, bin, dt, ts, tz, j FROM "+table+" WHERE k = ?", k).
				Scan(&s, &i, &f, &d, &b, &by, &dt, &ts, &tz, &j)
			if err != nil {
				t.Fatal(err)
			}
			v := func(ok bool, x any) any {
				if !ok {
					return nil
				}
				return x
			}
			var bytes any
			if by != nil {
				bytes = by
			}
			return []any{v(s.Valid, s.String), v(i.Valid, i.Int64), v(f.Valid, f.Float64), v(d.Valid, d.String),
				v(b.Valid, b.Int64), bytes, v(dt.Valid, dt.Time.UTC()), v(ts.Valid, ts.Time.UTC()), v(tz.Valid, tz.Time.UTC()), v(j.Valid, j.String)}
		},
		// BOOLEAN is TINYINT(1): true reads back as 1.
		want: []any{tmString, tmInt, tmFloat, tmDecimal, int64(1), tmBytes, tmDate, tmTime, tmTime, tmJSON},
	})
}

func TestSQLiteTypeRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "crm.db")
	var d destination.Destination
	testTypeRoundTrip(t, typeMatrix{
		// d is TEXT: a DECIMAL column has NUMERIC affinity, which keeps
		// 15 significant digits (see TestSQLiteDecimalAffinity).
		ddl: `CREATE TABLE %s (k TEXT PRIMARY KEY, s TEXT, i INTEGER, f REAL, d TEXT,
			b BOOLEAN, bin BLOB, dt DATE, ts DATETIME, tz TIMESTAMP, j JSON)`,
		open: func(t testing.TB) destination.Destination {
			var err error
			d, err = destination.OpenSQLite(ctx, config(t, "sqlite", "crm", "", map[string]any{"path": path}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			return d
		},
		exec: func(t testing.TB, q string) {
			withSQLite(t, path, func(db *sql.DB) error {
				_, err := db.ExecContext(ctx, q)
				return err
			})
		},
		read: func(t testing.TB, table, k string) []any {
			row := make([]any, len(typeFields))
			ptrs := make([]any, len(row))
			for i := range row {
				ptrs[i] = &row[i]
			}
			withSQLite(t, path, func(db *sql.DB) error {
				return db.QueryRowContext(ctx, `SELECT s, i, f, d, b, bin, dt, ts, tz, j FROM `+table+` WHERE k = ?`, k).Scan(ptrs...)
			})
			for i, v := range row {
				if tm, ok := v.(time.Time); ok {
					row[i] = tm.UTC()
				}
			}
			return row
		},
		// BOOLEAN has NUMERIC affinity: true is stored as 1.
		want: []any{tmString, tmInt, tmFloat, tmDecimal, int64(1), tmBytes, tmDate, tmTime, tmTime, tmJSON},
	})
}

// withSQLite runs fn on a short-lived connection to the database at path.
func withSQLite(t testing.TB, path string, fn func(db *sql.DB) error) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := fn(db); err != nil {
		t.Fatal(err)
	}
}

// CheckTypes names every field whose model type can never be written to
// its column, and accepts what may be converted per value.
func TestPostgresCheckTypes(t *testing.T) {
	ctx := context.Background()
	admin := pgAdmin(t)
	table := fmt.Sprintf("check_%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, `CREATE TABLE `+table+` (k bigint PRIMARY KEY, n int, dt date, bin bytea, u uuid, s text, j jsonb, iv interval)`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec(context.Background(), `DROP TABLE `+table) })
	d, err := destination.OpenPostgres(ctx, config(t, "postgres", "warehouse", "", map[string]any{"dsn": postgresDSN()}))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tc := d.(destination.TypeChecker)
	err = tc.CheckTypes(ctx, table, map[string]schema.Type{
		"k": schema.TypeString, "n": schema.TypeTimestamp, "dt": schema.TypeBytes, "bin": schema.TypeInt,
		"u": schema.TypeInt, "s": schema.TypeBytes, "j": schema.TypeDecimal, "iv": schema.TypeInt,
	})
	var mm destination.TypeMismatches
	if !errors.As(err, &mm) {
		t.Fatalf("want TypeMismatches, got %v", err)
	}
	want := destination.TypeMismatches{
		{Field: "bin", Model: schema.TypeInt, Column: "bin", ColumnType: "bytea"},
		{Field: "dt", Model: schema.TypeBytes, Column: "dt", ColumnType: "date"},
		{Field: "n", Model: schema.TypeTimestamp, Column: "n", ColumnType: "integer"},
		{Field: "u", Model: schema.TypeInt, Column: "u", ColumnType: "uuid"},
	}
	if !reflect.DeepEqual(mm, want) {
		t.Fatalf("mismatches:\n got %v\nwant %v", mm, want)
	}
	if got := mm[2].Error(); got != `field "n": a timestamp value cannot be written to column "n" of type integer` {
		t.Fatalf("message: %s", got)
	}
	if err := tc.CheckTypes(ctx, table+"_missing", map[string]schema.Type{"k": schema.TypeInt}); err == nil {
		t.Fatal("CheckTypes of a missing table should fail")
	}
}

// What the model says decides ambiguous values (a string into bytes or
// JSON), values are converted to the column (a string or an integer into a
// boolean, an integer into text, anything into a type pgx has no encoder
// for), and a value the column cannot take rejects its record alone.
func TestPostgresConversionsAndPerValueRejections(t *testing.T) {
	ctx := context.Background()
	admin := pgAdmin(t)
	table := fmt.Sprintf("conv_%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, `CREATE TABLE `+table+` (k text PRIMARY KEY, n int, b boolean, bin bytea, j jsonb, v varchar(10), iv interval)`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec(context.Background(), `DROP TABLE `+table) })
	d, err := destination.OpenPostgres(ctx, config(t, "postgres", "warehouse", "", map[string]any{"dsn": postgresDSN()}))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fields := []string{"n", "b", "bin", "j", "v", "iv"}
	if err := d.(destination.TypeChecker).CheckTypes(ctx, table, map[string]schema.Type{
		"k": schema.TypeInt, "n": schema.TypeString, "b": schema.TypeInt, "bin": schema.TypeString, "j": schema.TypeString,
		"v": schema.TypeInt, "iv": schema.TypeString,
	}); err != nil {
		t.Fatal(err)
	}
	rec := func(k int64, n, b any) destination.Record {
		return destination.Record{Key: fmt.Sprint(k), KeyValue: k, Op: destination.OpUpsert, Fields: map[string]any{
			"n": n, "b": b, "bin": "aGk=", "j": "Ann", "v": int64(42), "iv": "1 day"}}
	}
	o := d.Write(ctx, &destination.Batch{Object: table, KeyField: "k", Fields: fields, Records: []destination.Record{
		rec(1, " 42 ", int64(1)),
		rec(2, 1.5, int64(0)),
		rec(3, int64(7), int64(2)),
		rec(4, "12.000", "false"),
	}})
	if o.Err != nil || len(o.Results) != 4 {
		t.Fatalf("outcome %+v", o)
	}
	for i, want := range []string{"", `field "n": 1.5 is not an integer (column n is integer)`, `field "b": 2 is not a boolean (0 or 1) (column b is boolean)`, ""} {
		got := ""
		if o.Results[i].Err != nil {
			got = o.Results[i].Err.Error()
		}
		if got != want || o.Results[i].Retryable {
			t.Errorf("record %d: %q (retryable %v), want %q", i+1, got, o.Results[i].Retryable, want)
		}
	}
	rows, err := admin.Query(ctx, `SELECT k, n, b, bin, j::text, v, iv::text FROM `+table+` ORDER BY k`)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		K        string
		N        int
		B        bool
		Bin      []byte
		J, V, Iv string
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	want := []row{
		{"1", 42, true, []byte("aGk="), `"Ann"`, "42", "1 day"},
		{"4", 12, false, []byte("aGk="), `"Ann"`, "42", "1 day"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rows:\n got %+v\nwant %+v", got, want)
	}
}

// MySQL's BOOLEAN is TINYINT(1): it takes booleans, 0/1 and "true", and
// the other integers of a byte, which a TINYINT(1) source may hold (3); a
// value the column cannot take (300, "x") rejects its record alone.
func TestMySQLBooleansAndPerValueRejections(t *testing.T) {
	ctx := context.Background()
	h := mysqlHarness(t)
	table := newTable(t, h, `id BIGINT PRIMARY KEY, b BOOLEAN, n TINYINT, dt DATETIME`)
	d := h.open(t, 0, "")
	rec := func(id int64, b, n any) destination.Record {
		return destination.Record{Key: fmt.Sprint(id), KeyValue: id, Op: destination.OpUpsert, Fields: map[string]any{"b": b, "n": n, "dt": "2024-05-03T11:57:00Z"}}
	}
	o := d.Write(ctx, &destination.Batch{Object: table, KeyField: "id", Fields: []string{"b", "n", "dt"}, Records: []destination.Record{
		rec(1, true, int64(5)), rec(2, int64(0), int64(-5)), rec(3, "true", "7"), rec(4, int64(3), int64(1)), rec(5, false, "x"), rec(6, int64(300), int64(1)),
	}})
	if o.Err != nil || len(o.Results) != 6 {
		t.Fatalf("outcome %+v", o)
	}
	for i, bad := range []bool{false, false, false, false, true, true} {
		if (o.Results[i].Err != nil) != bad || o.Results[i].Retryable {
			t.Errorf("record %d: %+v, want rejected=%v", i+1, o.Results[i], bad)
		}
	}
	var n int
	var dt string
	admin, err := sql.Open("mysql", mysqlDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.QueryRowContext(ctx, `SELECT SUM(b), MAX(CAST(dt AS CHAR)) FROM `+table).Scan(&n, &dt); err != nil || n != 5 || dt != "2024-05-03 11:57:00" {
		t.Fatalf("sum(b) = %d, dt = %q (%v): want 1 + 0 + 1 + 3 of 4 rows written, and the time in UTC", n, dt, err)
	}
}

// TestPostgresNumericSpecials: numeric 'NaN' and the infinities, as a
// PostgreSQL source plans them (their text), are written back to a
// numeric column; other text is still no decimal.
func TestPostgresNumericSpecials(t *testing.T) {
	ctx := context.Background()
	admin := pgAdmin(t)
	table := testdb.PostgresTable(t, admin, "k text PRIMARY KEY, n numeric")
	d, err := destination.OpenPostgres(ctx, config(t, "postgres", "warehouse", "", map[string]any{"dsn": postgresDSN()}))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var recs []destination.Record
	for _, v := range []string{"NaN", "Infinity", "-Infinity", "nan?"} {
		recs = append(recs, destination.Record{Key: v, KeyValue: v, Op: destination.OpUpsert, Fields: map[string]any{"n": v}})
	}
	o := d.Write(ctx, &destination.Batch{Object: table, KeyField: "k", Fields: []string{"n"}, Records: recs})
	if o.Err != nil {
		t.Fatal(o.Err)
	}
	for i, r := range o.Results {
		if (r.Err != nil) != (i == 3) {
			t.Errorf("%s: %v", recs[i].Key, r.Err)
		}
	}
	var got string
	if err := admin.QueryRow(ctx, `SELECT string_agg(k || '=' || n::text, ',' ORDER BY k) FROM `+table).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "-Infinity=-Infinity,Infinity=Infinity,NaN=NaN"; got != want {
		t.Errorf("rows %s, want %s", got, want)
	}
}

// TestMySQLBitColumns: a BIT column takes its value's bytes (what a MySQL
// source reads from one, planned as base64), not their text; integers and
// booleans as before.
func TestMySQLBitColumns(t *testing.T) {
	ctx := context.Background()
	h := mysqlHarness(t)
	table := newTable(t, h, `id BIGINT PRIMARY KEY, b8 BIT(8), b64 BIT(64), flag BIT(1)`)
	d := h.open(t, 0, "")
	if err := d.(destination.TypeChecker).CheckTypes(ctx, table, map[string]schema.Type{"id": schema.TypeInt, "b8": schema.TypeBytes, "b64": schema.TypeBytes, "flag": schema.TypeBool}); err != nil {
		t.Fatal(err)
	}
	recs := []destination.Record{
		{Key: "1", KeyValue: int64(1), Op: destination.OpUpsert, Fields: map[string]any{"b8": "gQ==", "b64": []byte{0, 0, 0, 0, 0, 0, 0, 1}, "flag": true}},
		{Key: "2", KeyValue: int64(2), Op: destination.OpUpsert, Fields: map[string]any{"b8": []byte{0}, "b64": "gAAAAAAAAAA=", "flag": int64(0)}},
	}
	o := d.Write(ctx, &destination.Batch{Object: table, KeyField: "id", Fields: []string{"b8", "b64", "flag"}, Records: recs})
	if o.Err != nil || o.Results[0].Err != nil || o.Results[1].Err != nil {
		t.Fatalf("bytes that fit: %+v", o)
	}
	long := destination.Record{Key: "3", KeyValue: int64(3), Op: destination.OpUpsert, Fields: map[string]any{"b8": "AQI=", "b64": nil, "flag": nil}}
	if o := d.Write(ctx, &destination.Batch{Object: table, KeyField: "id", Fields: []string{"b8", "b64", "flag"}, Records: []destination.Record{long}}); o.Err == nil && o.Results[0].Err == nil {
		t.Errorf("two bytes into BIT(8): %+v, want rejected", o)
	}
	admin, err := sql.Open("mysql", mysqlDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var got string
	if err := admin.QueryRowContext(ctx, `SELECT GROUP_CONCAT(CONCAT(id, ':', b8 + 0, ':', b64 + 0, ':', flag + 0) ORDER BY id) FROM `+table).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "1:129:1:1,2:0:9223372036854775808:0"; got != want {
		t.Errorf("rows %s, want %s", got, want)
	}
}

// A DECIMAL column in SQLite has NUMERIC affinity: SQLite stores a decimal
// as REAL when that keeps 15 significant digits, which is why exact
// decimals belong in a TEXT column there (TestSQLiteTypeRoundTrip).
func TestSQLiteDecimalAffinity(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "crm.db")
	withSQLite(t, path, func(db *sql.DB) error {
		_, err := db.ExecContext(ctx, `CREATE TABLE money (id INTEGER PRIMARY KEY, d DECIMAL(10,2), s TEXT)`)
		return err
	})
	d, err := destination.OpenSQLite(ctx, config(t, "sqlite", "crm", "", map[string]any{"path": path}))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	mustAccept(t, d.Write(ctx, &destination.Batch{Object: "money", KeyField: "id", Fields: []string{"d", "s"}, Records: []destination.Record{
		{Key: "1", KeyValue: int64(1), Op: destination.OpUpsert, Fields: map[string]any{"d": "12.50", "s": "12.50"}},
		{Key: "2", KeyValue: int64(2), Op: destination.OpUpsert, Fields: map[string]any{"d": tmDecimal, "s": tmDecimal}},
	}}), 2)
	var got [][4]any
	withSQLite(t, path, func(db *sql.DB) error {
		rows, err := db.QueryContext(ctx, `SELECT typeof(d), d, typeof(s), s FROM money ORDER BY id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r [4]any
			if err := rows.Scan(&r[0], &r[1], &r[2], &r[3]); err != nil {
				return err
			}
			got = append(got, r)
		}
		return rows.Err()
	})
	want := [][4]any{{"real", 12.5, "text", "12.50"}, {"real", 1.2345678901234567e19, "text", tmDecimal}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// TestPostgresYearsOutsideFourDigits: dates and times before year 1 (BC)
// and after 9999, as a PostgreSQL source plans them (Go's text:
// "-4712-01-01T00:00:00Z"), and 'infinity' (its text), are written as they
// were, by statements and in bulk (COPY), not rejected as not a date.
func TestPostgresYearsOutsideFourDigits(t *testing.T) {
	ctx := context.Background()
	admin := pgAdmin(t)
	for _, bulkMin := range []int{0, 1} {
		t.Run(map[int]string{0: "statements", 1: "bulk"}[bulkMin], func(t *testing.T) {
			table := testdb.PostgresTable(t, admin, "k text PRIMARY KEY, d date, ts timestamp, tz timestamptz")
			d, err := destination.OpenPostgres(ctx, config(t, "postgres", "warehouse", "", map[string]any{"dsn": postgresDSN()}))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			destination.SetBulkMinRows(d, bulkMin)
			cases := []struct{ key, d, ts, tz, want string }{
				{"bc", "-4712-01-01T00:00:00Z", "0000-12-31T23:00:00Z", "-0043-03-15T12:00:00Z", "4713-01-01 BC|0001-12-31 23:00:00 BC|0044-03-15 12:00:00 BC"},
				{"leap", "-0044-02-29", "-0044-02-29 10:00:00.25", "-0044-02-29T10:00:00+02:00", "0045-02-29 BC|0045-02-29 10:00:00.25 BC|0045-02-29 08:00:00 BC"},
				{"far", "10000-01-01T00:00:00Z", "12000-05-05T10:00:00Z", "99999-12-31T23:59:59.999999Z", "10000-01-01|12000-05-05 10:00:00|99999-12-31 23:59:59.999999"},
				{"infinite", "infinity", "-infinity", "infinity", "infinity|-infinity|infinity"},
			}
			var recs []destination.Record
			for _, c := range cases {
				recs = append(recs, destination.Record{Key: c.key, KeyValue: c.key, Op: destination.OpUpsert, New: true,
					Fields: map[string]any{"d": c.d, "ts": c.ts, "tz": c.tz}})
			}
			o := d.Write(ctx, &destination.Batch{Object: table, KeyField: "k", Fields: []string{"d", "ts", "tz"}, Records: recs})
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			for i, c := range cases {
				if err := o.Results[i].Err; err != nil {
					t.Errorf("%s: %v", c.key, err)
					continue
				}
				var got string
				if err := admin.QueryRow(ctx, `SELECT concat_ws('|', d, ts, tz AT TIME ZONE 'UTC') FROM `+table+` WHERE k = $1`, c.key).Scan(&got); err != nil {
					t.Fatal(err)
				}
				if got != c.want {
					t.Errorf("%s: %s, want %s", c.key, got, c.want)
				}
			}
		})
	}
}
