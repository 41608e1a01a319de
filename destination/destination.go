package destination

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// Operation is what a record asks the destination to do.
type Operation string

const (
	OpUpsert Operation = "upsert" // insert or update by key
	OpUpdate Operation = "update" // update an existing record; a missing one is a per-record rejection
	OpInsert Operation = "insert" // insert a new record; an existing key is a per-record rejection
	OpDelete Operation = "delete" // delete by key
	OpClear  Operation = "clear"  // set every field of Batch.Fields to null, keep the record
)

// Record is one record of a batch.
type Record struct {
	// Key is the stringified primary key (composite keys joined), the
	// identity backflow tracks the record by.
	Key string
	// KeyValue is the value written to the destination's key field: the
	// primary key column's own value, or Key for a composite key.
	KeyValue any
	Op       Operation
	// Fields maps destination field names to values (nil for SQL NULL).
	// Empty for deletes; for clears, every field of Batch.Fields is nil.
	Fields map[string]any
}

// Batch is what one Write call sends. All records of a batch target the same
// object; a batch may mix operations.
type Batch struct {
	Object   string   // table or API object
	KeyField string   // destination field matched to the model's primary key
	Fields   []string // the mapped destination fields, in mapping order
	Records  []Record
}

// Result is the destination's answer for one record.
type Result struct {
	Err       error // nil when accepted
	Retryable bool  // Err is transient (locked record, timeout): try again later
}

// Outcome is the destination's answer to one Write.
//
// Exactly one of these holds:
//   - Err == nil: Results has one entry per record, index-aligned.
//   - Err != nil && Fatal: the sync cannot proceed (authentication or
//     permission denied, unknown table or column, an endpoint that does
//     not exist): nothing of the batch was written, no other batch would
//     fare better, and it says nothing about the records themselves.
//   - Err != nil && Retryable: nothing is known to have been written;
//     the whole batch may be sent again, after at least RetryAfter.
//   - Err != nil otherwise: the destination rejected the batch as a whole
//     (one bad record poisoned it); nothing was written.
type Outcome struct {
	Results    []Result
	Err        error
	Fatal      bool
	Retryable  bool
	RetryAfter time.Duration
}

// AllAccepted is the outcome of a batch whose n records were all written.
func AllAccepted(n int) Outcome { return Outcome{Results: make([]Result, n)} }

// Retry is the outcome of a batch that failed for a transient reason.
func Retry(err error, after time.Duration) Outcome {
	return Outcome{Err: err, Retryable: true, RetryAfter: after}
}

// RejectBatch is the outcome of a batch the destination refused as a whole.
func RejectBatch(err error) Outcome { return Outcome{Err: err} }

// Fatal is the outcome of a batch that shows the sync cannot proceed.
func Fatal(err error) Outcome { return Outcome{Err: err, Fatal: true} }

// Destination writes batches. Implementations must be safe for use by one
// goroutine at a time; reconcile serialises calls per destination.
type Destination interface {
	Write(ctx context.Context, b *Batch) Outcome
	Close() error
}

// Preparer is implemented by destinations that can check, before anything is
// sent, that an object exists and has the key and fields a sync maps to
// (creating it from InitSQL first where configured). Plan calls it so that a
// missing table or column is an error at plan time, naming it.
type Preparer interface {
	Prepare(ctx context.Context, object, keyField string, fields []string) error
}

// Config is what a driver is opened with; it is filled from a `destination`
// block. Values read from env() arrive here in clear and must never appear in
// errors a driver returns.
type Config struct {
	Name    string // block label, for messages
	Type    string
	Dir     string // config folder; relative paths are relative to it
	Path    string // sqlite, file
	DSN     string // postgres, mysql
	URL     string // http
	InitSQL string // SQL run once when the destination is opened (sqlite, postgres, mysql)
	Headers map[string]string
	// Timeout bounds one request to the destination (a batch's write with
	// its reconnect, Prepare, CheckTypes, init_sql; for http the whole
	// exchange), whatever the caller's context; 0 means the driver's
	// default (PostgresDefaultTimeout, MySQLDefaultTimeout,
	// SQLiteDefaultTimeout, HTTPDefaultTimeout).
	Timeout time.Duration
	// ConnectTimeout bounds connecting: TCP, TLS and the database's
	// handshake and authentication (postgres, mysql, http); 0 means the
	// driver's default (PostgresDefaultConnectTimeout,
	// MySQLDefaultConnectTimeout, HTTPDefaultConnectTimeout).
	ConnectTimeout time.Duration
	// LockTimeout bounds one wait for a lock another transaction or
	// connection holds (postgres lock_timeout, mysql
	// innodb_lock_wait_timeout, sqlite busy timeout); 0 means the driver's
	// default (PostgresDefaultLockTimeout, MySQLDefaultLockTimeout,
	// SQLiteDefaultLockTimeout).
	LockTimeout time.Duration
	// DecimalsAsStrings (http): decimal fields are sent as JSON strings
	// ("12.50") instead of the default JSON numbers (12.50, written exactly
	// as the decimal's digits).
	DecimalsAsStrings bool
}

// Factory opens a destination.
type Factory func(ctx context.Context, cfg Config) (Destination, error)

// Registry maps destination types to factories. Tests build their own with
// NewRegistry; Default holds the built-in drivers.
type Registry struct {
	factories map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{factories: map[string]Factory{}} }

// Register adds or replaces the factory for a type.
func (r *Registry) Register(typ string, f Factory) { r.factories[typ] = f }

// Types lists the registered types, sorted.
func (r *Registry) Types() []string {
	out := make([]string, 0, len(r.factories))
	for t := range r.factories {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Open opens a destination of cfg.Type.
func (r *Registry) Open(ctx context.Context, cfg Config) (Destination, error) {
	f, ok := r.factories[cfg.Type]
	if !ok {
		return nil, fmt.Errorf("destination %q: unknown type %q (known: %v)", cfg.Name, cfg.Type, r.Types())
	}
	return f(ctx, cfg)
}

var defaultRegistry = NewRegistry()

// Default is the registry the built-in drivers register themselves in.
func Default() *Registry { return defaultRegistry }
