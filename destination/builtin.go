package destination

import (
	"context"
	"net/url"
	"strings"
	"time"

	"github.com/backflowhq/backflow/spec"
)

func init() { RegisterBuiltins(Default()) }

var initSQLArg = spec.Arg{Name: "init_sql", Kind: spec.String,
	Doc:     "SQL run once when the destination is opened by apply, such as CREATE TABLE IF NOT EXISTS; may hold several statements. It runs on one connection: a session setting it makes (SET search_path, SET time_zone…) does not hold for the others a destination opens (max_in_flight); name the schema in the object instead (object = \"crm.contacts\").",
	Example: `init_sql = file("crm.sql")`}

func lockTimeoutArg(def time.Duration, doc string) spec.Arg {
	return spec.Arg{Name: "lock_timeout", Kind: spec.Duration, Default: def, Doc: doc, Example: `lock_timeout = "2s"`}
}

func connectTimeoutArg(def time.Duration, doc string) spec.Arg {
	return spec.Arg{Name: "connect_timeout", Kind: spec.Duration, Default: def, Doc: doc, Example: `connect_timeout = "3s"`}
}

// connectTimeoutOf is the connect_timeout argument, or the DSN's own when
// the config leaves the argument unset.
func connectTimeoutOf(cfg Config, fromDSN time.Duration) time.Duration {
	if !cfg.Args.IsSet("connect_timeout") && fromDSN > 0 {
		return fromDSN
	}
	return cfg.Args.Duration("connect_timeout")
}

