package engine

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/internal/suggest"
	"github.com/backflowhq/backflow/redact"
	"github.com/backflowhq/backflow/schema"
	"github.com/backflowhq/backflow/spec"
	"github.com/backflowhq/backflow/state"
)

// Config is what a source driver is opened with: the block's name, the
// config folder and the driver's own arguments (decoded from its spec,
// defaults applied). Values read from env() arrive in clear; Redact masks
// them, and every message a driver returns must go through it.
type Config struct {
	Name   string // block label, for messages
	Dir    string // config folder on disk, for the names files are shown by
	Args   spec.Values
	Redact *redact.Redactor
	// FS is what the config is read from (confined to its repository, or a
	// git revision), and FSDir the config folder in it: fixtures are read
	// from there. Nil reads Dir on disk.
	FS    fs.FS
	FSDir string
}

// Factory opens a source. Problems are diagnostics: those about a file (a
// fixture's bad row) carry its range; those without a subject are about the
// source block as a whole, and the caller places them there.
type Factory func(ctx context.Context, cfg Config) (Source, hcl.Diagnostics)

// Driver is a registered source type: its spec and its constructor.
type Driver = spec.Driver[Factory]

// Registry maps source types to drivers. Tests build their own with
// NewRegistry; Default holds the built-in drivers.
type Registry struct{ *spec.Registry[Factory] }

// NewRegistry returns a registry without any type.
func NewRegistry() *Registry {
	return &Registry{spec.NewRegistry[Factory](spec.Family{
		Kind:    "source",
		TypeArg: "type",
		Doc:     "A database that models run on: the embedded engine loaded from fixture files, or a live warehouse.",
	})}
}

var defaultRegistry = NewRegistry()

func init() { RegisterBuiltins(defaultRegistry) }

// Default is the registry the built-in drivers register themselves in.
func Default() *Registry { return defaultRegistry }

// RegisterBuiltins registers the embedded, postgres and mysql sources in r.
func RegisterBuiltins(r *Registry) {
	for _, d := range BuiltinDrivers() {
		r.Register(d)
	}
}

// BuiltinDrivers returns the drivers of this package.
func BuiltinDrivers() []Driver {
	dsn := func(doc, example string) spec.Arg {
		return spec.Arg{Name: "dsn", Kind: spec.String, Required: true, Sensitive: true, Doc: doc, Example: example}
	}
	return []Driver{
		{Type: spec.Type{Name: "embedded",
			Doc: "An in-process SQL engine (MySQL dialect, go-mysql-server) loaded from fixture files: the offline default for quickstarts, validate and test in pull-request CI.",
			Spec: spec.Spec{
				Args: []spec.Arg{{Name: "fixtures", Kind: spec.String, Required: true, Check: nonEmptyFixtures, Reads: spec.Folder,
					Doc:     "Folder, relative to the config folder, whose *.csv, *.jsonl and *.sql files become tables (a file's name is its table's).",
					Example: `fixtures = "data"`},
					{Name: "query_timeout", Kind: spec.Duration, Default: DefaultQueryTimeout,
						Doc:     "Bound of one model query, from its start to its last row: a query still running then fails.",
						Example: `query_timeout = "1m"`},
					{Name: "memory_limit", Kind: spec.String, Default: "2GiB", Check: checkMemoryLimit,
						Doc:     "Bound of the memory one model query (from its start to its last row), or the statements of one .sql fixture, takes in the engine (the growth of the process's heap, sampled every 10ms: it may go past it by what the engine allocates meanwhile), as a whole number and a unit such as \"512MiB\" or \"4GiB\"; \"0\" for no bound. A query taking more fails.",
						Example: `memory_limit = "4GiB"`}},
				Blocks: []spec.Block{{Type: "table", Label: "name", Multi: true,
					Doc: "Overrides the column types inferred from a CSV or JSONL fixture.",
					Spec: spec.Spec{Args: []spec.Arg{{Name: "column_types", Kind: spec.StringMap, Required: true, Check: checkColumnType,
						Doc:     "Column name → type: " + strings.Join(schema.PortableNames(), ", ") + " (or a common SQL spelling such as bigint or varchar).",
						Example: `column_types = { signup = "timestamp" }`}}}}},
			}},
			Open: openEmbedded},
		{Type: spec.Type{Name: "postgres", Doc: "A live PostgreSQL database (pgx). Every model query runs in a read-only transaction with a statement timeout, and is rolled back. Its session settings are fixed there, whatever the role or the DSN sets: TimeZone UTC (a model's ts::date is UTC's; write ts AT TIME ZONE 'Europe/Paris' for another zone's), DateStyle ISO, IntervalStyle postgres, extra_float_digits 3 (floats exact), bytea_output hex.",
			Spec: spec.Spec{Args: append([]spec.Arg{dsn("The connection string (URL or key=value form).", `dsn = env("WAREHOUSE_DSN")`)}, liveTimeouts...)}},
			Open: liveFactory(func(ctx context.Context, cfg Config) (Source, error) {
				return OpenPostgres(ctx, cfg.Args.String("dsn"), liveOptions(cfg))
			})},
		{Type: spec.Type{Name: "mysql", Doc: "A live MySQL or MariaDB database (go-sql-driver/mysql). Every model query runs in a read-only transaction with a statement timeout, and is rolled back. Its session's time_zone is '+00:00' (UTC), whatever the server or the DSN sets; ALLOW_INVALID_DATES is added to its sql_mode.",
			Spec: spec.Spec{Args: append([]spec.Arg{dsn("The connection string in go-sql-driver form, user:password@tcp(host:3306)/database.", `dsn = env("WAREHOUSE_DSN")`)}, liveTimeouts...)}},
			Open: liveFactory(func(ctx context.Context, cfg Config) (Source, error) {
				return OpenMySQL(ctx, cfg.Args.String("dsn"), liveOptions(cfg))
			})},
	}
}

