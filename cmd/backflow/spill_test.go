package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/internal/testdb"
	"github.com/backflowhq/backflow/reconcile"
)

// Plans past SpillAfter changes are spilled, saved as chunks and applied
// window by window: against the real PostgreSQL and MariaDB, a spilled
// saved plan of 300 adds (7 refused by a CHECK constraint, isolated by
// split retries) lands 293 rows, and a second run with rows removed and
// changed leaves the table equal to the model, the 7 still rejected.
func TestSpilledPlansApplyToLiveDatabases(t *testing.T) {
	old := reconcile.SpillAfter
	reconcile.SpillAfter = 20
	defer func() { reconcile.SpillAfter = old }()

	type server struct {
		name, dest string
		create     func(t *testing.T) string
		rows       func(t *testing.T, table string) map[int64]int64 // key → score
	}
	servers := []server{
		{
			name: "postgres", dest: `type = "postgres"
  dsn  = "` + testdb.PostgresDSN + `"`,
			create: func(t *testing.T) string {
				return testdb.PostgresTable(t, testdb.Postgres(t), "external_id bigint PRIMARY KEY, score bigint CHECK (score >= 0)")
			},
			rows: func(t *testing.T, table string) map[int64]int64 {
				rs, err := testdb.Postgres(t).Query(context.Background(), "SELECT external_id, score FROM "+table)
				if err != nil {
					t.Fatal(err)
				}
				defer rs.Close()
				out := map[int64]int64{}
				for rs.Next() {
					var k, v int64
					if err := rs.Scan(&k, &v); err != nil {
						t.Fatal(err)
					}
					out[k] = v
				}
				return out
			},
		},
		{
			name: "mariadb", dest: `type = "mysql"
  dsn  = "` + testdb.MariaDBDSN + `"`,
			create: func(t *testing.T) string {
				return testdb.MariaDBTable(t, testdb.MariaDB(t), "external_id BIGINT PRIMARY KEY, score BIGINT, CHECK (score >= 0)")
			},
			rows: func(t *testing.T, table string) map[int64]int64 {
				rs, err := testdb.MariaDB(t).Query("SELECT external_id, score FROM " + table)
				if err != nil {
					t.Fatal(err)
				}
				defer rs.Close()
				out := map[int64]int64{}
				for rs.Next() {
					var k, v int64
					if err := rs.Scan(&k, &v); err != nil {
						t.Fatal(err)
					}
					out[k] = v
				}
				return out
			},
		},
	}
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			table := srv.create(t)
			dir := t.TempDir()
			// model returns id → score for ids in [from, to), scores shifted
			// by add; every 40th id is negative (refused).
			fixture := func(from, to, add int64) map[int64]int64 {
				var b strings.Builder
				b.WriteString("id,score\n")
				want := map[int64]int64{}
				for i := from; i < to; i++ {
					score := i + add
					if i%40 == 0 {
						score = -1
					} else {
						want[i] = score
					}
					fmt.Fprintf(&b, "%d,%d\n", i, score)
				}
				writeFiles(t, dir, map[string]string{"data/users.csv": b.String()})
				return want
			}
			writeFiles(t, dir, map[string]string{"main.hcl": `source "w" {
  type     = "embedded"
  fixtures = "data"
}
model "users" {
  source      = source.w
  query       = "SELECT id, score FROM users"
  primary_key = "id"
}
destination "db" {
  ` + srv.dest + `
  batch_size    = 10
  split_retries = true
}
sync "users" {
  model           = model.users
  destination     = destination.db
  object          = "` + table + `"
  key             = "external_id"
  delete_behavior = "delete"
  mapping         = { score = "score" }
}
`})
			check := func(want map[int64]int64) {
				t.Helper()
				got := srv.rows(t, table)
				if len(got) != len(want) {
					t.Fatalf("the table has %d rows, the model %d", len(got), len(want))
				}
				for k, v := range want {
					if got[k] != v {
						t.Fatalf("key %d: %d in the table, %d in the model", k, got[k], v)
					}
				}
			}
			want := fixture(1, 301, 0) // 300 rows, 7 refused (40, 80, …, 280)
			plan := filepath.Join(dir, "p.plan")
			if code, _, errOut := backflow("-C", dir, "plan", "--out", plan); code != 0 {
				t.Fatalf("plan --out: exit %d\n%s", code, errOut)
			}
			if code, out, errOut := backflow("-C", dir, "apply", plan); code != 0 || !strings.Contains(out, "293 accepted, 7 rejected") {
				t.Fatalf("apply of the saved plan: exit %d\n%s%s", code, out, errOut)
			}
			check(want)
			// 40 rows leave the model (under max_removals), the rest change: 254
			// changes, 39 deletes and the failed key 40 retried as a removal.
			want = fixture(41, 301, 1000)
			if code, out, errOut := backflow("-C", dir, "apply", "--auto-approve"); code != 0 || !strings.Contains(out, "294 accepted, 6 rejected") {
				t.Fatalf("second apply: exit %d\n%s%s", code, out, errOut)
			}
			check(want)
		})
	}
}
