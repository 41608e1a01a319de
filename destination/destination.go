package destination

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/backflowhq/backflow/redact"
	"github.com/backflowhq/backflow/spec"
)

// Operation is what a record asks the destination to do.
type Operation string

const (
	OpUpsert Operation = "upsert" // insert or update by key
	OpUpdate Operation = "update" // update an existing record; a missing one is a per-record rejection
	OpInsert Operation = "insert" // insert a new record; an existing key is a per-record rejection
	OpDelete Operation = "delete" // delete by key
	OpClear  Operation = "clear"  // set the fields of Batch.ClearFields (or Fields) to null, keep the record
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
	// Fields maps destination field names to values (nil for SQL NULL):
	// those of Batch.Fields, and possibly Batch.KeyField's too (read
	// KeyValue for it). Empty for deletes; for clears, every field of
	// Batch.Fields is nil. Destinations read it and never modify it: it
	// may be shared with the plan.
	Fields map[string]any
	// Values, given only to a destination whose ReadsValues says so, holds
	// the values of Batch.Fields in their order, in place of Fields (nil
	// then): a plan read back from disk hands them over without building a
	// map per record.
	Values []any
	// New says backflow has no record of the key at the destination (an
	// add): a destination may try an upsert of it as a plain insert, which
	// costs a database less, but must still upsert it when the key turns
	// out to exist (a state lost or reset, rows written by others; not a
	// crash: a record whose outcome a crash left unknown is sent again as
	// a retry, not New).
	New bool
}

// FieldsOf is r's fields of b.Fields only, as a map the caller may keep:
// what a destination that writes every entry of Fields (rather than
// looking up b.Fields) sends.
func (r *Record) FieldsOf(b *Batch) map[string]any {
	if r.Fields == nil && r.Values != nil {
		m := make(map[string]any, len(b.Fields))
		for i, f := range b.Fields {
			m[f] = r.Values[i]
		}
		return m
	}
	if r.Fields == nil {
		return nil
	}
	m := make(map[string]any, len(b.Fields))
	for _, f := range b.Fields {
		if v, ok := r.Fields[f]; ok {
			m[f] = v
		}
	}
	return m
}

