package pushdown

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/backflowhq/backflow/engine"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/redact"
	"github.com/backflowhq/backflow/state"
)

// writeTimeout bounds one write transaction of the snapshot table.
const writeTimeout = 10 * time.Minute

// Store writes snapshot tables in the owned schema of a source database,
// on a connection of its own (model queries stay read-only).
type Store struct {
	t      Target
	db     *sql.DB
	addr   string
	redact *redact.Redactor
	once   sync.Once
	ddlErr error
}

// Open connects to the source database for writing.
func Open(ctx context.Context, t Target) (*Store, error) {
	if err := CheckSchema(t.Schema); err != nil {
		return nil, err
	}
	s := &Store{t: t, redact: redact.New(t.DSN)}
	switch t.Dialect {
	case Postgres:
		cc, err := pgx.ParseConfig(t.DSN)
		if err != nil {
			return nil, errors.New("warehouse CDC: invalid PostgreSQL dsn")
		}
		if cc.Password != "" {
			s.redact.Add(cc.Password)
		}
		cc.ConnectTimeout = 10 * time.Second
		if cc.RuntimeParams == nil {
			cc.RuntimeParams = map[string]string{}
		}
		cc.RuntimeParams["application_name"] = "backflow cdc"
		if _, set := cc.RuntimeParams["lock_timeout"]; !set {
			cc.RuntimeParams["lock_timeout"] = strconv.FormatInt(lockWait.Milliseconds(), 10)
		}
		s.addr = net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port)))
		s.db = stdlib.OpenDB(*cc)
	case MySQL:
		mc, err := mysql.ParseDSN(t.DSN)
		if err != nil {
			return nil, errors.New("warehouse CDC: invalid MySQL dsn")
		}
		if mc.Passwd != "" {
			s.redact.Add(mc.Passwd)
		}
		mc.Timeout = 10 * time.Second
		mc.MultiStatements = false
		if mc.Params == nil {
			mc.Params = map[string]string{}
		}
		for _, v := range []string{"innodb_lock_wait_timeout", "lock_wait_timeout"} {
			if _, set := mc.Params[v]; !set {
				mc.Params[v] = strconv.FormatInt(max(int64(lockWait.Seconds()), 1), 10)
			}
		}
		mc.Logger = &mysql.NopLogger{}
		connector, err := mysql.NewConnector(mc)
		if err != nil {
			return nil, errors.New("warehouse CDC: invalid MySQL dsn")
		}
		s.addr = mc.Addr
		s.db = sql.OpenDB(connector)
	default:
		return nil, fmt.Errorf("warehouse CDC: unknown dialect %q", t.Dialect)
	}
	s.db.SetMaxOpenConns(1)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.db.PingContext(pctx); err != nil {
		s.db.Close()
		return nil, s.errorf("connecting", err)
	}
	return s, nil
}

// Close closes the connection.
func (s *Store) Close() error { return s.db.Close() }

func (s *Store) errorf(what string, err error) error {
	hint := ""
	var pe *pgconn.PgError
	var me *mysql.MySQLError
	if engine.ConnectionLost(err) {
		hint = " (the server closed the connection: the session was killed, the server restarted, or something between cut it; apply again: what was not written is retried)"
	}
	if (errors.As(err, &pe) && pe.Code == "55P03") || (errors.As(err, &me) && me.Number == 1205) {
		hint = fmt.Sprintf(" (another session held a lock on the snapshot tables for more than %v: a LOCK TABLE, a long transaction or a schema change; find it in pg_locks or SHOW PROCESSLIST and apply again: what was not written is retried)", lockWait)
	}
	return fmt.Errorf("warehouse CDC schema %q on %s: %s: %s%s", s.t.Schema, s.addr, what, s.redact.String(err.Error()), hint)
}

// lockWait bounds each wait of apply's writes for a lock another session
// holds on the snapshot tables (PostgreSQL lock_timeout, MySQL's lock wait
// timeouts), unless the DSN sets them, and a plan's wait for such a lock
// before it reads them (snapshotTables).
var lockWait = time.Minute

