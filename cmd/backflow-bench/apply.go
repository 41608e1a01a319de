package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/project"
	"github.com/backflowhq/backflow/reconcile"
)

// applyBatch is the batch size of the SQL apply scenarios, for backflow
// and the direct loops alike.
const applyBatch = 1000

// person is one row of the benchmark table as a direct loop writes it:
// the values the CSV fixture holds.
type person struct {
	id                            int64
	email, name, company, country string
	score                         int64
	ltv                           float64
	active                        bool
}

func genPerson(i int, suffix string) person {
	return person{
		id: int64(i), email: fmt.Sprintf("user%d@example.com", i), name: fmt.Sprintf("User %d%s", i, suffix),
		company: fmt.Sprintf("Company %d", i%5000), country: countries[i%len(countries)],
		score: int64(i % 1000), ltv: float64(i%100000) + float64(i%100)/100, active: i%7 != 0,
	}
}

func (p person) args() []any {
	return []any{p.id, p.email, p.name, p.company, p.country, p.score, p.ltv, p.active}
}

var valueColumns = []string{"email", "name", "company", "country", "score", "ltv", "active"}

// sqlTarget is one SQL database the apply scenarios write to.
type sqlTarget struct {
	name string
	// columns is the table's column list, id first.
	columns string
	// dest is the body of the destination block.
	dest        string
	quote       func(string) string
	placeholder func(n int) string
	upsertTail  string
	exec        func(ctx context.Context, query string) error
	// batch writes one batch in a transaction of its own, as a direct loop
	// without backflow would.
	batch func(ctx context.Context, query string, args []any) error
	count func(ctx context.Context, table string) (int, error)
	// settle, when set, runs before each timed step so that none starts
	// with another's deferred work pending (PostgreSQL: a VACUUM of the
	// tables written, so that no step shares the machine with the
	// autovacuum of the rows an earlier step inserted or updated, then a
	// CHECKPOINT, so that none pays for the checkpoint the WAL of the one
	// before triggers).
	settle func(ctx context.Context) error
	// tables are the tables the scenario writes (settle's VACUUM).
	tables []string
	// server names the server's processes (serverCPU): every step's
	// *_server_cpu_s is their CPU time meanwhile.
	server []string
	close  func()
}

// settled runs t.settle, if any, then fn timed.
func (t *sqlTarget) settled(ctx context.Context, fn func() error) (timing, error) {
	return settledBy(ctx, t.settle, t.server, fn)
}

// copyTextBatches is the rows genPerson makes, 1 to rows, as COPY text
// (tab-separated, one line a row; the generated values hold no tab,
// newline or backslash), batch rows to a string.
func copyTextBatches(rows, batch int) []string {
	var out []string
	var b strings.Builder
	for from := 1; from <= rows; from += batch {
		b.Reset()
		for i := from; i < from+batch && i <= rows; i++ {
			p := genPerson(i, "")
			fmt.Fprintf(&b, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%t\n", p.id, p.email, p.name, p.company, p.country, p.score,
				strconv.FormatFloat(p.ltv, 'g', -1, 64), p.active)
		}
		out = append(out, b.String())
	}
	return out
}

