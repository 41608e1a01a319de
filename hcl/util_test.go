package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/engine"
	"github.com/backflowhq/backflow/spec"
	"github.com/backflowhq/backflow/state"
)

func writeFile(t *testing.T, path, src string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testOptions loads with the built-in source and destination types.
func testOptions() Options {
	return Options{Catalog: spec.Catalog{
		"source":      engine.Default().Family(),
		"destination": destination.Default().Family(),
		"state":       state.Default().Family(),
	}}
}