// create makes the owned schema and tables, once per store. Runners
// applying syncs of one schema at once (apply --parallelism, or several
// jobs) create them one at a time, under the schema's lock: PostgreSQL's
// CREATE … IF NOT EXISTS of an object another session is creating fails
// on its catalog's unique indexes, and two ALTER TABLE … ADD COLUMN of the
// owner column would collide anywhere.
func (s *Store) create(ctx context.Context) error {
	s.once.Do(func() {
		conn, err := s.db.Conn(ctx)
		if err != nil {
			s.ddlErr = s.errorf("creating the snapshot tables", err)
			return
		}
		defer conn.Close()
		key, name := state.SchemaLock(s.t.Schema)
		if s.t.Dialect == Postgres {
			// DDL is transactional: the lock is the transaction's, and a
			// runner waiting for it then finds everything created.
			tx, err := conn.BeginTx(ctx, nil)
			if err != nil {
				s.ddlErr = s.errorf("creating the snapshot tables", err)
				return
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", key); err != nil {
				s.ddlErr = s.errorf("waiting for another runner creating the snapshot tables", err)
				return
			}
			if s.ddlErr = s.createOn(ctx, tx); s.ddlErr == nil {
				if err := tx.Commit(); err != nil {
					s.ddlErr = s.errorf("creating the snapshot tables", err)
				}
			}
			return
		}
		// MySQL: DDL commits by itself; a named lock of the session.
		wait := max(int64(lockWait/time.Second), 1)
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", name, wait).Scan(&got); err != nil {
			s.ddlErr = s.errorf("waiting for another runner creating the snapshot tables", err)
			return
		}
		if got.Int64 != 1 {
			s.ddlErr = fmt.Errorf("warehouse CDC schema %q on %s: another runner kept creating or upgrading the snapshot tables for %ds; apply again", s.t.Schema, s.addr, wait)
			return
		}
		defer conn.ExecContext(context.Background(), "SELECT RELEASE_LOCK(?)", name)
		s.ddlErr = s.createOn(ctx, conn)
	})
	return s.ddlErr
}

// sqlConn is what createOn runs statements on: a connection or a
// transaction holding the schema's lock.
type sqlConn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// createOn creates the schema and tables on c, and adds the owner column
// to cdc_syncs made before it recorded owners.
func (s *Store) createOn(ctx context.Context, c sqlConn) error {
	d := s.t.Dialect
	for _, q := range d.ddl(s.t.Schema) {
		if _, err := c.ExecContext(ctx, q); err != nil {
			return s.errorf("creating the snapshot tables", err)
		}
	}
	_, owned, err := s.probeOn(ctx, c)
	if err != nil || owned {
		return err
	}
	col := "lineage text NULL"
	if d == MySQL {
		col = "lineage VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL"
	}
	if _, err := c.ExecContext(ctx, "ALTER TABLE "+d.table(s.t.Schema, syncsTable)+" ADD COLUMN "+col); err != nil {
		return s.errorf("adding the owner column to the snapshot tables", err)
	}
	return nil
}

// ClaimUnowned records Target.Owner as the owner of sync's snapshot when
// it has none (a table an earlier version made gets the column first):
// what an apply with nothing to send does, so that such tables do not
// stay open to other states until a change comes, and what reset-cdc does
// once a state that had no lineage has one.
func (s *Store) ClaimUnowned(ctx context.Context, sync string) error {
	if s.t.Owner == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if tables, _, err := s.probe(ctx); err != nil || tables == 0 {
		return err // no tables: no snapshot yet, the first apply that sends makes it
	}
	if err := s.create(ctx); err != nil {
		return err
	}
	d := s.t.Dialect
	b := newArgs(d)
	q := fmt.Sprintf("UPDATE %s SET lineage = %s WHERE sync = %s AND lineage IS NULL", d.table(s.t.Schema, syncsTable), b.add(s.t.Owner), b.add(sync))
	if _, err := s.db.ExecContext(ctx, q, b.args...); err != nil {
		return s.errorf("recording the snapshot's owner", err)
	}
	return nil
}

// probe is Diff's probe on the store's own connection: how many of the
// snapshot tables exist, and whether cdc_syncs has its lineage column.
func (s *Store) probe(ctx context.Context) (tables int, owned bool, err error) {
	return s.probeOn(ctx, s.db)
}

// probeOn is probe on c.
func (s *Store) probeOn(ctx context.Context, c sqlConn) (tables int, owned bool, err error) {
	var version, lineageCols int
	if err := c.QueryRowContext(ctx, s.t.Dialect.probeSQL(s.t.Schema)).Scan(&tables, &version, &lineageCols); err != nil {
		return 0, false, s.errorf("looking for the snapshot tables", err)
	}
	return tables, lineageCols > 0, nil
}

