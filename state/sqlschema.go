package state

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// migration brings the state schema to version from the one before: its
// statements per dialect, {name} standing for the qualified table name.
// Migrations run in order, each recorded in schema_version, under a lock
// that keeps two runners from migrating at once. MySQL runs DDL outside
// transactions, so its statements must be safe to run again after a
// migration that stopped half way.
type migration struct {
	version  int
	postgres []string
	mysql    []string
}

// builtinMigrations are the schema versions this build knows, oldest first.
var builtinMigrations = []migration{{
	version: 1,
	postgres: []string{
		`CREATE TABLE IF NOT EXISTS {schema_version} (version integer PRIMARY KEY, applied_at timestamptz NOT NULL, applied_by text NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS {meta} (id integer PRIMARY KEY CHECK (id = 1), lineage text NOT NULL, serial bigint NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS {syncs} (id serial PRIMARY KEY, name text NOT NULL UNIQUE)`,
		`CREATE TABLE IF NOT EXISTS {snapshot} (sync_id integer NOT NULL, k bytea NOT NULL, hash bigint NOT NULL, vals bytea NOT NULL, PRIMARY KEY (sync_id, k))`,
		`CREATE TABLE IF NOT EXISTS {failures} (sync_id integer NOT NULL, k bytea NOT NULL, operation text NOT NULL, error text NOT NULL, attempts integer NOT NULL,
			first_failed timestamptz NOT NULL, last_failed timestamptz NOT NULL, unknown boolean NOT NULL, PRIMARY KEY (sync_id, k))`,
		`CREATE TABLE IF NOT EXISTS {inflight} (sync_id integer NOT NULL, req bigint NOT NULL, sent_at timestamptz NOT NULL, recs bytea NOT NULL, PRIMARY KEY (sync_id, req))`,
		`CREATE TABLE IF NOT EXISTS {runs} (id bigserial PRIMARY KEY, sync text NOT NULL, run integer NOT NULL, status text NOT NULL, started timestamptz NOT NULL,
			row_logs boolean NOT NULL, record json NOT NULL, UNIQUE (sync, run))`,
		`CREATE TABLE IF NOT EXISTS {row_logs} (sync text NOT NULL, run integer NOT NULL, seq integer NOT NULL, k bytea NOT NULL, operation text NOT NULL,
			status text NOT NULL, error text NOT NULL, attempts integer NOT NULL, PRIMARY KEY (sync, run, seq))`,
		`CREATE TABLE IF NOT EXISTS {locks} (sync text PRIMARY KEY, lock_id text NOT NULL, operation text NOT NULL, who text NOT NULL, pid integer NOT NULL,
			since timestamptz NOT NULL, session bigint NOT NULL)`,
	},
	mysql: []string{
		`CREATE TABLE IF NOT EXISTS {schema_version} (version INT NOT NULL PRIMARY KEY, applied_at DATETIME(6) NOT NULL, applied_by VARCHAR(255) NOT NULL) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS {meta} (id INT NOT NULL PRIMARY KEY, lineage VARCHAR(64) NOT NULL, serial BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS {syncs} (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, name VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, UNIQUE KEY (name)) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS {snapshot} (sync_id INT NOT NULL, k VARBINARY(3000) NOT NULL, hash BIGINT NOT NULL, vals LONGBLOB NOT NULL, PRIMARY KEY (sync_id, k)) ENGINE=InnoDB ROW_FORMAT=DYNAMIC`,
		`CREATE TABLE IF NOT EXISTS {failures} (sync_id INT NOT NULL, k VARBINARY(3000) NOT NULL, operation VARCHAR(64) NOT NULL, error MEDIUMTEXT NOT NULL, attempts INT NOT NULL,
			first_failed DATETIME(6) NOT NULL, last_failed DATETIME(6) NOT NULL, unknown BOOLEAN NOT NULL, PRIMARY KEY (sync_id, k)) ENGINE=InnoDB ROW_FORMAT=DYNAMIC`,
		`CREATE TABLE IF NOT EXISTS {inflight} (sync_id INT NOT NULL, req BIGINT NOT NULL, sent_at DATETIME(6) NOT NULL, recs LONGBLOB NOT NULL,
			PRIMARY KEY (sync_id, req)) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS {runs} (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, sync VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, run INT NOT NULL,
			status VARCHAR(64) NOT NULL, started DATETIME(6) NOT NULL, row_logs BOOLEAN NOT NULL, record LONGTEXT NOT NULL, UNIQUE KEY (sync, run)) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS {row_logs} (sync VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, run INT NOT NULL, seq INT NOT NULL, k MEDIUMBLOB NOT NULL,
			operation VARCHAR(64) NOT NULL, status VARCHAR(64) NOT NULL, error MEDIUMTEXT NOT NULL, attempts INT NOT NULL, PRIMARY KEY (sync, run, seq)) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS {locks} (sync VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY, lock_id VARCHAR(64) NOT NULL,
			operation VARCHAR(255) NOT NULL, who VARCHAR(255) NOT NULL, pid INT NOT NULL, since DATETIME(6) NOT NULL, session BIGINT NOT NULL) ENGINE=InnoDB`,
	},
}}

