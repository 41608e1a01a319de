package pushdown

import (
	"testing"

	"github.com/backflowhq/backflow/schema"
)

// TestCheckColumnsCase: PostgreSQL's column names are case-sensitive, so
// v and V are two columns there; one on MySQL.
func TestCheckColumnsCase(t *testing.T) {
	cols := []schema.Column{{Name: "id"}, {Name: "v"}, {Name: "V"}}
	if err := checkColumns(Postgres, "m", cols); err != nil {
		t.Errorf("PostgreSQL: %v", err)
	}
	if err := checkColumns(MySQL, "m", cols); err == nil {
		t.Error("MySQL: v and V accepted as two columns")
	}
}