// Batch is what one Write call sends. All records of a batch target the same
// object; a batch may mix operations.
type Batch struct {
	Object   string   // table or API object
	KeyField string   // destination field matched to the model's primary key
	Fields   []string // the mapped destination fields, in mapping order
	// ClearFields are the fields a clear sets to null (a sync's
	// clear_fields); nil means every field of Fields but the key.
	ClearFields []string
	Records     []Record

	// prepared is what PrepareBatch did, taken by Write.
	prepared any
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
// goroutine at a time; reconcile serialises calls per destination unless
// it implements ConcurrentWriter.
type Destination interface {
	Write(ctx context.Context, b *Batch) Outcome
	Close() error
}

// BatchPreparer is implemented by destinations that can do the part of a
// batch's work needing no round trip (converting values to the
// destination's types) before Write, while earlier requests are out.
// PrepareBatch returns before the batch's Write starts (the apply prepares
// batches one at a time, in the order it takes them, on a goroutine of its
// own) and may run while other batches are written; Write uses what it did
// only if it still holds (the same description of the table), and does it
// again otherwise.
type BatchPreparer interface {
	PrepareBatch(b *Batch)
}

// ValuesReader is implemented by destinations that read Record.Values
// (when ReadsValues says so, as a wrapper may not know until it asks what
// it wraps); others are given Record.Fields.
type ValuesReader interface {
	ReadsValues() bool
}

// ConcurrentWriter is implemented by destinations whose Write may be
// called from several goroutines at once (max_in_flight, apply
// --parallelism); others are given one request at a time.
type ConcurrentWriter interface {
	Destination
	ConcurrentWrites()
}

// Preparer is implemented by destinations that can check, before anything is
// sent, that an object exists and has the key and fields a sync maps to
// (creating it from InitSQL first where configured). Plan calls it so that a
// missing table or column is an error at plan time, naming it.
type Preparer interface {
	Prepare(ctx context.Context, object, keyField string, fields []string) error
}

// Config is what a driver is opened with: the block's name, the config
// folder, the driver's own arguments (decoded from its spec, defaults
// applied) and the policy every destination shares. Values read from env()
// arrive in clear; Redact masks them, and every error a driver returns must
// go through it.
type Config struct {
	Name   string // block label, for messages
	Dir    string // config folder; relative paths are relative to it
	Args   spec.Values
	Policy Policy
	Redact *redact.Redactor
	// ReadOnly opens the destination to inspect it (plan, validate): no
	// file is created, no init_sql runs, and a database that does not
	// exist yet is ErrNotCreated rather than created.
	ReadOnly bool
}

// ErrNotCreated is matched (errors.Is) by the error of a read-only open of
// a destination that apply would create (a SQLite or JSON-lines file).
var ErrNotCreated = errors.New("does not exist yet")

// ErrNotFound is matched (errors.Is) by errors saying that a sync's object
// (a table) does not exist in the destination.
var ErrNotFound = errors.New("object not found")

// notFoundError marks an error as ErrNotFound, keeping its message.
type notFoundError struct{ error }

func (e notFoundError) Is(target error) bool { return target == ErrNotFound }
func (e notFoundError) Unwrap() error        { return e.error }

// Errorf returns an error about the destination, prefixed with its name and
// with every secret masked.
func (c Config) Errorf(format string, args ...any) error {
	return c.Redact.Error(fmt.Errorf("destination %q: "+format, append([]any{c.Name}, args...)...))
}

// Factory opens a destination.
type Factory func(ctx context.Context, cfg Config) (Destination, error)

// Driver is a registered destination type: its spec and its constructor.
type Driver = spec.Driver[Factory]

// Registry maps destination types to drivers. Tests build their own with
// NewRegistry; Default holds the built-in drivers.
type Registry struct{ *spec.Registry[Factory] }

// NewRegistry returns a registry without any type.
func NewRegistry() *Registry {
	return &Registry{spec.NewRegistry[Factory](spec.Family{
		Kind:    "destination",
		TypeArg: "type",
		Doc:     "A connection to an operational tool and the policy for writing to it: batch size, retries, split retries.",
		Common:  PolicySpec,
	})}
}

// Open opens a destination of type typ.
func (r *Registry) Open(ctx context.Context, typ string, cfg Config) (Destination, error) {
	d, ok := r.Lookup(typ)
	if !ok {
		return nil, fmt.Errorf("destination %q: unknown type %q (known: %v)", cfg.Name, typ, r.Types())
	}
	return d.Open(ctx, cfg)
}

var defaultRegistry = NewRegistry()

// Default is the registry the built-in drivers register themselves in.
func Default() *Registry { return defaultRegistry }

// Config builds the Config of a destination of type typ from Go values by
// argument name (the type's own and the common policy's), defaults
// applied: for tests and benchmarks that open a driver without a config
// file.
func (r *Registry) Config(typ, name, dir string, args map[string]any) (Config, error) {
	d, ok := r.Lookup(typ)
	if !ok {
		return Config{}, fmt.Errorf("destination type %q is not registered (known: %v)", typ, r.Types())
	}
	own, common := map[string]any{}, map[string]any{}
	for k, v := range args {
		if _, ok := d.Type.Spec.Arg(k); ok {
			own[k] = v
		} else {
			common[k] = v
		}
	}
	ov, err := spec.ValuesFor(d.Type.Spec, own)
	if err != nil {
		return Config{}, fmt.Errorf("%s destination: %w", typ, err)
	}
	cv, err := spec.ValuesFor(r.Family().Common, common)
	if err != nil {
		return Config{}, fmt.Errorf("%s destination: %w", typ, err)
	}
	return Config{Name: name, Dir: dir, Args: ov, Policy: PolicyOf(cv)}, nil
}