// copyTextPerBatch copies bodies into table, one COPY per transaction, on
// the connections cs at once.
func copyTextPerBatch(ctx context.Context, cs []*pgx.Conn, table, where string, bodies []string) error {
	next := make(chan string, len(bodies))
	for _, b := range bodies {
		next <- b
	}
	close(next)
	q := "COPY " + quoteDouble(table) + " (" + strings.Join(append([]string{"id"}, valueColumns...), ", ") + ") FROM STDIN" + where
	errs := make(chan error, len(cs))
	for _, c := range cs {
		go func() {
			for body := range next {
				err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
					_, err := tx.Conn().PgConn().CopyFrom(ctx, strings.NewReader(body), q)
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range cs {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// settledBy runs settle, if set, then fn timed, with the CPU time of the
// server processes named server.
func settledBy(ctx context.Context, settle func(context.Context) error, server []string, fn func() error) (timing, error) {
	if settle != nil {
		if err := settle(ctx); err != nil {
			return timing{}, fmt.Errorf("settling the server before a timed step: %w", err)
		}
	}
	return measureServer(server, fn)
}

// upsertSQL is the multi-row upsert of n rows of the benchmark table.
func (t *sqlTarget) upsertSQL(table string, n int) string {
	var q strings.Builder
	cols := append([]string{"id"}, valueColumns...)
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = t.quote(c)
	}
	q.WriteString("INSERT INTO " + t.quote(table) + " (" + strings.Join(quoted, ", ") + ") VALUES ")
	p := 0
	for r := 0; r < n; r++ {
		if r > 0 {
			q.WriteString(", ")
		}
		q.WriteByte('(')
		for c := range cols {
			if c > 0 {
				q.WriteString(", ")
			}
			p++
			q.WriteString(t.placeholder(p))
		}
		q.WriteByte(')')
	}
	q.WriteString(" " + t.upsertTail)
	return q.String()
}

// directLoop upserts rows 1..n (name suffixed) in batches, one
// transaction and one statement per batch.
func (t *sqlTarget) directLoop(ctx context.Context, table string, n int, suffix string) error {
	full := t.upsertSQL(table, applyBatch)
	for start := 1; start <= n; start += applyBatch {
		end := min(start+applyBatch-1, n)
		q := full
		if end-start+1 < applyBatch {
			q = t.upsertSQL(table, end-start+1)
		}
		args := make([]any, 0, (end-start+1)*8)
		for i := start; i <= end; i++ {
			args = append(args, genPerson(i, suffix).args()...)
		}
		if err := t.batch(ctx, q, args); err != nil {
			return err
		}
	}
	return nil
}

func upsertTail(quote func(string) string, excluded string) string {
	sets := make([]string, len(valueColumns))
	for i, c := range valueColumns {
		sets[i] = quote(c) + " = " + strings.ReplaceAll(excluded, "%s", quote(c))
	}
	return strings.Join(sets, ", ")
}

func quoteDouble(s string) string { return `"` + s + `"` }

func sqliteTarget(ctx context.Context, e *env, dir string) (*sqlTarget, error) {
	path := filepath.Join(dir, "crm.db")
	// The pragmas backflow's driver sets: WAL, and BEGIN IMMEDIATE.
	db, err := sql.Open("sqlite", path+"?_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	t := &sqlTarget{
		name:    "sqlite",
		columns: "id INTEGER PRIMARY KEY, email TEXT, name TEXT, company TEXT, country TEXT, score INTEGER, ltv REAL, active BOOLEAN",
		dest: `type = "sqlite"
  path = "crm.db"`,
		quote:       quoteDouble,
		placeholder: func(int) string { return "?" },
		upsertTail:  `ON CONFLICT("id") DO UPDATE SET ` + upsertTail(quoteDouble, "excluded.%s"),
	}
	sqlDBTarget(t, db)
	return t, nil
}

func sqlDBTarget(t *sqlTarget, db *sql.DB) {
	t.exec = func(ctx context.Context, q string) error { _, err := db.ExecContext(ctx, q); return err }
	t.batch = func(ctx context.Context, q string, args []any) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	}
	t.count = func(ctx context.Context, table string) (int, error) {
		var n int
		err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+t.quote(table)).Scan(&n)
		return n, err
	}
	t.close = func() { db.Close() }
}

func postgresTarget(ctx context.Context, e *env) (*sqlTarget, *pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, e.postgresDSN)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	t := &sqlTarget{
		name:    "postgres",
		server:  []string{"postgres"},
		columns: "id bigint PRIMARY KEY, email text, name text, company text, country text, score bigint, ltv double precision, active boolean",
		dest: `type = "postgres"
  dsn  = ` + hclString(e.postgresDSN),
		quote:       quoteDouble,
		placeholder: func(n int) string { return "$" + strconv.Itoa(n) },
		upsertTail:  `ON CONFLICT ("id") DO UPDATE SET ` + upsertTail(quoteDouble, "EXCLUDED.%s"),
		exec:        func(ctx context.Context, q string) error { _, err := conn.Exec(ctx, q); return err },
		batch: func(ctx context.Context, q string, args []any) error {
			return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { _, err := tx.Exec(ctx, q, args...); return err })
		},
		count: func(ctx context.Context, table string) (int, error) {
			var n int
			err := conn.QueryRow(ctx, "SELECT count(*) FROM "+quoteDouble(table)).Scan(&n)
			return n, err
		},
		close: func() { conn.Close(context.Background()) },
	}
	t.settle = func(ctx context.Context) error { return vacuumThenCheckpoint(ctx, conn, t.tables...) }
	return t, conn, nil
}

