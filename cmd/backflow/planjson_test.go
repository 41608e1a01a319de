package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/reconcile"
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
