package config

import (
	"github.com/hashicorp/hcl/v2"

	"github.com/backflowhq/backflow/spec"
)

// kindState is the top-level block saying where state lives; there is at
// most one, and it has no name.
const kindState = "state"

// State is the `state` block: a type of the state family (its backend) and
// that type's own arguments. A config without the block gets the family's
// default backend (the local folder) with its defaults.
type State struct {
	Backend   string
	Args      spec.Values
	DeclRange hcl.Range // zero when the config has no state block
}

func (l *loader) decodeState(blocks hcl.Blocks) {
	fam := l.family(kindState)
	if len(blocks) == 0 {
		if t, ok := fam.Lookup(fam.DefaultType); ok {
			l.cfg.State = &State{Backend: t.Name, Args: spec.Defaults(t.Spec)}
		}
		return
	}
	for _, b := range blocks[1:] {
		l.errorf(b.DefRange, "Duplicate state block", "State is configured once; the first state block is at %s:%d. Remove this one.",
			blocks[0].DefRange.Filename, blocks[0].DefRange.Start.Line)
	}
	b := blocks[0]
	t := l.decodeFamily(b, fam)
	l.cfg.State = &State{Backend: t.typ, Args: t.args, DeclRange: b.DefRange}
}
