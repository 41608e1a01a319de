package main

import (
	"database/sql"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/internal/testdb"
)

// Canaries: each a distinct value read through env(), placed where a
// secret hides in real configs. None may appear in any output or file.
var canaries = map[string]string{
	"password": "pwCANARY1x",
	"user":     "userCANARY2x",
	"database": "dbCANARY3x",
	"option":   "optCANARY4x",
	"header":   "hdrCANARY5x",
	"path":     "pathCANARY6x",
	"query":    "queryCANARY7x",
	"file":     "fileCANARY8x",
}

// TestSecretsCanaryMatrix runs every command and output form over configs
// whose env() values carry canaries — in a DSN's password, user, database
// and option, an HTTP header, a URL path and query, and a file path — on
// unreachable servers, on a server refusing the login, on a query error
// quoting a DSN option, and on an API refusing the token (echoing it
// without its prefix), then searches every
// output and every file backflow wrote for any canary, whole or in part.
func TestSecretsCanaryMatrix(t *testing.T) {
	conn := testdb.Postgres(t) // the auth-failure case needs the server; skips outside CI only
	t.Cleanup(func() { testdb.PostgresExec(t, conn, "DROP SCHEMA IF EXISTS bf_canary_cdc CASCADE") })
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.WriteHeader(http.StatusUnprocessableEntity)
		w.Write([]byte(`{"error":"token ` + token + ` is not allowed at ` + r.URL.Path + "?" + r.URL.RawQuery + `"}`))
	}))
	defer api.Close()

	c := canaries
	t.Setenv("BF_PG_UNREACHABLE", "postgres://"+c["user"]+":"+c["password"]+"@127.0.0.1:1/"+c["database"]+"?application_name="+c["option"]+"&connect_timeout=2")
	t.Setenv("BF_PG_BADLOGIN", "postgres://"+c["user"]+":"+c["password"]+"@127.0.0.1:5432/"+c["database"]+"?sslmode=disable&application_name="+c["option"])
	t.Setenv("BF_MY_UNREACHABLE", c["user"]+":"+c["password"]+"@tcp(127.0.0.1:1)/"+c["database"]+"?timeout=2s&"+"maxAllowedPacket=0&tls=false&loc=UTC&time_zone=%27"+c["option"]+"%27")
	t.Setenv("BF_TOKEN", "Bearer "+c["header"])
	t.Setenv("BF_URL", api.URL+"/hooks/"+c["path"]+"/records?key="+c["query"])
	t.Setenv("BF_FILE", "crm-"+c["file"]+".db")
	t.Setenv("BF_PG_ECHO", testdb.PostgresDSN+"&application_name="+c["option"])
	t.Setenv("BF_USER", c["user"])
	t.Setenv("BF_PASSWORD", c["password"])

	configs := map[string]string{
		"unreachable": `source "warehouse" {
  type = "postgres"
  dsn  = env("BF_PG_UNREACHABLE")
}
model "m" {
  source      = source.warehouse
  query       = "SELECT 1 AS id"
  primary_key = "id"
}
destination "crm" {
  type = "mysql"
  dsn  = env("BF_MY_UNREACHABLE")
}
sync "s" {
  model       = model.m
  destination = destination.crm
  object      = "contacts"
  key         = "id"
}
`,
		"badlogin": `source "warehouse" {
  type = "postgres"
  dsn  = env("BF_PG_BADLOGIN")
}
source "interpolated" {
  type = "postgres"
  dsn  = "postgres://${env("BF_USER")}:${env("BF_PASSWORD")}@127.0.0.1:5432/test?sslmode=disable"
}
model "m" {
  source      = source.warehouse
  query       = "SELECT 1 AS id"
  primary_key = "id"
}
model "m2" {
  source      = source.interpolated
  query       = "SELECT 1 AS id"
  primary_key = "id"
}
destination "out" {
  type = "file"
  path = "out.jsonl"
}
sync "s" {
  model       = model.m
  destination = destination.out
  object      = "contacts"
  key         = "id"
}
`,
		// The server echoes a DSN option in a query error: local and
		// warehouse CDC.
		"queryerror": `source "warehouse" {
  type = "postgres"
  dsn  = env("BF_PG_ECHO")
}
source "pushdown" {
  type = "postgres"
  dsn  = env("BF_PG_ECHO")
  cdc  = "warehouse"
  cdc_schema = "bf_canary_cdc"
}
model "m" {
  source      = source.warehouse
  query       = "SELECT current_setting('application_name')::int AS id"
  primary_key = "id"
}
model "m2" {
  source      = source.pushdown
  query       = "SELECT current_setting('application_name')::int AS id"
  primary_key = "id"
}
destination "out" {
  type = "file"
  path = "out.jsonl"
}
sync "s" {
  model       = model.m
  destination = destination.out
  object      = "contacts"
  key         = "id"
}
sync "s2" {
  model       = model.m2
  destination = destination.out
  object      = "contacts2"
  key         = "id"
}
`,
		"api": usersModelHCL + `destination "api" {
  type    = "http"
  url     = env("BF_URL")
  headers = { Authorization = env("BF_TOKEN") }
  retry {
    max_attempts    = 2
    initial_backoff = "1ms"
    max_backoff     = "2ms"
  }
}
destination "crm" {
  type     = "sqlite"
  path     = env("BF_FILE")
  init_sql = "CREATE TABLE IF NOT EXISTS contacts (id INTEGER PRIMARY KEY, email TEXT NOT NULL)"
}
sync "to_api" {
  model       = model.m
  destination = destination.api
  object      = "contacts"
  key         = "id"
  mapping     = { email = "email" }
}
sync "to_crm" {
  model       = model.m
  destination = destination.crm
  object      = "contacts"
  key         = "id"
  mapping     = { email = "email" }
}
`,
	}
	commands := [][]string{
		{"validate"}, {"validate", "--json"},
		{"plan"}, {"plan", "--json"}, {"plan", "--markdown"}, {"plan", "--out", "p.plan"}, {"show", "p.plan"}, {"show", "p.plan", "--json"},
		{"apply", "--auto-approve"}, {"apply", "--auto-approve", "--json"}, {"apply", "p.plan"},
		{"state", "list"}, {"state", "list", "--json"},
		{"state", "failures", "to_api"}, {"state", "failures", "to_api", "--json"},
		{"runs"}, {"runs", "--json"}, {"logs", "to_api"}, {"logs", "to_api", "--json"}, {"logs", "to_crm", "--json"},
		{"test"}, {"docs"}, {"reset-cdc", "s"}, {"reset-cdc", "s2"},
	}
	for name, cfg := range configs {
		commands := cloneCommands(commands)
		dir := filepath.Join(t.TempDir(), name)
		os.MkdirAll(filepath.Join(dir, "data"), 0o755)
		os.WriteFile(filepath.Join(dir, "data/users.csv"), []byte("id,email\n1,a@example.com\n2,b@example.com\n"), 0o644)
		if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		sawFailure := false
		for _, cmd := range commands {
			for i, a := range cmd {
				if a == "p.plan" {
					cmd[i] = filepath.Join(dir, a) // beside the config, not in the test's folder
				}
			}
			code, out, errOut := runGuarded(t, append([]string{"-C", dir}, cmd...)...)
			sawFailure = sawFailure || code != 0
			checkNoCanary(t, name+" "+strings.Join(cmd, " "), out+errOut)
		}
		if !sawFailure {
			t.Errorf("%s: no command failed; the error paths were not exercised", name)
		}
		if name == "api" {
			// The API was reached and refused, quoting the token and path.
			_, out, _ := backflow("-C", dir, "state", "failures", "to_api", "--json")
			var fs []struct{ Error string }
			if json.Unmarshal([]byte(out), &fs); len(fs) == 0 || !strings.Contains(fs[0].Error, "token (sensitive) is not allowed at /") {
				t.Errorf("the API's refusal was not recorded as expected: %s", out)
			}
		}
		// Every file backflow wrote: state, plan, destination files.
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(path, ".hcl") || strings.HasSuffix(path, ".csv") {
				return nil
			}
			b, _ := os.ReadFile(path)
			// (The SQLite file's own name is the env() path the config asked
			// for: its name is not output, its content is checked.)
			checkNoCanary(t, name+" file "+strings.TrimPrefix(path, dir), string(b))
			return nil
		})
	}
}