// checkOwner refuses to write a snapshot another state owns (see
// Target.Owner), in tx, which then holds its cdc_syncs row.
func (s *Store) checkOwner(ctx context.Context, tx *sql.Tx, syncName string) error {
	if s.t.Owner == "" {
		return nil
	}
	d := s.t.Dialect
	b := newArgs(d)
	var owner sql.NullString
	err := tx.QueryRowContext(ctx, fmt.Sprintf("SELECT lineage FROM %s WHERE sync = %s FOR UPDATE", d.table(s.t.Schema, syncsTable), b.add(syncName)), b.args...).Scan(&owner)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return s.errorf("reading the snapshot's owner", err)
	}
	if owner.Valid && owner.String != "" && owner.String != s.t.Owner {
		return &OwnerError{Sync: syncName, Schema: s.t.Schema, Owner: owner.String, Lineage: s.t.Owner}
	}
	return nil
}

// Begin wraps the state transaction of one apply of a sync planned with
// warehouse CDC: outcomes go to both, the snapshot table first, so that a
// failure the state records is always flagged in the table (the plan of
// the next run finds failed keys through the flag).
func (s *Store) Begin(inner state.Tx, sync string, wp *reconcile.WarehousePlan) state.Tx {
	return &Tx{s: s, inner: inner, sync: sync, wp: wp, pending: map[string]op{}, flagged: map[string]bool{}}
}

// op is the last outcome of a key not yet written.
type op struct {
	kind   byte // 'a' accept, 'f' fail, 'd' forget
	key    string
	dbkey  string
	dbhash string
	hash   uint64
	vals   []byte
}

// Tx records the outcomes of one apply in the snapshot table and in the
// state.
type Tx struct {
	s     *Store
	inner state.Tx
	sync  string
	wp    *reconcile.WarehousePlan

	mu      sync.Mutex
	pending map[string]op // by database key
	order   []string
	flagged map[string]bool // keys flagged in flight by this apply
	// Written, waiting for the state to record them (settle).
	settleAccepts, settleDeletes []string
	err                          error
}

var _ state.Tx = (*Tx)(nil)

func (t *Tx) record(key string, o op) {
	t.mu.Lock()
	defer t.mu.Unlock()
	wk, ok := t.wp.Keys[key]
	if !ok {
		if t.err == nil {
			t.err = fmt.Errorf("key %q has no warehouse CDC entry in the plan", key)
		}
		return
	}
	o.key, o.dbkey = key, wk.DBKey
	if o.kind == 'a' {
		o.dbhash = wk.DBHash
	}
	if _, ok := t.pending[o.dbkey]; !ok {
		t.order = append(t.order, o.dbkey)
	}
	t.pending[o.dbkey] = o
}

// InFlight flags the records about to be sent as failed in the table
// before the state journals them: after a crash the state recovers them as
// failures of unknown outcome, and the next plan must find them flagged.
func (t *Tx) InFlight(recs []state.InFlightRecord) error {
	for _, r := range recs {
		t.mu.Lock()
		flagged := t.flagged[r.Key]
		t.flagged[r.Key] = true
		t.mu.Unlock()
		if !flagged {
			t.record(r.Key, op{kind: 'f'})
		}
	}
	if err := t.flush(false); err != nil {
		return err
	}
	return t.inner.InFlight(recs)
}

func (t *Tx) Accept(key string, hash uint64, values map[string]any) {
	vals, err := state.EncodeValues(values)
	if err != nil {
		t.mu.Lock()
		if t.err == nil {
			t.err = fmt.Errorf("accept %q: %w", key, err)
		}
		t.mu.Unlock()
		return
	}
	// The state keeps no snapshot of a warehouse CDC sync: forgetting the
	// key there drops its failure entry, as an accept does. The state
	// hears of the outcome first: a checkpoint running meanwhile (apply
	// checkpoints in the background) settles in the table only outcomes
	// recorded before it, which its state checkpoint then holds too.
	// The other order let it clear the flag of a record the state still
	// held in flight.
	t.inner.Forget(key)
	t.record(key, op{kind: 'a', hash: hash, vals: vals})
}

// Forget records a removal, in the state first (see Accept).
func (t *Tx) Forget(key string) {
	t.inner.Forget(key)
	t.record(key, op{kind: 'd'})
}

func (t *Tx) Fail(f state.Failure) {
	t.record(f.Key, op{kind: 'f'})
	t.inner.Fail(f)
}

