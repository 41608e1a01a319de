package config

import (
	"io/fs"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/rules"
)

// Config is a loaded, resolved config folder. Block slices keep the order
// of the files (sorted by name) and of the blocks within them.
type Config struct {
	Dir string // the config folder on disk (see LoadFS)
	// FS is the file system the config was read from, and FSDir the config
	// folder in it: fixtures are read from there too (see Path).
	FS           fs.FS
	FSDir        string
	Files        map[string]*hcl.File // by file name as shown in diagnostics, for the diagnostic writer
	Sources      []*Source
	Models       []*Model
	Destinations []*Destination
	Syncs        []*Sync
	Tests        []*Test
	// Hash identifies the config's content: sha256 over every loaded file's
	// name and bytes (and files read through file()), hex-encoded.
	Hash string
}

// Secret holds a value that must never be printed. Its String method
// returns a fixed mask, so it is safe in fmt output by accident. The value
// sits behind a pointer so that even fmt paths that skip String methods
// (a bad verb such as %s on an enclosing struct) print an address only.
type Secret struct{ value *string }

// NewSecret wraps a value.
func NewSecret(v string) Secret { return Secret{value: &v} }

// Reveal returns the value, to hand to a driver. Never log it.
func (s Secret) Reveal() string {
	if s.value == nil {
		return ""
	}
	return *s.value
}

// String masks the value.
func (s Secret) String() string {
	if s.Reveal() == "" {
		return ""
	}
	return "(sensitive)"
}

// GoString masks the value in %#v too.
func (s Secret) GoString() string { return s.String() }

// MarshalText masks the value in JSON and other encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Source is a `source` block.
type Source struct {
	Name     string
	Type     string // embedded | postgres | mysql
	Fixtures string // embedded: folder, relative to Config.Dir
	DSN      Secret // postgres | mysql (always treated as sensitive)
	// ColumnTypes overrides the inferred types of fixture columns:
	// table → column → type name (schema.ParseType), from
	// `table "users" { column_types = { age = "int" } }` blocks.
	ColumnTypes map[string]map[string]string
	DeclRange   hcl.Range
}

// Model is a `model` block.
type Model struct {
	Name       string
	Source     *Source
	Query      string
	QueryRange hcl.Range
	PrimaryKey []string // one column, or several for a composite key
	PKRange    hcl.Range
	DeclRange  hcl.Range
}

// Retry is a destination's `retry` block, with defaults applied.
type Retry struct {
	MaxAttempts    int           // default 5
	InitialBackoff time.Duration // default 200ms
	MaxBackoff     time.Duration // default 30s
	MaxElapsed     time.Duration // 0 = no limit
}

// Destination is a `destination` block.
type Destination struct {
	Name         string
	Type         string // sqlite | postgres | mysql | http | file
	Path         string // sqlite, file: relative to Config.Dir
	DSN          Secret
	URL          string
	InitSQL      string // SQL run when the destination is opened (sqlite, postgres, mysql)
	Headers      map[string]Secret
	Timeout      time.Duration // default 30s
	BatchSize    int           // default 100
	SplitRetries bool          // default false
	Retry        Retry
	DeclRange    hcl.Range
}

// Mode values of a sync.
const (
	ModeUpsert = "upsert"
	ModeUpdate = "update"
	ModeInsert = "insert"
	ModeAll    = "all"
)

// Delete behaviours of a sync.
const (
	DeleteNothing = "nothing"
	DeleteClear   = "clear"
	DeleteDelete  = "delete"
)

// Field is one entry of a sync's mapping: destination field = model column.
type Field struct {
	Field  string
	Column string
	Range  hcl.Range // of the column expression, for "no such column" diagnostics
}

// Sync is a `sync` block.
type Sync struct {
	Name           string
	Model          *Model
	Destination    *Destination
	Object         string
	Key            string
	Mode           string // default upsert
	DeleteBehavior string // default nothing
	// FailureThreshold is a fraction in [0,1] (from "5%"); default 1 (never fail on rejections).
	FailureThreshold float64
	Mapping          []Field // sorted by Field name
	MappingRange     hcl.Range
	Excludes         []rules.Rule
	DeclRange        hcl.Range
}

// Test is a `test` block: fixture rows in, expected verdicts out.
type Test struct {
	Name string
	Sync *Sync
	// Fixtures is a folder (relative to Config.Dir) whose files replace the
	// source's fixture tables of the same name; "" keeps the source's.
	Fixtures string
	// Tables holds inline rows per table, replacing that table entirely.
	Tables []TestTable
	// ExpectExcluded maps a primary key (as stringified by backflow) to the
	// rule that must exclude it; nil means not asserted. The set is exact.
	ExpectExcluded map[string]string
	// ExpectSent lists the keys that must be sent on a first run; nil means
	// not asserted. The set is exact.
	ExpectSent []string
	// ExpectRows maps a key to destination fields whose values must be sent.
	ExpectRows map[string]map[string]any
	DeclRange  hcl.Range
}

// TestTable is one `table` block of a test.
type TestTable struct {
	Name  string
	Rows  []map[string]any // values: nil, int64, float64, string, bool
	Range hcl.Range
}
