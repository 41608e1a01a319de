package config

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/spec"
)

const referencePath = "../docs/configuration.md"

// TestReferenceIsCurrent keeps docs/configuration.md equal to what the specs
// generate (go test ./hcl -run Reference -update rewrites it).
func TestReferenceIsCurrent(t *testing.T) {
	var b bytes.Buffer
	if err := WriteReference(&b, testOptions().Catalog); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(referencePath, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b.Bytes()) {
		t.Fatalf("%s is out of date: run go test ./hcl -run Reference -update", referencePath)
	}
	for _, want := range []string{"### destination `postgres`", "`lock_timeout` | duration | `\"5s\"`", "`batch_size` | number | `100`",
		"`failure_threshold` | percentage | `\"100%\"`", "#### `retry { … }`", "`column_types`"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("reference lacks %q", want)
		}
	}
}

// TestDocumentedDefaultsAreEffective loads, for every type, a config made
// of its required arguments' documented examples and nothing optional, and
// checks that every default the specs document is the value
// decoded, for the common and every type's own arguments.
func TestDocumentedDefaultsAreEffective(t *testing.T) {
	for _, v := range []string{"WAREHOUSE_DSN", "CRM_DSN", "API_TOKEN"} {
		t.Setenv(v, "example-value")
	}
	cat := testOptions().Catalog
	for _, kind := range []string{"source", "destination"} {
		fam := cat[kind]
		for _, typ := range fam.Types {
			var src strings.Builder
			src.WriteString(kind + " \"x\" {\n  type = \"" + typ.Name + "\"\n")
			for _, a := range typ.Spec.Args {
				if a.Required {
					src.WriteString("  " + a.Example + "\n")
				}
			}
			src.WriteString("}\n")
			cfg, diags := loadSrc(t, map[string]string{"main.hcl": src.String()})
			if diags.HasErrors() {
				t.Fatalf("%s %s: %s\n%s", kind, typ.Name, diags.Error(), src.String())
			}
			var got, common spec.Values
			if kind == "source" {
				got = cfg.Sources[0].Args
			} else {
				got, common = cfg.Destinations[0].Args, cfg.Destinations[0].Common
			}
			checkDefaults(t, kind+" "+typ.Name, typ.Spec, got)
			checkDefaults(t, kind+" "+typ.Name+" (common)", fam.Common, common)
		}
	}
	if p := destination.PolicyOf(spec.Defaults(destination.PolicySpec)); p != destination.DefaultPolicy() || p.BatchSize != 100 || p.MaxAttempts != 5 {
		t.Errorf("default policy %+v", p)
	}
}

func checkDefaults(t *testing.T, what string, s spec.Spec, v spec.Values) {
	t.Helper()
	for _, a := range s.Args {
		if a.Default == nil || a.Required {
			continue
		}
		if got := v.Get(a.Name); !equalValue(got, a.Default) {
			t.Errorf("%s: %s decodes as %v, its spec documents %v", what, a.Name, got, a.Default)
		}
	}
	for _, b := range s.Blocks {
		if !b.Multi {
			checkDefaults(t, what+" "+b.Type, b.Spec, v.Block(b.Type))
		}
	}
}

func equalValue(a, b any) bool { return a == b }
