package reconcile

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/backflowhq/backflow/destination"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/schema"
	"github.com/backflowhq/backflow/state"
)

// FormatVersion is the version of the plan's JSON form (saved plans and
// `plan --json`).
const FormatVersion = "1.0"

// Action is what a change does to the destination relative to the snapshot.
type Action string

const (
	ActionAdd    Action = "add"    // a key not in the snapshot
	ActionChange Action = "change" // a key whose mapped values changed (or every row, in mode "all")
	ActionRemove Action = "remove" // a key that left the model
	ActionRetry  Action = "retry"  // a key in the failure index, sent again
)

// Symbol is the one-character marker of an action in rendered plans.
func (a Action) Symbol() string {
	switch a {
	case ActionAdd:
		return "+"
	case ActionChange:
		return "~"
	case ActionRemove:
		return "-"
	case ActionRetry:
		return "↻"
	}
	return "?"
}

// nonFinite is the word for v when v is a NaN or infinite float.
func nonFinite(v any) (string, bool) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case float32:
		f = float64(x)
	default:
		return "", false
	}
	switch {
	case math.IsNaN(f):
		return "NaN", true
	case math.IsInf(f, 1):
		return "Infinity", true
	case math.IsInf(f, -1):
		return "-Infinity", true
	}
	return "", false
}

// FiniteJSON is v as the plan's JSON writes it. JSON has no NaN or
// infinities: a float value that is one is written as the string "NaN",
// "Infinity" or "-Infinity" (the words JavaScript's Number() and Python's
// float() read back); any other v is itself.
func FiniteJSON(v any) any {
	if w, ok := nonFinite(v); ok {
		return w
	}
	return v
}

// FiniteJSONMap is m with FiniteJSON applied to its values; m itself when
// none is a NaN or infinite float.
func FiniteJSONMap(m map[string]any) map[string]any {
	if !hasNonFinite(m) {
		return m
	}
	out := maps.Clone(m)
	for k, v := range m {
		out[k] = FiniteJSON(v)
	}
	return out
}

// hasNonFinite says whether a value of m is a NaN or infinite float.
func hasNonFinite(m map[string]any) bool {
	for _, v := range m {
		if _, ok := nonFinite(v); ok {
			return true
		}
	}
	return false
}

// OpForget is the operation of a removal that is only forgotten: nothing is
// sent (delete_behavior "nothing", or --skip-removals).
const OpForget destination.Operation = "forget"

// Change is one record of a sync's plan. Its values can be NaN or
// infinite floats, which encoding/json refuses: a writer of its JSON form
// passes them through FiniteJSON (plan --json, and KeepSynced in a saved
// plan).
type Change struct {
	Action Action                `json:"action"`
	Key    string                `json:"key"`
	Op     destination.Operation `json:"operation"`
	// KeyValue is written to the destination's key field.
	KeyValue any `json:"key_value"`
	// Before holds the mapped values last accepted (nil for a new key).
	Before map[string]any `json:"before"`
	// After holds the mapped values to send (nil for removals), plus the
	// key field's value, which is always written.
	After map[string]any `json:"after"`
	// Hash is the hash of After, recorded in the snapshot once accepted.
	Hash uint64 `json:"hash,string,omitempty"`
	// For retries: the last error and attempts so far, from the failure index.
	LastError string `json:"last_error,omitempty"`
	Attempts  int    `json:"attempts,omitempty"`

	// fields, when set, is what a request carries of the change, built
	// ahead by a streamed apply's reader (recordFields).
	fields map[string]any
	// beforeAt, with Before nil, is 1 + the index of the snapshot record
	// that holds Before (0: none), copied or re-encoded from the snapshot
	// the spill's codec reads (fieldCodec.from) when the change is
	// encoded: no map is built for it.
	beforeAt int
	// afterVals, with After nil, holds After's values (canonical) in the
	// order of the sync's fields, for a change spilled at once: it
	// is encoded without a map (fieldCodec.appendVals) and is only valid
	// while the change is added.
	afterVals []any
	// afterExact says After holds exactly the sync's fields, and the key
	// field when it is not one of them, as decoded from a plan.
	afterExact bool
	// vals, with After nil, holds After's values as a plan read back for
	// an apply decodes them (valuesInOrder): by the sync's fields, then
	// the key field when it is not one of them (SyncPlan.valNames).
	vals []any
}

