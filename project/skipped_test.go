package project

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/internal/testdb"
)

// Rows a trigger skips without an error are never recorded as synced: the
// batch that held them is rejected, split retries isolate them, each is
// rejected naming the table and the trigger or rule, every other record of
// the batch is accepted, and the skipped ones are sent again on the next
// runs until the table takes them. On PostgreSQL, through COPY (adds, 500
// to a batch) and the bulk upsert (changes); on SQLite, through the
// multi-row upsert.

// skippedKeys are the keys whose add the insert triggers skip.
func skippedKeys() []int {
	var out []int
	for i := 100; i <= 1000; i += 100 {
		out = append(out, i)
	}
	return out
}

// frozenKeys are the keys whose change the update triggers skip (a
// negative score).
var frozenKeys = []int{1, 251, 501, 751}

func frozenScore(i int) int {
	for _, k := range frozenKeys {
		if i == k {
			return -i
		}
	}
	return i
}

func TestPostgresRowsSkippedByTriggersAreRejectedAndRetried(t *testing.T) {
	conn := testdb.Postgres(t)
	tbl := testdb.PostgresTable(t, conn, "external_id bigint PRIMARY KEY, email text, score integer")
	fn := tbl + "_skip"
	testdb.PostgresExec(t, conn,
		`CREATE FUNCTION `+fn+`() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF TG_OP = 'INSERT' AND NEW.external_id % 100 = 0 THEN RETURN NULL; END IF;
			IF TG_OP = 'UPDATE' AND NEW.score < 0 THEN RETURN NULL; END IF;
			RETURN NEW;
		END $$`,
		`CREATE TRIGGER skip_ins BEFORE INSERT ON `+tbl+` FOR EACH ROW EXECUTE FUNCTION `+fn+`()`,
		`CREATE TRIGGER skip_upd BEFORE UPDATE ON `+tbl+` FOR EACH ROW EXECUTE FUNCTION `+fn+`()`)
	t.Cleanup(func() { conn.Exec(context.Background(), `DROP FUNCTION IF EXISTS `+fn+`() CASCADE`) })
	cfg := skippedConfig(fmt.Sprintf(`  type          = "postgres"
  dsn           = %q
`, testdb.PostgresDSN), tbl)
	count := func(_ *workspace, where string) int {
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+tbl+" WHERE "+where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	testRowsSkippedByTriggers(t, cfg, tbl, count, func(*workspace) {
		testdb.PostgresExec(t, conn, `DROP TRIGGER skip_ins ON `+tbl, `DROP TRIGGER skip_upd ON `+tbl)
	})
}

func TestSQLiteRowsIgnoredByTriggersAreRejectedAndRetried(t *testing.T) {
	cfg := skippedConfig(`  type          = "sqlite"
  path          = "crm.db"
  init_sql      = <<-SQL
    CREATE TABLE IF NOT EXISTS contacts (external_id INTEGER PRIMARY KEY, email TEXT, score INTEGER);
    CREATE TRIGGER IF NOT EXISTS skip_ins BEFORE INSERT ON contacts WHEN NEW.external_id % 100 = 0 BEGIN SELECT RAISE(IGNORE); END;
    CREATE TRIGGER IF NOT EXISTS skip_upd BEFORE UPDATE ON contacts WHEN NEW.score < 0 BEGIN SELECT RAISE(IGNORE); END;
  SQL
`, "contacts")
	count := func(w *workspace, where string) int {
		var n int
		if _, err := fmt.Sscan(w.query("SELECT count(*) FROM contacts WHERE " + where)[0], &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	testRowsSkippedByTriggers(t, cfg, "contacts", count, func(w *workspace) {
		// init_sql runs at every apply: the triggers leave it too.
		var kept []string
		for _, line := range strings.Split(cfg, "\n") {
			if !strings.Contains(line, "CREATE TRIGGER") {
				kept = append(kept, line)
			}
		}
		w.write("main.hcl", strings.Join(kept, "\n"))
		w.query("DROP TRIGGER skip_ins")
		w.query("DROP TRIGGER skip_upd")
	})
}

// testRowsSkippedByTriggers runs three applies of 1,000 users against a
// table whose triggers skip the adds of skippedKeys and the changes of
// frozenKeys: the adds, then every email changed (the frozen keys with a
// negative score), then, the triggers dropped, the records still failing.
// count counts the table's rows matching a condition. A record found bad
// by the split may carry the error of the last group it was rejected in
// (reconcile's splitter infers it from a group whose others were
// accepted), which names the table and the trigger or rule all the same.
func testRowsSkippedByTriggers(t *testing.T, cfg, table string, count func(w *workspace, where string) int, dropTriggers func(w *workspace)) {
	w := newWorkspace(t, cfg, map[string]string{"data/users.csv": usersCSV(1000, same)})
	wantFailures := func(run string, keys []int, msg string) {
		t.Helper()
		failures := w.failures()
		if len(failures) != len(keys) {
			t.Errorf("%s: %d records in the failure index, want %d", run, len(failures), len(keys))
		}
		for _, k := range keys {
			f := failures[fmt.Sprint(k)]
			if f == nil || !strings.Contains(f.Error, msg) || !strings.Contains(f.Error, `"`+table+`"`) {
				t.Errorf("%s: key %d: failure %+v, want one naming table %q and saying %q", run, k, f, table, msg)
			}
		}
	}

	_, r := w.apply(PlanOptions{}, ApplyOptions{})
	if r.Counts.Accepted != 990 || r.Counts.Rejected != 10 {
		t.Fatalf("run 1: %+v, want 990 accepted and the 10 skipped adds rejected", r.Counts)
	}
	wantFailures("run 1", skippedKeys(), "a trigger or rule on it skipped")
	if n := count(w, "1 = 1"); n != 990 {
		t.Fatalf("run 1: the table holds %d rows, want 990", n)
	}

	w.write("data/users.csv", strings.ReplaceAll(usersCSV(1000, frozenScore), "@example.com", "-v@example.com"))
	_, r = w.apply(PlanOptions{}, ApplyOptions{})
	if r.Counts.Retried != 10 || r.Counts.Accepted != 986 || r.Counts.Rejected != 14 {
		t.Fatalf("run 2: %+v, want the 10 retried and rejected again, 986 changes accepted, the 4 frozen rejected", r.Counts)
	}
	wantFailures("run 2", append(skippedKeys(), frozenKeys...), "a trigger or rule on it skipped")
	if n, frozen := count(w, "email LIKE '%-v@example.com'"), count(w, "email NOT LIKE '%-v@example.com'"); n != 986 || frozen != 4 {
		t.Fatalf("run 2: %d rows changed and %d not, want 986 and the 4 frozen", n, frozen)
	}

	dropTriggers(w)
	_, r = w.apply(PlanOptions{}, ApplyOptions{})
	if r.Counts.Retried != 14 || r.Counts.Accepted != 14 || r.Counts.Rejected != 0 {
		t.Fatalf("run 3: %+v, want the 14 retried and accepted", r.Counts)
	}
	if n := count(w, "email LIKE '%-v@example.com'"); n != 1000 {
		t.Fatalf("run 3: %d rows hold the last values, want 1000", n)
	}
	if len(w.failures()) != 0 {
		t.Fatal("run 3: the failure index is not empty")
	}
}

// skippedConfig is the users model synced to object of a destination
// "crm" whose type and connection are dest, with split retries and quick
// backoff.
func skippedConfig(dest, object string) string {
	return sourceAndModel + `
destination "crm" {
` + dest + `  batch_size    = 500
  split_retries = true
  retry {
    max_attempts    = 2
    initial_backoff = "1ms"
    max_backoff     = "2ms"
  }
}
sync "s" {
  model       = model.users
  destination = destination.crm
  object      = ` + strconv.Quote(object) + `
  key         = "external_id"
  mapping     = { email = "email", score = "score" }
}
`
}
