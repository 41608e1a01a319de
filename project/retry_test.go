package project

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/destination/scripted"
	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/state"
)

// workspace is a config folder in a temp dir with helpers to run
// plan/apply against it as the CLI does.
type workspace struct {
	t   *testing.T
	dir string
	reg *destination.Registry
}

func newWorkspace(t *testing.T, hcl string, files map[string]string) *workspace {
	t.Helper()
	dir := t.TempDir()
	files["main.hcl"] = hcl
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reg := destination.NewRegistry()
	destination.RegisterBuiltins(reg)
	return &workspace{t: t, dir: dir, reg: reg}
}

func (w *workspace) write(name, content string) {
	w.t.Helper()
	if err := os.WriteFile(filepath.Join(w.dir, name), []byte(content), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// open opens the workspace as a command would, with the state lock taken
// for operation lock when set; the caller closes it.
func (w *workspace) open(lock string) *Workspace {
	w.t.Helper()
	ws, err := OpenWorkspace(context.Background(), w.dir, Options{Destinations: w.reg, Lock: lock})
	if err != nil {
		w.t.Fatalf("open: %v", err)
	}
	return ws
}

func (w *workspace) plan(opts PlanOptions) *reconcile.Plan {
	w.t.Helper()
	ws := w.open("")
	defer ws.Close()
	plan, err := ws.Plan(context.Background(), opts)
	if err != nil {
		w.t.Fatal(err)
	}
	return plan
}

// apply plans and applies like `apply --auto-approve`.
func (w *workspace) apply(opts PlanOptions, ao ApplyOptions) (*reconcile.Plan, *reconcile.SyncResult) {
	w.t.Helper()
	ws := w.open("apply")
	defer ws.Close()
	plan, err := ws.Plan(context.Background(), opts)
	if err != nil {
		w.t.Fatal(err)
	}
	results, err := ws.Apply(context.Background(), plan, ao)
	if err != nil {
		w.t.Fatal(err)
	}
	if len(results) != 1 {
		w.t.Fatalf("%d results, want 1", len(results))
	}
	return plan, results[0]
}

func (w *workspace) runs() []state.Run {
	w.t.Helper()
	ws := w.open("")
	defer ws.Close()
	runs, err := ws.Runs("")
	if err != nil {
		w.t.Fatal(err)
	}
	return runs
}

func (w *workspace) failures() state.FailureIndex {
	w.t.Helper()
	ws := w.open("")
	defer ws.Close()
	f, err := ws.State.LoadFailures("s")
	if err != nil {
		w.t.Fatal(err)
	}
	return f
}

func (w *workspace) query(q string) []string {
	w.t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(w.dir, "crm.db"))
	if err != nil {
		w.t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(q)
	if err != nil {
		w.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s sql.NullString
		if err := rows.Scan(&s); err != nil {
			w.t.Fatal(err)
		}
		out = append(out, s.String)
	}
	return out
}

// usersCSV is n users; score(i) gives each one's score.
func usersCSV(n int, score func(i int) int) string {
	var b strings.Builder
	b.WriteString("id,email,score\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%d,u%d@example.com,%d\n", i, i, score(i))
	}
	return b.String()
}

const sourceAndModel = `
source "warehouse" {
  type     = "embedded"
  fixtures = "data"
}
model "users" {
  source      = source.warehouse
  query       = "SELECT id, email, score FROM users"
  primary_key = "id"
}
`

func sqliteConfig(batch int, split bool, deleteBehavior string) string {
	return sourceAndModel + fmt.Sprintf(`
destination "crm" {
  type          = "sqlite"
  path          = "crm.db"
  init_sql      = "CREATE TABLE IF NOT EXISTS contacts (external_id INTEGER PRIMARY KEY, email TEXT, score INTEGER CHECK (score >= 0))"
  batch_size    = %d
  split_retries = %v
  retry {
    max_attempts    = 3
    initial_backoff = "1ms"
    max_backoff     = "2ms"
  }
}
sync "s" {
  model           = model.users
  destination     = destination.crm
  object          = "contacts"
  key             = "external_id"
  delete_behavior = %q
  max_removals    = "100%%"
  mapping = {
    email = "email"
    score = "score"
  }
}
`, batch, split, deleteBehavior)
}

// scriptedConfig writes to the scripted test double.
func scriptedConfig(maxAttempts int) string {
	return apiConfig(`type = "scripted"`, maxAttempts)
}

// httpConfig writes to an http destination at url.
func httpConfig(url string, maxAttempts int) string {
	return apiConfig(fmt.Sprintf("type = \"http\"\n  url = %q", url), maxAttempts)
}

func apiConfig(typeAndArgs string, maxAttempts int) string {
	return sourceAndModel + fmt.Sprintf(`
destination "api" {
  %s
  batch_size = 100
  retry {
    max_attempts    = %d
    initial_backoff = "1ms"
    max_backoff     = "4ms"
  }
}
sync "s" {
  model           = model.users
  destination     = destination.api
  object          = "contacts"
  key             = "external_id"
  delete_behavior = "delete"
  mapping = {
    email = "email"
  }
}
`, typeAndArgs, maxAttempts)
}

// badScores are the 7 rows of 1,000 that violate the CHECK constraint.
var badScores = []int{3, 150, 151, 420, 555, 801, 999}

func same(i int) int { return i }

func score(i int) int {
	if slices.Contains(badScores, i) {
		return -1
	}
	return i
}

func TestDocumentedExampleLockedRecords(t *testing.T) {
	// 10,000 records, 5 locked at the start of the run; 2 unlock during the
	// run, 3 stay locked and are the only records the next run sends.
	dest := scripted.New(
		scripted.LockedFor("10", 2), scripted.LockedFor("5000", 1),
		scripted.LockedFor("77", 1<<30), scripted.LockedFor("4242", 1<<30), scripted.LockedFor("9999", 1<<30),
	)
	w := newWorkspace(t, scriptedConfig(4), map[string]string{"data/users.csv": usersCSV(10000, func(i int) int { return i })})
	w.reg.Register(dest.Driver())

	_, r1 := w.apply(PlanOptions{}, ApplyOptions{})
	if r1.Counts.Added != 10000 || r1.Counts.Accepted != 9997 || r1.Counts.Rejected != 3 || r1.Resent != 5 {
		t.Fatalf("run 1: %+v, resent %d; want 9997 accepted, 3 rejected, only the 5 locked re-sent", r1.Counts, r1.Resent)
	}
	if got := len(dest.Content()); got != 9997 {
		t.Fatalf("destination holds %d records, want 9997", got)
	}
	for _, k := range []string{"77", "4242", "9999"} {
		if f := w.failures()[k]; f == nil || f.Attempts != 4 || !strings.Contains(f.Error, "locked") {
			t.Fatalf("key %s: failure %+v, want 4 attempts with the lock error", k, f)
		}
	}

	for _, k := range []string{"77", "4242", "9999"} {
		dest.Heal(k)
	}
	before := dest.RequestCount()
	plan, r2 := w.apply(PlanOptions{}, ApplyOptions{})
	if sp := plan.Syncs[0]; sp.Retry != 3 || sp.Add+sp.Change+sp.Remove != 0 {
		t.Fatalf("run 2 plan: %d add %d change %d remove %d retry; want only the 3 retries", sp.Add, sp.Change, sp.Remove, sp.Retry)
	}
	if r2.Counts.Retried != 3 || r2.Counts.Accepted != 3 || r2.Counts.Rejected != 0 || dest.RequestCount()-before != 1 {
		t.Fatalf("run 2: %+v in %d requests; want the 3 accepted in one request", r2.Counts, dest.RequestCount()-before)
	}
	// No record accepted in run 1 was sent again.
	for i := 1; i <= 10000; i++ {
		k := fmt.Sprint(i)
		want := 1
		switch k {
		case "10":
			want = 3
		case "5000":
			want = 2
		case "77", "4242", "9999":
			want = 5
		}
		if got := dest.Sends(k); got != want {
			t.Fatalf("key %s sent %d times, want %d", k, got, want)
		}
	}
	runs := w.runs()
	if len(runs) != 2 || runs[0].Counts.Rejected != 3 || runs[1].Counts.Retried != 3 || runs[1].Requests != 1 || runs[1].Resent != 0 {
		t.Fatalf("run history %+v", runs)
	}
	if a, r := runs[0].ByAction["add"], runs[1].ByAction["retry"]; a.Accepted != 9997 || a.Rejected != 3 || r.Accepted != 3 || r.Rejected != 0 || len(runs[1].ByAction) != 1 {
		t.Fatalf("outcomes by action: run 1 %+v, run 2 %+v", runs[0].ByAction, runs[1].ByAction)
	}
	if len(w.failures()) != 0 {
		t.Fatal("failure index not empty after the records were accepted")
	}
}

func TestSplitRetriesOnSQLiteIsolateConstraintViolations(t *testing.T) {
	requests := map[bool]int{}
	for _, halving := range []bool{false, true} {
		w := newWorkspace(t, sqliteConfig(100, true, "delete"), map[string]string{"data/users.csv": usersCSV(1000, score)})
		_, r := w.apply(PlanOptions{}, ApplyOptions{Halving: halving})
		if r.Counts.Accepted != 993 || r.Counts.Rejected != 7 {
			t.Fatalf("halving=%v: %+v, want 993 accepted and 7 rejected", halving, r.Counts)
		}
		failures := w.failures()
		for _, i := range badScores {
			f := failures[fmt.Sprint(i)]
			if f == nil || !strings.Contains(f.Error, "CHECK constraint failed: score >= 0") {
				t.Fatalf("key %d: failure %+v, want the constraint's message", i, f)
			}
		}
		if got := w.query("SELECT count(*) FROM contacts"); got[0] != "993" {
			t.Fatalf("destination holds %s rows, want 993", got[0])
		}
		requests[halving] = r.Requests
	}
	t.Logf("statements sent: adaptive split %d, plain halving %d", requests[false], requests[true])
	if requests[false] >= requests[true] {
		t.Fatalf("adaptive split sent %d statements, plain halving %d: want fewer", requests[false], requests[true])
	}
}

func TestWithoutSplitRetriesPoisonedBatchesAreRejectedWholeAndRetriedWhole(t *testing.T) {
	w := newWorkspace(t, sqliteConfig(100, false, "delete"), map[string]string{"data/users.csv": usersCSV(1000, score)})
	_, r := w.apply(PlanOptions{}, ApplyOptions{})
	// Batches hold keys in natural order: 1–100, 101–200, …
	poisoned := map[int]bool{}
	for _, i := range badScores {
		poisoned[(i-1)/100] = true
	}
	want := len(poisoned) * 100
	if r.Counts.Rejected != want || r.Requests != 10 {
		t.Fatalf("%+v in %d requests; want the %d records of the %d poisoned batches rejected whole, no splitting", r.Counts, r.Requests, want, len(poisoned))
	}
	plan := w.plan(PlanOptions{})
	if sp := plan.Syncs[0]; sp.Retry != want {
		t.Fatalf("next plan retries %d, want all %d records of the poisoned batches", sp.Retry, want)
	}
	first := w.failures()["3"]
	_, r = w.apply(PlanOptions{}, ApplyOptions{})
	if r.Counts.Retried != want || r.Counts.Rejected != want {
		t.Fatalf("run 2: %+v, want the %d records retried and rejected again", r.Counts, want)
	}
	again := w.failures()["3"]
	if again.Attempts != first.Attempts+1 || !again.FirstFailed.Equal(first.FirstFailed) || !again.LastFailed.After(first.LastFailed) {
		t.Fatalf("failure after run 2 %+v, after run 1 %+v: attempts must accumulate, first failure stay", again, first)
	}
}

func TestRemovalsUnderEachDeleteBehaviour(t *testing.T) {
	for _, del := range []string{"delete", "clear", "nothing"} {
		t.Run(del, func(t *testing.T) {
			w := newWorkspace(t, sqliteConfig(10, true, del), map[string]string{"data/users.csv": usersCSV(5, same)})
			w.apply(PlanOptions{}, ApplyOptions{})
			w.write("data/users.csv", usersCSV(3, same)) // 4 and 5 leave the model
			plan, r := w.apply(PlanOptions{}, ApplyOptions{})
			if plan.Syncs[0].Remove != 2 || r.Counts.Removed != 2 {
				t.Fatalf("plan removes %d, run %+v; want 2", plan.Syncs[0].Remove, r.Counts)
			}
			got := strings.Join(w.query("SELECT external_id || ':' || coalesce(email, 'null') FROM contacts ORDER BY external_id"), " ")
			want := map[string]string{
				"delete":  "1:u1@example.com 2:u2@example.com 3:u3@example.com",
				"clear":   "1:u1@example.com 2:u2@example.com 3:u3@example.com 4:null 5:null",
				"nothing": "1:u1@example.com 2:u2@example.com 3:u3@example.com 4:u4@example.com 5:u5@example.com",
			}[del]
			if got != want {
				t.Fatalf("destination %q, want %q", got, want)
			}
			if p := w.plan(PlanOptions{}); p.HasChanges() {
				t.Fatalf("removals planned again after they were done: %+v", p.Syncs[0])
			}
		})
	}
}

func TestRefusedDeleteIsRetriedNextRun(t *testing.T) {
	w := newWorkspace(t, sqliteConfig(10, true, "delete"), map[string]string{"data/users.csv": usersCSV(5, same)})
	w.apply(PlanOptions{}, ApplyOptions{})
	db, err := sql.Open("sqlite", filepath.Join(w.dir, "crm.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TRIGGER protect BEFORE DELETE ON contacts WHEN old.external_id = 4 BEGIN SELECT RAISE(ABORT, 'record 4 is protected'); END`); err != nil {
		t.Fatal(err)
	}
	w.write("data/users.csv", usersCSV(3, same))
	_, r := w.apply(PlanOptions{}, ApplyOptions{})
	if r.Counts.Accepted != 1 || r.Counts.Rejected != 1 {
		t.Fatalf("%+v, want the delete of 5 accepted and of 4 refused", r.Counts)
	}
	f := w.failures()["4"]
	if f == nil || f.Operation != "delete" || !strings.Contains(f.Error, "record 4 is protected") {
		t.Fatalf("failure %+v, want a failed delete with the trigger's message", f)
	}
	if _, err := db.Exec(`DROP TRIGGER protect`); err != nil {
		t.Fatal(err)
	}
	plan, r := w.apply(PlanOptions{}, ApplyOptions{})
	if c := plan.Syncs[0].Changes; len(c) != 1 || c[0].Action != reconcile.ActionRetry || c[0].Op != destination.OpDelete {
		t.Fatalf("plan %+v, want the delete of 4 retried", c)
	}
	if r.Counts.Accepted != 1 || len(w.query("SELECT 1 FROM contacts WHERE external_id = 4")) != 0 || len(w.failures()) != 0 {
		t.Fatalf("retry of the delete: %+v", r.Counts)
	}
}

func TestSkipRemovalsForgetsWithoutTouchingTheDestination(t *testing.T) {
	w := newWorkspace(t, sqliteConfig(10, true, "delete"), map[string]string{"data/users.csv": usersCSV(5, same)})
	w.apply(PlanOptions{}, ApplyOptions{})
	w.write("data/users.csv", usersCSV(3, same))
	plan, r := w.apply(PlanOptions{SkipRemovals: true}, ApplyOptions{})
	if !plan.Syncs[0].SkipRemovals || plan.Syncs[0].Remove != 2 || plan.Syncs[0].Changes[0].Op != reconcile.OpForget || r.Requests != 0 {
		t.Fatalf("plan %+v, %d requests; want 2 removals forgotten, nothing sent", plan.Syncs[0], r.Requests)
	}
	if got := w.query("SELECT count(*) FROM contacts"); got[0] != "5" {
		t.Fatalf("destination holds %s rows, want all 5 untouched", got[0])
	}
	if p := w.plan(PlanOptions{}); p.HasChanges() {
		t.Fatal("forgotten removals planned again")
	}
}

func TestResetCDCTakesTheModelAsSyncedAndSendsNothing(t *testing.T) {
	w := newWorkspace(t, sqliteConfig(10, true, "delete"), map[string]string{"data/users.csv": usersCSV(5, same)})
	w.apply(PlanOptions{}, ApplyOptions{})
	w.write("data/users.csv", usersCSV(8, func(i int) int {
		if i == 6 {
			return -1
		}
		return i * 2
	}))
	w.apply(PlanOptions{}, ApplyOptions{}) // key 6 fails
	if len(w.failures()) != 1 {
		t.Fatal("want one failure before the reset")
	}
	w.write("data/users.csv", usersCSV(4, func(i int) int { return 100 + i }))
	ws := w.open("reset-cdc")
	preview, err := ws.PreviewResetCDC(context.Background(), "s")
	if err != nil {
		t.Fatal(err)
	}
	if preview.Records != 4 || preview.Failures != 1 || !preview.Plan.HasChanges() {
		t.Fatalf("preview %+v", preview)
	}
	n, err := ws.ResetCDC(context.Background(), preview)
	ws.Close()
	if err != nil || n != 4 {
		t.Fatalf("reset: %d, %v", n, err)
	}
	if plan := w.plan(PlanOptions{}); plan.HasChanges() {
		t.Fatalf("plan after reset-cdc has changes: %+v", plan.Syncs[0])
	}
	if len(w.failures()) != 0 {
		t.Fatal("failure index not emptied")
	}
	if got := w.query("SELECT score FROM contacts WHERE external_id = 1"); got[0] != "2" {
		t.Fatalf("destination changed by reset-cdc: score %s", got[0])
	}
}

func TestFaultInjectionRecoversWithNothingLost(t *testing.T) {
	// Every request fails for a while, then the destination recovers.
	dest := scripted.New(scripted.FailFirst(6, 0))
	w := newWorkspace(t, scriptedConfig(10), map[string]string{"data/users.csv": usersCSV(450, score)})
	w.reg.Register(dest.Driver())
	_, r := w.apply(PlanOptions{}, ApplyOptions{})
	if r.Counts.Accepted != 450 || r.Counts.Rejected != 0 || len(dest.Content()) != 450 {
		t.Fatalf("%+v, destination %d; want all 450 accepted", r.Counts, len(dest.Content()))
	}
	if r.Requests != 5+6 {
		t.Fatalf("%d requests, want 5 batches + 6 failed attempts", r.Requests)
	}

	// An outage longer than the retry policy: rejected now, all sent next run.
	dest2 := scripted.New(scripted.FailFirst(100, 0))
	w2 := newWorkspace(t, scriptedConfig(2), map[string]string{"data/users.csv": usersCSV(250, score)})
	w2.reg.Register(dest2.Driver())
	_, r = w2.apply(PlanOptions{}, ApplyOptions{})
	if r.Counts.Rejected != 250 {
		t.Fatalf("%+v, want all 250 rejected during the outage", r.Counts)
	}
	dest3 := scripted.New()
	w2.reg.Register(dest3.Driver())
	plan, r := w2.apply(PlanOptions{}, ApplyOptions{})
	if plan.Syncs[0].Retry != 250 || r.Counts.Accepted != 250 || len(dest3.Content()) != 250 || len(w2.failures()) != 0 {
		t.Fatalf("after recovery: plan retries %d, %+v", plan.Syncs[0].Retry, r.Counts)
	}
}

func TestHTTPDestinationEndToEnd(t *testing.T) {
	var mu sync.Mutex
	requests := 0
	got := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		requests++
		if requests == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		var body struct {
			Records []struct {
				Key    string         `json:"key"`
				Fields map[string]any `json:"fields"`
			} `json:"records"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		var results []map[string]any
		for _, rec := range body.Records {
			if rec.Key == "3" {
				results = append(results, map[string]any{"key": rec.Key, "ok": false, "error": "email domain is blocked"})
				continue
			}
			got[rec.Key] = fmt.Sprint(rec.Fields["email"])
			results = append(results, map[string]any{"key": rec.Key, "ok": true})
		}
		json.NewEncoder(w).Encode(map[string]any{"results": results})
	}))
	defer srv.Close()
	cfg := httpConfig(srv.URL+"/records", 3)
	w := newWorkspace(t, cfg, map[string]string{"data/users.csv": usersCSV(5, same)})
	_, r := w.apply(PlanOptions{}, ApplyOptions{})
	if r.Counts.Accepted != 4 || r.Counts.Rejected != 1 || r.Requests != 2 {
		t.Fatalf("%+v in %d requests; want 4 accepted, 1 rejected after one 429", r.Counts, r.Requests)
	}
	if f := w.failures()["3"]; f == nil || f.Error != "email domain is blocked" {
		t.Fatalf("failure %+v, want the API's own message", f)
	}
	if got["1"] != "u1@example.com" || len(got) != 4 {
		t.Fatalf("API received %v", got)
	}
}

// fiveBad gives 5 of 40 users a score the CRM's CHECK rejects.
func fiveBad(i int) int {
	if i%8 == 0 {
		return -1
	}
	return i
}

// TestRowLogsKeepRejectedAndASampleOfAccepted applies 40 records, 5 of
// them rejected, with log_accepted = 10: the run's log holds the 5
// rejected and 10 accepted; "none" keeps only the rejected.
func TestRowLogsKeepRejectedAndASampleOfAccepted(t *testing.T) {
	for _, tc := range []struct {
		setting  string
		accepted int
	}{{`"10"`, 10}, {`"none"`, 0}, {`"all"`, 35}} {
		cfg := strings.Replace(sqliteConfig(100, true, "nothing"), "  mapping = {", "  log_accepted = "+tc.setting+"\n  mapping = {", 1)
		w := newWorkspace(t, cfg, map[string]string{"data/users.csv": usersCSV(40, fiveBad)})
		_, r := w.apply(PlanOptions{}, ApplyOptions{})
		if r.Counts.Rejected != 5 {
			t.Fatalf("%+v, want 5 rejected", r.Counts)
		}
		ws := w.open("")
		logs, err := ws.Logs("s", LogFilter{})
		ws.Close()
		if err != nil {
			t.Fatal(err)
		}
		acc, rej := 0, 0
		for _, l := range logs {
			if l.Status == state.RowAccepted {
				acc++
			} else {
				rej++
			}
		}
		if acc != tc.accepted || rej != 5 {
			t.Errorf("log_accepted = %s: the log holds %d accepted and %d rejected, want %d and 5", tc.setting, acc, rej, tc.accepted)
		}
	}
}

// An HTTP destination with several requests in flight and batches prepared
// (bodies encoded) beside the apply loop: every record arrives once with
// its values, first as adds, then as changes. Under -race (CI), this runs
// the preparer, the senders and the loop on the real destination.
func TestHTTPSeveralInFlightEndToEnd(t *testing.T) {
	var mu sync.Mutex
	got := map[string]string{}
	sends := map[string]int{}
	// The first request of each apply is answered only once a second one
	// has arrived: the apply must have two out at once (10 s guard).
	var arrived atomic.Int32
	var gate atomic.Pointer[chan struct{}] // closed by the second request
	newGate := func() {
		ch := make(chan struct{})
		arrived.Store(0)
		gate.Store(&ch)
	}
	newGate()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		second := *gate.Load()
		switch arrived.Add(1) {
		case 1:
			select {
			case <-second:
			case <-time.After(10 * time.Second):
				http.Error(w, "no second request came while the first was out", http.StatusBadRequest)
				return
			}
		case 2:
			close(second)
		}
		var body struct {
			Records []struct {
				Key    string         `json:"key"`
				Fields map[string]any `json:"fields"`
			} `json:"records"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		var results []map[string]any
		for _, rec := range body.Records {
			got[rec.Key] = fmt.Sprint(rec.Fields["email"])
			sends[rec.Key]++
			results = append(results, map[string]any{"key": rec.Key, "ok": true})
		}
		json.NewEncoder(w).Encode(map[string]any{"results": results})
	}))
	defer srv.Close()
	cfg := strings.Replace(httpConfig(srv.URL+"/records", 3), "batch_size = 100", "batch_size = 10\n  max_in_flight = 8", 1)
	w := newWorkspace(t, cfg, map[string]string{"data/users.csv": usersCSV(500, same)})
	for round, want := range []string{"u%d@example.com", "u%d-v@example.com"} {
		if round == 1 { // every row changed
			w.write("data/users.csv", strings.ReplaceAll(usersCSV(500, same), "@example.com", "-v@example.com"))
			newGate()
		}
		_, r := w.apply(PlanOptions{}, ApplyOptions{})
		if r.Counts.Accepted != 500 || r.Counts.Rejected != 0 || r.Requests != 50 || r.Resent != 0 {
			t.Fatalf("round %d: %+v in %d requests; want 500 accepted in 50", round, r.Counts, r.Requests)
		}
		mu.Lock()
		for i := 1; i <= 500; i++ {
			k := fmt.Sprint(i)
			if got[k] != fmt.Sprintf(want, i) || sends[k] != round+1 {
				mu.Unlock()
				t.Fatalf("round %d: key %s received %q, sent %d times", round, k, got[k], sends[k])
			}
		}
		mu.Unlock()
	}
}