func checkNoCanary(t *testing.T, where, text string) {
	t.Helper()
	for what, c := range canaries {
		for _, part := range []string{c, strings.TrimSuffix(strings.TrimPrefix(c, what[:2]), "x")} {
			if len(part) >= 6 && strings.Contains(text, part) {
				t.Errorf("%s: the %s canary appears:\n%s", where, what, excerpt(text, part))
			}
		}
	}
}

func excerpt(text, part string) string {
	i := strings.Index(text, part)
	lo, hi := max(0, i-120), min(len(text), i+len(part)+120)
	return text[lo:hi]
}

func cloneCommands(cmds [][]string) [][]string {
	out := make([][]string, len(cmds))
	for i, c := range cmds {
		out[i] = append([]string(nil), c...)
	}
	return out
}

// TestSecretsCanaryDeniedUser: MySQL names the user in a refused
// statement ("SELECT command denied to user 'u'@'host'"); the user of a
// DSN read through env() is masked in validate, plan and apply.
func TestSecretsCanaryDeniedUser(t *testing.T) {
	db := testdb.MariaDB(t)
	user, password := testdb.Name("DeniedCANARY"), "pwDeniedCANARYx"
	table := testdb.MariaDBTable(t, db, "id INT PRIMARY KEY")
	allowed := testdb.MariaDBTable(t, db, "id INT PRIMARY KEY") // lets the user into the database
	testdb.MariaDBExec(t, db, "CREATE USER '"+user+"'@'%' IDENTIFIED BY '"+password+"'", "GRANT SELECT ON test."+allowed+" TO '"+user+"'@'%'")
	t.Cleanup(func() { db.Exec("DROP USER IF EXISTS '" + user + "'@'%'") })
	t.Setenv("BF_MY_DENIED", user+":"+password+"@tcp(127.0.0.1:3306)/test")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(`source "my" {
  type = "mysql"
  dsn  = env("BF_MY_DENIED")
}
model "m" {
  source      = source.my
  query       = "SELECT id FROM `+table+`"
  primary_key = "id"
}
destination "out" {
  type = "file"
  path = "out.jsonl"
}
sync "s" {
  model       = model.m
  destination = destination.out
  object      = "contacts"
  key         = "id"
}
`), 0o644)
	for _, cmd := range [][]string{{"validate"}, {"validate", "--json"}, {"plan"}, {"plan", "--json"}, {"apply", "--auto-approve"}} {
		code, out, errOut := backflow(append([]string{"-C", dir}, cmd...)...)
		if code == 0 || !strings.Contains(out+errOut, "command denied") {
			t.Errorf("%v: exit %d, want the refusal:\n%s%s", cmd, code, out, errOut)
		}
		if strings.Contains(out+errOut, "DeniedCANARY") {
			t.Errorf("%v shows the user:\n%s", cmd, excerpt(out+errOut, "DeniedCANARY"))
		}
	}
}

