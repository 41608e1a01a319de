package pushdown

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/backflowhq/backflow/engine"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/rules"
	"github.com/backflowhq/backflow/schema"
	"github.com/backflowhq/backflow/spec"
	"github.com/backflowhq/backflow/state"
)

// Target is where a sync's snapshot table lives: the source database and
// the schema backflow owns in it.
type Target struct {
	Dialect Dialect
	// Schema is the owned schema (MySQL: database), a plain identifier.
	Schema string
	// DSN opens the write connection of apply; never printed.
	DSN string
	// Owner is the lineage of the backflow state applying (Store): the
	// table records it, and no other state's plan or apply uses the
	// snapshot. Empty claims nothing.
	Owner string
}

// Input is what Diff reads besides the database.
type Input struct {
	Sync *config.Sync
	// Columns are the model's columns, as its plain query returns them.
	Columns []schema.Column
	// Rules are the sync's compiled exclude rules (nil when none).
	Rules        reconcile.Excluder
	Failures     state.FailureIndex
	SkipRemovals bool
	// Lineage is the planning state's: a snapshot another state owns is
	// refused (OwnerError), unless TakeOver (reset-cdc).
	Lineage  string
	TakeOver bool
}

// OwnerError is a snapshot table owned by another backflow state: another
// project (or another copy of this one, with its own state) syncs the same
// sync name into the same schema, and each would settle the other's
// changes.
type OwnerError struct {
	Sync, Schema, Owner, Lineage string
}

func (e *OwnerError) Error() string {
	this := "this state has lineage " + e.Lineage
	if e.Lineage == "" {
		this = "this state was never written"
	}
	// The owner is read from the database, which could hold anything in
	// that column: quoted, and cut to the length of a lineage or a little
	// more.
	owner := e.Owner
	if len(owner) > 64 {
		owner = strings.ToValidUTF8(owner[:64], "") + "…"
	}
	return fmt.Sprintf("the warehouse CDC snapshot of sync %q in schema %q belongs to another backflow state (lineage %q; %s): another project, or another copy of this one with its own state, syncs it. Give this project a cdc_schema of its own on its source; or, if that state is gone for good (this project's state was lost or moved), run backflow reset-cdc %s to take the model's current rows as synced under this state",
		e.Sync, e.Schema, owner, this, e.Sync)
}

// Stats say what the diff statement returned.
type Stats struct {
	// Rows is how many rows were read (rows needing a look and snapshot
	// entries of keys gone); Bytes their size as received, roughly.
	Rows, Bytes int64
	// Settled is how many model rows the database found unchanged.
	Settled int
	// Parts is how many parts of the statement ran at once (1: whole).
	Parts int
}

// CheckSchema refuses a cdc_schema that is not a plain identifier, or that
// the server keeps for itself (the config loader checks it as well).
func CheckSchema(s string) error {
	var p *spec.Problem
	if err := state.CheckSchemaName(s); errors.As(err, &p) {
		return fmt.Errorf("cdc_schema %s", p.Detail)
	} else if err != nil {
		return fmt.Errorf("cdc_schema: %w", err)
	}
	return nil
}

// hashedColumns are the columns the database hashes, in the model's
// order: the mapped ones and every column a rule could read. A column
// outside them cannot change a record or a verdict, so a row whose hashed
// columns are unchanged is settled in the database. A rule that uses the
// row other than by naming a column could read any of them: rules.Compile
// refuses one, but should one come here every column is hashed.
func hashedColumns(s *config.Sync, cols []schema.Column) []string {
	want := map[string]bool{}
	for _, m := range s.Mapping {
		want[m.Column] = true
	}
	for _, r := range s.Excludes {
		reads := rules.ReadColumns(cols, r.Expr)
		if reads.All {
			for _, c := range cols {
				want[c.Name] = true
			}
			break
		}
		for _, c := range reads.Columns {
			want[c] = true
		}
	}
	var out []string
	for _, c := range cols {
		if want[c.Name] {
			out = append(out, c.Name)
			delete(want, c.Name)
		}
	}
	return out
}

// Fingerprint identifies what a sync's database hashes and verdicts depend
// on beyond the row: when it changes, every row is looked at again. method
// is the hash method the plan used (WarehousePlan.Hash).
func Fingerprint(d Dialect, method string, s *config.Sync, cols []schema.Column) string {
	return fingerprint(d, method, s, cols, hashedColumns(s, cols))
}