// BuiltinDrivers returns the drivers of this package.
func BuiltinDrivers() []Driver {
	return []Driver{
		{Type: spec.Type{Name: "sqlite", Doc: "A SQLite database file, written with one multi-row upsert per batch (modernc.org/sqlite, pure Go). A row a BEFORE trigger skips with RAISE(IGNORE) is never taken as written: a statement that wrote fewer rows than it was sent rolls its batch back and rejects it, split retries narrow it down to the skipped records, which are rejected naming the table and sent again on later runs; so are updates, deletes and clears it skips (not checked for a sync mapping only the key: ON CONFLICT DO NOTHING counts no row for a key that has one).",
			Spec: spec.Spec{Args: []spec.Arg{
				{Name: "path", Kind: spec.String, Required: true, Sensitive: true, Check: sqlitePath,
					Doc:     "The database file, relative to the config folder; created when missing. Written, never read as config.",
					Example: `path = "crm.db"`},
				initSQLArg,
				lockTimeoutArg(SQLiteDefaultLockTimeout, "How long a write waits for another connection's lock on the file before the batch is retried."),
			}}},
			Open: OpenSQLite},
		{Type: spec.Type{Name: "postgres", Doc: "A PostgreSQL table, upserted by key (pgx): from 500 records in a batch, adds are copied (COPY) straight into the table and other upserts or inserts written with one INSERT … SELECT … FROM unnest(…) ON CONFLICT whose parameters are one array of values per column; fewer go as one multi-row INSERT (ON CONFLICT but for adds). An add whose key has a row after all (state lost or reset) makes its batch go again as upserts, and the next 100 batches with adds upsert them. Nothing needs a temporary table or the TEMP privilege. Statements are prepared once per connection; behind a pooler that does not keep prepared statements (transaction pooling), add default_query_exec_mode=exec to the DSN. One connection per request in flight, up to max_in_flight. A row a trigger or rule skips without an error (a BEFORE ROW trigger returning NULL, a DO INSTEAD NOTHING rule) is never taken as written: a statement that wrote fewer rows than it was sent rolls its batch back and rejects it, split retries narrow it down to the skipped records, which are rejected naming the table and sent again on later runs; so are rows a conditional DO INSTEAD rule sends to another table, and updates, deletes and clears a trigger or rule skips; a trigger that writes the row itself and returns NULL (partitioning by trigger) looks the same, and its records are rejected. Not checked: a sync mapping only the key (ON CONFLICT DO NOTHING counts no row for a key that has one). Adds to a table with a BEFORE ROW insert trigger (on it or a partition) are copied inside a transaction, never as a COPY alone. A key column of type citext, or of a nondeterministic collation, takes keys of different bytes for one row (A and a): no record is ever written to a row that holds another key. The record that comes second (in the batch, or after the other's row was written) is rejected, naming both keys and why, and stays in the failure index (retried each run) until the other key leaves the table, the column tells the keys apart or the model's keys differ otherwise; a removal of it removes nothing. For such a table a batch of upserts or updates costs two statements more (its keys grouped among themselves, then looked up once written), one with removals; a column of type text with a deterministic collation (the default) costs none. On PostgreSQL 12 to 16 a COPY of at most 2,000 rows carries WHERE pg_catalog.random() IS NOT NULL, always true, with which the server inserts a row at a time instead of through its multi-insert buffer (less server CPU for such batches, BENCHMARKS.md); a server that refuses the clause gets COPYs without it from then on.",
			Spec: spec.Spec{Args: []spec.Arg{
				{Name: "dsn", Kind: spec.String, Required: true, Sensitive: true,
					Doc: "The connection string (URL or key=value form).", Example: `dsn = env("CRM_DSN")`},
				initSQLArg,
				lockTimeoutArg(PostgresDefaultLockTimeout, "How long a statement waits for a row lock held by another transaction; rows locked when a batch starts are retried at once, without waiting (batches go without taking their rows' locks first, one or two statements fewer each, until one meets a held row: it waits up to 0.1 s, is written again taking them first, and so are the batches after it until 100 in a row found none held)."),
				connectTimeoutArg(PostgresDefaultConnectTimeout, "Bound of connecting: TCP, TLS and authentication (the DSN's connect_timeout when this is unset)."),
			}}},
			Open: OpenPostgres},
		{Type: spec.Type{Name: "mysql", Doc: "A MySQL or MariaDB table, upserted by key with one multi-row INSERT … ON DUPLICATE KEY UPDATE per batch. That statement takes a duplicate in any unique index: an upsert whose values another row holds in a unique index other than the key's would update that row and leave its own key without one, so for a table with such an index on columns the sync writes, the keys of a batch's upserts are looked up once written (one statement more per batch), and a record without a row is rejected, naming the index, the batch written again without it (the other row keeps its values). A text key column whose collation compares keys by less than their bytes (a _ci collation, MySQL's and MariaDB's default, takes A, a and Ä for one key; utf8mb4_bin, PAD SPACE, takes a and \"a \" for one) holds one row for such keys: no record is ever written to a row that holds another key. The record that comes second is rejected, naming both keys and the collation, and stays in the failure index (retried each run) until the other key leaves the table, the key column gets a byte-wise collation (utf8mb4_0900_bin on MySQL, utf8mb4_nopad_bin on MariaDB) or the model's keys differ otherwise; a removal of it removes nothing. For such a table each batch of upserts or updates costs one statement more, a lookup of its keys (on MariaDB, about 7 ms for 1,000 keys: nearly twice the batch's time), and one with removals; a batch whose records met rows of other keys goes again without them. A byte-wise collation on the key column spares it all.",
			Spec: spec.Spec{Args: []spec.Arg{
				{Name: "dsn", Kind: spec.String, Required: true, Sensitive: true,
					Doc: "The connection string in go-sql-driver form, user:password@tcp(host:3306)/database.", Example: `dsn = env("CRM_DSN")`},
				initSQLArg,
				lockTimeoutArg(MySQLDefaultLockTimeout, "How long a statement waits for a row lock held by another transaction (innodb_lock_wait_timeout, whole seconds); rows locked when a batch starts are retried at once, without waiting (batches go without taking their rows' locks first, one or two statements fewer each, until one meets a held row: it waits up to 1 s (MySQL; MariaDB not at all), is written again taking them first, and so are the batches after it until 100 in a row found none held)."),
				connectTimeoutArg(MySQLDefaultConnectTimeout, "Bound of connecting: TCP, TLS, handshake and authentication (the DSN's timeout when this is unset)."),
			}}},
			Open: OpenMySQL},
		{Type: spec.Type{Name: "http", Doc: "A JSON batch API: POST url {\"records\":[…]}, per-record results in the answer.",
			Spec: spec.Spec{Args: []spec.Arg{
				{Name: "url", Kind: spec.String, Required: true, Sensitive: true, Check: httpURL,
					Doc: "The endpoint every batch is posted to.", Example: `url = "https://api.example.com/records"`},
				{Name: "headers", Kind: spec.StringMap, Sensitive: true,
					Doc: "Headers sent with every request, such as an Authorization token.", Example: `headers = { Authorization = env("API_TOKEN") }`},
				{Name: "decimals_as_strings", Kind: spec.Bool, Default: false,
					Doc: "Send decimal fields as JSON strings (\"12.50\") instead of exact JSON numbers (12.50).", Example: "decimals_as_strings = true"},
				connectTimeoutArg(HTTPDefaultConnectTimeout, "Bound of connecting: TCP and the TLS handshake."),
			}}},
			Open: OpenHTTP},
		{Type: spec.Type{Name: "file", Doc: "A JSON-lines file every record is appended to, for debugging.",
			Spec: spec.Spec{Args: []spec.Arg{
				{Name: "path", Kind: spec.String, Required: true, Sensitive: true,
					Doc:     "The file, relative to the config folder; created when missing. Written, never read as config.",
					Example: `path = "contacts.jsonl"`},
			}}},
			Open: OpenFile},
	}
}

// RegisterBuiltins registers every driver of this package in r, so tests can
// build a fresh registry that behaves like Default.
func RegisterBuiltins(r *Registry) {
	for _, d := range BuiltinDrivers() {
		open := d.Open
		d.Open = func(ctx context.Context, cfg Config) (Destination, error) {
			dest, err := open(ctx, cfg)
			return dest, cfg.Redact.Error(err)
		}
		r.Register(d)
	}
}

func sqlitePath(s string) error {
	if strings.ContainsRune(s, '?') {
		return &spec.Problem{Summary: "Invalid path", Detail: "A SQLite path must not contain '?': name the database file only."}
	}
	return nil
}

func httpURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &spec.Problem{Summary: "Invalid URL", Detail: "The url must be an absolute http:// or https:// address, like \"https://api.example.com/records\"."}
	}
	return nil
}
