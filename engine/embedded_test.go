package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/repofs"
	"github.com/backflowhq/backflow/schema"
)

// writeFixtures creates a fixtures folder holding files (name → content).
func writeFixtures(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// collect runs a query and returns its columns and copied rows.
func collect(t *testing.T, src Source, query string) ([]schema.Column, [][]any) {
	t.Helper()
	rows, err := src.Query(context.Background(), query)
	if err != nil {
		t.Fatalf("query %q: %v", query, err)
	}
	defer rows.Close()
	var out [][]any
	for rows.Next() {
		out = append(out, append([]any(nil), rows.Row()...))
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("query %q: %v", query, err)
	}
	return rows.Columns(), out
}

func mustLoad(t *testing.T, e *Embedded, dir string, types map[string]map[string]string) {
	t.Helper()
	if diags := e.LoadDir(dir, types); diags.HasErrors() {
		t.Fatalf("LoadDir: %s", diags.Error())
	}
}

func TestInferText(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   schema.Type
	}{
		{"ints", []string{"1", "-2", "300"}, schema.TypeInt},
		{"int and float", []string{"1", "2.5"}, schema.TypeFloat},
		{"exponent", []string{"1e3"}, schema.TypeFloat},
		{"bools", []string{"true", "FALSE"}, schema.TypeBool},
		{"bool and int", []string{"true", "1"}, schema.TypeString},
		{"rfc3339", []string{"2024-01-02T03:04:05Z", "2024-01-02T03:04:05+02:00"}, schema.TypeTimestamp},
		{"date", []string{"2024-01-02"}, schema.TypeTimestamp},
		{"datetime", []string{"2024-01-02 03:04:05", "2024-01-02"}, schema.TypeTimestamp},
		{"bad date", []string{"2024-13-02"}, schema.TypeString},
		{"words", []string{"a", "1"}, schema.TypeString},
		{"infinity is text", []string{"inf"}, schema.TypeString},
		{"hex is text", []string{"0x10"}, schema.TypeString},
		{"all null", nil, schema.TypeString},
		{"int overflow is decimal", []string{"99999999999999999999"}, schema.TypeDecimal},
		{"int overflow beside floats", []string{"1.5", "12345678901234567891"}, schema.TypeDecimal},
		{"int beyond 2^53 beside a float", []string{"2.5", "9007199254740993"}, schema.TypeDecimal},
		{"int beyond 2^53 alone", []string{"9007199254740993"}, schema.TypeInt},
		{"float digits a float64 keeps", []string{"0.1", "123456.789012345"}, schema.TypeFloat},
		{"17 digits a float64 keeps", []string{"0.30000000000000004"}, schema.TypeFloat},
		{"more digits than a float64 keeps", []string{"0.12345678901234567891"}, schema.TypeDecimal},
		{"beyond DECIMAL(65) is text", []string{strings.Repeat("9", 66)}, schema.TypeString},
		{"inexact with an exponent", []string{"1e3", "12345678901234567891"}, schema.TypeDecimal},
		{"float beyond float64 is text", []string{"1e400"}, schema.TypeString},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inf := newInference(1)
			for _, v := range tt.values {
				inf[0].observeText(v)
			}
			if got, _ := inf[0].result(); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestInferTyped(t *testing.T) {
	tests := []struct {
		name   string
		values []any
		want   schema.Type
	}{
		{"int64", []any{int64(1), nil}, schema.TypeInt},
		{"int widens to float", []any{int64(1), 2.5}, schema.TypeFloat},
		{"bool", []any{true, false}, schema.TypeBool},
		{"mixed", []any{true, int64(1)}, schema.TypeString},
		{"nested", []any{jsonText(`{"a":1}`), int64(2)}, schema.TypeJSON},
		{"time", []any{time.Unix(0, 0)}, schema.TypeTimestamp},
		{"numeric strings", []any{"1", "2"}, schema.TypeInt},
		{"bytes", []any{[]byte("x")}, schema.TypeBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inf := newInference(1)
			for _, v := range tt.values {
				inf[0].observe(v)
			}
			if got, _ := inf[0].result(); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestLoadCSV(t *testing.T) {
	dir := writeFixtures(t, map[string]string{
		"users.csv": "id,email,score,active,signed_up,note\n" +
			"1,a@x.io,1.5,true,2024-01-02,\"hello, world\"\n" +
			"2,,2,false,2024-01-03 10:00:00,\n",
	})
	e := NewEmbedded()
	defer e.Close()
	mustLoad(t, e, dir, nil)
	cols, rows := collect(t, e, "SELECT * FROM users ORDER BY id")
	wantTypes := []schema.Type{schema.TypeInt, schema.TypeString, schema.TypeFloat, schema.TypeBool, schema.TypeTimestamp, schema.TypeString}
	for i, c := range cols {
		if c.Type != wantTypes[i] {
			t.Errorf("column %s: type %s (%s), want %s", c.Name, c.Type, c.DBType, wantTypes[i])
		}
	}
	want := [][]any{
		{int64(1), "a@x.io", 1.5, true, time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC), "hello, world"},
		{int64(2), nil, 2.0, false, time.Date(2024, 1, 3, 10, 0, 0, 0, time.UTC), nil},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("rows:\n got %#v\nwant %#v", rows, want)
	}
}

func TestLoadOverrides(t *testing.T) {
	dir := writeFixtures(t, map[string]string{
		"accounts.csv": "zip,balance,meta,raw\n007,10.50,\"{\"\"a\"\": [1, 2]}\",abc\n100,3,[],\n",
	})
	e := NewEmbedded()
	defer e.Close()
	mustLoad(t, e, dir, map[string]map[string]string{
		"accounts": {"zip": "varchar", "balance": "decimal", "meta": "json", "raw": "bytes"},
	})
	cols, rows := collect(t, e, "SELECT zip, balance, meta, raw FROM accounts ORDER BY zip")
	wantTypes := []schema.Type{schema.TypeString, schema.TypeDecimal, schema.TypeJSON, schema.TypeBytes}
	for i, c := range cols {
		if c.Type != wantTypes[i] {
			t.Errorf("column %s: type %s (%s), want %s", c.Name, c.Type, c.DBType, wantTypes[i])
		}
	}
	want := [][]any{
		{"007", "10.50", `{"a": [1, 2]}`, []byte("abc")},
		{"100", "3.00", `[]`, nil},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("rows:\n got %#v\nwant %#v", rows, want)
	}
}

func TestLoadJSONL(t *testing.T) {
	dir := writeFixtures(t, map[string]string{
		"events.jsonl": `{"id": 1, "kind": "click", "props": {"x": 1}}` + "\n" +
			"\n" +
			`{"id": 2, "at": "2024-05-06T07:08:09Z", "props": [1, "a"], "ok": true}` + "\n",
	})
	e := NewEmbedded()
	defer e.Close()
	mustLoad(t, e, dir, nil)
	cols, rows := collect(t, e, "SELECT * FROM events ORDER BY id")
	var names []string
	for _, c := range cols {
		names = append(names, c.Name+":"+c.Type.String())
	}
	if got, want := strings.Join(names, ","), "id:int,kind:string,props:json,at:timestamp,ok:bool"; got != want {
		t.Errorf("columns %s, want %s", got, want)
	}
	want := [][]any{
		{int64(1), "click", `{"x": 1}`, nil, nil},
		{int64(2), nil, `[1, "a"]`, time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC), true},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("rows:\n got %#v\nwant %#v", rows, want)
	}
}

func TestLoadSQL(t *testing.T) {
	dir := writeFixtures(t, map[string]string{
		"schema.sql": "-- orders; with a key\n" +
			"CREATE TABLE orders (id BIGINT PRIMARY KEY, total DECIMAL(10,2), note TEXT, paid BOOLEAN);\n" +
			"INSERT INTO orders VALUES (1, 9.99, 'semi;colon', true), (2, NULL, 'it''s', false);\n",
	})
	e := NewEmbedded()
	defer e.Close()
	mustLoad(t, e, dir, nil)
	cols, rows := collect(t, e, "SELECT id, total, note, paid FROM orders ORDER BY id")
	if cols[0].Nullable {
		t.Errorf("primary key column reported nullable")
	}
	if !cols[1].Nullable {
		t.Errorf("total reported not nullable")
	}
	want := [][]any{{int64(1), "9.99", "semi;colon", true}, {int64(2), nil, "it's", false}}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("rows:\n got %#v\nwant %#v", rows, want)
	}
}

func TestBrokenFixtures(t *testing.T) {
	dir := writeFixtures(t, map[string]string{
		"ragged.csv":   "a,b\n1,2\n3\n",
		"quotes.csv":   "a\n\"x\n",
		"bad.jsonl":    "{\"a\": 1}\n{\"a\": \n",
		"broken.sql":   "CREATE TABLE ok1 (a INT);\n\nINSERT INTO nowhere VALUES (1);\n",
		"typed.csv":    "n\n1\nx\n",
		"1bad.csv":     "a\n1\n",
		"good.csv":     "a\n1\n",
		"notobj.jsonl": "[1]\n",
		"dupkey.jsonl": "{\"a\": 1}\n{\"a\": 1, \"a\": 2}\n",
		"range.jsonl":  "{\"a\": 1e400}\n",
	})
	e := NewEmbedded()
	defer e.Close()
	diags := e.LoadDir(dir, map[string]map[string]string{"typed": {"n": "int"}})
	want := map[string]int{ // file → line
		"ragged.csv":   3,
		"quotes.csv":   2,
		"bad.jsonl":    2,
		"broken.sql":   3,
		"typed.csv":    3,
		"1bad.csv":     1,
		"notobj.jsonl": 1,
		"dupkey.jsonl": 2,
		"range.jsonl":  1,
	}
	got := make(map[string]int)
	for _, d := range diags {
		if d.Subject == nil {
			t.Errorf("diagnostic without subject: %s: %s", d.Summary, d.Detail)
			continue
		}
		got[filepath.Base(d.Subject.Filename)] = d.Subject.Start.Line
		if filepath.Dir(d.Subject.Filename) != dir {
			t.Errorf("diagnostic file %s not under %s", d.Subject.Filename, dir)
		}
		if d.Severity != hcl.DiagError || d.Summary == "" || !strings.HasSuffix(d.Detail, ".") {
			t.Errorf("diagnostic %q / %q is not a full error", d.Summary, d.Detail)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("diagnostics at %v, want %v\n%s", got, want, diags.Error())
	}
	if _, rows := collect(t, e, "SELECT a FROM good"); len(rows) != 1 {
		t.Errorf("good fixture not loaded beside broken ones")
	}
}

func TestOverrideProblems(t *testing.T) {
	dir := writeFixtures(t, map[string]string{"t.csv": "a\n1\n"})
	e := NewEmbedded()
	defer e.Close()
	diags := e.LoadDir(dir, map[string]map[string]string{
		"t":    {"a": "integr", "b": "int"},
		"nope": {"x": "int"},
	})
	var summaries []string
	for _, d := range diags {
		summaries = append(summaries, d.Summary)
	}
	if got, want := strings.Join(summaries, "|"), "Unknown Column Type|Column Types For Unknown Fixture"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestReplaceTable(t *testing.T) {
	dir := writeFixtures(t, map[string]string{
		"users.csv":  "id,name\n1,ann\n2,bob\n",
		"orders.csv": "id,user_id\n10,1\n",
	})
	e := NewEmbedded()
	defer e.Close()
	mustLoad(t, e, dir, nil)
	if err := e.AddTable("users", []string{"id", "name", "vip"}, [][]any{{int64(7), "cid", true}}); err != nil {
		t.Fatal(err)
	}
	_, rows := collect(t, e, "SELECT id, name, vip FROM users")
	if want := [][]any{{int64(7), "cid", true}}; !reflect.DeepEqual(rows, want) {
		t.Errorf("replaced users: got %#v, want %#v", rows, want)
	}
	if _, rows := collect(t, e, "SELECT id FROM orders"); len(rows) != 1 {
		t.Errorf("orders lost when users was replaced")
	}
	if err := e.AddTable("bad name", []string{"a"}, nil); err == nil {
		t.Errorf("invalid table name accepted")
	}
	if err := e.AddTable("t", []string{"a", "b"}, [][]any{{1}}); err == nil {
		t.Errorf("short row accepted")
	}
}

func TestSchemaWithoutRows(t *testing.T) {
	e := NewEmbedded()
	defer e.Close()
	if err := e.AddTable("users", []string{"id", "email", "at"}, [][]any{{"1", "a@x.io", "2024-01-01"}}); err != nil {
		t.Fatal(err)
	}
	cols, err := e.Schema(context.Background(), "SELECT id, email, at, id + 1 AS next, email = 'x' AS same FROM users WHERE 1 = 0;")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cols {
		got = append(got, c.Name+":"+c.Type.String())
	}
	if want := "id:int,email:string,at:timestamp,next:int,same:bool"; strings.Join(got, ",") != want {
		t.Errorf("schema %s, want %s", strings.Join(got, ","), want)
	}
	if _, err := e.Schema(context.Background(), "SELECT nope FROM users"); err == nil {
		t.Errorf("unknown column accepted")
	}
}

func TestJoinScan(t *testing.T) {
	dir := writeFixtures(t, map[string]string{
		"users.csv":  "id,name\n1,ann\n2,bob\n3,cid\n",
		"orders.csv": "id,user_id,amount\n10,1,5\n11,1,7.5\n12,3,1\n",
	})
	e := NewEmbedded()
	defer e.Close()
	mustLoad(t, e, dir, nil)
	_, rows := collect(t, e, `SELECT u.name, COUNT(o.id) AS n, SUM(o.amount) AS total
		FROM users u LEFT JOIN orders o ON o.user_id = u.id GROUP BY u.name ORDER BY u.name`)
	want := [][]any{{"ann", int64(2), 12.5}, {"bob", int64(0), nil}, {"cid", int64(1), 1.0}}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("join:\n got %#v\nwant %#v", rows, want)
	}
}

func TestSplitSQL(t *testing.T) {
	got := splitSQL("-- c\nSELECT 1;\n\n/* x; */ SELECT 'a;b'; # t\nSELECT \"q\\\";\"\n;  ")
	want := []sqlStatement{{"-- c\nSELECT 1", 2}, {"/* x; */ SELECT 'a;b'", 4}, {"# t\nSELECT \"q\\\";\"", 5}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v\nwant %#v", got, want)
	}
}

// TestByteOrderMark checks that a UTF-8 byte order mark, as some editors
// write, is not read into the first column name or statement.
func TestByteOrderMark(t *testing.T) {
	dir := writeFixtures(t, map[string]string{
		"users.csv":    "\ufeffid,name\n1,ann\n",
		"events.jsonl": "\ufeff{\"id\": 2}\n",
		"s.sql":        "\ufeffCREATE TABLE orders (id INT); INSERT INTO orders VALUES (3);",
		"bom.csv":      "\ufeff",
	})
	e := NewEmbedded()
	defer e.Close()
	diags := e.LoadDir(dir, nil)
	if len(diags) != 1 || diags[0].Summary != "Empty CSV Fixture" {
		t.Fatalf("want only bom.csv reported empty, got %s", diags.Error())
	}
	for table, want := range map[string]int64{"users": 1, "events": 2, "orders": 3} {
		if _, rows := collect(t, e, "SELECT id FROM "+table); len(rows) != 1 || rows[0][0] != want {
			t.Errorf("%s: got %v, want id %d", table, rows, want)
		}
	}
}

// A CSV fixture larger than repofs.MaxFileSize (realistic offline data)
// loads through a repository FS, which streams it; a JSONL fixture, read
// whole, keeps the smaller limit.
func TestLargeCSVFixtureLoadsThroughARepository(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("id,email,name\n")
	rows := 0
	for b.Len() <= repofs.MaxFileSize {
		rows++
		fmt.Fprintf(&b, "%d,user%d@example.com,Name number %d of a large fixture\n", rows, rows, rows)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.csv"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "big.jsonl"), []byte(strings.Repeat(`{"id": 1}`+"\n", repofs.MaxFileSize/10+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	fsys, err := repofs.NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEmbedded()
	defer e.Close()
	diags := e.LoadFS(fsys, ".", "data", nil)
	if len(diags) != 1 || !strings.Contains(diags[0].Detail, "larger than 8 MiB") || !strings.Contains(diags[0].Subject.Filename, "big.jsonl") {
		t.Fatalf("want one diagnostic, on big.jsonl being too large; got %v", diags)
	}
	_, got := collect(t, e, "SELECT COUNT(*) FROM users")
	if got[0][0] != int64(rows) {
		t.Fatalf("users has %v rows, want %d", got[0][0], rows)
	}
}