// TestSecretsCanaryApplyOfASavedPlan: a destination checked again by apply
// (its table gone since the plan) names the file, read through env(); the
// failure is masked as plan's are.
func TestSecretsCanaryApplyOfASavedPlan(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("BF_SQLITE_PATH", "crm-pathCANARY6x.db")
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	os.WriteFile(filepath.Join(dir, "data/users.csv"), []byte("id,email\n1,a@example.com\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(usersModelHCL+`destination "crm" {
  type = "sqlite"
  path = env("BF_SQLITE_PATH")
}
sync "s" {
  model       = model.m
  destination = destination.crm
  object      = "contacts"
  key         = "id"
  mapping     = { email = "email" }
}
`), 0o644)
	db, err := sql.Open("sqlite", filepath.Join(dir, "crm-pathCANARY6x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT)"); err != nil {
		t.Fatal(err)
	}
	plan := filepath.Join(dir, "p.plan")
	if code, out, errOut := backflow("-C", dir, "plan", "--out", plan); code != 0 {
		t.Fatalf("plan: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := db.Exec("DROP TABLE contacts"); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := backflow("-C", dir, "apply", plan)
	if code == 0 || !strings.Contains(out+errOut, "not found") {
		t.Errorf("apply: exit %d, want the missing table:\n%s%s", code, out, errOut)
	}
	checkNoCanary(t, "apply", out+errOut)
}
