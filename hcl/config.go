package config

import (
	"io/fs"
	"strconv"

	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/redact"
	"github.com/backflowhq/backflow/rules"
	"github.com/backflowhq/backflow/spec"
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
	// State says where state lives (nil when the state family is not in
	// the catalog the config was loaded with).
	State *State
	// Hash identifies the config's content: sha256 over every loaded file's
	// name and bytes (and files read through file()), hex-encoded.
	Hash string
	// Redact masks every value read through env(), and its secret parts.
	Redact *redact.Redactor
	// Reads lists the files read through file(), as slash paths relative
	// to the config folder ("models/users.sql", "../shared/x.sql"), sorted.
	Reads []string
}

// Source is a `source` block: a type of the source family and that type's
// own arguments, decoded from its driver's spec.
type Source struct {
	Name      string
	Type      string // "" when missing or unknown (a diagnostic says so)
	Args      spec.Values
	DeclRange hcl.Range
}

// Model is a `model` block.
type Model struct {
	Name       string
	Source     *Source
	Query      string
	QueryRange hcl.Range
	PrimaryKey []string // one column, or several for a composite key
	PKRange    hcl.Range
	// ColumnTypes reads result columns as other portable types
	// (schema.ParseType names), for what a live source cannot describe.
	ColumnTypes map[string]string
	DeclRange   hcl.Range
}

// Destination is a `destination` block: a type of the destination family,
// the arguments every destination shares (Common: timeout, batching,
// retries) and the type's own, each decoded from its spec.
type Destination struct {
	Name      string
	Type      string // "" when missing or unknown (a diagnostic says so)
	Common    spec.Values
	Args      spec.Values
	DeclRange hcl.Range
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

// Where a sync's changes are found (cdc): by backflow, against the
// snapshot in the state (local), or by the source database, against a
// snapshot table kept in it (warehouse).
const (
	CDCLocal     = "local"
	CDCWarehouse = "warehouse"
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
	// DeleteRange is the range of delete_behavior (or of clear_fields,
	// when set), for diagnostics about clears.
	DeleteRange hcl.Range
	// ClearFields are the mapped fields a clear sets to null; nil means
	// every mapped field.
	ClearFields []string
	// FailureThreshold is a fraction in [0,1] (from "5%"); default 1 (never fail on rejections).
	FailureThreshold float64
	// LogAccepted is how many accepted records a run's row log keeps: -1
	// for all of them.
	LogAccepted int
	// MaxRemovals bounds the removals (deletes and clears) of one plan,
	// relative to the snapshot; apply refuses more without
	// --allow-mass-removal.
	MaxRemovals Limit
	// CDC is where changes are found: CDCLocal or CDCWarehouse; "" takes
	// the source's cdc argument. CDCRange is its range, for diagnostics.
	CDC          string
	CDCRange     hcl.Range
	Mapping      []Field // sorted by Field name
	MappingRange hcl.Range
	Excludes     []rules.Rule
	// SensitiveFields are mapped fields whose values renderings of a plan
	// mask; RedactValues masks every mapped field. Keys are never masked.
	SensitiveFields []string
	RedactValues    bool
	DeclRange       hcl.Range
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

// Limit is a bound written as a count ("100" or 100) or a percentage
// ("25%").
type Limit struct {
	Count    int     // when !Percent
	Fraction float64 // when Percent, in [0,1]
	Percent  bool
}

// Of returns the limit for a total: the count, or the fraction of total.
func (l Limit) Of(total int) float64 {
	if l.Percent {
		return l.Fraction * float64(total)
	}
	return float64(l.Count)
}

// String writes the limit as it is written in HCL.
func (l Limit) String() string {
	if l.Percent {
		return strconv.FormatFloat(l.Fraction*100, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(l.Count)
}
