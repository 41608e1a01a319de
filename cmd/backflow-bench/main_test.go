package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/internal/testdb"
)

func TestParseArgs(t *testing.T) {
	var stderr bytes.Buffer
	o, err := parseArgs(nil, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(o.scenarios, ","), strings.Join(scenarioNames(), ","); got != want {
		t.Fatalf("no --scenario runs %s, want every scenario %s", got, want)
	}
	if o.rows != 0 || o.quick || o.repeat != 1 || strings.Join(o.dbState, ",") != "postgres,mysql" {
		t.Fatalf("defaults: %+v", o)
	}
	for _, args := range [][]string{
		{"--postgres-dsn", "postgres://postgres@localhost/test", "--mysql-dsn", "root@tcp([::1]:3306)/test"},
		{"--postgres-dsn", "host=/var/run/postgresql dbname=test", "--mysql-dsn", "root@unix(/run/mysqld/mysqld.sock)/test"},
	} {
		if _, err := parseArgs(args, &stderr); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
	for arg, want := range map[string]string{"none": "", "mysql, postgres,mysql": "mysql,postgres", "postgres": "postgres"} {
		o, err := parseArgs([]string{"--db-state", arg}, &stderr)
		if err != nil || strings.Join(o.dbState, ",") != want {
			t.Errorf("--db-state %q: %v, %v; want %q", arg, o.dbState, err, want)
		}
	}

	o, err = parseArgs([]string{"--scenario", "split", "--scenario", "plan-pushdown", "--scenario", "split", "--rows", "500", "--quick"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(o.scenarios, ","); got != "split,plan-pushdown" {
		t.Fatalf("scenarios %q, want split,plan-pushdown in the order given, once each", got)
	}
	if o.rows != 500 || !o.quick {
		t.Fatalf("--rows 500 --quick parsed as %+v", o)
	}
	e := &env{options: o}
	if n := e.pick(10, 1000); n != 500 {
		t.Fatalf("--rows 500 picks %d rows", n)
	}
}

func TestParseArgsErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--scenario", "plan-cloud"}, `unknown scenario "plan-cloud": choose among plan-embedded, plan-all-changed, plan-postgres`},
		{[]string{"split"}, `unexpected argument "split": name scenarios with --scenario`},
		{[]string{"--rows", "-3"}, "--rows -3: give a positive row count"},
		{[]string{"--rows", "many"}, `invalid value "many" for flag -rows`},
		{[]string{"--repeat", "0"}, "--repeat 0: give a number of runs from 1 to 99"},
		{[]string{"--fast"}, "flag provided but not defined: -fast"},
		{[]string{"--db-state", "postgres,sqlite"}, `--db-state "sqlite": choose among postgres, mysql, none`},
		{[]string{"--postgres-dsn", "postgres://postgres@db.example.com:5432/test"}, `--postgres-dsn: host "db.example.com" is not a loopback address`},
		{[]string{"--postgres-dsn", "postgres://postgres@127.0.0.1,10.0.0.5/test"}, `--postgres-dsn: host "10.0.0.5" is not a loopback address`},
		{[]string{"--mysql-dsn", "root@tcp(192.0.2.7:3306)/test"}, `--mysql-dsn: host "192.0.2.7" is not a loopback address`},
		{[]string{"--postgres-dsn", "postgres://postgres:pa\xffss@127.0.0.1/test"}, "--postgres-dsn: not valid UTF-8 in Unicode normal form C"},
		{[]string{"--mysql-dsn", "root:e\u0301@tcp(127.0.0.1:3306)/test"}, "--mysql-dsn: not valid UTF-8 in Unicode normal form C"},
	} {
		var stderr bytes.Buffer
		_, err := parseArgs(c.args, &stderr)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want it to contain %q", c.args, err, c.want)
		}
	}
}

func TestPick(t *testing.T) {
	if n := (&env{}).pick(10, 1000); n != 1000 {
		t.Errorf("full run picks %d, want 1000", n)
	}
	if n := (&env{options: options{quick: true}}).pick(10, 1000); n != 10 {
		t.Errorf("--quick picks %d, want 10", n)
	}
}

// A scenario prints exactly one JSON object, keys in the order set.
func TestRunPrintsOneObjectPerScenario(t *testing.T) {
	testdb.Postgres(t).Close(context.Background()) // plan-pushdown needs the server
	var stdout, stderr bytes.Buffer
	o := options{scenarios: []string{"plan-pushdown", "split"}, quick: true, postgresDSN: testdb.PostgresDSN}
	if err := run(context.Background(), o, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("stdout has %d lines, want one per scenario:\n%s", len(lines), stdout.String())
	}
	// Warehouse CDC reads exactly the changed rows (the scenario checks
	// its plan equals the local diff's).
	var pd struct {
		Scenario          string
		ChangedRows       int     `json:"changed_rows"`
		WarehouseRowsRead int     `json:"warehouse_rows_read"`
		RowsReadVsChanged float64 `json:"rows_read_vs_changed"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &pd); err != nil {
		t.Fatal(err)
	}
	if pd.Scenario != "plan-pushdown" || pd.ChangedRows == 0 || pd.WarehouseRowsRead != pd.ChangedRows || pd.RowsReadVsChanged != 1 {
		t.Errorf("plan-pushdown printed %s", lines[0])
	}
	var split struct {
		Scenario string
		Cells    []map[string]float64
	}
	if err := json.Unmarshal([]byte(lines[1]), &split); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(lines[1], `{"scenario":"split",`) || len(split.Cells) != 10 {
		t.Errorf("split printed %s", lines[1])
	}
	if !strings.Contains(stderr.String(), "== split") {
		t.Errorf("no progress on stderr: %s", stderr.String())
	}
}

// Several runs of a scenario make one object: each number the median of
// the runs' (the lower middle one for an even count), with its range when
// they differ; strings and nested objects the first run's; keys in the
// first run's order.
func TestCombineTakesMedians(t *testing.T) {
	mk := func(ratio float64, rows int, note string) *result {
		return newResult("s").set("rows", rows).set("ratio", ratio).set("note", note).set("cells", []int{rows})
	}
	got, err := json.Marshal(combine([]*result{mk(0.9, 10, "a"), mk(0.7, 10, "b"), mk(1.2, 10, "c")}))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"scenario":"s","rows":10,"ratio":0.9,"note":"a","cells":[10],"repeats":3,"ranges":{"ratio":[0.7,1.2]}}`
	if string(got) != want {
		t.Errorf("three runs:\n got %s\nwant %s", got, want)
	}
	got, _ = json.Marshal(combine([]*result{mk(2, 1, "a"), mk(4, 1, "a")}))
	if want := `{"scenario":"s","rows":1,"ratio":2,"note":"a","cells":[1],"repeats":2,"ranges":{"ratio":[2,4]}}`; string(got) != want {
		t.Errorf("two runs:\n got %s\nwant %s", got, want)
	}
	one := mk(1, 1, "a")
	if combine([]*result{one}) != one {
		t.Error("one run is not returned as it is")
	}
}

// --repeat runs a scenario that many times and prints one object.
func TestRunRepeats(t *testing.T) {
	var stdout, stderr bytes.Buffer
	o := options{scenarios: []string{"split"}, quick: true, repeat: 2, postgresDSN: testdb.PostgresDSN}
	if err := run(context.Background(), o, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"repeats":2`) {
		t.Fatalf("stdout:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "split: run 2 of 2") {
		t.Errorf("no progress of the second run on stderr: %s", stderr.String())
	}
}

// The fresh-page figure is a plausible time: more than nothing (a write
// to each page was timed), far less than a millisecond.
func TestFreshPageCostIsMeasured(t *testing.T) {
	d, ok := freshPageCost()
	if !ok {
		t.Skip("anonymous memory cannot be mapped here")
	}
	if d <= 0 || d > time.Millisecond {
		t.Fatalf("a fresh page costs %v", d)
	}
}
