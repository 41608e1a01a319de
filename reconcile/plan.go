package reconcile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/backflowhq/backflow/destination"
	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/schema"
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

// OpForget is the operation of a removal that is only forgotten: nothing is
// sent (delete_behavior "nothing", or --skip-removals).
const OpForget destination.Operation = "forget"

// Change is one record of a sync's plan.
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

	Changes []Change `json:"changes"`
	// DropFailures lists failure-index keys that are now excluded by a rule:
	// they leave the index and are not retried.
	DropFailures []string `json:"drop_failures,omitempty"`
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
}

// WarehouseKey is one record as the snapshot table in the source knows it.
type WarehouseKey struct {
	DBKey  string `json:"db_key"`
	DBHash string `json:"db_hash,omitempty"`
}

// MassRemoval says why a plan would remove too much.
type MassRemoval struct {
	Removals int    `json:"removals"` // deletes and clears planned
	Synced   int    `json:"synced"`   // records in the snapshot
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
	return len(sp.Changes) > 0 || len(sp.DropFailures) > 0
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

// planFile is a saved plan on disk: the plan's JSON and a checksum of
// those exact bytes, so that a plan damaged or edited by hand is refused
// (its lineage, serial and config hash are inside what is checksummed).
type planFile struct {
	Checksum string          `json:"checksum"`
	Plan     json.RawMessage `json:"plan"`
}

var errNotRegular = errors.New("not a regular file")

// maxPlanFile bounds what ReadFile reads.
const maxPlanFile = 1 << 30

// WriteFile saves a plan for `apply FILE`, readable by its owner only. It
// creates the file or replaces a regular file its user owns, never writing
// through a symlink or into a device or FIFO: the plan is written to a new
// file beside it and renamed over it.
func (p *Plan) WriteFile(path string) error {
	if err := replaceable(path); err != nil {
		return err
	}
	body, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encoding plan: %w", err)
	}
	sum := sha256.Sum256(body)
	data, err := json.Marshal(planFile{Checksum: "sha256:" + hex.EncodeToString(sum[:]), Plan: body})
	if err != nil {
		return fmt.Errorf("encoding plan: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".backflow-plan-*")
	if err != nil {
		return fmt.Errorf("writing plan: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename, a no-op
	if err := f.Chmod(0o600); err == nil {
		_, err = f.Write(data)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("writing plan: %w", err)
		}
	} else {
		f.Close()
		return fmt.Errorf("writing plan: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing plan: %w", err)
	}
	return nil
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

// ReadFile loads a saved plan, refusing a file that is not a regular file
// or whose content does not match its checksum.
func ReadFile(path string) (*Plan, error) {
	f, err := openRegular(path)
	if errors.Is(err, errNotRegular) {
		return nil, fmt.Errorf("reading plan: %s is not a regular file", path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading plan: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPlanFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading plan: %w", err)
	}
	if len(data) > maxPlanFile {
		return nil, fmt.Errorf("reading plan: %s is larger than %d bytes", path, maxPlanFile)
	}
	var pf planFile
	if err := json.Unmarshal(data, &pf); err != nil || len(pf.Plan) == 0 {
		var old struct {
			FormatVersion string `json:"format_version"`
		}
		if json.Unmarshal(data, &old) == nil && old.FormatVersion != "" {
			return nil, fmt.Errorf("reading plan: %s was written by an older backflow, without a checksum; make a new plan", path)
		}
		return nil, fmt.Errorf("reading plan: %s is not a backflow plan file", path)
	}
	sum := sha256.Sum256(pf.Plan)
	if pf.Checksum != "sha256:"+hex.EncodeToString(sum[:]) {
		return nil, fmt.Errorf("reading plan: %s was modified or damaged after it was written (checksum mismatch); make a new plan", path)
	}
	return Decode(bytes.NewReader(pf.Plan))
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
	for i := range sp.Changes {
		c := &sp.Changes[i]
		if !allowed[c.Op] {
			return fmt.Errorf("sync %q: the plan asks to %s key %q, which mode %s with delete_behavior %s never does", sp.Name, c.Op, c.Key, s.Mode, s.DeleteBehavior)
		}
		for f := range c.After {
			if !known[f] {
				return fmt.Errorf("sync %q: the plan writes field %q of key %q, which the sync does not map", sp.Name, f, c.Key)
			}
		}
	}
	return nil
}