// fingerprint is Fingerprint with the hashed columns already found.
func fingerprint(d Dialect, method string, s *config.Sync, cols []schema.Column, hashed []string) string {
	h := sha256.New()
	w := func(parts ...string) {
		for _, p := range parts {
			fmt.Fprintf(h, "%d:%s;", len(p), p)
		}
	}
	// PostgreSQL's keys are v2: -0 as 0, compared as bytes, long ones as
	// their MD5. A new version reads every row once, which also drops the
	// table rows of keys whose text changed.
	version := "v1"
	if d == Postgres {
		version = "v2"
	}
	w(version, string(d), method, s.Mode)
	types, dbTypes := map[string]schema.Type{}, map[string]string{}
	for _, c := range cols {
		types[c.Name], dbTypes[c.Name] = c.Type, c.DBType
	}
	// A float column's database type too: MySQL's hash reads a FLOAT
	// through DOUBLE, so a FLOAT made a DOUBLE hashes its rows as before
	// while backflow reads them anew (0.1 as 0.10000000149011612). And a
	// PostgreSQL character(n) column's, keyed and hashed with its padding
	// by this version (every row is read once after upgrading).
	typeOf := func(c string) []string {
		if types[c] == schema.TypeFloat || paddedType(dbTypes[c]) {
			return []string{types[c].String(), strings.ToLower(dbTypes[c])}
		}
		return []string{types[c].String()}
	}
	for _, k := range s.Model.PrimaryKey {
		w(append([]string{"key", k}, typeOf(k)...)...)
	}
	for _, c := range hashed {
		w(append([]string{"col", c}, typeOf(c)...)...)
	}
	for _, m := range s.Mapping {
		w("map", m.Field, m.Column)
	}
	for _, r := range s.Excludes {
		w("rule", r.Name, r.Expr)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// tuning are the PostgreSQL settings of the diff statement. Its cost
// estimates (a join on computed keys) would have JIT compile it for longer
// than it runs; its hash joins and aggregates over every key spill to disk
// in the default 4 MB; a merge join would sort the whole model to pick the
// few rows needing a look, where a hash of those few does. The text forms
// the database keys and hashes are made of must not depend on the session
// (a runner in another time zone would see every key as new): the source
// fixes the settings they depend on (TimeZone, DateStyle, IntervalStyle,
// extra_float_digits, bytea_output) in every query's transaction, this
// statement's included.
var tuning = []engine.Setting{
	{Name: "jit", Value: "off"}, {Name: "work_mem", Value: "128MB"}, {Name: "enable_mergejoin", Value: "off"},
}

// mysqlTuning are the MySQL and MariaDB settings of the diff statement:
// its aggregate over every key and the table's rows is an internal
// temporary table, written to disk past 16 MB by default (a million rows
// on MariaDB 10.11: 20.8 s for that aggregate instead of 8.7 s). The
// connection that had them is closed after the statement.
var mysqlTuning = []engine.Setting{
	{Name: "tmp_table_size", Value: "268435456"}, {Name: "max_heap_table_size", Value: "268435456"},
}

// forceMD5 makes PostgreSQL 14+ hash as older servers do (tests).
var forceMD5 bool

// entry is a snapshot table row the statement returned.
type entry struct {
	dbkey, dbhash string
	key           string
	hash          uint64
	vals          []byte
	storedHash    string // the database hash the table holds
	entry         bool   // the table has a row for the key
	synced        bool
	failed        bool
	rows          int // model rows of the key the statement returned
	stale         []string
}

// Diff computes a sync's plan in the source database: one statement, then
// reconcile's diff over the rows it returned. The plan equals the one the
// local diff makes from the same model result and the same snapshot.
// Errors do not name the sync: the caller does.
func Diff(ctx context.Context, src engine.Source, t Target, in Input) (*reconcile.DiffResult, Stats, error) {
	var stats Stats
	s := in.Sync
	if err := CheckSchema(t.Schema); err != nil {
		return nil, stats, err
	}
	if err := checkColumns(t.Dialect, s.Model.Name, in.Columns); err != nil {
		return nil, stats, err
	}
	if err := checkKeyTypes(t.Dialect, s.Model.Name, s.Model.PrimaryKey, in.Columns); err != nil {
		return nil, stats, err
	}
	tables, version, owned, err := probe(ctx, src, t)
	if err != nil {
		return nil, stats, err
	}
	unowned := tables == 3 && !owned
	if tables == 3 && owned && !in.TakeOver {
		owner, err := readOwner(ctx, src, t, s.Name)
		if err != nil {
			return nil, stats, err
		}
		if owner != "" && owner != in.Lineage {
			return nil, stats, &OwnerError{Sync: s.Name, Schema: t.Schema, Owner: owner, Lineage: in.Lineage}
		}
		unowned = owner == ""
	}
	method := hashMD5
	if t.Dialect == Postgres && version >= 140000 && !forceMD5 {
		method = hashRecord
	}
	hashed := hashedColumns(s, in.Columns) // compiles the rules: once
	st := statement{
		d: t.Dialect, schema: t.Schema, sync: s.Name, query: engine.Subquery(src, s.Model.Query), cols: in.Columns,
		keys: s.Model.PrimaryKey, hashed: hashed, fingerprint: fingerprint(t.Dialect, method, s, in.Columns, hashed),
		all: s.Mode == config.ModeAll, tables: tables == 3, method: method,
	}
	if tables != 0 && tables != 3 {
		return nil, stats, fmt.Errorf("warehouse CDC schema %q holds only some of the tables %s, %s and %s: drop them or restore the others", t.Schema, rowsTable, valsTable, syncsTable)
	}
	tu := engine.Tuning{Settings: tuning}
	if t.Dialect == MySQL {
		tu.Settings = mysqlTuning
	}
	if tables == 3 {
		tu.Guard, tu.GuardWait = snapshotTables(t.Schema, rowsTable, valsTable, syncsTable), lockWait
	}
	rows, parts, err := runStatement(ctx, src, t, st, tu)
	stats.Parts = parts
	if err != nil {
		return nil, stats, lockError(t, "running model "+strconv.Quote(s.Model.Name)+" with warehouse CDC", err)
	}
	defer rows.Close()
	rcols := rows.Columns()
	n := len(rcols) - extraCols
	if n != len(in.Columns) {
		return nil, stats, fmt.Errorf("model %q: the warehouse CDC statement returned %d columns, the model %d", s.Model.Name, n, len(in.Columns))
	}
	keyIdx := make([]int, len(s.Model.PrimaryKey))
	for i, k := range s.Model.PrimaryKey {
		keyIdx[i] = slices.IndexFunc(in.Columns, func(c schema.Column) bool { return c.Name == k })
		if keyIdx[i] < 0 {
			return nil, stats, fmt.Errorf("model %q returns no primary key column %q", s.Model.Name, k)
		}
	}
	var (
		buffered [][]any
		snap     = &partialSnapshot{idx: map[string]int{}}
		keys     = map[string]entry{} // by backflow key: every key met
		// MySQL: the table's rows ('entries'), and those returned (the
		// PostgreSQL statement counts the settled rows itself).
		entries  = -1
		returned = map[string]bool{}
	)
	for rows.Next() {
		r := rows.Row()
		stats.Rows++
		stats.Bytes += rowBytes(r)
		x := r[n:]
		kind, _ := x[9].(string)
		switch kind {
		case "same":
			// One per part of a split statement.
			c, err := toInt(x[10])
			if err != nil {
				return nil, stats, fmt.Errorf("warehouse CDC count: %w", err)
			}
			stats.Settled += int(c)
			stats.Rows--
			continue
		case "entries":
			c, err := toInt(x[10])
			if err != nil {
				return nil, stats, fmt.Errorf("warehouse CDC count: %w", err)
			}
			entries = int(c)
			stats.Rows--
			continue
		case "row", "gone":
		default:
			return nil, stats, fmt.Errorf("warehouse CDC statement returned a row of kind %q", kind)
		}
		e, hasEntry, err := readEntry(t.Dialect, x)
		if err != nil {
			return nil, stats, err
		}
		if hasEntry && t.Dialect == MySQL {
			returned[dbString(t.Dialect, x[2])] = true
		}
		if kind == "row" {
			row := slices.Clone(r[:n])
			buffered = append(buffered, row)
			key, ok := reconcile.KeyOf(row, keyIdx)
			if !ok {
				continue
			}
			if hasEntry && e.key != key {
				return nil, stats, fmt.Errorf("warehouse CDC table row of key %q holds key %q: the key's text form changed; run reset-cdc", key, e.key)
			}
			e.key = key
			e.dbkey, e.dbhash = dbString(t.Dialect, x[0]), dbString(t.Dialect, x[1])
		} else {
			e.dbkey = dbString(t.Dialect, x[0])
		}
		if hasEntry && e.synced {
			snap.add(e) // once per key, however many rows it has
		}
		// A record under two database keys (its key's text changed since
		// it was stored) is its row's; the table's other row for it is
		// stale, dropped once the record's outcome is written.
		prev, met := keys[e.key]
		switch {
		case kind == "row":
			e.rows = prev.rows + 1
			e.stale = prev.stale
			if met && prev.rows == 0 && prev.dbkey != e.dbkey {
				e.stale = append(e.stale, prev.dbkey)
			}
			keys[e.key] = e
		case !met:
			keys[e.key] = e
		case prev.dbkey != e.dbkey:
			prev.stale = append(prev.stale, e.dbkey)
			keys[e.key] = prev
		}
	}
	if err := rows.Err(); err != nil {
		return nil, stats, fmt.Errorf("running model %q with warehouse CDC: %w", s.Model.Name, err)
	}
	if entries >= 0 {
		// Each table row is a settled key's, or was returned (with its
		// key's rows, or gone).
		if entries < len(returned) {
			return nil, stats, fmt.Errorf("warehouse CDC statement counted %d table rows and returned %d of them", entries, len(returned))
		}
		stats.Settled = entries - len(returned)
	}
	// Every failed key is flagged in the table (apply writes both), so
	// the statement returned it; one it did not return would be retried
	// as a removal by mistake.
	var missing []string
	for k := range in.Failures {
		if _, ok := keys[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		// A plan takes no lock: an apply of the sync checkpointing between
		// the state's read and the statement's is the usual cause, and
		// the next plan finds the two in step again.
		return nil, stats, &OutOfStepError{Missing: len(missing), First: missing[0]}
	}
	res, err := reconcile.Diff(ctx, reconcile.DiffInput{
		Sync: s, Rows: &sliceRows{cols: in.Columns, rows: buffered, i: -1}, Rules: in.Rules, Snapshot: snap,
		Failures: in.Failures, SkipRemovals: in.SkipRemovals,
		InMemory: true, // warehousePlan and Store read Changes
		// Settled rows are synced records of their own (a duplicated key
		// is never settled); the others were returned.
		Pushed: &reconcile.Pushed{Unchanged: stats.Settled, Synced: stats.Settled + snap.Len()},
	})
	if err != nil {
		return nil, stats, err
	}
	if res.Plan.Changes == nil {
		// As the local diff's: a plan's JSON lists its changes, even none.
		res.Plan.Changes = []reconcile.Change{}
	}
	// For plan --base, which compares two plans' keys and counts a
	// removed sync's records.
	res.Snapshot, res.Synced = snap, stats.Settled+snap.Len()
	res.Plan.Warehouse = warehousePlan(st.fingerprint, res, keys, in.Failures)
	res.Plan.Warehouse.Hash = method
	res.Plan.Warehouse.Unowned = unowned
	return res, stats, nil
}

// Splitting the statement (PostgreSQL): its parts run at once on
// connections of their own, sharing one snapshot (engine.QueryShared), when
// the sync has enough rows in the snapshot table for the other connections
// to pay (splitRows) and the server runs parallel queries at all
// (max_parallel_workers_per_gather above 0: its administrator's word on
// using more than one core for a query). A server that cannot share a
// snapshot (no pg_export_snapshot, a connection limit reached) runs the
// statement whole.
var splitRows = 250_000

// splitMode forces one way in tests (0: as the server says).
var splitMode int

const (
	splitAlways = 1
	splitNever  = 2
)

// runStatement runs the diff statement, split when it pays, and says in
// how many parts.
func runStatement(ctx context.Context, src engine.Source, t Target, st statement, tu engine.Tuning) (engine.Rows, int, error) {
	if st.d == Postgres && st.tables && shouldSplit(ctx, src, t, st.sync) {
		var parts []string
		for i := range splitParts {
			p := st
			p.part, p.parts = i, splitParts
			parts = append(parts, p.sql())
		}
		rows, err := engine.QueryShared(ctx, src, parts, tu)
		if !errors.Is(err, engine.ErrNotShared) {
			return rows, len(parts), err
		}
	}
	rows, err := engine.QueryTuned(ctx, src, st.sql(), tu)
	return rows, 1, err
}

// shouldSplit says whether sync s's statement is split (splitMode,
// splitRows). The server's answer is a hint: a failure to read it is no
// error (the statement, run whole, says what is wrong).
func shouldSplit(ctx context.Context, src engine.Source, t Target, s string) bool {
	switch splitMode {
	case splitAlways:
		return true
	case splitNever:
		return false
	}
	if _, ok := src.(engine.Sharer); !ok {
		return false
	}
	// The sync's rows, counted up to splitRows through the table's primary
	// key (sync first): not the table's size, which other syncs' rows, or
	// rows deleted, make large. Read under a lock, which a session holding
	// the table (a LOCK TABLE left open) would make wait: not long, as the
	// statement's own wait for it (Tuning.Guard) says what is wrong.
	rows, err := engine.QueryTuned(ctx, src, fmt.Sprintf("SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM %s WHERE sync = %s LIMIT %d) z) >= %[3]d AND current_setting('max_parallel_workers_per_gather') <> '0'",
		Postgres.table(t.Schema, rowsTable), Postgres.lit(s), splitRows), engine.Tuning{Settings: []engine.Setting{{Name: "lock_timeout", Value: "100"}}})
	if err != nil {
		return false
	}
	defer rows.Close()
	if !rows.Next() {
		return false
	}
	ok, err := toBool(rows.Row()[0])
	return err == nil && ok
}

// warehousePlan records, for apply, the database key and hash of every key
// the plan touches, and the synced rows whose stored database hash is out
// of date though their record needs nothing.
func warehousePlan(fp string, res *reconcile.DiffResult, keys map[string]entry, failures state.FailureIndex) *reconcile.WarehousePlan {
	wp := &reconcile.WarehousePlan{Fingerprint: fp, Keys: map[string]reconcile.WarehouseKey{}}
	touched := map[string]bool{}
	for _, c := range res.Plan.Changes {
		touched[c.Key] = true
	}
	for _, k := range res.Plan.DropFailures {
		touched[k] = true
	}
	for k := range touched {
		e := keys[k]
		wp.Keys[k] = reconcile.WarehouseKey{DBKey: e.dbkey, DBHash: e.dbhash, Stale: e.stale}
	}
	var refresh []string
	for k, e := range keys {
		if len(e.stale) > 0 && !touched[k] && e.rows == 1 {
			// The record's other table rows go; when it has none under
			// its database key, its stored one moves there.
			stale := e.stale
			if !e.entry {
				wp.Move = append(wp.Move, reconcile.WarehouseMove{From: stale[0], To: e.dbkey, DBHash: e.dbhash})
				stale = stale[1:]
			}
			wp.Drop = append(wp.Drop, stale...)
		}
		if e.entry && !e.synced && !touched[k] && failures[k] == nil {
			wp.Drop = append(wp.Drop, e.dbkey)
			continue
		}
		if touched[k] || !e.synced || e.dbhash == "" || e.rows != 1 {
			continue
		}
		if _, excluded := res.ExcludedKeys[k]; excluded {
			continue
		}
		if e.dbhash != e.storedHash || e.failed {
			refresh = append(refresh, k)
		}
	}
	sort.Strings(refresh)
	sort.Strings(wp.Drop)
	sort.Slice(wp.Move, func(i, j int) bool { return wp.Move[i].To < wp.Move[j].To })
	for _, k := range refresh {
		e := keys[k]
		wp.Refresh = append(wp.Refresh, reconcile.WarehouseKey{DBKey: e.dbkey, DBHash: e.dbhash})
	}
	return wp
}

// readEntry reads the snapshot table columns of a statement row; ok is
// false when the row matched no table row.
func readEntry(d Dialect, x []any) (e entry, ok bool, err error) {
	if x[2] == nil {
		return e, false, nil
	}
	e.entry = true
	e.storedHash = dbString(d, x[3])
	if e.synced, err = toBool(x[4]); err != nil {
		return e, false, err
	}
	if e.failed, err = toBool(x[5]); err != nil {
		return e, false, err
	}
	e.key = bytesOrString(x[6])
	h, err := toInt(x[7])
	if err != nil {
		return e, false, fmt.Errorf("warehouse CDC table: hash: %w", err)
	}
	e.hash = uint64(h)
	switch v := x[8].(type) {
	case nil:
	case []byte:
		e.vals = v
	case string:
		e.vals = []byte(v)
	}
	return e, true, nil
}

// dbString is a database key or hash as the plan carries it: PostgreSQL's
// text, MySQL's bytes in hex.
func dbString(d Dialect, v any) string {
	if v == nil {
		return ""
	}
	if d == MySQL {
		if b, ok := v.([]byte); ok {
			return hex.EncodeToString(b)
		}
		return hex.EncodeToString([]byte(bytesOrString(v)))
	}
	return bytesOrString(v)
}

// dbParam is what a key or hash of the plan is written to the table as.
func dbParam(d Dialect, s string) (any, error) {
	if d == MySQL {
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("warehouse CDC key %q in the plan: %w", s, err)
		}
		return b, nil
	}
	return s, nil
}

func bytesOrString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case float64:
		return int64(x), nil
	case string:
		var n int64
		_, err := fmt.Sscan(x, &n)
		return n, err
	case nil:
		return 0, nil
	}
	return 0, fmt.Errorf("unexpected %T", v)
}

