package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/schema"
)

// `plan --json` and `show --json` print every change of a spilled plan,
// streamed from its file, and the same document as a plan held in memory
// (changes listed by action, in model order, rather than by key).
func TestPlanJSONOfASpilledPlan(t *testing.T) {
	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("id,email,name\n")
	for i := 1; i <= 60; i++ {
		fmt.Fprintf(&csv, "%d,u%d@x,\"Name \"\"%d\"\" <b>\"\n", i, i, i)
	}
	writeFiles(t, dir, map[string]string{
		"data/users.csv": csv.String(),
		"main.hcl": `source "w" {
  type     = "embedded"
  fixtures = "data"
}
model "users" {
  source      = source.w
  query       = "SELECT id, email, name FROM users"
  primary_key = "id"
}
destination "out" {
  type = "file"
  path = "out.jsonl"
}
sync "users" {
  model       = model.users
  destination = destination.out
  object      = "contacts"
  key         = "id"
  mapping     = { email = "email", full_name = "name" }
}
sync "few" {
  model       = model.users
  destination = destination.out
  object      = "few"
  key         = "id"
  mapping     = { email = "email" }
  mode        = "update"
}
`,
	})
	type doc struct {
		Syncs []struct {
			Name    string             `json:"name"`
			Add     int                `json:"add"`
			Changes []reconcile.Change `json:"changes"`
		} `json:"syncs"`
	}
	planJSON := func(spillAfter int, args ...string) (doc, string) {
		t.Helper()
		old := reconcile.SpillAfter
		reconcile.SpillAfter = spillAfter
		defer func() { reconcile.SpillAfter = old }()
		code, out, errOut := backflow(append([]string{"-C", dir}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, errOut)
		}
		var d doc
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("%v: not JSON: %v\n%s", args, err, out)
		}
		for _, s := range d.Syncs {
			sort.Slice(s.Changes, func(i, j int) bool { return s.Changes[i].Key < s.Changes[j].Key })
		}
		return d, out
	}
	whole, wholeOut := planJSON(1000, "plan", "--json")
	spilled, spilledOut := planJSON(5, "plan", "--json")
	if len(spilled.Syncs) != 2 || len(spilled.Syncs[0].Changes) != 60 || spilled.Syncs[0].Add != 60 {
		t.Fatalf("spilled plan --json: %d syncs, %d changes of the first", len(spilled.Syncs), len(spilled.Syncs[0].Changes))
	}
	if !reflect.DeepEqual(whole.Syncs, spilled.Syncs) {
		t.Fatalf("spilled and whole plans print different changes")
	}
	// The rest of the document matches too, key for key.
	var a, b map[string]any
	json.Unmarshal([]byte(wholeOut), &a)
	json.Unmarshal([]byte(spilledOut), &b)
	for _, m := range []map[string]any{a, b} {
		delete(m, "created")
		for _, s := range m["syncs"].([]any) {
			delete(s.(map[string]any), "changes")
		}
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("the documents differ beyond the changes:\n%v\n%v", a, b)
	}
	if !strings.Contains(spilledOut, `"Name \"7\" <b>"`) {
		t.Fatalf("values are not printed as plan --json prints them (quotes escaped, no HTML escapes)")
	}

	planFile := filepath.Join(dir, "p.plan")
	old := reconcile.SpillAfter
	reconcile.SpillAfter = 5
	code, _, errOut := backflow("-C", dir, "plan", "--out", planFile)
	reconcile.SpillAfter = old
	if code != 0 {
		t.Fatalf("plan --out: exit %d\n%s", code, errOut)
	}
	shown, _ := planJSON(5, "show", "--json", planFile)
	if !reflect.DeepEqual(shown.Syncs, spilled.Syncs) {
		t.Fatalf("show --json of the saved spilled plan differs from plan --json")
	}
}

