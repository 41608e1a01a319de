package reconcile

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"sort"
	"strings"

	config "github.com/backflowhq/backflow/hcl"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/schema"
	"github.com/backflowhq/backflow/state"
)

// Reasons a row is excluded before any rule runs.
const (
	ReasonNullKey      = "null primary key"
	ReasonDuplicateKey = "duplicate primary key"
)

// Rows is a model's result (engine sources implement it).
type Rows = schema.Rows

// Excluder decides, per row, whether a sync's exclude rules leave it out
// (rules.Program implements it).
type Excluder interface {
	Exclude(row []any) (rule string, err error)
}

// Snapshot is what Diff reads of a sync's snapshot (*state.Snapshot).
type Snapshot interface {
	Len() int
	Lookup(key string) (i int, hash uint64, ok bool)
	Key(i int) string
	Values(i int) (map[string]any, error)
}

// EmptySnapshot is the snapshot of a sync never applied.
type EmptySnapshot struct{}

func (EmptySnapshot) Len() int                           { return 0 }
func (EmptySnapshot) Lookup(string) (int, uint64, bool)  { return 0, 0, false }
func (EmptySnapshot) Key(int) string                     { return "" }
func (EmptySnapshot) Values(int) (map[string]any, error) { return nil, nil }

// DiffInput is everything Diff reads.
type DiffInput struct {
	Sync     *config.Sync
	Rows     Rows
	Rules    Excluder // nil when the sync has no exclude rules
	Snapshot Snapshot
	Failures state.FailureIndex
	// SkipRemovals forgets removed rows without touching the destination,
	// for this run only.
	SkipRemovals bool
	// SpillDir is where a plan of more than SpillAfter changes is spilled
	// ("": the system's temporary folder).
	SpillDir string
	// InMemory keeps every change in memory whatever their number, for a
	// caller that reads Changes directly (warehouse CDC, whose plans are
	// the rows its source could not settle).
	InMemory bool
	// Pushed is set when the source compared the model with the snapshot
	// itself (warehouse CDC): Rows then holds only the rows it could not
	// settle, and Snapshot only the entries of those rows and of the keys
	// that left the model.
	Pushed *Pushed
}

// Pushed is what a source that diffs in the warehouse settled without
// sending rows.
type Pushed struct {
	// Unchanged counts included rows whose mapped values match the
	// snapshot: rows of the model, never sent.
	Unchanged int
	// Synced is the number of records in the whole snapshot, for the
	// max_removals check.
	Synced int
}

// DiffResult is a sync's plan plus what `test` blocks assert on.
type DiffResult struct {
	Plan *SyncPlan
	// ExcludedKeys maps each key excluded by a rule to the rule's name.
	ExcludedKeys map[string]string
	// KeyOrdered says the model returned the keys the snapshot lacks in
	// increasing order (a source read in key order), so the diff merged
	// them without keeping a set of them to find repeated keys.
	KeyOrdered bool
	// Snapshot, when set, is the part of the snapshot the diff read, for a
	// sync whose snapshot the state does not hold (warehouse CDC: the
	// entries its statement returned, among them those of every key the
	// plan changes or excludes).
	Snapshot Snapshot
	// Synced, with Snapshot set, is how many records the whole snapshot
	// holds.
	Synced int
	// Columns are the model's columns, as its rows described them.
	Columns []schema.Column
}

// Diff computes a sync's plan: steps 1–5 of the sync semantics. It streams
// the model's rows once and keeps in memory only the rows that need sending
// plus one bit per snapshot key, so that unchanged rows cost no allocation
// beyond their key.
//
// The stages, in order: resolve the columns (newDiffer), classify each row
// (row, over a read-ahead scan in DiffAll), then in end: hold back duplicated keys (dropDuplicates), find what left
// the model (removals) and the failed keys no row accounts for
// (leftoverFailures), then sort and count (finish).
func Diff(ctx context.Context, in DiffInput) (*DiffResult, error) {
	res, errs, err := DiffAll(ctx, in.Rows, []DiffInput{in})
	if err != nil {
		return nil, err
	}
	return res[0], errs[0]
}

