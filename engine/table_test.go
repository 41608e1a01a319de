package engine

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// TestColumnStoreRoundTrip loads enough rows that strings fill several
// chunks, interning stops on a column of unique values and keeps going on
// a column of few values, and checks every value read back.
func TestColumnStoreRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 20_000
	cols := []string{"id", "score", "ok", "at", "unique_s", "few_s", "long_s", "sparse"}
	rows := make([][]any, n)
	want := make([][]any, n)
	long := strings.Repeat("x", longString+5)
	for i := range rows {
		at := time.Date(2000+i%30, time.Month(1+i%12), 1+i%28, i%24, i%60, i%60, i%7*1000, time.UTC)
		r := []any{int64(i - n/2), float64(i) / 4, i%3 == 0, at, fmt.Sprintf("user%d@example.com", rng.Int64()), "city" + fmt.Sprint(i%7), nil, nil}
		if i%5 == 0 {
			r[6] = long + fmt.Sprint(i)
		}
		if i%97 == 0 {
			r[7] = ""
		} else if i%89 == 0 {
			r[7] = "s"
		}
		if i%11 == 0 {
			r[1] = nil
		}
		rows[i] = r
		want[i] = append([]any(nil), r...)
	}
	e := NewEmbedded()
	defer e.Close()
	if err := e.AddTable("t", cols, rows); err != nil {
		t.Fatal(err)
	}
	_, got := collect(t, e, "SELECT * FROM t")
	if len(got) != n {
		t.Fatalf("got %d rows, want %d", len(got), n)
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("row %d:\n got %#v\nwant %#v", i, got[i], want[i])
		}
	}
	tbl := e.db.Tables()["t"].(*fixtureTable)
	if st := tbl.cols[4].store; !st.off || st.intern != nil {
		t.Errorf("unique column still interning (%d hits, %d misses)", st.hits, st.misses)
	}
	if st := tbl.cols[5].store; st.off || len(st.intern) != 7 {
		t.Errorf("few-valued column: off %v, %d interned, want 7", st.off, len(st.intern))
	}
	if st := tbl.cols[4].store; len(st.chunks) < 2 {
		t.Errorf("unique strings in %d chunk(s), want several", len(st.chunks))
	}
}

// TestInsertIntoLoadedTable checks that a .sql fixture can add rows to a
// CSV table, and that a scan begun before the insert reads the rows as
// they were.
func TestInsertIntoLoadedTable(t *testing.T) {
	dir := writeFixtures(t, map[string]string{
		"users.csv":  "id,name,at,active,score\n1,ann,2024-01-02,true,1.5\n",
		"z_more.sql": "INSERT INTO users VALUES (2, 'bob', '2024-01-03 04:05:06', false, NULL), (3, NULL, NULL, NULL, 2);",
	})
	e := NewEmbedded()
	defer e.Close()
	mustLoad(t, e, dir, nil)
	_, rows := collect(t, e, "SELECT * FROM users ORDER BY id")
	want := [][]any{
		{int64(1), "ann", time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC), true, 1.5},
		{int64(2), "bob", time.Date(2024, 1, 3, 4, 5, 6, 0, time.UTC), false, nil},
		{int64(3), nil, nil, nil, 2.0},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("rows:\n got %#v\nwant %#v", rows, want)
	}

	open, err := e.Query(context.Background(), "SELECT id FROM users")
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if !open.Next() { // the scan starts with its first row
		t.Fatal(open.Err())
	}
	more := writeFixtures(t, map[string]string{"more.sql": "INSERT INTO users (id, name) VALUES (4, 'cid');"})
	mustLoad(t, e, more, nil)
	n := 1
	for open.Next() {
		n++
	}
	if err := open.Err(); err != nil || n != 3 {
		t.Errorf("scan begun before the insert read %d rows (%v), want 3", n, err)
	}
	if _, rows := collect(t, e, "SELECT name FROM users WHERE id = 4"); len(rows) != 1 || rows[0][0] != "cid" {
		t.Errorf("inserted row: got %v", rows)
	}
	bad := writeFixtures(t, map[string]string{"bad.sql": "INSERT INTO users (id) VALUES (5), ('x');"})
	if diags := e.LoadDir(bad, nil); !diags.HasErrors() {
		t.Errorf("inserting a string into an int column was accepted")
	}
	if _, rows := collect(t, e, "SELECT id FROM users"); len(rows) != 4 {
		t.Errorf("a failed insert left %d rows, want 4", len(rows))
	}
}

// TestReplaceSQLTable checks that a CSV or AddTable replaces a table a
// .sql fixture created, whatever the case of its name.
func TestReplaceSQLTable(t *testing.T) {
	dir := writeFixtures(t, map[string]string{"a.sql": "CREATE TABLE Orders (id INT); INSERT INTO Orders VALUES (1);"})
	e := NewEmbedded()
	defer e.Close()
	mustLoad(t, e, dir, nil)
	if err := e.AddTable("orders", []string{"id", "total"}, [][]any{{7, 1.5}, {8, 2.5}}); err != nil {
		t.Fatal(err)
	}
	if _, rows := collect(t, e, "SELECT id, total FROM ORDERS ORDER BY id"); !reflect.DeepEqual(rows, [][]any{{int64(7), 1.5}, {int64(8), 2.5}}) {
		t.Errorf("replaced table: %v", rows)
	}
	if got := len(e.db.Tables()); got != 1 {
		t.Errorf("%d tables after replacing, want 1", got)
	}
}

func TestLoadFS(t *testing.T) {
	fsys := fstest.MapFS{
		"repo/data/users.csv":     {Data: []byte("id,name\n1,ann\n")},
		"repo/data/events.jsonl":  {Data: []byte(`{"id": 2}` + "\n")},
		"repo/data/s.sql":         {Data: []byte("CREATE TABLE s (a INT); INSERT INTO s VALUES (3);")},
		"repo/data/bad.csv":       {Data: []byte("a\n\"x\n")},
		"repo/data/pipe.csv":      {Mode: 0o644 | fs.ModeNamedPipe},
		"repo/data/notes.txt":     {Data: []byte("not a fixture")},
		"repo/data/sub/x.csv":     {Data: []byte("a\n1\n")},
		"repo/elsewhere/nope.csv": {Data: []byte("a\n1\n")},
	}
	e := NewEmbedded()
	defer e.Close()
	diags := e.LoadFS(fsys, "repo/data", "config/data", map[string]map[string]string{"users": {"name": "string"}})
	got := map[string]string{}
	for _, d := range diags {
		got[d.Subject.Filename] = d.Summary
	}
	want := map[string]string{
		filepath.Join("config/data", "bad.csv"):  "Invalid CSV Fixture",
		filepath.Join("config/data", "pipe.csv"): "Fixture Is Not A Regular File",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("diagnostics %v, want %v", got, want)
	}
	for query, want := range map[string]int64{"SELECT id FROM users": 1, "SELECT id FROM events": 2, "SELECT a FROM s": 3} {
		if _, rows := collect(t, e, query); len(rows) != 1 || rows[0][0] != want {
			t.Errorf("%s: %v", query, rows)
		}
	}
	if n := len(e.db.Tables()); n != 3 {
		t.Errorf("%d tables loaded, want users, events and s", n)
	}

	diags = e.LoadFS(fsys, "repo/missing", "config/missing", nil)
	if len(diags) != 1 || diags[0].Summary != "Cannot Read Fixtures" || !strings.Contains(diags[0].Detail, `"config/missing"`) ||
		strings.Contains(diags[0].Detail, "repo/") {
		t.Errorf("missing folder: %s", diags.Error())
	}
}