// vacuumThenCheckpoint vacuums (and analyzes) tables, then checkpoints:
// the server's upkeep of the rows a step wrote is done before the next
// step is timed.
func vacuumThenCheckpoint(ctx context.Context, conn *pgx.Conn, tables ...string) error {
	for _, table := range tables {
		if _, err := conn.Exec(ctx, "VACUUM (ANALYZE) "+quoteDouble(table)); err != nil {
			return err
		}
	}
	_, err := conn.Exec(ctx, "CHECKPOINT")
	return err
}

func mysqlTarget(ctx context.Context, e *env) (*sqlTarget, error) {
	cfg, err := mysql.ParseDSN(e.mysqlDSN)
	if err != nil {
		return nil, fmt.Errorf("--mysql-dsn: %w", err)
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(connector)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connecting to MySQL: %w", err)
	}
	quote := func(s string) string { return "`" + s + "`" }
	t := &sqlTarget{
		name:    "mysql",
		server:  []string{"mariadbd", "mysqld"},
		columns: "id BIGINT PRIMARY KEY, email TEXT, name TEXT, company TEXT, country TEXT, score BIGINT, ltv DOUBLE, active BOOLEAN",
		dest: `type = "mysql"
  dsn  = ` + hclString(e.mysqlDSN),
		quote:       quote,
		placeholder: func(int) string { return "?" },
		upsertTail:  "ON DUPLICATE KEY UPDATE " + upsertTail(quote, "VALUES(%s)"),
	}
	sqlDBTarget(t, db)
	return t, nil
}

// applyProject is a config folder whose one sync writes the benchmark
// table, read from a live PostgreSQL table (as production reads), to a
// destination.
type applyProject struct {
	dir    string
	rows   int
	source string // the PostgreSQL table the model reads
	conn   *pgx.Conn
	// settle runs after the plan, before the apply is timed (see
	// sqlTarget.settle).
	settle func(ctx context.Context) error
	server []string // sqlTarget.server
}