func toBool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case int64:
		return x != 0, nil
	case nil:
		return false, nil
	}
	return false, fmt.Errorf("warehouse CDC table: unexpected %T for a flag", v)
}

func rowBytes(r []any) int64 {
	var n int64
	for _, v := range r {
		switch x := v.(type) {
		case string:
			n += int64(len(x))
		case []byte:
			n += int64(len(x))
		case nil:
			n++
		default:
			n += 8
		}
	}
	return n
}

// probe counts the snapshot tables present (0 to 3), reads the PostgreSQL
// server's version (server_version_num; 0 on MySQL), and says whether
// cdc_syncs records owners (tables made before it did have no lineage
// column until an apply adds it).
func probe(ctx context.Context, src engine.Source, t Target) (tables, version int, owned bool, err error) {
	rows, err := src.Query(ctx, t.Dialect.probeSQL(t.Schema))
	if err != nil {
		return 0, 0, false, fmt.Errorf("looking for the warehouse CDC tables: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return 0, 0, false, fmt.Errorf("looking for the warehouse CDC tables: %w", err)
		}
		return 0, 0, false, errors.New("looking for the warehouse CDC tables: no answer")
	}
	var n [3]int64
	for i := range n {
		if n[i], err = toInt(rows.Row()[i]); err != nil {
			return 0, 0, false, err
		}
	}
	return int(n[0]), int(n[1]), n[2] > 0, nil
}