// valueVisitor is a Snapshot that lends its values without a map.
type valueVisitor interface {
	VisitValues(i int, vv state.ValueVisitor) error
}

// recordLender is a Snapshot that lends its records as it stores them,
// decoded later against its field table (state.DecodeRecord): a local
// snapshot.
type recordLender interface {
	WithRecord(i int, fn func(body []byte) error) error
	Fields() []string
}

// SyncPlan is the plan of one sync.
type SyncPlan struct {
	Name        string   `json:"name"`
	Model       string   `json:"model"`
	Destination string   `json:"destination"`
	Object      string   `json:"object"`
	KeyField    string   `json:"key_field"`
	Fields      []string `json:"fields"`
	// FieldTypes are the model's types of the mapped fields and the key
	// field, which drivers convert values by (bytes, decimals, JSON).
	FieldTypes map[string]schema.Type `json:"field_types,omitempty"`
	Mode       string                 `json:"mode"`
	// ClearFields are the fields a clear sets to null (clear_fields); nil
	// means every mapped field but the key.
	ClearFields    []string `json:"clear_fields,omitempty"`
	DeleteBehavior string   `json:"delete_behavior"`
	SkipRemovals   bool     `json:"skip_removals,omitempty"`
	// SensitiveFields are fields whose values renderings mask (Masked);
	// RedactValues masks every field but the key field.
	SensitiveFields []string `json:"sensitive_fields,omitempty"`
	RedactValues    bool     `json:"redact_values,omitempty"`

	Add    int `json:"add"`
	Change int `json:"change"`
	Remove int `json:"remove"`
	Retry  int `json:"retry"`
	// Excluded counts rows left out of the model by reason: a rule's name,
	// "null primary key" or "duplicate primary key".
	Excluded map[string]int `json:"excluded"`
	// Rows is the number of rows the model returned; Unchanged how many of
	// them need nothing.
	Rows      int `json:"rows"`
	Unchanged int `json:"unchanged"`

	// Changes are the plan's changes when it holds them in memory; a plan
	// of more than SpillAfter changes keeps them in a spill file instead
	// (Spilled), and every reader goes through Each, EachOf or Windows.
	Changes []Change `json:"changes"`
	spill   *spillFile
	// view, when set, is applied to every change a reader sees (masking).
	view func(Change) Change
	// valNames, set by ApplyPlan for its windows, is the names of
	// Change.vals: the spill codec's (the sync's fields, then the key
	// field when it is not one of them), the same slice every time, so
	// that a recorder taking values in order sorts them once.
	valNames []string
	// DropFailures lists failure-index keys that are now excluded by a rule:
	// they leave the index and are not retried.
	DropFailures []string `json:"drop_failures,omitempty"`
	// KeepSynced are failure-index entries of synced keys the mode will
	// never send again (mode insert, a synced row that changed): they leave
	// the index while the snapshot keeps the values last accepted, which
	// the destination holds (Key, Hash and Before, from the snapshot).
	// Dropping them by forgetting the key would leave its record in the
	// destination unknown to the state: an orphan, and an insert refused
	// as a duplicate forever.
	KeepSynced []Change `json:"keep_synced,omitempty"`
	// Notes are what the plan could not check and why, such as a
	// destination apply will create.
	Notes []string `json:"notes,omitempty"`
	// MassRemoval is set when the plan removes or clears more than the
	// sync's max_removals, or the model returned no rows while records are
	// synced: apply refuses it without --allow-mass-removal.
	MassRemoval *MassRemoval `json:"mass_removal,omitempty"`
	// Warehouse is set for a sync diffed in its source (cdc = "warehouse"):
	// what apply writes to the snapshot kept there.
	Warehouse *WarehousePlan `json:"warehouse,omitempty"`
}

