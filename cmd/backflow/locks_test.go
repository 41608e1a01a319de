package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/project"
)

// lockedRowsServer is one database for the documented locked-rows example.
type lockedRowsServer struct {
	name   string
	dest   string // the destination block's type and dsn lines
	create func(t *testing.T) string
	// lock holds keys with SELECT … FOR UPDATE in a transaction of its own
	// until the returned release is called.
	lock func(t *testing.T, table string, keys ...int) (release func())
}

// TestDocumentedLockedRowsExample is the seed's example for real, on
// PostgreSQL and MariaDB: 10,000 changed records, 5 target rows locked by
// another connection when the run starts; 2 released during the run are
// accepted in that run after backoff, 3 held are rejected with a lock
// error, every other row is accepted at once, and the next run (locks
// gone) sends exactly those 3. Counts come from `runs --json`.
func TestDocumentedLockedRowsExample(t *testing.T) {
	servers := []lockedRowsServer{
		{
			name: "postgres",
			dest: `type = "postgres"
  dsn  = "` + testdb.PostgresDSN + `"`,
			create: func(t *testing.T) string {
				return testdb.PostgresTable(t, testdb.Postgres(t), "external_id bigint PRIMARY KEY, email text")
			},
			lock: func(t *testing.T, table string, keys ...int) func() {
				conn := testdb.Postgres(t)
				tx, err := conn.Begin(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				rows, err := tx.Query(context.Background(), "SELECT external_id FROM "+table+" WHERE external_id = ANY($1) FOR UPDATE", keys)
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for rows.Next() {
					n++
				}
				if rows.Close(); n != len(keys) {
					t.Fatalf("locked %d rows, want %d", n, len(keys))
				}
				var once sync.Once
				return func() { once.Do(func() { tx.Rollback(context.Background()) }) }
			},
		},
		{
			name: "mariadb",
			dest: `type = "mysql"
  dsn  = "` + testdb.MariaDBDSN + `"`,
			create: func(t *testing.T) string {
				return testdb.MariaDBTable(t, testdb.MariaDB(t), "external_id BIGINT PRIMARY KEY, email TEXT")
			},
			lock: func(t *testing.T, table string, keys ...int) func() {
				db := testdb.MariaDB(t)
				conn, err := db.Conn(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				tx, err := conn.BeginTx(context.Background(), &sql.TxOptions{})
				if err != nil {
					t.Fatal(err)
				}
				in := strings.Trim(strings.Join(strings.Fields(fmt.Sprint(keys)), ","), "[]")
				rows, err := tx.Query("SELECT external_id FROM " + table + " WHERE external_id IN (" + in + ") FOR UPDATE")
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for rows.Next() {
					n++
				}
				if rows.Close(); n != len(keys) {
					t.Fatalf("locked %d rows, want %d", n, len(keys))
				}
				var once sync.Once
				return func() { once.Do(func() { tx.Rollback(); conn.Close() }) }
			},
		},
	}
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) { lockedRowsExample(t, srv) })
	}
}

func lockedRowsExample(t *testing.T, srv lockedRowsServer) {
	table := srv.create(t)
	dir := t.TempDir()
	writeUsers := func(domain string) {
		var b strings.Builder
		b.WriteString("id,email\n")
		for i := 1; i <= 10000; i++ {
			fmt.Fprintf(&b, "%d,u%d@%s\n", i, i, domain)
		}
		if err := os.WriteFile(filepath.Join(dir, "data/users.csv"), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	writeUsers("old.example.com")
	cfg := `source "w" {
  type     = "embedded"
  fixtures = "data"
}
model "users" {
  source      = source.w
  query       = "SELECT id, email FROM users"
  primary_key = "id"
}
destination "crm" {
  ` + srv.dest + `
  batch_size = 100
  retry {
    max_attempts    = 4
    initial_backoff = "20ms"
    max_backoff     = "100ms"
  }
}
sync "users" {
  model       = model.users
  destination = destination.crm
  object      = "` + table + `"
  key         = "external_id"
  mapping     = { email = "email" }
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := backflow("-C", dir, "apply", "--auto-approve"); code != 0 || !strings.Contains(out, "10000 accepted") {
		t.Fatalf("first sync: exit %d\n%s%s", code, out, errOut)
	}

	// Every record changes; another connection locks the target rows of
	// keys 1–5 (all in the first batch) when the run starts.
	writeUsers("new.example.com")
	releaseTwo := srv.lock(t, table, 1, 2)
	releaseThree := srv.lock(t, table, 3, 4, 5)
	defer releaseTwo()
	defer releaseThree()
	w, err := project.OpenWorkspace(context.Background(), dir, project.Options{Lock: "apply"})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := w.Plan(context.Background(), project.PlanOptions{})
	if err != nil {
		w.Close()
		t.Fatal(err)
	}
	// Keys 1 and 2 are released once the first request has answered,
	// before any retry: they must land in this run after backoff.
	results, err := w.Apply(context.Background(), plan, project.ApplyOptions{Progress: func(string, int, int) { releaseTwo() }})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if r := results[0]; r.Counts.Accepted != 9997 || r.Counts.Rejected != 3 {
		t.Fatalf("run 2: %+v", r.Counts)
	}
	failures := failedKeys(t, dir)
	if strings.Join(failures, ",") != "3,4,5" {
		t.Fatalf("failure index %v, want the three rows still locked", failures)
	}

	// Locks gone: the next run sends exactly the 3.
	releaseThree()
	if code, out, errOut := backflow("-C", dir, "apply", "--auto-approve"); code != 0 || !strings.Contains(out, "3 accepted, 0 rejected (1 requests") {
		t.Fatalf("run 3: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ := backflow("-C", dir, "runs", "--json")
	if code != 0 {
		t.Fatalf("runs: exit %d", code)
	}
	var runs []struct {
		Run    int `json:"run"`
		Counts struct {
			Changed, Retried, Accepted, Rejected int
		} `json:"counts"`
		Requests int `json:"requests"`
		Resent   int `json:"resent"`
	}
	if err := json.Unmarshal([]byte(out), &runs); err != nil || len(runs) != 3 {
		t.Fatalf("runs --json: %v\n%s", err, out)
	}
	if c := runs[1].Counts; c.Changed != 10000 || c.Accepted != 9997 || c.Rejected != 3 || runs[1].Resent != 5 {
		t.Errorf("run 2 in runs --json: %+v, resent %d; want 9997 accepted, 3 rejected, the 5 locked re-sent", c, runs[1].Resent)
	}
	if c := runs[2].Counts; c.Retried != 3 || c.Accepted != 3 || c.Rejected != 0 || runs[2].Requests != 1 {
		t.Errorf("run 3 in runs --json: %+v, %d requests; want exactly the 3 retried in one request", c, runs[2].Requests)
	}
	if n := len(failedKeys(t, dir)); n != 0 {
		t.Errorf("%d failures left", n)
	}
}

func failedKeys(t *testing.T, dir string) []string {
	t.Helper()
	code, out, errOut := backflow("-C", dir, "state", "failures", "users", "--json")
	if code != 0 {
		t.Fatalf("state failures: exit %d\n%s", code, errOut)
	}
	var fs []struct {
		Key   string `json:"key"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &fs); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, f := range fs {
		if !strings.Contains(f.Error, "lock") {
			t.Errorf("key %s failed with %q, want a lock error", f.Key, f.Error)
		}
		keys = append(keys, f.Key)
	}
	return keys
}