// newApplyProject creates the source table with rows rows and the config;
// close drops the table.
func newApplyProject(ctx context.Context, e *env, dir string, rows int, object, dest string, batch int) (*applyProject, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, e.postgresDSN)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL (the source): %w", err)
	}
	p := &applyProject{dir: dir, rows: rows, source: benchName("bench_source"), conn: conn}
	e.logf("creating the source table %s with %d rows", p.source, rows)
	if err := postgresPeople(ctx, conn, p.source, rows); err != nil {
		p.close()
		return nil, err
	}
	var mapping []string
	for _, c := range valueColumns {
		mapping = append(mapping, c+" = "+hclString(c))
	}
	cfg := `source "w" {
  type = "postgres"
  dsn  = ` + hclString(e.postgresDSN) + `
}
model "people" {
  source      = source.w
  query       = ` + hclString("SELECT "+peopleColumns+" FROM "+p.source) + `
  primary_key = "id"
}
destination "d" {
  ` + dest + `
  batch_size = ` + strconv.Itoa(batch) + `
}
sync "people" {
  model       = model.people
  destination = destination.d
  object      = ` + hclString(object) + `
  key         = "id"
  mapping     = { ` + strings.Join(mapping, ", ") + ` }
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(cfg), 0o644); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *applyProject) close() {
	p.conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+p.source)
	p.conn.Close(context.Background())
}

// apply plans and applies the sync and times the apply alone (opening the
// workspace and planning are not counted). With suffix set, every source
// row's name gets it first, so every row is a change.
func (p *applyProject) apply(ctx context.Context, e *env, suffix string) (timing, *reconcile.SyncResult, error) {
	if suffix != "" {
		if _, err := p.conn.Exec(ctx, "UPDATE "+p.source+" SET name = name || $1::text", suffix); err != nil {
			return timing{}, nil, err
		}
	}
	// The source's own upkeep after it was written (autovacuum of the
	// rows the fill or the update left, the checkpoint of their WAL) is
	// done now, not charged to the apply timed next.
	if err := vacuumThenCheckpoint(ctx, p.conn, p.source); err != nil {
		return timing{}, nil, fmt.Errorf("settling the source: %w", err)
	}
	w, err := project.OpenWorkspace(ctx, p.dir, project.Options{Lock: "apply"})
	if err != nil {
		return timing{}, nil, err
	}
	defer w.Close()
	plan, err := w.Plan(ctx, project.PlanOptions{})
	if err != nil {
		return timing{}, nil, err
	}
	var results []*reconcile.SyncResult
	t, err := settledBy(ctx, p.settle, p.server, func() error {
		var err error
		// Labelled, so that a --cpuprofile tells the timed apply (and
		// the goroutines it starts) from setup and baselines:
		// go tool pprof -tagfocus step=apply; and one apply from the
		// others: -tagfocus project=in-flight (max_in_flight above 1)
		// -tagignore changes=yes (the adds).
		changes := map[bool]string{false: "no", true: "yes"}[suffix != ""]
		pprof.Do(ctx, pprof.Labels("step", "apply", "project", filepath.Base(p.dir), "changes", changes), func(ctx context.Context) {
			results, err = w.Apply(ctx, plan, project.ApplyOptions{})
		})
		return err
	})
	if err != nil {
		return t, nil, err
	}
	if len(results) != 1 {
		return t, nil, fmt.Errorf("apply ran %d syncs, want 1", len(results))
	}
	r := results[0]
	if r.Counts.Accepted != p.rows || r.Counts.Rejected != 0 {
		return t, r, fmt.Errorf("apply: %d accepted, %d rejected of %d", r.Counts.Accepted, r.Counts.Rejected, p.rows)
	}
	return t, r, nil
}

// setServerCPU sets PREFIX_server_cpu_s to the server's CPU time during
// t, when it was measured.
func setServerCPU(r *result, prefix string, t timing) {
	if t.serverOK {
		r.set(prefix+"_server_cpu_s", secs(t.server))
	}
}

func rowsPerSec(rows int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(int64(float64(rows) / d.Seconds()))
}

// applySQL measures backflow against the direct loop on t: first every
// row an add, then every row changed. With inFlight above 1, a second
// project writing a table of its own with max_in_flight = inFlight is
// measured in the same steps, against the same direct loop
// (STEP_in_flight_N_… keys).
func applySQL(ctx context.Context, e *env, t *sqlTarget, name string, rows, inFlight int, extra func(r *result, table string) error) (*result, error) {
	dir := filepath.Join(e.tmp, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ours, direct, oursInFlight := benchName("bench_bf"), benchName("bench_direct"), benchName("bench_bf_in_flight")
	tables := []string{ours, direct}
	if inFlight > 1 {
		tables = append(tables, oursInFlight)
	}
	for _, table := range tables {
		if err := t.exec(ctx, "CREATE TABLE "+t.quote(table)+" ("+t.columns+")"); err != nil {
			return nil, err
		}
		defer t.exec(context.Background(), "DROP TABLE IF EXISTS "+t.quote(table))
	}
	t.tables = tables
	p, err := newApplyProject(ctx, e, dir, rows, ours, t.dest, applyBatch)
	if err != nil {
		return nil, err
	}
	defer p.close()
	p.settle, p.server = t.settle, t.server
	var pIn *applyProject
	inKey := fmt.Sprintf("_in_flight_%d", inFlight)
	if inFlight > 1 {
		pIn, err = newApplyProject(ctx, e, filepath.Join(dir, "in-flight"), rows, oursInFlight,
			t.dest+"\n  max_in_flight = "+strconv.Itoa(inFlight), applyBatch)
		if err != nil {
			return nil, err
		}
		defer pIn.close()
		pIn.settle, pIn.server = t.settle, t.server
	}
	r := newResult(name).set("rows", rows).set("batch_size", applyBatch)
	for _, step := range []struct{ what, suffix string }{{"adds", ""}, {"changes", " v2"}} {
		e.logf("%s: backflow apply of %d %s", name, rows, step.what)
		bt, res, err := p.apply(ctx, e, step.suffix)
		if err != nil {
			return nil, fmt.Errorf("backflow %s: %w", step.what, err)
		}
		e.logf("%s: backflow %s in %s (%d requests); direct loop", name, step.what, bt.wall.Round(time.Millisecond), res.Requests)
		var it timing
		if pIn != nil {
			it, _, err = pIn.apply(ctx, e, step.suffix)
			if err != nil {
				return nil, fmt.Errorf("backflow %s, max_in_flight %d: %w", step.what, inFlight, err)
			}
			e.logf("%s: backflow %s with max_in_flight %d in %s", name, step.what, inFlight, it.wall.Round(time.Millisecond))
		}
		dt, err := t.settled(ctx, func() error { return t.directLoop(ctx, direct, rows, step.suffix) })
		if err != nil {
			return nil, fmt.Errorf("direct loop: %w", err)
		}
		e.logf("%s: direct %s in %s", name, step.what, dt.wall.Round(time.Millisecond))
		for _, table := range tables {
			if n, err := t.count(ctx, table); err != nil || n != rows {
				return nil, errors.Join(err, fmt.Errorf("%s holds %d rows, want %d", table, n, rows))
			}
		}
		r.set(step.what+"_backflow_s", secs(bt.wall)).
			set(step.what+"_backflow_cpu_s", secs(bt.cpu)).
			set(step.what+"_backflow_rows_per_s", rowsPerSec(rows, bt.wall)).
			set(step.what+"_requests", res.Requests).
			set(step.what+"_direct_s", secs(dt.wall)).
			set(step.what+"_direct_cpu_s", secs(dt.cpu)).
			set(step.what+"_direct_rows_per_s", rowsPerSec(rows, dt.wall)).
			set(step.what+"_vs_direct", ratio(dt.wall.Seconds(), bt.wall.Seconds()))
		setServerCPU(r, step.what+"_backflow", bt)
		setServerCPU(r, step.what+"_direct", dt)
		if pIn != nil {
			r.set(step.what+inKey+"_s", secs(it.wall)).
				set(step.what+inKey+"_cpu_s", secs(it.cpu)).
				set(step.what+inKey+"_rows_per_s", rowsPerSec(rows, it.wall)).
				set(step.what+inKey+"_vs_direct", ratio(dt.wall.Seconds(), it.wall.Seconds()))
			setServerCPU(r, step.what+inKey, it)
		}
		if extra != nil && step.what == "adds" {
			if err := extra(r, ours); err != nil {
				return nil, err
			}
		}
	}
	r.set("target", "adds_vs_direct and changes_vs_direct ≥ 0.9 (ratios are rows/s of backflow over the direct loop)")
	return r, nil
}

func runApplySQLite(ctx context.Context, e *env) (*result, error) {
	rows := e.pick(5_000, 1_000_000)
	dir := filepath.Join(e.tmp, "apply-sqlite")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	t, err := sqliteTarget(ctx, e, dir)
	if err != nil {
		return nil, err
	}
	defer t.close()
	return applySQL(ctx, e, t, "apply-sqlite", rows, 0, nil)
}

func runApplyMySQL(ctx context.Context, e *env) (*result, error) {
	rows := e.pick(5_000, 1_000_000)
	t, err := mysqlTarget(ctx, e)
	if err != nil {
		return nil, err
	}
	defer t.close()
	return applySQL(ctx, e, t, "apply-mysql", rows, 0, nil)
}

func runApplyPostgres(ctx context.Context, e *env) (*result, error) {
	rows := e.pick(5_000, 1_000_000)
	t, conn, err := postgresTarget(ctx, e)
	if err != nil {
		return nil, err
	}
	defer t.close()
	// COPY of the same rows into an empty table of the same shape, in one
	// transaction: the fastest way the server takes rows, without upsert
	// semantics. Then the same COPY in a transaction per batch of
	// applyBatch rows, one at a time: the most any writer committing each
	// batch on its own (as backflow must, to answer for it) could do with
	// one request in flight.
	copyInto := func(r *result, _ string) error {
		copyRows := func(table string, from, n int) error {
			i := from
			got, err := conn.CopyFrom(ctx, pgx.Identifier{table}, append([]string{"id"}, valueColumns...),
				pgx.CopyFromFunc(func() ([]any, error) {
					if i == from+n {
						return nil, nil
					}
					i++
					return genPerson(i, "").args(), nil
				}))
			if err == nil && got != int64(n) {
				err = fmt.Errorf("COPY wrote %d rows, want %d", got, n)
			}
			return err
		}
		timed := func(what string, write func(table string) error) (timing, error) {
			table := benchName("bench_copy")
			if err := t.exec(ctx, "CREATE TABLE "+table+" ("+t.columns+")"); err != nil {
				return timing{}, err
			}
			defer t.exec(context.Background(), "DROP TABLE IF EXISTS "+table)
			e.logf("apply-postgres: %s of %d rows", what, rows)
			ct, err := t.settled(ctx, func() error { return write(table) })
			if err != nil {
				return ct, fmt.Errorf("%s: %w", what, err)
			}
			if n, err := t.count(ctx, table); err != nil || n != rows {
				return ct, errors.Join(err, fmt.Errorf("%s: %d rows, want %d", what, n, rows))
			}
			e.logf("apply-postgres: %s in %s", what, ct.wall.Round(time.Millisecond))
			return ct, nil
		}
		ct, err := timed("COPY", func(table string) error { return copyRows(table, 0, rows) })
		if err != nil {
			return err
		}
		bt, err := timed("COPY per batch", func(table string) error {
			for from := 0; from < rows; from += applyBatch {
				err := pgx.BeginFunc(ctx, conn, func(pgx.Tx) error { return copyRows(table, from, min(applyBatch, rows-from)) })
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		// The same rows as COPY text made before the clock starts, a
		// batch per transaction, on one connection and on four at once:
		// what the server takes when nothing but the protocol and the
		// commits stands between it and the rows.
		bodies := copyTextBatches(rows, applyBatch)
		// Connected before the clock starts.
		cs := []*pgx.Conn{conn}
		for range 3 {
			c, err := pgx.Connect(ctx, e.postgresDSN)
			if err != nil {
				return err
			}
			defer c.Close(context.Background())
			cs = append(cs, c)
		}
		// And with the WHERE clause backflow's COPYs of such batches
		// have on PostgreSQL 12 to 16 (destination.RowByRowWhere): the
		// server inserts a row at a time.
		type variant struct {
			conns int
			where string
		}
		variants := []variant{{1, ""}, {4, ""}, {1, destination.RowByRowWhere}, {4, destination.RowByRowWhere}}
		tt := map[variant]timing{}
		for _, v := range variants {
			what := fmt.Sprintf("COPY text per batch, %d at once", v.conns)
			if v.where != "" {
				what += ", row by row"
			}
			tt[v], err = timed(what, func(table string) error {
				return copyTextPerBatch(ctx, cs[:v.conns], table, v.where, bodies)
			})
			if err != nil {
				return err
			}
		}
		adds := r.vals["adds_backflow_s"].(float64)
		r.set("copy_s", secs(ct.wall)).set("copy_rows_per_s", rowsPerSec(rows, ct.wall)).
			set("adds_vs_copy", ratio(ct.wall.Seconds(), adds)).
			set("copy_per_batch_s", secs(bt.wall)).set("copy_per_batch_vs_copy", ratio(ct.wall.Seconds(), bt.wall.Seconds())).
			set("adds_vs_copy_per_batch", ratio(bt.wall.Seconds(), adds))
		setServerCPU(r, "copy", ct)
		setServerCPU(r, "copy_per_batch", bt)
		for _, v := range variants {
			k := fmt.Sprintf("copy_text_per_batch_%d_", v.conns)
			if v.where != "" {
				k += "row_by_row_"
			}
			r.set(k+"s", secs(tt[v].wall)).set(k+"vs_copy", ratio(ct.wall.Seconds(), tt[v].wall.Seconds()))
			setServerCPU(r, k[:len(k)-1], tt[v])
		}
		if in, ok := r.vals["adds_in_flight_4_s"].(float64); ok {
			r.set("adds_in_flight_4_vs_copy", ratio(ct.wall.Seconds(), in))
		}
		return nil
	}
	// Backflow as configured by default (one request in flight), and with
	// max_in_flight = 4, which the driver serves with 4 connections.
	r, err := applySQL(ctx, e, t, "apply-postgres", rows, 4, copyInto)
	if r != nil {
		r.set("target", "adds_vs_direct and changes_vs_direct ≥ 0.9; adds_vs_copy ≥ 0.5 at batch_size 1000 (ratios are rows/s of backflow over the baseline; the in_flight_4 keys are the same apply with max_in_flight = 4; copy_per_batch_vs_copy is what pgx's CopyFrom per batch_size transaction, one at a time, reaches of the one-transaction COPY; copy_text_per_batch_N_vs_copy the same rows as COPY text made beforehand, on N connections at once, and copy_text_per_batch_N_row_by_row_vs_copy with the WHERE clause backflow adds on PostgreSQL 12 to 16; *_server_cpu_s is the CPU time of the server's processes during each step)")
	}
	return r, err
}