// WarehousePlan is what a plan made by warehouse CDC tells apply about the
// snapshot table in the source: the database's own key and hash of every
// record the plan touches, and the entries whose stored hash is out of date
// though nothing needs sending.
type WarehousePlan struct {
	// Fingerprint identifies what the database hashes were computed over
	// (key, mapped and rule columns and their types, rules, mode); stored
	// with the snapshot once applied.
	Fingerprint string `json:"fingerprint"`
	// Hash names the database's hash method the plan used.
	Hash string `json:"hash,omitempty"`
	// Keys maps each key of Changes and DropFailures to its database key
	// and, for rows in the model, its database hash.
	Keys map[string]WarehouseKey `json:"keys,omitempty"`
	// Refresh lists synced records whose mapped values did not change but
	// whose database hash did (a column a rule reads, a new fingerprint):
	// apply stores the new hash so they are not read again.
	Refresh []WarehouseKey `json:"refresh,omitempty"`
	// Drop lists the database keys of entries left flagged by an apply
	// that stopped between writing the state and settling the table:
	// neither synced, failed, nor in the plan.
	Drop []string `json:"drop,omitempty"`
	// Move lists table rows of records the plan does not touch whose key's
	// text changed: the row stored under From is the record's, and moves
	// to its database key now (To, with its hash).
	Move []WarehouseMove `json:"move,omitempty"`
	// Unowned says the snapshot table has no owner yet (made by an
	// earlier version): apply records its state as the owner even with
	// nothing to send.
	Unowned bool `json:"unowned,omitempty"`
}

// WarehouseMove is a table row to store under another database key.
type WarehouseMove struct {
	From   string `json:"from"`
	To     string `json:"to"`
	DBHash string `json:"db_hash"`
}

// WarehouseKey is one record as the snapshot table in the source knows it.
type WarehouseKey struct {
	DBKey  string `json:"db_key"`
	DBHash string `json:"db_hash,omitempty"`
	// Stale lists other database keys the table holds for the record
	// (the text of its key changed: a new format, a -0 that became 0):
	// dropped once the record's outcome is written under DBKey.
	Stale []string `json:"stale,omitempty"`
}

// MassRemoval says why a plan would remove too much.
type MassRemoval struct {
	Removals int    `json:"removals"` // deletes and clears planned
	Synced   int    `json:"synced"`   // records in the snapshot, or in flight when a run stopped
	Limit    string `json:"limit"`    // max_removals, as written
	ZeroRows bool   `json:"zero_rows,omitempty"`
}

// Reason says in a sentence why the plan is refused.
func (m *MassRemoval) Reason() string {
	if m.ZeroRows {
		return fmt.Sprintf("the model returned no rows while %d records are synced: a broken model or an empty warehouse table looks like this", m.Synced)
	}
	return fmt.Sprintf("it would remove or clear %d of the %d records synced, more than max_removals (%s)", m.Removals, m.Synced, m.Limit)
}

// MassRemovals lists the syncs of the plan apply refuses without
// --allow-mass-removal.
func (p *Plan) MassRemovals() []*SyncPlan {
	var out []*SyncPlan
	for _, s := range p.Syncs {
		if s.MassRemoval != nil {
			out = append(out, s)
		}
	}
	return out
}

// ClearedFields are the fields a clear sets to null.
func (sp *SyncPlan) ClearedFields() []string {
	var out []string
	for _, f := range sp.Fields {
		if f != sp.KeyField && (sp.ClearFields == nil || slices.Contains(sp.ClearFields, f)) {
			out = append(out, f)
		}
	}
	return out
}

// HasChanges reports whether applying the plan would do anything.
func (sp *SyncPlan) HasChanges() bool {
	return sp.NumChanges() > 0 || len(sp.DropFailures) > 0 || len(sp.KeepSynced) > 0
}

// Plan is what `plan` computes and `apply` carries out: plain data, made
// against one state (lineage and serial) and one config (hash).
type Plan struct {
	FormatVersion string `json:"format_version"`
	Lineage       string `json:"lineage"`
	Serial        uint64 `json:"serial"`
	ConfigHash    string `json:"config_hash"`
	Commit        string `json:"commit,omitempty"`
	// SyncStamps fingerprint each planned sync's run history when the plan
	// was made: with a state whose runners lock syncs one by one, the
	// serial moves while other syncs are applied, and a saved plan is
	// stale only when one of its own syncs changed.
	SyncStamps map[string]string `json:"sync_stamps,omitempty"`
	// Dirty says the config differed from Commit (uncommitted changes).
	Dirty   bool        `json:"dirty,omitempty"`
	Created time.Time   `json:"created"`
	Syncs   []*SyncPlan `json:"syncs"`
}