// TestPlanJSONOfNonFiniteFloats: JSON has no NaN or infinities, so plan
// --json and show --json write them as the strings "NaN", "Infinity" and
// "-Infinity", in a plan held in memory or spilled, instead of failing.
func TestPlanJSONOfNonFiniteFloats(t *testing.T) {
	testdb.Postgres(t) // skips when the server is unreachable
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"main.hcl": `source "pg" {
  type = "postgres"
  dsn  = "` + testdb.PostgresDSN + `"
}
model "m" {
  source      = source.pg
  query       = "SELECT id, v FROM (VALUES (1, 'NaN'::float8), (2, 'Infinity'::float8), (3, '-Infinity'::float8), (4, 1.5::float8)) t(id, v)"
  primary_key = "id"
}
destination "out" {
  type = "file"
  path = "out.jsonl"
}
sync "s" {
  model       = model.m
  destination = destination.out
  object      = "x"
  key         = "id"
  mapping     = { v = "v" }
}
`})
	want := map[string]any{"1": "NaN", "2": "Infinity", "3": "-Infinity", "4": 1.5}
	check := func(spillAfter int, args ...string) {
		t.Helper()
		old := reconcile.SpillAfter
		reconcile.SpillAfter = spillAfter
		defer func() { reconcile.SpillAfter = old }()
		code, out, errOut := backflow(append([]string{"-C", dir}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, errOut)
		}
		var d struct {
			Syncs []struct {
				Changes []struct {
					Key   string         `json:"key"`
					After map[string]any `json:"after"`
				} `json:"changes"`
			} `json:"syncs"`
		}
		if err := json.Unmarshal([]byte(out), &d); err != nil || len(d.Syncs) != 1 {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		got := map[string]any{}
		for _, c := range d.Syncs[0].Changes {
			got[c.Key] = c.After["v"]
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%v (spilled after %d): values %v, want %v", args, spillAfter, got, want)
		}
	}
	check(1000, "plan", "--json")
	check(2, "plan", "--json")
	planFile := filepath.Join(dir, "p.plan")
	if code, _, errOut := backflow("-C", dir, "plan", "--out", planFile); code != 0 {
		t.Fatalf("plan --out: exit %d\n%s", code, errOut)
	}
	check(2, "show", "--json", planFile)
}

// goldenPlan is a plan whose JSON form is pinned by
// testdata/plan.json.golden: every kind of change and value, NaN and
// infinite floats among them (in a kept entry's Before too), a sync with no
// changes (listed as [], never null), and a retry's error and attempts.
func goldenPlan() *reconcile.Plan {
	nan, inf := math.NaN(), math.Inf(1)
	sp := &reconcile.SyncPlan{
		Name: "users", Model: "users", Destination: "crm", Object: "contacts", KeyField: "id",
		Fields: []string{"email", "score", "seen"}, FieldTypes: map[string]schema.Type{"email": schema.TypeString, "id": schema.TypeFloat, "score": schema.TypeFloat, "seen": schema.TypeTimestamp},
		Mode: "upsert", DeleteBehavior: "delete", Excluded: map[string]int{"null primary key": 1},
		Add: 2, Change: 1, Remove: 1, Retry: 1, Rows: 5, Unchanged: 1,
		Changes: []reconcile.Change{
			{Action: reconcile.ActionAdd, Key: "1", Op: destination.OpUpsert, KeyValue: 1.0, After: map[string]any{"email": `"a" <b>&`, "id": 1.0, "score": nan}, Hash: 7},
			{Action: reconcile.ActionAdd, Key: "NaN", Op: destination.OpUpsert, KeyValue: nan, After: map[string]any{"email": nil, "id": nan, "score": -inf}, Hash: 1 << 63},
			{Action: reconcile.ActionChange, Key: "2", Op: destination.OpUpsert, KeyValue: 2.0, Before: map[string]any{"email": "b@x", "score": inf}, After: map[string]any{"email": "b@y", "id": 2.0, "score": 2.5, "seen": time.Date(2026, 5, 6, 7, 8, 9, 123000, time.UTC)}, Hash: 9},
			{Action: reconcile.ActionRemove, Key: "3", Op: destination.OpDelete, KeyValue: 3.0, Before: map[string]any{"email": "c@x", "score": 0.0}},
			{Action: reconcile.ActionRetry, Key: "4", Op: destination.OpUpsert, KeyValue: 4.0, After: map[string]any{"email": "d@x", "id": 4.0, "score": 1e300}, Hash: 11, LastError: "rejected: \"score\" <too big>", Attempts: 3},
		},
		DropFailures: []string{"5"},
		KeepSynced:   []reconcile.Change{{Key: "6", Hash: 13, Before: map[string]any{"email": "f@x", "score": nan}, LastError: "duplicate", Attempts: 2}},
		Notes:        []string{"a note"},
	}
	empty := &reconcile.SyncPlan{Name: "none", Model: "users", Destination: "crm", Object: "other", KeyField: "id",
		Fields: []string{"email"}, Mode: "update", DeleteBehavior: "nothing", Rows: 5, Unchanged: 5}
	return &reconcile.Plan{FormatVersion: reconcile.FormatVersion, Lineage: "lin", Serial: 3, ConfigHash: "cfg",
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Syncs: []*reconcile.SyncPlan{sp, empty}}
}

