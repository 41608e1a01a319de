package project

import (
	"strings"
	"testing"
)

// TestEffectTextIsOneLine checks that a name a pull request chooses (here a
// mapped field) cannot break an effect's sentence: a line break in it
// would start a heading in the markdown comment, an escape would drive
// the terminal.
func TestEffectTextIsOneLine(t *testing.T) {
	e := &Effect{Cause: Cause{Kind: "mapping", Name: "email\x1b[2J\n# Forged", Change: "added"},
		Effect: EffectValuesChange, Rows: 1, Synced: 1}
	got := effectText(e, nil, false)
	if strings.ContainsAny(got, "\n\x1b") {
		t.Fatalf("effect text holds a line break or an escape: %q", got)
	}
	if !strings.Contains(got, `email\x1b[2J\n# Forged`) {
		t.Fatalf("effect text does not show the name escaped: %q", got)
	}
}