// HasChanges reports whether any sync has changes.
func (p *Plan) HasChanges() bool {
	for _, s := range p.Syncs {
		if s.HasChanges() {
			return true
		}
	}
	return false
}

// Totals sums the counts of every sync.
func (p *Plan) Totals() (add, change, remove, retry int) {
	for _, s := range p.Syncs {
		add += s.Add
		change += s.Change
		remove += s.Remove
		retry += s.Retry
	}
	return
}

// sortChanges orders changes by action (remove, retry, change, add), then
// key, so plans render and apply deterministically.
func sortChanges(cs []Change) {
	rank := map[Action]int{ActionRemove: 0, ActionRetry: 1, ActionChange: 2, ActionAdd: 3}
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].Action != cs[j].Action {
			return rank[cs[i].Action] < rank[cs[j].Action]
		}
		return KeyLess(cs[i].Key, cs[j].Key)
	})
}

// KeyLess orders keys naturally: integer keys by value, before other keys,
// which sort as strings.
func KeyLess(a, b string) bool {
	ai, aerr := strconv.ParseInt(a, 10, 64)
	bi, berr := strconv.ParseInt(b, 10, 64)
	switch {
	case aerr == nil && berr == nil:
		return ai < bi
	case aerr == nil:
		return true
	case berr == nil:
		return false
	}
	return a < b
}

// A saved plan on disk (format 2): the magic planMagic, a chunk holding
// the plan's JSON without its changes (planHeader), then each sync's
// changes in chunks of one action each, in plan order, compressed, and a
// trailer: planSumMagic and the SHA-256 of every byte before it. The
// checksum is verified before anything else is read, so a plan damaged or
// edited by hand is refused (its lineage, serial and config hash are
// inside what is checksummed); each chunk also carries its own CRC.
const (
	planMagic    = "BFPLAN2\n"
	planSumMagic = "BFPLSUM\n"
	planTrailer  = len(planSumMagic) + sha256.Size
)

// planHeader is the first chunk of a saved plan.
type planHeader struct {
	Plan    *Plan `json:"plan"`
	Changes []int `json:"changes"` // per sync, how many changes follow
	// Kept is each sync's KeepSynced, its snapshot values typed
	// (typedJSON), so that applying the plan writes back into the
	// snapshot exactly what it held. Plans written before it carry
	// KeepSynced in Plan, through FiniteJSON.
	Kept [][]Change `json:"kept,omitempty"`
}

// typedFloat is how a saved plan writes a float of KeepSynced: as its
// text, so that NaN and the infinities are kept, and a float with an
// integral value is not read back as an integer.
type typedFloat struct {
	Float string `json:"float"`
}

// typedJSON is m with every float written as a typedFloat; the other
// values a snapshot holds (nil, bool, string, int64) are JSON as they are.
func typedJSON(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case float64:
			v = typedFloat{strconv.FormatFloat(x, 'g', -1, 64)}
		case float32:
			v = typedFloat{strconv.FormatFloat(float64(x), 'g', -1, 32)}
		}
		out[k] = v
	}
	return out
}

// fromTypedJSON undoes typedJSON on m, read with UseNumber.
func fromTypedJSON(m map[string]any) error {
	for k, v := range m {
		if o, ok := v.(map[string]any); ok {
			t, ok := o["float"].(string)
			f, err := strconv.ParseFloat(t, 64)
			if !ok || len(o) != 1 || err != nil {
				return fmt.Errorf("a kept value of %q is not a float", k)
			}
			m[k] = f
			continue
		}
		m[k] = fromJSON(v)
	}
	return nil
}

var errNotRegular = errors.New("not a regular file")

// maxPlanFile bounds the size of a saved plan ReadFile accepts. Plans are
// streamed, so this is a sanity limit, not a memory one.
const maxPlanFile = 1 << 36