// readOwner is the lineage of the state owning sync's snapshot ("": none).
func readOwner(ctx context.Context, src engine.Source, t Target, sync string) (string, error) {
	d := t.Dialect
	tu := engine.Tuning{Guard: snapshotTables(t.Schema, syncsTable), GuardWait: lockWait}
	rows, err := engine.QueryTuned(ctx, src, fmt.Sprintf("SELECT lineage FROM %s WHERE sync = %s", d.table(t.Schema, syncsTable), d.lit(sync)), tu)
	if err != nil {
		return "", lockError(t, "reading the warehouse CDC snapshot's owner", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return "", rows.Err()
	}
	return bytesOrString(rows.Row()[0]), nil
}

// snapshotTables are the named snapshot tables of schema, which a plan
// reads under the lock wait of apply's writes (engine.Tuning.Guard): a
// session holding a lock on one (a LOCK TABLE left open, a schema change)
// fails the plan after lockWait, saying so, where the model's own tables
// wait as long as the query timeout allows.
func snapshotTables(schemaName string, names ...string) []engine.Table {
	out := make([]engine.Table, len(names))
	for i, n := range names {
		out[i] = engine.Table{Schema: schemaName, Name: n}
	}
	return out
}

// lockError explains a lock on a snapshot table that outlasted the wait,
// in Store.errorf's words; other errors are wrapped with what.
func lockError(t Target, what string, err error) error {
	var le *engine.LockError
	if !errors.As(err, &le) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("warehouse CDC schema %q on %s: %s: another session held a lock on the snapshot table %s for more than %v (a LOCK TABLE left open, a long transaction or a schema change); %s, and plan again once it has ended: %w",
		t.Schema, le.Addr, what, le.Table.Name, le.Wait, le.Find(), le.Err)
}

// partialSnapshot is the part of the snapshot the statement returned.
type partialSnapshot struct {
	entries []entry
	idx     map[string]int
}

func (p *partialSnapshot) add(e entry) {
	if _, ok := p.idx[e.key]; ok {
		return
	}
	p.idx[e.key] = len(p.entries)
	p.entries = append(p.entries, e)
}

func (p *partialSnapshot) Len() int { return len(p.entries) }

func (p *partialSnapshot) Lookup(key string) (int, uint64, bool) {
	i, ok := p.idx[key]
	if !ok {
		return 0, 0, false
	}
	return i, p.entries[i].hash, true
}

func (p *partialSnapshot) Key(i int) string { return p.entries[i].key }

func (p *partialSnapshot) Values(i int) (map[string]any, error) {
	if p.entries[i].vals == nil {
		return nil, nil
	}
	return state.DecodeValues(p.entries[i].vals)
}

// sliceRows serves buffered rows to reconcile's diff.
type sliceRows struct {
	cols []schema.Column
	rows [][]any
	i    int
}

func (r *sliceRows) Columns() []schema.Column { return r.cols }
func (r *sliceRows) Next() bool               { r.i++; return r.i < len(r.rows) }
func (r *sliceRows) Row() []any               { return r.rows[r.i] }
func (r *sliceRows) Err() error               { return nil }
func (r *sliceRows) Close() error             { return nil }

// checkColumns refuses model columns the statement cannot tell apart:
// names of its own columns (__bf_…), and one name twice (MySQL's
// names are case-insensitive).
func checkColumns(d Dialect, model string, cols []schema.Column) error {
	seen := map[string]string{}
	for _, c := range cols {
		if strings.HasPrefix(strings.ToLower(c.Name), "__bf_") {
			return fmt.Errorf("model %q returns a column named %q: names starting with __bf_ are warehouse CDC's own; rename it in the model's query (… AS another_name)", model, c.Name)
		}
		n := c.Name
		if d == MySQL {
			n = strings.ToLower(n)
		}
		if prev, ok := seen[n]; ok {
			return fmt.Errorf("model %q returns two columns named %q (%q): warehouse CDC needs every column of the query named apart; rename one (… AS another_name)", model, prev, c.Name)
		}
		seen[n] = c.Name
	}
	return nil
}

// checkKeyTypes refuses key columns whose keys the database would tell
// apart where backflow takes them as one: a PostgreSQL json value's text
// keeps its spacing ({"a":1} and {"a": 1}), where backflow keys it by its
// compact form; the newcomer would go through as an add over the synced
// record instead of being held as a duplicate key.
func checkKeyTypes(d Dialect, model string, keys []string, cols []schema.Column) error {
	if d != Postgres {
		return nil
	}
	for _, c := range cols {
		if (c.DBType == "json" || c.DBType == "_json") && slices.Contains(keys, c.Name) {
			return fmt.Errorf("model %q: primary key column %q is of type %s, whose text keeps the spacing backflow ignores: warehouse CDC cannot key it as backflow does; key by its jsonb (%s::jsonb AS %s) or diff this sync locally (cdc = \"local\")", model, c.Name, c.DBType, c.Name, c.Name)
		}
	}
	return nil
}

// OutOfStepError is a plan whose failure index, read from the state before
// the statement ran, holds keys the snapshot table does not flag. An apply
// of the sync recording outcomes between the two reads is the usual
// cause: a plan reading both again finds them in step.
type OutOfStepError struct {
	Missing int    // keys of the failure index the table does not flag
	First   string // the first of them, in key order
}

func (e *OutOfStepError) Error() string {
	return fmt.Sprintf("the failure index holds %d keys the warehouse CDC table does not flag (first %q): the two are out of step. If an apply of this sync was running, plan again once it has ended; if this persists, run reset-cdc (it takes the model's current rows as synced)", e.Missing, e.First)
}