// DiffAll diffs every sync of ins against one read of rows, the result of
// the model they share, so that they see one consistent result and the
// source does the work once. Results and errors are index-aligned with ins
// (each input's Rows is ignored): a sync whose rules fail on a row fails
// alone. err is a failure of the read itself, which fails them all.
func DiffAll(ctx context.Context, rows Rows, ins []DiffInput) ([]*DiffResult, []error, error) {
	res := make([]*DiffResult, len(ins))
	errs := make([]error, len(ins))
	var live []int
	ds := make([]*differ, len(ins))
	for i, in := range ins {
		in.Rows = rows
		d, err := newDiffer(in)
		if err != nil {
			errs[i] = err
			continue
		}
		ds[i] = d
		live = append(live, i)
	}
	if len(live) == 0 {
		return res, errs, nil
	}
	r := readAhead(ctx, rows, len(rows.Columns()))
	defer r.stop()
	for r.next() {
		row := r.row()
		for _, i := range live {
			if errs[i] != nil {
				continue
			}
			ds[i].sp.Rows++
			errs[i] = ds[i].row(row)
		}
	}
	if err := r.err(); err != nil {
		for _, i := range live {
			ds[i].abandon(nil)
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("running model %q: %w", ins[live[0]].Sync.Model.Name, err)
	}
	for _, i := range live {
		if errs[i] == nil {
			res[i], errs[i] = ds[i].end()
		} else {
			ds[i].abandon(nil)
		}
	}
	return res, errs, nil
}

// end runs the stages after the scan.
func (d *differ) end() (*DiffResult, error) {
	if err := d.stopEncoder(); err != nil {
		return nil, d.abandon(err)
	}
	if err := d.dropDuplicates(); err != nil {
		return nil, d.abandon(err)
	}
	if err := d.removals(); err != nil {
		return nil, d.abandon(err)
	}
	if err := d.leftoverFailures(); err != nil {
		return nil, d.abandon(err)
	}
	if p := d.in.Pushed; p != nil {
		d.sp.Rows += p.Unchanged
		d.sp.Unchanged += p.Unchanged
	}
	if err := d.finish(); err != nil {
		return nil, d.abandon(err)
	}
	d.res.KeyOrdered = d.ordered
	return d.res, nil
}

// abandon releases the spill of a diff that failed.
func (d *differ) abandon(err error) error {
	d.stopEncoder()
	if d.spill != nil {
		d.spill.close()
		d.spill = nil
	}
	return err
}

// stopEncoder ends the encoder of the changes met during the scan.
func (d *differ) stopEncoder() error {
	if d.enc == nil {
		return nil
	}
	return d.enc.stop()
}

// differ holds the state of one Diff.
type differ struct {
	in       DiffInput
	s        *config.Sync
	snap     Snapshot
	keyIdx   []int    // positions of the primary key columns
	fields   []string // mapped destination fields, in mapping order
	fieldIdx []int    // positions of their columns
	sp       *SyncPlan
	res      *DiffResult

	seen    []uint64 // snapshot keys met in the model
	present []uint64 // … and included
	same    []uint64 // … and counted unchanged
	newKeys *keySet  // model keys not in the snapshot (once unordered)
	// While the model's keys not in the snapshot come in increasing
	// order (a source read in key order), none can repeat an earlier one:
	// ordered holds, prev is the last such key's values, and newKeys
	// stays empty. The first key out of order fills newKeys from the
	// changes and exclusions so far (unorder).
	ordered bool
	prev    []any
	dups    map[string]int // key → rows with that key beyond the first
	changes []Change
	spill   *spillFile      // the changes, once more than SpillAfter
	enc     *spillEncoder   // encodes changes into spill during the scan
	handled map[string]bool // failure-index keys some change accounts for
	removed int             // deletes and clears planned

	h     hasher
	parts []string // scratch for composite keys
	vals  []any    // scratch for mapped values
}

// newDiffer resolves the primary key and mapped columns among the model's.
func newDiffer(in DiffInput) (*differ, error) {
	s := in.Sync
	cols := in.Rows.Columns()
	pos := make(map[string]int, len(cols))
	for i, c := range cols {
		pos[c.Name] = i
	}
	d := &differ{in: in, s: s, snap: in.Snapshot, newKeys: newKeySet(), ordered: true, dups: map[string]int{}, handled: map[string]bool{}}
	d.keyIdx = make([]int, len(s.Model.PrimaryKey))
	for i, k := range s.Model.PrimaryKey {
		p, ok := pos[k]
		if !ok {
			return nil, fmt.Errorf("sync %q: model %q returns no primary key column %q", s.Name, s.Model.Name, k)
		}
		d.keyIdx[i] = p
	}
	d.fields = make([]string, len(s.Mapping))
	d.fieldIdx = make([]int, len(s.Mapping))
	for i, m := range s.Mapping {
		p, ok := pos[m.Column]
		if !ok {
			return nil, fmt.Errorf("sync %q: model %q returns no column %q (mapped to %q)", s.Name, s.Model.Name, m.Column, m.Field)
		}
		d.fields[i] = m.Field
		d.fieldIdx[i] = p
	}
	d.sp = &SyncPlan{
		Name: s.Name, Model: s.Model.Name, Destination: s.Destination.Name,
		Object: s.Object, KeyField: s.Key, Fields: d.fields,
		Mode: s.Mode, DeleteBehavior: s.DeleteBehavior, ClearFields: s.ClearFields, SkipRemovals: in.SkipRemovals,
		SensitiveFields: s.SensitiveFields, RedactValues: s.RedactValues,
		Excluded: map[string]int{},
	}
	d.res = &DiffResult{Plan: d.sp, ExcludedKeys: map[string]string{}, Columns: cols}
	n := (d.snap.Len() + 63) / 64
	d.seen, d.present, d.same = make([]uint64, n), make([]uint64, n), make([]uint64, n)
	if !in.InMemory {
		// Changes are encoded as they come, in memory until there are
		// more than SpillAfter, and decoded at the end if they stayed
		// there (finish): a plan that spills builds no map for them.
		d.spill = newMemSpill(d.fields, s.Key)
		d.spill.codec.from(d.snap)
		d.enc = startEncoder(d.spill, in.SpillDir, len(d.fields))
	}
	d.parts = make([]string, len(d.keyIdx))
	d.vals = make([]any, len(d.fieldIdx))
	d.h.remember(d.fields)
	return d, nil
}

// row classifies one row: excluded (null or duplicated key, a rule),
// unchanged, or a change to send.
func (d *differ) row(row []any) error {
	key, keyValue, ok := rowKey(row, d.keyIdx, d.parts)
	if !ok {
		d.sp.Excluded[ReasonNullKey]++
		return nil
	}
	i, snapHash, inSnap := d.snap.Lookup(key)
	if dup, err := d.duplicate(row, key, i, inSnap); dup || err != nil {
		return err
	}
	if d.in.Rules != nil {
		rule, err := d.in.Rules.Exclude(row)
		if err != nil {
			return fmt.Errorf("sync %q, row with key %q: %w", d.s.Name, key, err)
		}
		if rule != "" {
			d.res.ExcludedKeys[key] = rule
			return nil
		}
	}
	if inSnap {
		setBit(d.present, i)
	}
	for j, p := range d.fieldIdx {
		d.vals[j] = Canonical(row[p])
	}
	hash := d.h.sum(d.fields, d.vals)
	failure := d.in.Failures[key]
	var action Action
	switch {
	case failure != nil:
		action = ActionRetry
	case !inSnap:
		action = ActionAdd
	case hash != snapHash || d.s.Mode == config.ModeAll:
		action = ActionChange
	default:
		d.sp.Unchanged++
		setBit(d.same, i)
		return nil
	}
	op := sendOp(d.s.Mode, inSnap)
	if failure != nil && failure.Unknown && d.s.Mode == config.ModeInsert {
		// The destination may hold the record already (or no longer, for
		// a removal whose outcome is unknown): an insert could be refused
		// as a duplicate forever, an upsert settles both.
		op = destination.OpUpsert
	}
	if op == "" {
		// The mode sends nothing for this row (insert of a key already
		// synced): a failure entry for it can never be retried. It leaves
		// the index; the key stays synced with the values last accepted.
		if failure != nil {
			before, err := d.snap.Values(i)
			if err != nil {
				return fmt.Errorf("sync %q: reading snapshot of key %q: %w", d.s.Name, key, err)
			}
			d.sp.KeepSynced = append(d.sp.KeepSynced, Change{Key: key, Hash: snapHash, Before: before, LastError: failure.Error, Attempts: failure.Attempts})
		}
		d.sp.Unchanged++
		setBit(d.same, i)
		return nil
	}
	c := Change{Action: action, Key: key, Op: op, KeyValue: keyValue, Hash: hash}
	if failure != nil {
		c.LastError, c.Attempts = failure.Error, failure.Attempts
	}
	// Encoded at once (d.spill): After goes from the row to the plan's
	// encoding without a map, and Before from the snapshot's record where
	// it lends one.
	if d.spill != nil && d.spill.codec.direct {
		c.afterVals = d.vals
	} else {
		c.After = valueMap(d.fields, d.vals)
		if _, mapped := c.After[d.s.Key]; !mapped {
			c.After[d.s.Key] = keyValue
		}
	}
	if inSnap {
		if d.spill != nil && d.spill.codec.readsSnapshot() {
			c.beforeAt = i + 1
			return d.add(c)
		}
		before, err := d.snap.Values(i)
		if err != nil {
			return fmt.Errorf("sync %q: reading snapshot of key %q: %w", d.s.Name, key, err)
		}
		c.Before = before
	}
	return d.add(c)
}

// add records a change: in memory up to SpillAfter changes, then in a
// spill file.
func (d *differ) add(c Change) error {
	if _, failed := d.in.Failures[c.Key]; failed {
		d.handled[c.Key] = true
	}
	if c.Op == destination.OpDelete || c.Op == destination.OpClear {
		d.removed++
	}
	switch {
	case d.enc != nil && !d.enc.stopped:
		d.enc.put(&c)
		return nil
	case d.spill != nil:
		return d.spill.put(&c, d.in.SpillDir)
	}
	d.changes = append(d.changes, c) // InMemory
	return nil
}

// duplicate records a key as met, reporting whether it was met before.
func (d *differ) duplicate(row []any, key string, i int, inSnap bool) (bool, error) {
	if inSnap {
		if bitSet(d.seen, i) {
			d.dups[key]++
			return true, nil
		}
		setBit(d.seen, i)
		return false, nil
	}
	if d.ordered {
		if d.prev == nil || compareKeys(row, d.keyIdx, d.prev) > 0 {
			if d.prev == nil {
				d.prev = make([]any, len(d.keyIdx))
			}
			for j, p := range d.keyIdx {
				d.prev[j] = Canonical(row[p])
			}
			return false, nil
		}
		if err := d.unorder(); err != nil {
			return false, err
		}
	}
	if d.newKeys.add(key) {
		d.dups[key]++
		return true, nil
	}
	return false, nil
}

// unorder ends the ordered reading: newKeys gets every key met so far that
// is not in the snapshot, each of which is a change (an add or a retry) or
// an exclusion by a rule.
func (d *differ) unorder() error {
	d.ordered, d.prev = false, nil
	note := func(key string) {
		if _, _, inSnap := d.snap.Lookup(key); !inSnap {
			d.newKeys.add(key)
		}
	}
	for i := range d.changes {
		note(d.changes[i].Key)
	}
	if d.enc != nil {
		if err := d.enc.drain(); err != nil {
			return err
		}
	}
	if d.spill != nil {
		for _, a := range []Action{ActionAdd, ActionRetry} {
			if err := d.spill.each(actionIndex(a), false, func(c *Change) error {
				note(c.Key)
				return nil
			}); err != nil {
				return err
			}
		}
	}
	for key := range d.res.ExcludedKeys {
		note(key)
	}
	return nil
}

// compareKeys compares the key of row (columns keyIdx) with prev, the
// canonical values of another key, column by column. It returns 0 when
// they are equal or cannot be ordered (NULL, values of different kinds).
func compareKeys(row []any, keyIdx []int, prev []any) int {
	for j, p := range keyIdx {
		c, ok := compareValues(Canonical(row[p]), prev[j])
		if !ok {
			return 0
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

// compareValues orders two canonical key values of one kind: integers,
// numbers, strings (bytewise).
func compareValues(a, b any) (int, bool) {
	switch x := a.(type) {
	case int64:
		switch y := b.(type) {
		case int64:
			return cmp.Compare(x, y), true
		case float64:
			return -compareFloatInt(y, x), true
		}
	case float64:
		switch y := b.(type) {
		case int64:
			return compareFloatInt(x, y), true
		case float64:
			return cmp.Compare(x, y), true
		}
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y), true
		}
	}
	return 0, false
}

// compareFloatInt compares f with i exactly, NaN first as cmp.Compare
// has it. Converting i to a float instead would round integers past 2^53,
// and the order would not be transitive: keys that seem to increase could
// come back to one met before.
func compareFloatInt(f float64, i int64) int {
	switch {
	case math.IsNaN(f), f < math.MinInt64:
		return -1
	case f >= math.MaxInt64: // 2^63: past every int64
		return 1
	}
	t := math.Trunc(f)
	if c := cmp.Compare(int64(t), i); c != 0 {
		return c
	}
	return cmp.Compare(f, t) // the fraction decides
}

// dropDuplicates excludes every row of a duplicated key. The key is held:
// neither sent nor removed, so a modelling mistake never deletes records.
func (d *differ) dropDuplicates() error {
	if len(d.dups) > 0 && d.spill != nil {
		kept, err := d.spill.fresh(d.in.SpillDir)
		if err != nil {
			return err
		}
		for i := range d.spill.streams {
			err := d.spill.each(i, true, func(c *Change) error {
				if _, dup := d.dups[c.Key]; dup {
					return nil
				}
				return kept.add(c)
			})
			if err != nil {
				kept.close()
				return err
			}
		}
		d.spill.close()
		d.spill = kept
	}
	if len(d.dups) > 0 {
		kept := d.changes[:0]
		for _, c := range d.changes {
			if _, dup := d.dups[c.Key]; !dup {
				kept = append(kept, c)
			}
		}
		d.changes = kept
		for key, extra := range d.dups {
			d.sp.Excluded[ReasonDuplicateKey] += extra + 1
			delete(d.res.ExcludedKeys, key)
			if i, _, ok := d.snap.Lookup(key); ok {
				setBit(d.present, i)
				if bitSet(d.same, i) {
					// Its first row was counted unchanged: every row of
					// the key is counted excluded instead.
					d.sp.Unchanged--
				}
			}
		}
		keep := d.sp.KeepSynced[:0]
		for _, c := range d.sp.KeepSynced {
			if _, dup := d.dups[c.Key]; !dup {
				keep = append(keep, c)
			}
		}
		d.sp.KeepSynced = keep
	}
	for _, rule := range d.res.ExcludedKeys {
		d.sp.Excluded[rule]++
	}
	return nil
}

// removals plans the snapshot keys no longer included in the model.
func (d *differ) removals() error {
	for i := 0; i < d.snap.Len(); i++ {
		if bitSet(d.present, i) {
			continue
		}
		key := d.snap.Key(i)
		before, err := d.snap.Values(i)
		if err != nil {
			return fmt.Errorf("sync %q: reading snapshot of key %q: %w", d.s.Name, key, err)
		}
		c := Change{Action: ActionRemove, Key: key, Op: removeOp(d.s.DeleteBehavior, d.in.SkipRemovals), Before: before, KeyValue: snapshotKeyValue(key, before, d.s.Key)}
		if f := d.in.Failures[key]; f != nil && isRemoval(destination.Operation(f.Operation)) {
			// A removal that failed before is retried; a failed send of a
			// row that has since left the model is superseded by its removal.
			c.Action, c.LastError, c.Attempts = ActionRetry, f.Error, f.Attempts
		}
		if err := d.add(c); err != nil {
			return err
		}
	}
	return nil
}

// leftoverFailures handles failure-index keys no row or removal accounts
// for: excluded by a rule now (they leave the index), held as duplicates
// (left alone), or absent from both model and snapshot (retried as a
// removal, as the contract says).
func (d *differ) leftoverFailures() error {
	failed := make([]string, 0, len(d.in.Failures))
	for k := range d.in.Failures {
		failed = append(failed, k)
	}
	sort.Strings(failed)
	for _, key := range failed {
		if d.handled[key] {
			continue
		}
		if _, dup := d.dups[key]; dup {
			continue
		}
		f := d.in.Failures[key]
		if _, excluded := d.res.ExcludedKeys[key]; excluded && !f.Unknown {
			d.sp.DropFailures = append(d.sp.DropFailures, key)
			continue
		} else if !excluded {
			if d.newKeys.has(key) {
				continue // included and unchanged for a mode that sends nothing (e.g. insert of an existing key)
			}
		}
		// An excluded key whose send had an unknown outcome may be in the
		// destination: it is removed like any row that left the model.
		if _, _, inSnap := d.snap.Lookup(key); inSnap {
			continue
		}
		err := d.add(Change{
			Action: ActionRetry, Key: key, Op: removeOp(d.s.DeleteBehavior, d.in.SkipRemovals), KeyValue: key,
			LastError: f.Error, Attempts: f.Attempts,
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// finish orders the changes, counts them by action and checks the
// removals against max_removals.
func (d *differ) finish() error {
	sort.Strings(d.sp.DropFailures)
	removals := d.removed
	// Records a crash left in flight may be in the destination although
	// the snapshot does not have them; their removals (retries of an
	// unknown outcome) count against them too, or a crash during a first
	// apply would make any later removal a mass removal.
	synced := 0
	if d.in.Pushed != nil {
		synced = d.in.Pushed.Synced
	} else {
		synced = syncedRecords(d.snap, d.in.Failures)
	}
	d.sp.MassRemoval = massRemoval(d.s, removals, synced, d.sp.Rows == 0)
	if d.spill != nil && d.spill.inMem {
		if err := d.spill.finish(); err != nil {
			return err
		}
		d.changes = make([]Change, 0, d.spill.len())
		for i := range d.spill.streams {
			if err := d.spill.each(i, true, func(c *Change) error {
				d.changes = append(d.changes, *c)
				return nil
			}); err != nil {
				return err
			}
		}
		d.spill.close()
		d.spill = nil
	}
	if d.spill != nil {
		if err := d.spill.finish(); err != nil {
			return err
		}
		st := &d.spill.streams
		d.sp.Remove, d.sp.Retry, d.sp.Change, d.sp.Add = st[0].n, st[1].n, st[2].n, st[3].n
		d.sp.spill = d.spill
		return nil
	}
	sortChanges(d.changes)
	for _, c := range d.changes {
		switch c.Action {
		case ActionAdd:
			d.sp.Add++
		case ActionChange:
			d.sp.Change++
		case ActionRemove:
			d.sp.Remove++
		case ActionRetry:
			d.sp.Retry++
		}
	}
	d.sp.Changes = d.changes
	return nil
}

// syncedRecords is how many records a sync's removals count against: the
// snapshot's, and those a crash left in flight that it does not hold.
func syncedRecords(snap Snapshot, failures state.FailureIndex) int {
	synced := snap.Len()
	for k, f := range failures {
		if f.Unknown {
			if _, _, inSnap := snap.Lookup(k); !inSnap {
				synced++
			}
		}
	}
	return synced
}

// massRemoval is why a plan of sync s making removals deletes and clears
// against synced records is refused without --allow-mass-removal (nil:
// it is not).
func massRemoval(s *config.Sync, removals, synced int, zeroRows bool) *MassRemoval {
	if synced > 0 && (zeroRows || float64(removals) > s.MaxRemovals.Of(synced)) {
		return &MassRemoval{Removals: removals, Synced: synced, Limit: s.MaxRemovals.String(), ZeroRows: zeroRows}
	}
	return nil
}

// CheckRemovals sets sp.MassRemoval to what the diff would have set for
// the deletes and clears sp holds, counted from its changes, against the
// snapshot and failure index the plan is applied against and the
// max_removals of s, whatever it held: a saved plan's header can be edited
// and resealed (its checksum has no key), so apply does not trust its
// flag. The zero-rows rule still reads the plan's row count. Not for a
// sync diffed in its source (warehouse CDC), whose synced records are
// counted there.
func (sp *SyncPlan) CheckRemovals(s *config.Sync, snap Snapshot, failures state.FailureIndex) error {
	removals := 0
	for _, a := range actionOrder {
		err := sp.eachOf(a, false, func(c *Change) error {
			if c.Op == destination.OpDelete || c.Op == destination.OpClear {
				removals++
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("sync %q: %w", sp.Name, err)
		}
	}
	sp.MassRemoval = massRemoval(s, removals, syncedRecords(snap, failures), sp.Rows == 0)
	return nil
}

// sendOp is the operation that sends an included row under a mode; ""
// means the mode sends nothing for it.
func sendOp(mode string, inSnapshot bool) destination.Operation {
	switch mode {
	case config.ModeUpdate:
		return destination.OpUpdate
	case config.ModeInsert:
		if inSnapshot {
			return ""
		}
		return destination.OpInsert
	default: // upsert, all
		return destination.OpUpsert
	}
}

func isRemoval(op destination.Operation) bool {
	return op == destination.OpDelete || op == destination.OpClear || op == OpForget
}

func removeOp(deleteBehavior string, skip bool) destination.Operation {
	if skip {
		return OpForget
	}
	switch deleteBehavior {
	case config.DeleteDelete:
		return destination.OpDelete
	case config.DeleteClear:
		return destination.OpClear
	default:
		return OpForget
	}
}

// KeyOf is the key backflow tracks the row by, given the positions of its
// primary key columns; ok is false when a key column is NULL.
func KeyOf(row []any, keyIdx []int) (key string, ok bool) {
	key, _, ok = rowKey(row, keyIdx, make([]string, len(keyIdx)))
	return key, ok
}

func rowKey(row []any, keyIdx []int, parts []string) (key string, value any, ok bool) {
	if len(keyIdx) == 1 {
		v := Canonical(row[keyIdx[0]])
		k, ok := keyString(v)
		return k, v, ok
	}
	for i, p := range keyIdx {
		k, ok := keyString(Canonical(row[p]))
		if !ok {
			return "", nil, false
		}
		parts[i] = k
	}
	k := compositeKey(parts)
	return k, k, true
}

// snapshotKeyValue recovers the value written to the key field for a key
// that left the model: the stored value when the key field is mapped,
// otherwise the key itself.
func snapshotKeyValue(key string, before map[string]any, keyField string) any {
	if v, ok := before[keyField]; ok && v != nil {
		return v
	}
	return key
}

func valueMap(fields []string, vals []any) map[string]any {
	m := make(map[string]any, len(fields))
	for i, f := range fields {
		m[f] = Canonical(vals[i])
	}
	return m
}

func bitSet(b []uint64, i int) bool { return b[i>>6]&(1<<(uint(i)&63)) != 0 }
func setBit(b []uint64, i int)      { b[i>>6] |= 1 << (uint(i) & 63) }
