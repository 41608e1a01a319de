package reconcile

import (
	"context"
	"fmt"
	"sort"

	config "github.com/backflowhq/backflow/hcl"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/engine"
	"github.com/backflowhq/backflow/state"
)

// Reasons a row is excluded before any rule runs.
const (
	ReasonNullKey      = "null primary key"
	ReasonDuplicateKey = "duplicate primary key"
)

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
	Rows     engine.Rows
	Rules    Excluder // nil when the sync has no exclude rules
	Snapshot Snapshot
	Failures state.FailureIndex
	// SkipRemovals forgets removed rows without touching the destination,
	// for this run only.
	SkipRemovals bool
}

// DiffResult is a sync's plan plus what `test` blocks assert on.
type DiffResult struct {
	Plan *SyncPlan
	// ExcludedKeys maps each key excluded by a rule to the rule's name.
	ExcludedKeys map[string]string
}

// Diff computes a sync's plan: steps 1–5 of the sync semantics. It streams
// the model's rows once and keeps in memory only the rows that need sending
// plus one bit per snapshot key, so that unchanged rows cost no allocation
// beyond their key.
func Diff(ctx context.Context, in DiffInput) (*DiffResult, error) {
	s := in.Sync
	cols := in.Rows.Columns()
	pos := make(map[string]int, len(cols))
	for i, c := range cols {
		pos[c.Name] = i
	}
	keyIdx := make([]int, len(s.Model.PrimaryKey))
	for i, k := range s.Model.PrimaryKey {
		p, ok := pos[k]
		if !ok {
			return nil, fmt.Errorf("sync %q: model %q returns no primary key column %q", s.Name, s.Model.Name, k)
		}
		keyIdx[i] = p
	}
	fields := make([]string, len(s.Mapping))
	fieldIdx := make([]int, len(s.Mapping))
	for i, m := range s.Mapping {
		p, ok := pos[m.Column]
		if !ok {
			return nil, fmt.Errorf("sync %q: model %q returns no column %q (mapped to %q)", s.Name, s.Model.Name, m.Column, m.Field)
		}
		fields[i] = m.Field
		fieldIdx[i] = p
	}

	sp := &SyncPlan{
		Name:           s.Name,
		Model:          s.Model.Name,
		Destination:    s.Destination.Name,
		Object:         s.Object,
		KeyField:       s.Key,
		Fields:         fields,
		Mode:           s.Mode,
		DeleteBehavior: s.DeleteBehavior,
		SkipRemovals:   in.SkipRemovals,
		Excluded:       map[string]int{},
	}
	res := &DiffResult{Plan: sp, ExcludedKeys: map[string]string{}}

	snap := in.Snapshot
	seen := make([]uint64, (snap.Len()+63)/64)    // snapshot keys met in the model
	present := make([]uint64, (snap.Len()+63)/64) // … and included
	newKeys := map[string]struct{}{}
	dups := map[string]int{} // key → rows with that key beyond the first
	var changes []Change
	var h hasher
	parts := make([]string, len(keyIdx))
	vals := make([]any, len(fieldIdx))

	rows := readAhead(ctx, in.Rows, len(cols))
	defer rows.stop()
	for rows.next() {
		sp.Rows++
		row := rows.row()

		key, keyValue, ok := rowKey(row, keyIdx, parts)
		if !ok {
			sp.Excluded[ReasonNullKey]++
			continue
		}
		i, snapHash, inSnap := snap.Lookup(key)
		if inSnap {
			if bitSet(seen, i) {
				dups[key]++
				continue
			}
			setBit(seen, i)
		} else {
			if _, dup := newKeys[key]; dup {
				dups[key]++
				continue
			}
			newKeys[key] = struct{}{}
		}

		if in.Rules != nil {
			rule, err := in.Rules.Exclude(row)
			if err != nil {
				return nil, fmt.Errorf("sync %q, row with key %q: %w", s.Name, key, err)
			}
			if rule != "" {
				res.ExcludedKeys[key] = rule
				continue
			}
		}
		if inSnap {
			setBit(present, i)
		}

		for j, p := range fieldIdx {
			vals[j] = row[p]
		}
		hash := h.sum(fields, vals)
		failure := in.Failures[key]

		var action Action
		switch {
		case failure != nil:
			action = ActionRetry
		case !inSnap:
			action = ActionAdd
		case hash != snapHash || s.Mode == config.ModeAll:
			action = ActionChange
		default:
			sp.Unchanged++
			continue
		}
		op := sendOp(s.Mode, inSnap)
		if failure != nil && failure.Unknown && s.Mode == config.ModeInsert {
			// The destination may hold the record already (or no longer,
			// for a removal whose outcome is unknown): an insert could be
			// refused as a duplicate forever, an upsert settles both.
			op = destination.OpUpsert
		}
		if op == "" {
			// The mode sends nothing for this row (insert of a key already
			// synced): a failure entry for it can never be retried.
			if failure != nil {
				sp.DropFailures = append(sp.DropFailures, key)
			}
			sp.Unchanged++
			continue
		}
		after := valueMap(fields, vals)
		if _, mapped := after[s.Key]; !mapped {
			after[s.Key] = keyValue
		}
		c := Change{Action: action, Key: key, Op: op, KeyValue: keyValue, Hash: hash, After: after}
		if failure != nil {
			c.LastError, c.Attempts = failure.Error, failure.Attempts
		}
		if inSnap {
			before, err := snap.Values(i)
			if err != nil {
				return nil, fmt.Errorf("sync %q: reading snapshot of key %q: %w", s.Name, key, err)
			}
			c.Before = before
		}
		changes = append(changes, c)
	}
	if err := rows.err(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("sync %q: running model %q: %w", s.Name, s.Model.Name, err)
	}

	// Every row of a duplicated key is excluded; the key is held: neither
	// sent nor removed, so a modelling mistake never deletes records.
	if len(dups) > 0 {
		kept := changes[:0]
		for _, c := range changes {
			if _, dup := dups[c.Key]; !dup {
				kept = append(kept, c)
			}
		}
		changes = kept
		for key, extra := range dups {
			sp.Excluded[ReasonDuplicateKey] += extra + 1
			delete(res.ExcludedKeys, key)
			if i, _, ok := snap.Lookup(key); ok {
				setBit(present, i)
			}
		}
	}
	for _, rule := range res.ExcludedKeys {
		sp.Excluded[rule]++
	}

	// Removals: snapshot keys no longer included in the model.
	for i := 0; i < snap.Len(); i++ {
		if bitSet(present, i) {
			continue
		}
		key := snap.Key(i)
		before, err := snap.Values(i)
		if err != nil {
			return nil, fmt.Errorf("sync %q: reading snapshot of key %q: %w", s.Name, key, err)
		}
		c := Change{Action: ActionRemove, Key: key, Op: removeOp(s.DeleteBehavior, in.SkipRemovals), Before: before, KeyValue: snapshotKeyValue(key, before, s.Key)}
		if f := in.Failures[key]; f != nil && isRemoval(destination.Operation(f.Operation)) {
			// A removal that failed before is retried; a failed send of a
			// row that has since left the model is superseded by its removal.
			c.Action, c.LastError, c.Attempts = ActionRetry, f.Error, f.Attempts
		}
		changes = append(changes, c)
	}

	// Failure-index keys not handled above: excluded by a rule now (they
	// leave the index), held as duplicates (left alone), or absent from both
	// model and snapshot (retried as a removal, as the contract says).
	failed := make([]string, 0, len(in.Failures))
	for k := range in.Failures {
		failed = append(failed, k)
	}
	sort.Strings(failed)
	handled := make(map[string]bool, len(changes))
	for _, c := range changes {
		handled[c.Key] = true
	}
	for _, key := range failed {
		if handled[key] {
			continue
		}
		if _, dup := dups[key]; dup {
			continue
		}
		f := in.Failures[key]
		if _, excluded := res.ExcludedKeys[key]; excluded && !f.Unknown {
			sp.DropFailures = append(sp.DropFailures, key)
			continue
		} else if !excluded {
			if _, inModel := newKeys[key]; inModel {
				continue // included and unchanged for a mode that sends nothing (e.g. insert of an existing key)
			}
		}
		// An excluded key whose send had an unknown outcome may be in the
		// destination: it is removed like any row that left the model.
		if _, _, inSnap := snap.Lookup(key); inSnap {
			continue
		}
		changes = append(changes, Change{
			Action: ActionRetry, Key: key, Op: removeOp(s.DeleteBehavior, in.SkipRemovals), KeyValue: key,
			LastError: f.Error, Attempts: f.Attempts,
		})
	}

	sortChanges(changes)
	for _, c := range changes {
		switch c.Action {
		case ActionAdd:
			sp.Add++
		case ActionChange:
			sp.Change++
		case ActionRemove:
			sp.Remove++
		case ActionRetry:
			sp.Retry++
		}
	}
	sp.Changes = changes
	return res, nil
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
