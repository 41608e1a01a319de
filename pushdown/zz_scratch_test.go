package pushdown

import (
	"os"
	"testing"

	config "github.com/backflowhq/backflow/hcl"
	"github.com/backflowhq/backflow/schema"
)

func TestZZPrintSQL(t *testing.T) {
	tbl := os.Getenv("ZZ_TABLE")
	if tbl == "" {
		t.Skip()
	}
	query := "SELECT id, name, email, country, score, signup, active, visits FROM " + tbl
	s := &config.Sync{Name: "bench", Object: "contacts", Key: "id", Mode: config.ModeUpsert, DeleteBehavior: config.DeleteNothing,
		Model:       &config.Model{Name: "bench", Query: query, PrimaryKey: []string{"id"}},
		Destination: &config.Destination{Name: "dest"},
		MaxRemovals: config.Limit{Percent: true, Fraction: 1},
		Mapping: []config.Field{{Field: "active", Column: "active"}, {Field: "country", Column: "country"}, {Field: "email", Column: "email"},
			{Field: "name", Column: "name"}, {Field: "score", Column: "score"}, {Field: "signup", Column: "signup"}, {Field: "visits", Column: "visits"}},
	}
	cols := []schema.Column{{Name: "id", Type: schema.TypeInt}, {Name: "name", Type: schema.TypeString}, {Name: "email", Type: schema.TypeString},
		{Name: "country", Type: schema.TypeString}, {Name: "score", Type: schema.TypeDecimal}, {Name: "signup", Type: schema.TypeTimestamp},
		{Name: "active", Type: schema.TypeBool}, {Name: "visits", Type: schema.TypeInt}}
	hashed := hashedColumns(s, cols)
	st := statement{d: Postgres, schema: "zz_cdc", sync: s.Name, query: s.Model.Query, cols: cols, keys: s.Model.PrimaryKey, hashed: hashed,
		fingerprint: fingerprint(Postgres, hashRecord, s, cols, hashed), tables: true, method: hashRecord}
	os.WriteFile("/tmp/zz_stmt.sql", []byte(st.sql()), 0o644)
	os.WriteFile("/tmp/zz_fp.txt", []byte(st.fingerprint), 0o644)
	t.Log(hashed)
}