// Checkpoint writes the outcomes so far to the table, still flagged as
// failed, then checkpoints the state, then settles them (see settle): at
// no moment does the state hold a failure the table does not flag.
func (t *Tx) Checkpoint() error {
	if err := t.flush(false); err != nil {
		return err
	}
	if err := t.inner.Checkpoint(); err != nil {
		return err
	}
	return t.settle()
}

// Commit is Checkpoint's order for the last outcomes, with the stale
// hashes refreshed and the fingerprint recorded. Once the state is
// committed, a failure to settle leaves flags the next plan looks at and
// the next apply clears: it is not an error of the commit.
func (t *Tx) Commit() error {
	if err := t.flush(true); err != nil {
		t.inner.Abort()
		return err
	}
	if err := t.inner.Commit(); err != nil {
		return err
	}
	_ = t.settle()
	return nil
}

func (t *Tx) Abort() error { return t.inner.Abort() }

// Unsent says the destination wrote none of these records in flight. Their
// flags stay in the table: the next plan reads their rows again and diffs
// them against the values last sent, which sends them again as what they
// are (an add, a change) since the state holds no failure for them.
func (t *Tx) Unsent(keys []string) { t.inner.Unsent(keys) }

// StillHeld implements state.LockChecker for a state whose Tx does.
func (t *Tx) StillHeld(ctx context.Context, maxAge time.Duration) error {
	if lc, ok := t.inner.(state.LockChecker); ok {
		return lc.StillHeld(ctx, maxAge)
	}
	return nil
}

// flush writes the pending outcomes in one transaction; the last one also
// refreshes stale hashes, drops stale entries and records the fingerprint.
func (t *Tx) flush(final bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return t.err
	}
	if len(t.order) == 0 && !final {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := t.s.create(ctx); err != nil {
		return err
	}
	if err := t.s.write(ctx, t.sync, t.order, t.pending, t.wp, final, false); err != nil {
		return err
	}
	for _, k := range t.order {
		switch t.pending[k].kind {
		case 'a':
			t.settleAccepts = append(t.settleAccepts, k)
		case 'd':
			t.settleDeletes = append(t.settleDeletes, k)
		}
	}
	t.pending, t.order = map[string]op{}, nil
	return nil
}

// settle clears the flag of records accepted and deletes the entries of
// records forgotten, once the state recorded both.
func (t *Tx) settle() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.settleAccepts) == 0 && len(t.settleDeletes) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := t.s.settle(ctx, t.sync, t.settleAccepts, t.settleDeletes); err != nil {
		return err
	}
	t.settleAccepts, t.settleDeletes = nil, nil
	return nil
}

// begin starts a write transaction: READ COMMITTED on MySQL, where
// REPEATABLE READ's gap locks (checkOwner's SELECT … FOR UPDATE of a sync
// with no cdc_syncs row yet, the deletes of keys not in the table) made
// runners applying different syncs of one schema at once deadlock on
// their inserts.
func (s *Store) begin(ctx context.Context) (*sql.Tx, error) {
	var opts *sql.TxOptions
	if s.t.Dialect == MySQL {
		opts = &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	}
	return s.db.BeginTx(ctx, opts)
}

// settle runs the statements of Tx.settle in a transaction.
func (s *Store) settle(ctx context.Context, syncName string, accepts, deletes []string) error {
	tx, err := s.begin(ctx)
	if err != nil {
		return s.errorf("starting a write", err)
	}
	defer tx.Rollback()
	if err := s.byKeys(ctx, tx, rowsTable, syncName, accepts, "UPDATE %s SET failed = FALSE WHERE sync = %s AND dbkey IN (%s)"); err != nil {
		return err
	}
	if err := s.deleteKeys(ctx, tx, syncName, deletes); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return s.errorf("committing", err)
	}
	return nil
}

// byKeys runs stmt (table, sync placeholder, key placeholders) on table
// over keys in chunks.
func (s *Store) byKeys(ctx context.Context, tx *sql.Tx, table, syncName string, keys []string, stmt string) error {
	d := s.t.Dialect
	const chunk = 500
	for i := 0; i < len(keys); i += chunk {
		b := newArgs(d)
		sp := b.add(syncName)
		var ph []string
		for _, k := range keys[i:min(i+chunk, len(keys))] {
			v, err := dbParam(d, k)
			if err != nil {
				return err
			}
			ph = append(ph, b.add(v))
		}
		q := fmt.Sprintf(stmt, d.table(s.t.Schema, table), sp, strings.Join(ph, ", "))
		if _, err := tx.ExecContext(ctx, q, b.args...); err != nil {
			return s.errorf("settling records", err)
		}
	}
	return nil
}

