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

// TestParseRate: a number of digits (and a point) per second, minute or
// hour; nothing ParseFloat takes besides.
func TestParseRate(t *testing.T) {
	for in, want := range map[string]float64{"100/s": 100, "600/m": 10, "5000/h": 5000.0 / 3600, " 2.5 / sec ": 2.5, "": 0} {
		if got, err := destination.ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"+5/s", "1_000/s", "1e3/s", "Inf/s", "0x10/s", "-5/s", "5", "5/d", "./s", "0.5/h"} {
		if got, err := destination.ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) = %v, want an error", in, got)
		}
	}
}