// liveTimeouts are the arguments every live source takes.
var liveTimeouts = []spec.Arg{
	{Name: "connect_timeout", Kind: spec.Duration, Default: DefaultConnectTimeout,
		Doc: "Bound of opening a connection: TCP, TLS, authentication and session setup (per host when the DSN lists several).", Example: `connect_timeout = "5s"`},
	{Name: "query_timeout", Kind: spec.Duration, Default: DefaultQueryTimeout,
		Doc: "Bound of one model query, enforced by the server (statement timeout) and by backflow.", Example: `query_timeout = "30m"`},
	{Name: "cdc", Kind: spec.String, Default: "local", OneOf: []string{"local", "warehouse"},
		Doc:     "Where the changes of the syncs of this source's models are found (a sync's own cdc overrides it): \"local\" diffs the rows in backflow; \"warehouse\" has this database compare them with a snapshot table backflow keeps in cdc_schema, so that only changed rows are read.",
		Example: `cdc = "warehouse"`},
	{Name: "cdc_schema", Kind: spec.String, Check: state.CheckSchemaName,
		Doc:     "The schema (MySQL: database) where warehouse CDC keeps its snapshot tables, created by the first apply. Default: the database state backend's schema when the state lives in this same database, otherwise backflow.",
		Example: `cdc_schema = "backflow_cdc"`},
}

func liveOptions(cfg Config) LiveOptions {
	return LiveOptions{ConnectTimeout: cfg.Args.Duration("connect_timeout"), QueryTimeout: cfg.Args.Duration("query_timeout")}
}

func openEmbedded(_ context.Context, cfg Config) (Source, hcl.Diagnostics) {
	f := EmbeddedFixtures(cfg)
	if f.Dir == "" {
		// The config says so already: loading the config folder instead
		// would run its .sql files as fixtures.
		return nil, nil
	}
	e := NewEmbedded()
	e.SetQueryTimeout(cfg.Args.Duration("query_timeout"))
	limit, err := ParseMemoryLimit(cfg.Args.String("memory_limit"))
	if err != nil { // checked when the config was decoded
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid memory limit", Detail: err.Error()}}
	}
	e.SetMemoryLimit(limit)
	return e, f.Load(e)
}

// Fixtures is where an embedded source's tables come from.
type Fixtures struct {
	FS      fs.FS
	Dir     string                       // the fixtures folder in FS; "" when not set
	Display string                       // the folder as files are named in diagnostics
	Types   map[string]map[string]string // table → column → type name overrides
}

// EmbeddedFixtures reads an embedded source's fixtures folder and column
// type overrides from its arguments.
func EmbeddedFixtures(cfg Config) Fixtures {
	f := Fixtures{FS: cfg.FS}
	for _, t := range cfg.Args.Blocks("table") {
		if f.Types == nil {
			f.Types = map[string]map[string]string{}
		}
		f.Types[t.Label] = t.Values.StringMap("column_types")
	}
	return f.In(cfg, cfg.Args.String("fixtures"))
}

// In returns the fixtures of the folder rel (relative to the config
// folder, as a config writes it), with f's column types.
func (f Fixtures) In(cfg Config, rel string) Fixtures {
	f.FS, f.Dir, f.Display = cfg.FS, "", ""
	if strings.TrimSpace(rel) == "" {
		return f
	}
	f.Display = filepath.Join(cfg.Dir, rel)
	if f.FS == nil {
		f.FS, f.Dir = os.DirFS(f.Display), "."
		return f
	}
	f.Dir = path.Join(cfg.FSDir, filepath.ToSlash(rel))
	return f
}

// Load loads the fixtures into e.
func (f Fixtures) Load(e *Embedded) hcl.Diagnostics {
	if f.Dir == "" {
		return nil
	}
	return e.LoadFS(f.FS, f.Dir, f.Display, f.Types)
}

// liveFactory adapts a live source's constructor: a failure to connect is a
// diagnostic about the source block, with secrets masked.
func liveFactory(open func(context.Context, Config) (Source, error)) Factory {
	return func(ctx context.Context, cfg Config) (Source, hcl.Diagnostics) {
		src, err := open(ctx, cfg)
		if err != nil {
			return nil, hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "Cannot Connect To Source",
				Detail:   fmt.Sprintf("Source %q could not be reached: %s. Check that the database is running and that the DSN is right.", cfg.Name, cfg.Redact.Error(err)),
			}}
		}
		return src, nil
	}
}

func nonEmptyFixtures(s string) error {
	if strings.TrimSpace(s) == "" {
		return &spec.Problem{Summary: "Empty fixtures path",
			Detail: "The argument \"fixtures\" must name the folder of fixture files, relative to the config folder, like fixtures = \"data\" (or \".\" for the config folder itself)."}
	}
	return nil
}

func checkColumnType(s string) error {
	if _, ok := schema.ParseType(s); ok {
		return nil
	}
	return &spec.Problem{Summary: "Unknown column type",
		Detail: fmt.Sprintf("%q is not a column type. Use %s (or a common SQL spelling such as bigint or varchar).%s",
			s, quoteList(schema.PortableNames()), suggest.DidYouMean(s, schema.TypeNames()))}
}

func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