// Reset replaces a sync's snapshot table rows with the changes of sp, a
// plan of the sync in mode "all" made by Diff (every included row), all
// taken as accepted; fingerprint is the sync's own (Fingerprint).
func (s *Store) Reset(ctx context.Context, sp *reconcile.SyncPlan, fingerprint string) error {
	if sp.Warehouse == nil {
		return errors.New("reset-cdc needs a plan made with warehouse CDC")
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if err := s.create(ctx); err != nil {
		return err
	}
	pending := map[string]op{}
	var order []string
	for _, c := range sp.Changes {
		wk, ok := sp.Warehouse.Keys[c.Key]
		if !ok {
			return fmt.Errorf("key %q has no warehouse CDC entry in the plan", c.Key)
		}
		vals, err := state.EncodeValues(c.After)
		if err != nil {
			return fmt.Errorf("key %q: %w", c.Key, err)
		}
		if _, dup := pending[wk.DBKey]; !dup {
			order = append(order, wk.DBKey)
		}
		pending[wk.DBKey] = op{kind: 'a', key: c.Key, dbkey: wk.DBKey, dbhash: wk.DBHash, hash: c.Hash, vals: vals}
	}
	wp := &reconcile.WarehousePlan{Fingerprint: fingerprint}
	return s.write(ctx, sp.Name, order, pending, wp, true, true)
}

// write runs the statements of one flush in a transaction; reset first
// empties the sync's rows.
func (s *Store) write(ctx context.Context, syncName string, order []string, pending map[string]op, wp *reconcile.WarehousePlan, final, reset bool) error {
	tx, err := s.begin(ctx)
	if err != nil {
		return s.errorf("starting a write", err)
	}
	defer tx.Rollback()
	d := s.t.Dialect
	rows, vals, syncs := d.table(s.t.Schema, rowsTable), d.table(s.t.Schema, valsTable), d.table(s.t.Schema, syncsTable)
	if !reset {
		// reset-cdc takes the snapshot over; an apply writes its own only.
		if err := s.checkOwner(ctx, tx, syncName); err != nil {
			return err
		}
	}
	if reset {
		for _, t := range []string{rows, vals} {
			b := newArgs(d)
			if _, err := tx.ExecContext(ctx, fmt.Sprintf("DELETE FROM %s WHERE sync = %s", t, b.add(syncName)), b.args...); err != nil {
				return s.errorf("emptying the snapshot", err)
			}
		}
	}
	var dels, accepts, fails []op
	for _, k := range order {
		o := pending[k]
		switch o.kind {
		case 'd':
			dels = append(dels, o)
		case 'a':
			accepts = append(accepts, o)
		case 'f':
			fails = append(fails, o)
		}
	}
	const chunk = 500
	exec := func(what, q string, args []any) error {
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return s.errorf(what, err)
		}
		return nil
	}
	upsert := func(what, table, cols string, list []op, row func(b *args, o op) (string, error), onConflict string) error {
		for i := 0; i < len(list); i += chunk {
			b := newArgs(d)
			var tuples []string
			for _, o := range list[i:min(i+chunk, len(list))] {
				v, err := row(b, o)
				if err != nil {
					return err
				}
				tuples = append(tuples, v)
			}
			q := fmt.Sprintf("INSERT INTO %s (%s) VALUES %s %s", table, cols, strings.Join(tuples, ", "), onConflict)
			if err := exec(what, q, b.args); err != nil {
				return err
			}
		}
		return nil
	}
	// The flags of cdc_rows; kind 'a' stores dbhash too.
	flagRow := func(synced, failed string) func(b *args, o op) (string, error) {
		return func(b *args, o op) (string, error) {
			k, err := dbParam(d, o.dbkey)
			if err != nil {
				return "", err
			}
			h, err := dbParam(d, o.dbhash)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("(%s, %s, %s, %s, %s)", b.add(syncName), b.add(k), b.add(h), synced, failed), nil
		}
	}
	// The key of cdc_vals, without values (a record not synced).
	keyRow := func(b *args, o op) (string, error) {
		k, err := dbParam(d, o.dbkey)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("(%s, %s, %s, 0, NULL)", b.add(syncName), b.add(k), b.add(o.key)), nil
	}
	valsRow := func(b *args, o op) (string, error) {
		k, err := dbParam(d, o.dbkey)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("(%s, %s, %s, %s, %s)", b.add(syncName), b.add(k), b.add(o.key), b.add(int64(o.hash)), b.add(o.vals)), nil
	}
	// Outcomes are written flagged as failed until the state has recorded
	// them (Tx.settle): an accept with its new values, a forget as an
	// entry no longer synced. reset-cdc writes them settled.
	flag := "TRUE"
	if reset {
		flag = "FALSE"
	}
	conflict := func(set string) string {
		if d == MySQL {
			return "ON DUPLICATE KEY UPDATE " + set
		}
		return "ON CONFLICT (sync, dbkey) DO UPDATE SET " + set
	}
	keep := "ON CONFLICT (sync, dbkey) DO NOTHING"
	acceptVals := conflict("bkey = EXCLUDED.bkey, hash = EXCLUDED.hash, vals = EXCLUDED.vals")
	acceptRows := conflict("dbhash = EXCLUDED.dbhash, synced = TRUE, failed = " + flag)
	if d == MySQL {
		keep = "ON DUPLICATE KEY UPDATE sync = sync"
		acceptVals = conflict("bkey = VALUES(bkey), hash = VALUES(hash), vals = VALUES(vals)")
		acceptRows = conflict("dbhash = VALUES(dbhash), synced = TRUE, failed = " + flag)
	}
	const rowCols, valCols = "sync, dbkey, dbhash, synced, failed", "sync, dbkey, bkey, hash, vals"
	// The other rows of records written as accepted or forgotten.
	var stale []string
	for _, o := range append(accepts, dels...) {
		for _, k := range wp.Keys[o.key].Stale {
			if _, written := pending[k]; !written {
				stale = append(stale, k)
			}
		}
	}
	if err := s.deleteKeys(ctx, tx, syncName, stale); err != nil {
		return err
	}
	for _, step := range []struct {
		what, table, cols string
		list              []op
		row               func(b *args, o op) (string, error)
		onConflict        string
	}{
		{"recording accepted records", vals, valCols, accepts, valsRow, acceptVals},
		{"recording accepted records", rows, rowCols, accepts, flagRow("TRUE", flag), acceptRows},
		{"recording failed records", vals, valCols, fails, keyRow, keep},
		{"recording failed records", rows, rowCols, fails, flagRow("FALSE", "TRUE"), conflict("failed = TRUE")},
		{"recording forgotten records", vals, valCols, dels, keyRow, keep},
		{"recording forgotten records", rows, rowCols, dels, flagRow("FALSE", "TRUE"), conflict("synced = FALSE, failed = TRUE")},
	} {
		if err := upsert(step.what, step.table, step.cols, step.list, step.row, step.onConflict); err != nil {
			return err
		}
	}
	if final {
		var refresh, moveRows, moveVals [][]string
		for _, r := range wp.Refresh {
			if _, written := pending[r.DBKey]; !written {
				refresh = append(refresh, []string{r.DBKey, r.DBHash})
			}
		}
		var drop []string
		for _, m := range wp.Move {
			if _, written := pending[m.To]; written {
				drop = append(drop, m.From)
				continue
			}
			moveRows = append(moveRows, []string{m.From, m.To, m.DBHash})
			moveVals = append(moveVals, []string{m.From, m.To})
		}
		for _, u := range []struct {
			what, table string
			set         [][2]string // column = expression over v's columns c1, c2…
			tuples      [][]string  // each: the dbkey to update, then c1, c2…
		}{
			{"refreshing hashes", rows, [][2]string{{"dbhash", "v.c1"}, {"failed", "FALSE"}}, refresh},
			{"moving records to their new keys", rows, [][2]string{{"dbkey", "v.c1"}, {"dbhash", "v.c2"}}, moveRows},
			{"moving records to their new keys", vals, [][2]string{{"dbkey", "v.c1"}}, moveVals},
		} {
			if err := s.updateJoined(ctx, tx, u.what, u.table, syncName, u.set, u.tuples); err != nil {
				return err
			}
		}
		for _, k := range wp.Drop {
			if _, written := pending[k]; !written {
				drop = append(drop, k)
			}
		}
		if err := s.deleteKeys(ctx, tx, syncName, drop); err != nil {
			return err
		}
		var owner any
		if s.t.Owner != "" {
			owner = s.t.Owner
		}
		// An apply keeps the owner it found when it has none to record;
		// reset-cdc takes the snapshot over, unowned when its state has no
		// lineage yet (ClaimUnowned then).
		newLineage, oldLineage := "EXCLUDED.lineage", "t.lineage"
		if d == MySQL {
			newLineage, oldLineage = "VALUES(lineage)", "lineage"
		}
		lineage := newLineage
		if !reset {
			lineage = "COALESCE(" + newLineage + ", " + oldLineage + ")"
		}
		b := newArgs(d)
		q := fmt.Sprintf("INSERT INTO %s AS t (sync, fingerprint, lineage) VALUES (%s, %s, %s) ON CONFLICT (sync) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, lineage = %s",
			syncs, b.add(syncName), b.add(wp.Fingerprint), b.add(owner), lineage)
		if d == MySQL {
			q = fmt.Sprintf("INSERT INTO %s (sync, fingerprint, lineage) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE fingerprint = VALUES(fingerprint), lineage = %s", syncs, lineage)
		}
		if err := exec("recording the fingerprint", q, b.args); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return s.errorf("committing", err)
	}
	return nil
}

