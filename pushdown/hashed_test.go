package pushdown

import (
	"reflect"
	"testing"

	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/rules"
	"github.com/backflowhq/backflow/schema"
)

func TestHashedColumns(t *testing.T) {
	cols := []schema.Column{
		{Name: "id", Type: schema.TypeInt}, {Name: "name", Type: schema.TypeString},
		{Name: "plan", Type: schema.TypeString}, {Name: "n", Type: schema.TypeInt, Nullable: true},
		{Name: "note", Type: schema.TypeString, Nullable: true},
	}
	tests := []struct {
		rules []string
		want  []string
	}{
		{nil, []string{"name"}},
		// In model order, whatever the order of the rule.
		{[]string{`row.n == 1 && row.id > 0`}, []string{"id", "name", "n"}},
		// Names in string literals are not read.
		{[]string{`row.plan == "note n id"`}, []string{"name", "plan"}},
		// The row used as a value may read any column; so may a rule
		// that does not compile.
		{[]string{`row.plan == "x"`, `dyn(row)["no" + "te"] == "x"`}, []string{"id", "name", "plan", "n", "note"}},
		{[]string{`[row, 1][0]["N".lowerAscii()] == 1`}, []string{"id", "name", "plan", "n", "note"}},
		{[]string{`row.missing == 1`}, []string{"id", "name", "plan", "n", "note"}},
	}
	for _, tt := range tests {
		s := &config.Sync{Mapping: []config.Field{{Field: "Name", Column: "name"}}}
		for _, r := range tt.rules {
			s.Excludes = append(s.Excludes, rules.Rule{Name: "r", Expr: r})
		}
		if got := hashedColumns(s, cols); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("rules %q: hashed %q, want %q", tt.rules, got, tt.want)
		}
	}
}