// TestPlanJSONGolden pins plan --json's document byte for byte
// (testdata/plan.json.golden; go test -run PlanJSONGolden -update to
// accept a change), and that a plan spilled to its file prints as the same
// plan held in memory.
func TestPlanJSONGolden(t *testing.T) {
	const golden = "testdata/plan.json.golden"
	wrap := func(p *reconcile.Plan) any { return p }
	var got bytes.Buffer
	if err := printPlanJSON(&got, goldenPlan(), wrap); err != nil {
		t.Fatal(err)
	}
	if *updateGolden {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("plan --json differs from %s (go test -run PlanJSONGolden -update to accept):\n%s", golden, got.String())
	}

	// Saved and read back, the plan lists its changes by action, in the
	// order of its file, which keeps them whatever their number (they are
	// decoded as they are read): SpillAfter changes nothing of it.
	file := filepath.Join(t.TempDir(), "p.plan")
	if err := goldenPlan().WriteFile(file); err != nil {
		t.Fatal(err)
	}
	readBack := func(spillAfter int) string {
		t.Helper()
		old := reconcile.SpillAfter
		reconcile.SpillAfter = spillAfter
		defer func() { reconcile.SpillAfter = old }()
		plan, err := reconcile.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		defer plan.Close()
		if !plan.Syncs[0].Spilled() {
			t.Fatalf("read back with SpillAfter %d, spilled is %v", spillAfter, plan.Syncs[0].Spilled())
		}
		var out bytes.Buffer
		if err := printPlanJSON(&out, plan, wrap); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	if inMemory, spilled := readBack(100), readBack(1); inMemory != spilled {
		t.Errorf("plan --json of a plan read back depends on SpillAfter:\n%s\n%s", inMemory, spilled)
	} else if !strings.Contains(spilled, `"score": "NaN"`) || !strings.Contains(spilled, `"changes": []`) {
		t.Errorf("plan --json of a plan read back lacks its NaN or its empty changes:\n%s", spilled)
	}
}

// TestChangeHasNoMarshalJSON: printPlanJSON encodes a change as plain data
// and writes its NaN and infinite floats itself. A MarshalJSON method on
// Change would make encoding/json validate and re-indent every change's
// output: a third of plan --json's time (BenchmarkPlanJSON).
func TestChangeHasNoMarshalJSON(t *testing.T) {
	if _, ok := any(reconcile.Change{}).(json.Marshaler); ok {
		t.Fatal("reconcile.Change is a json.Marshaler")
	}
	if _, ok := any(&reconcile.Change{}).(json.Marshaler); ok {
		t.Fatal("*reconcile.Change is a json.Marshaler")
	}
}

// Keys that are not UTF-8 come with their bytes (key_bytes, base64) in the
// JSON of plans, failures and row logs: JSON strings would carry k\xff and
// k\xfe as one key, k\uFFFD.
func TestJSONKeysNotUTF8CarryTheirBytes(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	os.WriteFile(filepath.Join(dir, "data/users.csv"), []byte("id,email\nk\xff,a@example.com\nk\xfe,b@example.com\nplain,c@example.com\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "crm.sql"), []byte("CREATE TABLE IF NOT EXISTS x (id TEXT PRIMARY KEY, email TEXT CHECK (email <> 'b@example.com'));"), 0o644)
	cfg := usersModelHCL + `destination "d" {
  type     = "sqlite"
  path     = "crm.db"
  init_sql = file("crm.sql")
  batch_size = 1
}
sync "s" {
  model       = model.m
  destination = destination.d
  object      = "x"
  key         = "id"
  mapping     = { email = "email" }
}
`
	os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg), 0o644)
	keysOf := func(out string, list func(any) []any) map[string]string {
		t.Helper()
		var v any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		got := map[string]string{}
		for _, e := range list(v) {
			m := e.(map[string]any)
			b, _ := m["key_bytes"].(string)
			got[m["key"].(string)+"|"+b] = ""
		}
		return got
	}
	code, out, errOut := backflow("-C", dir, "plan", "--json")
	if code != 0 {
		t.Fatalf("plan --json: exit %d\n%s", code, errOut)
	}
	changes := keysOf(out, func(v any) []any {
		return v.(map[string]any)["syncs"].([]any)[0].(map[string]any)["changes"].([]any)
	})
	want := map[string]string{"k\uFFFD|a/8=": "", "k\uFFFD|a/4=": "", "plain|": ""}
	if !reflect.DeepEqual(changes, want) {
		t.Errorf("plan --json keys %v, want %v", changes, want)
	}
	if code, out, errOut := backflow("-C", dir, "apply", "--auto-approve"); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = backflow("-C", dir, "state", "failures", "s", "--json")
	if code != 0 {
		t.Fatalf("state failures --json: exit %d\n%s", code, errOut)
	}
	fails := keysOf(out, func(v any) []any {
		if l, ok := v.([]any); ok {
			return l
		}
		return v.(map[string]any)["failures"].([]any)
	})
	if !reflect.DeepEqual(fails, map[string]string{"k\uFFFD|a/4=": ""}) {
		t.Errorf("state failures --json keys %v, want k\\xfe's bytes", fails)
	}
}