// updateJoined updates table's rows of sync by database key, 500 at a
// time: each tuple is the key, then the values v.c1, v.c2… that set's
// expressions read (one statement joining the table with the tuples).
func (s *Store) updateJoined(ctx context.Context, tx *sql.Tx, what, table, syncName string, set [][2]string, tuples [][]string) error {
	d := s.t.Dialect
	const chunk = 500
	for i := 0; i < len(tuples); i += chunk {
		b := newArgs(d)
		b.add(syncName)
		var sel []string
		for j, tuple := range tuples[i:min(i+chunk, len(tuples))] {
			var cols []string
			for c, v := range tuple {
				p, err := dbParam(d, v)
				if err != nil {
					return err
				}
				col := b.addTyped(p, d.textType())
				if j == 0 { // the first row names the columns
					name := "k"
					if c > 0 {
						name = fmt.Sprintf("c%d", c)
					}
					col += " AS " + name
				}
				cols = append(cols, col)
			}
			sel = append(sel, "SELECT "+strings.Join(cols, ", "))
		}
		var sets []string
		for _, kv := range set {
			if d == MySQL {
				sets = append(sets, "t."+kv[0]+" = "+kv[1])
			} else {
				sets = append(sets, kv[0]+" = "+kv[1])
			}
		}
		var q string
		if d == MySQL {
			q = fmt.Sprintf("UPDATE %s t JOIN (%s) v ON t.dbkey = v.k SET %s WHERE t.sync = ?", table, strings.Join(sel, " UNION ALL "), strings.Join(sets, ", "))
			// The sync is the last placeholder in MySQL's order.
			b.args = append(b.args[1:], b.args[0])
		} else {
			q = fmt.Sprintf("UPDATE %s t SET %s FROM (%s) v WHERE t.sync = $1 AND t.dbkey = v.k", table, strings.Join(sets, ", "), strings.Join(sel, " UNION ALL "))
		}
		if _, err := tx.ExecContext(ctx, q, b.args...); err != nil {
			return s.errorf(what, err)
		}
	}
	return nil
}

// deleteKeys deletes records from both tables.
func (s *Store) deleteKeys(ctx context.Context, tx *sql.Tx, syncName string, keys []string) error {
	for _, t := range []string{rowsTable, valsTable} {
		if err := s.byKeys(ctx, tx, t, syncName, keys, "DELETE FROM %s WHERE sync = %s AND dbkey IN (%s)"); err != nil {
			return err
		}
	}
	return nil
}

// textType is the type of keys and hashes in the snapshot table.
func (d Dialect) textType() string {
	if d == MySQL {
		return "BINARY"
	}
	return "text"
}

// args numbers placeholders the dialect's way.
type args struct {
	d    Dialect
	args []any
}

func newArgs(d Dialect) *args { return &args{d: d} }

func (a *args) add(v any) string { return a.addTyped(v, "") }

func (a *args) addTyped(v any, typ string) string {
	a.args = append(a.args, v)
	if a.d == MySQL {
		if typ != "" {
			return "CAST(? AS " + typ + ")"
		}
		return "?"
	}
	p := "$" + strconv.Itoa(len(a.args))
	if typ != "" {
		p += "::" + typ
	}
	return p
}
