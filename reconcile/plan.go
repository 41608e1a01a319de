package reconcile

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/backflowhq/backflow/destination"
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
	FieldTypes     map[string]schema.Type `json:"field_types,omitempty"`
	Mode           string                 `json:"mode"`
	DeleteBehavior string                 `json:"delete_behavior"`
	SkipRemovals   bool                   `json:"skip_removals,omitempty"`
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

// WriteFile saves a plan for `apply FILE`, readable by its owner only.
func (p *Plan) WriteFile(path string) error {
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encoding plan: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("writing plan: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing plan: %w", err)
	}
	return nil
}

// ReadFile loads a saved plan.
func ReadFile(path string) (*Plan, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading plan: %w", err)
	}
	defer f.Close()
	return Decode(f)
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