// WriteFile saves a plan for `apply FILE`, readable by its owner only. It
// creates the file or replaces a regular file its user owns, never writing
// through a symlink or into a device or FIFO: the plan is written to a new
// file beside it and renamed over it. Changes are streamed from the plan
// (spilled plans included), a chunk at a time.
func (p *Plan) WriteFile(path string) error {
	if err := replaceable(path); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".backflow-plan-*")
	if err != nil {
		return fmt.Errorf("writing plan: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename, a no-op
	err = f.Chmod(0o600)
	if err == nil {
		err = p.write(f)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing plan: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing plan: %w", err)
	}
	return nil
}

func (p *Plan) write(f io.Writer) error {
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<16)
	head := *p
	head.Syncs = make([]*SyncPlan, len(p.Syncs))
	counts := make([]int, len(p.Syncs))
	var kept [][]Change
	for i, sp := range p.Syncs {
		c := *sp
		c.Changes, c.spill, c.view = nil, nil, nil
		c.KeepSynced = nil
		if len(sp.KeepSynced) > 0 {
			if kept == nil {
				kept = make([][]Change, len(p.Syncs))
			}
			kept[i] = make([]Change, len(sp.KeepSynced))
			for j, k := range sp.KeepSynced {
				k.Before = typedJSON(k.Before)
				kept[i][j] = k
			}
		}
		head.Syncs[i] = &c
		counts[i] = sp.NumChanges()
	}
	body, err := json.Marshal(planHeader{Plan: &head, Changes: counts, Kept: kept})
	if err != nil {
		return fmt.Errorf("encoding plan: %w", err)
	}
	bw.WriteString(planMagic)
	cw := newChunkWriter(bw)
	if err := p.writeChunks(cw, body); err != nil {
		cw.abort(err)
		return err
	}
	if err := cw.close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	trailer := append([]byte(planSumMagic), h.Sum(nil)...)
	_, err = f.Write(trailer)
	return err
}