// A PostgreSQL destination with up to 4 requests in flight, its batches
// converted (and their bulk parameters made) by the apply's preparer: every row
// lands with its values, as adds then as changes. Under -race (CI) this
// runs the preparer, the senders and the loop on the real driver (the
// overlap itself is shown by TestHTTPSeveralInFlightEndToEnd).
func TestPostgresSeveralInFlightEndToEnd(t *testing.T) {
	conn := testdb.Postgres(t)
	tbl := testdb.PostgresTable(t, conn, "external_id bigint PRIMARY KEY, email text, score integer")
	cfg := sourceAndModel + fmt.Sprintf(`
destination "crm" {
  type          = "postgres"
  dsn           = %q
  batch_size    = 500
  max_in_flight = 4
}
sync "s" {
  model       = model.users
  destination = destination.crm
  object      = %q
  key         = "external_id"
  mapping     = { email = "email", score = "score" }
}
`, testdb.PostgresDSN, tbl)
	w := newWorkspace(t, cfg, map[string]string{"data/users.csv": usersCSV(5000, same)})
	for round, suffix := range []string{"", "-v"} {
		if round == 1 { // every row changed
			w.write("data/users.csv", strings.ReplaceAll(usersCSV(5000, same), "@example.com", suffix+"@example.com"))
		}
		_, r := w.apply(PlanOptions{}, ApplyOptions{})
		if r.Counts.Accepted != 5000 || r.Counts.Rejected != 0 || r.Requests != 10 {
			t.Fatalf("round %d: %+v in %d requests; want 5000 accepted in 10", round, r.Counts, r.Requests)
		}
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+tbl+" WHERE email = 'u' || external_id || $1 || '@example.com' AND score = external_id", suffix).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 5000 {
			t.Fatalf("round %d: %d rows hold their values, want 5000", round, n)
		}
	}
}
