package reconcile

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/schema"
	"github.com/backflowhq/backflow/state"
)

// sliceRows is an engine.Rows over literal rows.
type sliceRows struct {
	cols []schema.Column
	rows [][]any
	i    int
}

func newRows(names []string, rows ...[]any) *sliceRows {
	cols := make([]schema.Column, len(names))
	for i, n := range names {
		cols[i] = schema.Column{Name: n, Nullable: true}
	}
	return &sliceRows{cols: cols, rows: rows, i: -1}
}

func (r *sliceRows) Columns() []schema.Column { return r.cols }
func (r *sliceRows) Next() bool               { r.i++; return r.i < len(r.rows) }
func (r *sliceRows) Row() []any               { return r.rows[r.i] }
func (r *sliceRows) Err() error               { return nil }
func (r *sliceRows) Close() error             { return nil }

// memSnapshot is an in-memory Snapshot.
type memSnapshot struct {
	keys   []string
	hashes []uint64
	values []map[string]any
}

func newMemSnapshot(fields []string, recs map[string]map[string]any) *memSnapshot {
	s := &memSnapshot{}
	for k := range recs {
		s.keys = append(s.keys, k)
	}
	sort.Strings(s.keys)
	for _, k := range s.keys {
		s.hashes = append(s.hashes, HashValues(fields, recs[k]))
		s.values = append(s.values, recs[k])
	}
	return s
}

func (s *memSnapshot) Len() int { return len(s.keys) }
func (s *memSnapshot) Lookup(key string) (int, uint64, bool) {
	i := sort.SearchStrings(s.keys, key)
	if i < len(s.keys) && s.keys[i] == key {
		return i, s.hashes[i], true
	}
	return 0, 0, false
}
func (s *memSnapshot) Key(i int) string                     { return s.keys[i] }
func (s *memSnapshot) Values(i int) (map[string]any, error) { return s.values[i], nil }

// memRecorder records outcomes like a state.SyncWriter.
type memRecorder struct {
	// mu: InFlight may run beside the other methods (max_in_flight > 1).
	mu       sync.Mutex
	accepted map[string]map[string]any
	forgot   map[string]bool
	failed   map[string]state.Failure
	checks   int
	// inFlight counts, per key, the sends announced by InFlight;
	// inFlightErr, when set, is what InFlight returns.
	inFlight    map[string]int
	inFlightErr error
	// unsent counts, per key, the records Unsent released.
	unsent map[string]int
}

func newRecorder() *memRecorder {
	return &memRecorder{accepted: map[string]map[string]any{}, forgot: map[string]bool{}, failed: map[string]state.Failure{}, inFlight: map[string]int{}, unsent: map[string]int{}}
}

func (m *memRecorder) Accept(key string, _ uint64, v map[string]any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.accepted[key] = v
	delete(m.failed, key)
}
func (m *memRecorder) Forget(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forgot[key] = true
	delete(m.failed, key)
}
func (m *memRecorder) Fail(f state.Failure) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failed[f.Key] = f
}
func (m *memRecorder) Checkpoint() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.checks++
	return nil
}
func (m *memRecorder) Unsent(keys []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		m.unsent[k]++
	}
}
func (m *memRecorder) InFlight(recs []state.InFlightRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inFlightErr != nil {
		return m.inFlightErr
	}
	for _, r := range recs {
		m.inFlight[r.Key]++
	}
	return nil
}

// poisonDest rejects any multi-record batch holding a poisoned key as a
// whole (like a multi-row SQL statement), and a single poisoned record with
// its own error. locked keys answer retryable per-record errors for their
// first n sends; failFirst fails that many requests with a retryable error.
type poisonDest struct {
	mu        sync.Mutex
	poison    map[string]bool
	poisonAll bool // every record is poisoned
	locked    map[string]int
	failFirst int
	requests  int
	sent      map[string]int
	written   map[string]map[string]any
	batches   [][]string
}

func newPoisonDest(poison ...string) *poisonDest {
	d := &poisonDest{poison: map[string]bool{}, locked: map[string]int{}, sent: map[string]int{}, written: map[string]map[string]any{}}
	for _, k := range poison {
		d.poison[k] = true
	}
	return d
}

func (d *poisonDest) Write(_ context.Context, b *destination.Batch) destination.Outcome {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.requests++
	keys := make([]string, len(b.Records))
	for i, r := range b.Records {
		keys[i] = r.Key
		d.sent[r.Key]++
	}
	d.batches = append(d.batches, keys)
	if d.failFirst > 0 {
		d.failFirst--
		return destination.Retry(errors.New("connection refused"), 0)
	}
	var bad []string
	for _, k := range keys {
		if d.poison[k] || d.poisonAll {
			bad = append(bad, k)
		}
	}
	if len(bad) > 0 && len(keys) > 1 {
		if d.poisonAll { // one message, as a multi-row statement would say
			return destination.RejectBatch(errors.New("CHECK constraint failed: " + bad[0]))
		}
		return destination.RejectBatch(errors.New("CHECK constraint failed: " + strings.Join(bad, ",")))
	}
	out := destination.AllAccepted(len(keys))
	for i, r := range b.Records {
		switch {
		case d.poison[r.Key] || d.poisonAll:
			out.Results[i] = destination.Result{Err: errors.New("CHECK constraint failed: " + r.Key)}
		case d.locked[r.Key] > 0:
			d.locked[r.Key]--
			out.Results[i] = destination.Result{Err: errors.New("record locked"), Retryable: true}
		case r.Op == destination.OpDelete:
			delete(d.written, r.Key)
		default:
			d.written[r.Key] = r.Fields
		}
	}
	return out
}

func (d *poisonDest) Close() error { return nil }

// beginSync opens a local state in a temporary folder and begins an apply
// of sync "s".
func beginSync(tb testing.TB) (*state.Store, *state.SyncWriter) {
	tb.Helper()
	st, err := state.Open(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	w, err := st.Begin("s", false)
	if err != nil {
		tb.Fatal(err)
	}
	return st, w
}