// writeChunks gives cw the plan's chunks in order: the header's body, then
// each sync's changes, action by action.
func (p *Plan) writeChunks(cw *chunkWriter, body []byte) error {
	if err := cw.add(0, body, methodFlate, ActionRemove); err != nil {
		return err
	}
	for _, sp := range p.Syncs {
		fc := newFieldCodec(sp.Fields, sp.KeyField)
		for _, a := range actionOrder {
			raw := cw.buffer()
			n := 0
			flush := func() error {
				if n == 0 {
					return nil
				}
				err := cw.add(n, raw, methodFlate|flagNoHash, a)
				raw, n = cw.buffer(), 0
				return err
			}
			err := sp.EachOf(a, func(c *Change) error {
				var err error
				if raw, err = appendChange(raw, c, false, fc); err != nil {
					return fmt.Errorf("encoding plan: sync %q: %w", sp.Name, err)
				}
				if n++; n == spillChunkSize || len(raw) >= spillChunkBytes {
					return flush()
				}
				return nil
			})
			if err == nil {
				err = flush()
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// chunkWriter compresses the chunks of a plan being saved on goroutines
// of its own, one per CPU (up to 4), and writes them to w in the order
// they were added: compressing took three quarters of `plan --out`'s time
// on one core (BENCHMARKS.md, "Saving a plan"). It holds at most one
// chunk more than twice as many as it has goroutines (a chunk of changes
// is at most spillChunkBytes and one change before compression).
type chunkWriter struct {
	w       io.Writer
	jobs    chan *chunkJob
	pending []*chunkJob // added, not written yet, in order
	free    [][]byte    // raw buffers of chunks written, for reuse
	workers sync.WaitGroup
	err     error // the first error: nothing is written after it
}

// chunkJob is a chunk to encode, and its encoding once done is closed.
type chunkJob struct {
	count  int
	raw    []byte
	method byte
	action Action
	chunk  []byte
	err    error
	done   chan struct{}
}

func newChunkWriter(w io.Writer) *chunkWriter {
	n := min(max(runtime.GOMAXPROCS(0), 1), 4)
	jobs := make(chan *chunkJob, n)
	cw := &chunkWriter{w: w, jobs: jobs}
	for range n {
		cw.workers.Go(func() {
			for j := range jobs {
				j.chunk, j.err = encodeChunk(j.count, j.raw, j.method, j.action)
				close(j.done)
			}
		})
	}
	return cw
}

// buffer is an empty buffer for the next chunk's bytes, which the caller
// gives to add and does not touch afterwards.
func (cw *chunkWriter) buffer() []byte {
	if n := len(cw.free); n > 0 {
		b := cw.free[n-1]
		cw.free = cw.free[:n-1]
		return b[:0]
	}
	return nil
}

// add queues count changes encoded in raw, to be compressed (method) and
// written after the chunks added before, and writes those done while too
// many are held.
func (cw *chunkWriter) add(count int, raw []byte, method byte, a Action) error {
	if cw.err != nil {
		return cw.err
	}
	j := &chunkJob{count: count, raw: raw, method: method, action: a, done: make(chan struct{})}
	cw.pending = append(cw.pending, j)
	cw.jobs <- j
	for len(cw.pending) > 2*cap(cw.jobs) {
		cw.writeFirst()
	}
	return cw.err
}

// writeFirst waits for the first chunk pending and writes it, unless an
// error came before.
func (cw *chunkWriter) writeFirst() {
	j := cw.pending[0]
	cw.pending[0] = nil
	cw.pending = cw.pending[1:]
	<-j.done
	if cw.err == nil {
		cw.err = j.err
	}
	if cw.err == nil {
		_, cw.err = cw.w.Write(j.chunk)
	}
	cw.free = append(cw.free, j.raw)
}

// abort stops the goroutines after err, writing none of the chunks
// pending.
func (cw *chunkWriter) abort(err error) {
	if cw.err == nil {
		cw.err = err
	}
	cw.close()
}

// close writes the chunks pending and stops the goroutines; it returns
// the first error of an encoding or a write.
func (cw *chunkWriter) close() error {
	for len(cw.pending) > 0 {
		cw.writeFirst()
	}
	if cw.jobs != nil {
		close(cw.jobs)
		cw.jobs = nil
		cw.workers.Wait()
	}
	return cw.err
}

// replaceable refuses a path that is not missing or a regular file of the
// current user.
func replaceable(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("writing plan: %w", err)
	}
	switch m := fi.Mode(); {
	case m&os.ModeSymlink != 0:
		return fmt.Errorf("refusing to write the plan to %s: it is a symbolic link; name a regular file", path)
	case !m.IsRegular():
		return fmt.Errorf("refusing to write the plan to %s: it is not a regular file (%s); name a regular file", path, m.Type())
	case !ownedByMe(fi):
		return fmt.Errorf("refusing to replace %s: another user owns it", path)
	}
	return nil
}

// ReadFile loads a saved plan, refusing a file that is not a regular file,
// whose content does not match its checksum, or whose header's counts are
// not what its chunks hold. It decodes the header only: every sync's
// changes stay in the file and are decoded a chunk at a time as they are
// read (Verify, Each, apply), so the plan holds the file open until Close.
func ReadFile(path string) (*Plan, error) {
	f, err := openRegular(path)
	if errors.Is(err, errNotRegular) {
		return nil, fmt.Errorf("reading plan: %s is not a regular file", path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading plan: %w", err)
	}
	p, spilled, err := readPlan(f, path)
	if err != nil || !spilled {
		f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("reading plan: %w", err)
	}
	return p, nil
}

func readPlan(f *os.File, path string) (p *Plan, spilled bool, err error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	size := fi.Size()
	if size > maxPlanFile {
		return nil, false, fmt.Errorf("%s is larger than %d bytes", path, int64(maxPlanFile))
	}
	magic := make([]byte, len(planMagic))
	n, _ := io.ReadFull(f, magic)
	switch {
	case n > 0 && magic[0] == '{':
		return nil, false, fmt.Errorf("%s was written by an older backflow (plan format 1); make a new plan", path)
	case n < len(magic) || string(magic) != planMagic:
		return nil, false, fmt.Errorf("%s is not a backflow plan file", path)
	case size < int64(len(planMagic)+chunkHeader+planTrailer):
		return nil, false, fmt.Errorf("%s was cut short or damaged after it was written; make a new plan", path)
	}
	damaged := func(why string) error {
		return fmt.Errorf("%s was modified or damaged after it was written (%s); make a new plan", path, why)
	}
	body := size - int64(planTrailer)
	trailer := make([]byte, planTrailer)
	if _, err := f.ReadAt(trailer, body); err != nil {
		return nil, false, err
	}
	if string(trailer[:len(planSumMagic)]) != planSumMagic {
		// Before hashing what may be gigabytes of anything.
		return nil, false, damaged("cut short")
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, body)); err != nil {
		return nil, false, err
	}
	if !bytes.Equal(trailer[len(planSumMagic):], h.Sum(nil)) {
		return nil, false, damaged("checksum mismatch")
	}
	off := int64(len(planMagic))
	var buf []byte
	hh, err := chunkInfo(f, off)
	if err != nil || off+int64(chunkHeader+hh.storedLen) > body {
		return nil, false, damaged("a chunk of changes is damaged")
	}
	headBytes, _, err := readChunk(f, off, &buf)
	if err != nil {
		return nil, false, damaged(err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(headBytes))
	dec.UseNumber() // the values of KeepSynced: integers stay int64
	var head planHeader
	if err := dec.Decode(&head); err != nil || head.Plan == nil {
		return nil, false, fmt.Errorf("%s is not a backflow plan file", path)
	}
	p = head.Plan
	if head.Kept != nil && len(head.Kept) != len(p.Syncs) {
		return nil, false, damaged("kept records do not match the syncs")
	}
	for i, sp := range p.Syncs {
		if sp == nil {
			continue
		}
		for j := range sp.KeepSynced {
			fixMap(sp.KeepSynced[j].Before) // a plan written before Kept
		}
		if head.Kept != nil && len(head.Kept[i]) > 0 {
			for j := range head.Kept[i] {
				if err := fromTypedJSON(head.Kept[i][j].Before); err != nil {
					return nil, false, damaged(err.Error())
				}
			}
			sp.KeepSynced = head.Kept[i]
		}
	}
	if p.FormatVersion != FormatVersion {
		return nil, false, fmt.Errorf("format version %q is not supported (this backflow writes %q); make a new plan", p.FormatVersion, FormatVersion)
	}
	if len(head.Changes) != len(p.Syncs) {
		return nil, false, damaged("change counts do not match the syncs")
	}
	off += int64(chunkHeader + hh.storedLen)
	// Only the chunks' headers are read here: every sync's changes stay
	// in the file and are decoded a chunk at a time as they are read
	// (Each, Windows, apply), so that what a file claims cannot make a
	// reader hold more than a chunk's worth, and a plan is checked
	// against the state and config (its header) before any change is
	// decoded.
	for i, sp := range p.Syncs {
		if sp == nil {
			return nil, false, damaged("a sync is missing")
		}
		want := head.Changes[i]
		sf := &spillFile{f: f, method: methodFlate, codec: newFieldCodec(sp.Fields, sp.KeyField), fields: sp.Fields}
		got, last := 0, 0
		for got < want {
			if off >= body {
				return nil, false, damaged("changes missing")
			}
			ch, err := chunkInfo(f, off)
			if err != nil || ch.count == 0 || got+ch.count > want || ch.action < last || off+int64(chunkHeader+ch.storedLen) > body {
				return nil, false, damaged("a chunk of changes is damaged")
			}
			last = ch.action
			// The stored bytes are checked now, streamed through the CRC
			// (nothing is decompressed or decoded yet).
			crc := crc32.New(castagnoli)
			if _, err := io.Copy(crc, io.NewSectionReader(f, off+chunkHeader, int64(ch.storedLen))); err != nil {
				return nil, false, err
			}
			if crc.Sum32() != ch.crc {
				return nil, false, damaged("a chunk of changes is damaged (checksum mismatch)")
			}
			st := &sf.streams[ch.action]
			st.chunks = append(st.chunks, chunkRef{off: off, count: ch.count})
			st.n += ch.count
			got += ch.count
			off += int64(chunkHeader + ch.storedLen)
		}
		st := &sf.streams
		if sp.Remove != st[0].n || sp.Retry != st[1].n || sp.Change != st[2].n || sp.Add != st[3].n || len(sp.Changes) > 0 {
			return nil, false, damaged(fmt.Sprintf("sync %q: its counts (%d to add, %d to change, %d to remove, %d to retry) are not what its changes hold (%d, %d, %d, %d)",
				sp.Name, sp.Add, sp.Change, sp.Remove, sp.Retry, st[3].n, st[2].n, st[0].n, st[1].n))
		}
		sp.spill = sf
		spilled = true
	}
	if off != body {
		return nil, false, damaged("unexpected data after the changes")
	}
	return p, spilled, nil
}

// Verify decodes every change of the plan, a chunk at a time, keeping
// none: a saved plan's changes are decoded only as they are read, and
// this finds one that does not decode (a file edited and resealed)
// before any is used.
func (p *Plan) Verify() error {
	for _, sp := range p.Syncs {
		if err := sp.Each(func(*Change) error { return nil }); err != nil {
			return fmt.Errorf("sync %q: %w", sp.Name, err)
		}
	}
	return nil
}

// Decode reads a plan's JSON, restoring values to their canonical Go types
// (int64 for integers).
func Decode(r io.Reader) (*Plan, error) {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	var p Plan
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("reading plan: not a backflow plan file: %w", err)
	}
	if p.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("reading plan: format version %q is not supported (this backflow writes %q); make a new plan", p.FormatVersion, FormatVersion)
	}
	for _, s := range p.Syncs {
		for i := range s.Changes {
			c := &s.Changes[i]
			c.KeyValue = fromJSON(c.KeyValue)
			fixMap(c.Before)
			fixMap(c.After)
		}
		for i := range s.KeepSynced {
			fixMap(s.KeepSynced[i].Before)
		}
	}
	return &p, nil
}

func fixMap(m map[string]any) {
	for k, v := range m {
		m[k] = fromJSON(v)
	}
}

func fromJSON(v any) any {
	n, ok := v.(json.Number)
	if !ok {
		return v
	}
	if i, err := n.Int64(); err == nil {
		return i
	}
	f, _ := n.Float64()
	return f
}

// Conforms checks that a sync's plan does only what its sync allows: the
// object, key field, mapped fields, mode and delete behaviour it was made
// with, and for every change an operation the sync can ask for and no
// field it does not map. Apply calls it on saved plans, so that a plan
// file edited by hand cannot write another table or delete what the sync
// never deletes.
func (sp *SyncPlan) Conforms(s *config.Sync) error {
	mismatch := func(what string, plan, cfg any) error {
		return fmt.Errorf("sync %q: the plan's %s is %v, the config's %v", sp.Name, what, plan, cfg)
	}
	fields := make([]string, len(s.Mapping))
	for i, m := range s.Mapping {
		fields[i] = m.Field
	}
	switch {
	case sp.Object != s.Object:
		return mismatch("object", strconv.Quote(sp.Object), strconv.Quote(s.Object))
	case sp.KeyField != s.Key:
		return mismatch("key field", strconv.Quote(sp.KeyField), strconv.Quote(s.Key))
	case !slices.Equal(sp.Fields, fields):
		return mismatch("fields", sp.Fields, fields)
	case sp.Mode != s.Mode:
		return mismatch("mode", sp.Mode, s.Mode)
	case sp.DeleteBehavior != s.DeleteBehavior:
		return mismatch("delete behavior", sp.DeleteBehavior, s.DeleteBehavior)
	case !slices.Equal(sp.ClearFields, s.ClearFields):
		return mismatch("clear fields", sp.ClearFields, s.ClearFields)
	case sp.Destination != s.Destination.Name:
		return mismatch("destination", sp.Destination, s.Destination.Name)
	}
	allowed := map[destination.Operation]bool{OpForget: true, removeOp(s.DeleteBehavior, false): true}
	for _, inSnap := range []bool{false, true} {
		if op := sendOp(s.Mode, inSnap); op != "" {
			allowed[op] = true
		}
	}
	allowed[destination.OpUpsert] = allowed[destination.OpUpsert] || s.Mode == config.ModeInsert // unknown outcomes settle as upserts
	known := map[string]bool{s.Key: true}
	for _, f := range fields {
		known[f] = true
	}
	err := sp.Each(func(c *Change) error {
		if !allowed[c.Op] {
			return fmt.Errorf("sync %q: the plan asks to %s key %q, which mode %s with delete_behavior %s never does", sp.Name, c.Op, c.Key, s.Mode, s.DeleteBehavior)
		}
		for f := range c.After {
			if !known[f] {
				return fmt.Errorf("sync %q: the plan writes field %q of key %q, which the sync does not map", sp.Name, f, c.Key)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range sp.KeepSynced {
		if s.Mode != config.ModeInsert {
			return fmt.Errorf("sync %q: the plan keeps key %q synced without sending it, which only mode insert does", sp.Name, c.Key)
		}
		for f := range c.Before {
			if !known[f] {
				return fmt.Errorf("sync %q: the plan records field %q of key %q, which the sync does not map", sp.Name, f, c.Key)
			}
		}
	}
	return nil
}
