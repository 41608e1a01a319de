package main

import (
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// usersModelHCL is an embedded source reading the fixtures in data/ and
// model m over its users table (id, email), keyed by id.
const usersModelHCL = `source "w" {
  type     = "embedded"
  fixtures = "data"
}
model "m" {
  source      = source.w
  query       = "SELECT id, email FROM users"
  primary_key = "id"
}
`

// An API answering 401 to everything: one request per sync and run,
// nothing in the failure index, exit 1 naming the sync and the cause, and
// the other sync of the config applied.
func TestUnauthorizedAPIStopsItsSyncAfterOneRequest(t *testing.T) {
	var requests atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"invalid token"}`))
	}))
	defer api.Close()

	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("id,email\n")
	for i := 1; i <= 1000; i++ {
		fmt.Fprintf(&csv, "%d,u%d@example.com\n", i, i)
	}
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	os.WriteFile(filepath.Join(dir, "data", "users.csv"), []byte(csv.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(fmt.Sprintf(usersModelHCL+`
destination "api" {
  type       = "http"
  url        = %q
  batch_size = 50
  retry {
    max_attempts    = 5
    initial_backoff = "1ms"
    max_backoff     = "2ms"
  }
}
destination "crm" {
  type     = "sqlite"
  path     = "crm.db"
  init_sql = "CREATE TABLE IF NOT EXISTS contacts (external_id INTEGER PRIMARY KEY, email TEXT)"
}
sync "to_api" {
  model       = model.m
  destination = destination.api
  object      = "contacts"
  key         = "external_id"
  mapping     = { email = "email" }
}
sync "to_crm" {
  model       = model.m
  destination = destination.crm
  object      = "contacts"
  key         = "external_id"
  mapping     = { email = "email" }
}
`, api.URL+"/records")), 0o644)

	for run := 1; run <= 2; run++ {
		requests.Store(0)
		code, out, errOut := backflow("-C", dir, "apply", "--auto-approve")
		if code != 1 {
			t.Fatalf("run %d: exit %d, want 1\n%s%s", run, code, out, errOut)
		}
		if n := requests.Load(); n != 1 {
			t.Fatalf("run %d: %d requests to the API, want exactly 1", run, n)
		}
		if !strings.Contains(errOut, `Error: sync "to_api" failed: the destination refused the sync`) || !strings.Contains(errOut, "401") {
			t.Fatalf("run %d: stderr must name the sync and the cause:\n%s", run, errOut)
		}
		if !strings.Contains(out, "Apply finished: 1 sync(s) applied, 1 failed.") || !strings.Contains(out, "1000 records not settled are planned again next run") {
			t.Fatalf("run %d: stdout\n%s", run, out)
		}
		code, out, _ = backflow("-C", dir, "state", "failures", "to_api", "--json")
		if code != 0 || strings.Contains(out, `"key"`) {
			t.Fatalf("run %d: failure index of to_api: exit %d\n%s", run, code, out)
		}
		code, out, _ = backflow("-C", dir, "runs", "to_api", "--json")
		if code != 0 || strings.Count(out, `"status": "failed"`) != run || !strings.Contains(out, "401") {
			t.Fatalf("run %d: runs: exit %d\n%s", run, code, out)
		}
	}
	// The records were never taken: the next plan sends them as adds.
	code, out, _ := backflow("-C", dir, "plan", "--sync", "to_api")
	if code != 0 || !strings.Contains(out, "Plan: 1000 to add, 0 to change, 0 to remove, 0 to retry.") {
		t.Fatalf("plan: exit %d\n%s", code, out)
	}

	db, err := sql.Open("sqlite", filepath.Join(dir, "crm.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM contacts").Scan(&n); err != nil || n != 1000 {
		t.Fatalf("the other sync wrote %d rows (%v), want 1000", n, err)
	}
}
