package pushdown

import (
	"strings"
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

// TestOwnerErrorBoundsTheOwner: the owner comes from the database; a
// column holding megabytes (or control characters) is not printed as is.
func TestOwnerErrorBoundsTheOwner(t *testing.T) {
	msg := (&OwnerError{Sync: "s", Schema: "backflow", Owner: strings.Repeat("\n", 1<<20)}).Error()
	if len(msg) > 1000 || strings.Contains(msg, "\n") {
		t.Fatalf("owner printed unbounded or raw: %d bytes", len(msg))
	}
}

// TestCheckSchemaRefusesSystemSchemas: a pull request cannot point the
// snapshot tables into a schema the server keeps for itself.
func TestCheckSchemaRefusesSystemSchemas(t *testing.T) {
	for _, s := range []string{"mysql", "MySQL", "sys", "performance_schema", "information_schema", "INFORMATION_SCHEMA", "pg_catalog", "pg_toast", "Pg_temp_1"} {
		if err := CheckSchema(s); err == nil || !strings.Contains(err.Error(), "keeps for itself") {
			t.Errorf("CheckSchema(%q) = %v, want a refusal", s, err)
		}
	}
	for _, s := range []string{"backflow", "analytics_cdc", "mysql_cdc", "system", "pgx"} {
		if err := CheckSchema(s); err != nil {
			t.Errorf("CheckSchema(%q) = %v, want nil", s, err)
		}
	}
}
