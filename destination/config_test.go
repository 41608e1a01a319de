package destination_test

import (
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
)

// config builds a destination Config from arguments by name (defaults
// applied, as a config that sets only these would give); a zero duration
// or an empty string leaves the argument to its default.
func config(t testing.TB, typ, name, dir string, args map[string]any) destination.Config {
	t.Helper()
	clean := map[string]any{}
	for k, v := range args {
		if v == time.Duration(0) || v == "" {
			continue
		}
		clean[k] = v
	}
	cfg, err := destination.Default().Config(typ, name, dir, clean)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