// migrateLock names the lock serialising migrations (no sync has a name
// starting with NUL).
const migrateLock = "\x00migrate"

// migrate creates the schema or brings it to the latest version. PostgreSQL
// does it in one transaction; MySQL statement by statement under a named
// lock.
func (b *sqlBackend) migrate(ctx context.Context) error {
	if b.pg {
		return b.migratePostgres(ctx)
	}
	return b.migrateMySQL(ctx)
}

func (b *sqlBackend) migratePostgres(ctx context.Context) error {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return b.fail("create the state tables", err)
	}
	defer tx.Rollback()
	key, _ := b.lockKey(migrateLock)
	schema := `"` + b.schema + `"`
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, key); err != nil {
		return b.fail("create the state schema", err)
	}
	// A schema created beforehand needs no right to create schemas.
	var exists bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, b.schema).Scan(&exists); err != nil {
		return b.fail("create the state schema", err)
	}
	if !exists {
		if _, err := tx.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
			return b.fail("create the state schema", err)
		}
	}
	if err := b.applyMigrations(ctx, tx, tx.ExecContext); err != nil {
		return err
	}
	// Nothing for PUBLIC: the state holds the values last sent, which may
	// be personal data. Owners and roles granted explicitly keep theirs.
	for _, stmt := range []string{
		`REVOKE ALL ON SCHEMA ` + schema + ` FROM PUBLIC`,
		`REVOKE ALL ON ALL TABLES IN SCHEMA ` + schema + ` FROM PUBLIC`,
		`REVOKE ALL ON ALL SEQUENCES IN SCHEMA ` + schema + ` FROM PUBLIC`,
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return b.fail("revoke PUBLIC privileges on the state schema", err)
		}
	}
	return b.fail("create the state tables", tx.Commit())
}

func (b *sqlBackend) migrateMySQL(ctx context.Context) error {
	conn, err := b.db.Conn(ctx)
	if err != nil {
		return b.fail("create the state tables", err)
	}
	defer conn.Close()
	_, name := b.lockKey(migrateLock)
	var got sql.NullInt64
	wait := max(int64(b.timeout/time.Second), 1)
	if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK(?, ?)`, name, wait).Scan(&got); err != nil {
		return b.fail("create the state tables", err)
	}
	if got.Int64 != 1 {
		return fmt.Errorf("create the state tables in %s: another runner kept creating or upgrading them for %ds", b.where, wait)
	}
	defer conn.ExecContext(context.Background(), `SELECT RELEASE_LOCK(?)`, name)
	// A database created beforehand needs no right to create databases.
	var exists bool
	if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) > 0 FROM information_schema.schemata WHERE schema_name = ?`, b.schema).Scan(&exists); err != nil {
		return b.fail("create the state database", err)
	}
	if !exists {
		if _, err := conn.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+b.schema+"` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
			return b.fail("create the state database", err)
		}
	}
	return b.applyMigrations(ctx, conn, conn.ExecContext)
}

// applyMigrations runs the migrations past the schema's version.
func (b *sqlBackend) applyMigrations(ctx context.Context, q querier, exec func(context.Context, string, ...any) (sql.Result, error)) error {
	v, err := b.schemaVersion(ctx, q)
	if err != nil {
		return err
	}
	if v > b.latest() {
		return &SchemaVersionError{Location: b.where, Version: v, Supported: b.latest()}
	}
	for _, m := range b.migrations {
		if m.version <= v {
			continue
		}
		stmts := m.mysql
		if b.pg {
			stmts = m.postgres
		}
		for _, stmt := range stmts {
			if _, err := exec(ctx, b.q(stmt)); err != nil {
				return b.fail(fmt.Sprintf("upgrade the state schema to version %d", m.version), err)
			}
		}
		if _, err := exec(ctx, b.q(`INSERT INTO {schema_version} (version, applied_at, applied_by) VALUES (?, ?, ?)`),
			m.version, time.Now().UTC(), whoAmI()); err != nil {
			return b.fail(fmt.Sprintf("upgrade the state schema to version %d", m.version), err)
		}
	}
	return nil
}
