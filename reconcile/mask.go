package reconcile

import (
	"slices"
	"strings"
)

// MaskedValue stands for a value a rendering does not show. It renders
// unquoted, so it never reads as the string it replaces.
type MaskedValue string

const (
	// Masked replaces a sensitive value.
	Masked MaskedValue = "(sensitive)"
	// MaskedChanged replaces the new value of a sensitive field that
	// changed, so a rendered change still says which fields differ.
	MaskedChanged MaskedValue = "(sensitive, changed)"
)

// minScrubbed is the shortest sensitive string removed from error texts:
// shorter ones ("a", "no") would mangle messages without hiding anything.
const minScrubbed = 4

// Masks says whether renderings of the plan mask the values of field.
// The key field never is: keys identify records wherever they are shown.
func (sp *SyncPlan) Masks(field string) bool {
	if field == sp.KeyField {
		return false
	}
	if sp.RedactValues {
		return slices.Contains(sp.Fields, field)
	}
	return slices.Contains(sp.SensitiveFields, field)
}

func (sp *SyncPlan) masksAny() bool {
	return sp.RedactValues || len(sp.SensitiveFields) > 0
}

// Masked returns the plan as every rendering shows it (text, JSON, markdown):
// the values of sensitive fields (and every mapped value of a sync with
// redact_values) replaced by Masked, or MaskedChanged for a changed one, and
// removed from retries' last errors. Keys are kept. The plan itself is not
// changed: a saved plan keeps its values, because apply sends them.
func (p *Plan) Masked() *Plan {
	out := *p
	out.Syncs = make([]*SyncPlan, len(p.Syncs))
	for i, sp := range p.Syncs {
		out.Syncs[i] = sp.masked()
	}
	return &out
}

func (sp *SyncPlan) masked() *SyncPlan {
	if !sp.masksAny() {
		return sp
	}
	out := *sp
	if len(sp.KeepSynced) > 0 {
		// Kept records carry the snapshot's values and the last error,
		// which JSON renderings print.
		out.KeepSynced = make([]Change, len(sp.KeepSynced))
		for i, c := range sp.KeepSynced {
			out.KeepSynced[i] = sp.maskChange(c)
		}
	}
	if sp.spill != nil || sp.view != nil {
		// Spilled changes are masked as they are read.
		inner := sp.view
		out.view = func(c Change) Change {
			if inner != nil {
				c = inner(c)
			}
			return sp.maskChange(c)
		}
		return &out
	}
	out.Changes = make([]Change, len(sp.Changes))
	for i, c := range sp.Changes {
		out.Changes[i] = sp.maskChange(c)
	}
	return &out
}

// maskChange returns c as renderings show it.
func (sp *SyncPlan) maskChange(c Change) Change {
	var secrets []string
	for _, vals := range []map[string]any{c.Before, c.After} {
		for f, v := range vals {
			if s, ok := v.(string); ok && len(s) >= minScrubbed && sp.Masks(f) {
				secrets = append(secrets, s)
			}
		}
	}
	before := sp.maskValues(c.Before, nil)
	c.After = sp.maskValues(c.After, c.Before)
	c.Before = before
	if c.LastError != "" && len(secrets) > 0 {
		// Longest first, so a value containing another is removed whole.
		slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
		for _, s := range secrets {
			c.LastError = strings.ReplaceAll(c.LastError, s, string(Masked))
		}
	}
	return c
}

// maskValues copies vals with masked fields replaced; with before set, a
// field whose value differs from before's is MaskedChanged.
func (sp *SyncPlan) maskValues(vals, before map[string]any) map[string]any {
	if vals == nil {
		return nil
	}
	out := make(map[string]any, len(vals))
	for f, v := range vals {
		switch {
		case !sp.Masks(f):
			out[f] = v
		case before != nil && formatValue(before[f]) != formatValue(v):
			out[f] = MaskedChanged
		default:
			out[f] = Masked
		}
	}
	return out
}
