package pushdown

import (
	"strings"
	"testing"

	config "github.com/backflowhq/backflow/hcl"
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

// A PostgreSQL json key is refused (its text keeps the spacing backflow's
// key ignores); jsonb, whose text is canonical, and MySQL are not.
func TestCheckKeyTypesRefusesJSONKeys(t *testing.T) {
	cols := []schema.Column{{Name: "k", DBType: "json"}, {Name: "j", DBType: "json"}, {Name: "b", DBType: "jsonb"}}
	if err := checkKeyTypes(Postgres, "m", []string{"k"}, cols); err == nil || !strings.Contains(err.Error(), `"k" is of type json`) {
		t.Errorf("a json key: %v", err)
	}
	for _, keys := range [][]string{{"b"}, {"b", "x"}} {
		if err := checkKeyTypes(Postgres, "m", keys, cols); err != nil {
			t.Errorf("keys %v: %v", keys, err)
		}
	}
	if err := checkKeyTypes(MySQL, "m", []string{"k"}, cols); err != nil {
		t.Errorf("MySQL: %v", err)
	}
}

// A float column whose database type changes (MySQL FLOAT to DOUBLE,
// which its hash does not see) changes the fingerprint: every row is read
// once.
func TestFingerprintSeesFloatTypeChanges(t *testing.T) {
	s := &config.Sync{Name: "s", Mode: "upsert", Model: &config.Model{Name: "m", PrimaryKey: []string{"id"}},
		Mapping: []config.Field{{Field: "f", Column: "f"}, {Field: "v", Column: "v"}}}
	fp := func(f, v string) string {
		return Fingerprint(MySQL, "md5", s, []schema.Column{{Name: "id", Type: schema.TypeInt, DBType: "INT"},
			{Name: "f", Type: schema.TypeFloat, DBType: f}, {Name: "v", Type: schema.TypeString, DBType: v}})
	}
	if fp("FLOAT", "VARCHAR") == fp("DOUBLE", "VARCHAR") {
		t.Error("FLOAT made DOUBLE: same fingerprint")
	}
	if fp("FLOAT", "VARCHAR") != fp("FLOAT", "TEXT") {
		t.Error("a text column's database type changed the fingerprint (its hash sees its values)")
	}
}
