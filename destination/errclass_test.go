package destination_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/destination"
)

func TestErrorClass(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		// An apostrophe inside a word opens no quote: the key after it is
		// still a value (one class for every record).
		{`the API's result for key "17" has no "ok"`, `the API's result for key "?" has no "?"`},
		{`record "a" doesn't fit: value 'x'`, `record "?" doesn't fit: value '?'`},
		{"Duplicate entry 'O'Brien' for key 'name'", "Duplicate entry '?' for key 'name'"},
		{"Duplicate entry 'l'été' for key 'email'", "Duplicate entry '?' for key 'email'"},
		{"Duplicate entry 'D'9' for key 'email'", "Duplicate entry '?' for key 'email'"},
		{"Duplicate entry ''90s' for key 'email'", "Duplicate entry '?' for key 'email'"},
		{"Duplicate entry 'Jones'' for key 'email'", "Duplicate entry '?' for key 'email'"},
		{"Duplicate entry 'it's 'x'' for key 'email'", "Duplicate entry '?' for key 'email'"},
		// MariaDB / MySQL
		{"upsert contacts: Error 1062 (23000): Duplicate entry 'a@x.io' for key 'email'",
			"upsert contacts: Error 1062 (23000): Duplicate entry '?' for key 'email'"},
		{"Error 1406 (22001): Data too long for column 'name' at row 17",
			"Error 1406 (22001): Data too long for column 'name' at row ?"},
		{"Error 1366 (22007): Incorrect integer value: 'abc' for column `test`.`t`.`age` at row 1",
			"Error 1366 (22007): Incorrect integer value: '?' for column `test`.`t`.`age` at row ?"},
		{"Error 1292 (22007): Incorrect datetime value: '2024-05-03T11:57:00Z' for column `test`.`t`.`ts` at row 3",
			"Error 1292 (22007): Incorrect datetime value: '?' for column `test`.`t`.`ts` at row ?"},
		{"Error 4025 (23000): CONSTRAINT `email_ok` failed for `test`.`contacts`",
			"Error 4025 (23000): CONSTRAINT `email_ok` failed for `test`.`contacts`"},
		// PostgreSQL
		{`ERROR: duplicate key value violates unique constraint "contacts_email_key" (SQLSTATE 23505)`,
			`ERROR: duplicate key value violates unique constraint "contacts_email_key" (SQLSTATE 23505)`},
		{`ERROR: invalid input syntax for type integer: "12x" (SQLSTATE 22P02)`,
			`ERROR: invalid input syntax for type integer: "?" (SQLSTATE 22P02)`},
		{`ERROR: value too long for type character varying(10) (SQLSTATE 22001)`,
			`ERROR: value too long for type character varying(10) (SQLSTATE 22001)`},
		{`ERROR: null value in column "email" of relation "contacts" violates not-null constraint (SQLSTATE 23502)`,
			`ERROR: null value in column "email" of relation "contacts" violates not-null constraint (SQLSTATE 23502)`},
		{`Key (id)=(5) already exists.`, `Key (id)=(?) already exists.`},
		{`ERROR: value "3000000000" is out of range for type integer (SQLSTATE 22003)`,
			`ERROR: value "?" is out of range for type integer (SQLSTATE 22003)`},
		// SQLite
		{"constraint failed: UNIQUE constraint failed: contacts.email (2067)",
			"constraint failed: UNIQUE constraint failed: contacts.email (2067)"},
		// backflow's own
		{"no record with key 9 to update", "no record with key ? to update"},
		{`field "age": 1.5 is not an integer (column age is integer)`, `field "age": ? is not an integer (column age is integer)`},
		{`field "b": "yes please" is not a boolean (column b is boolean)`, `field "b": "?" is not a boolean (column b is boolean)`},
		{`the API gave no result for key "42"`, `the API gave no result for key "?"`},
		// APIs
		{"POST https://api.example.com/v1/records: 422 Unprocessable Entity: email jo@example.com is invalid",
			"POST https://api.example.com/v1/records: 422 Unprocessable Entity: email ? is invalid"},
		{"record 123e4567-e89b-12d3-a456-426614174000 conflicts at 2024-05-03T11:57:00Z (version 7)",
			"record ? conflicts at ? (version ?)"},
		{"amount -12.50 exceeds 1e6", "amount -? exceeds ?"},
		{"connect to 127.0.0.1:5432: no answer within 500ms (connect timeout)",
			"connect to 127.0.0.1:5432: no answer within 500ms (connect timeout)"},
		{"unbalanced 'quote", "unbalanced 'quote"},
	} {
		if got := destination.ErrorClass(tc.in); got != tc.want {
			t.Errorf("ErrorClass(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

// The messages each database really gives for one kind of error, on two
// different records, fall in one class, which quotes neither record's
// values and differs from the class of another kind of error.
func TestErrorClassOnRealMessages(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t testing.TB) *sqlHarness
	}{{"sqlite", sqliteHarness}, {"postgres", postgresHarness}, {"mysql", mysqlHarness}} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.setup(t)
			ctx := context.Background()
			table := contactsTable(t, h)
			mustExec(t, h, `CREATE UNIQUE INDEX `+table+`_email ON `+table+` (email)`)
			d := h.open(t, 0, "")
			mustAccept(t, d.Write(ctx, batchFor(table,
				contact(1, destination.OpUpsert, "first.value@x", "A"), contact(2, destination.OpUpsert, "second.value@x", "B"))), 2)
			reject := func(r destination.Record) string {
				t.Helper()
				b := batchFor(table, r)
				b.Fields = []string{"email", "name", "age"}
				o := d.Write(ctx, b)
				if o.Err != nil || len(o.Results) != 1 || o.Results[0].Err == nil {
					t.Fatalf("want a per-record rejection, got %+v", o)
				}
				return o.Results[0].Err.Error()
			}
			kinds := map[string][]destination.Record{
				"duplicate": {contact(7, destination.OpInsert, "first.value@x", "C"), contact(8, destination.OpInsert, "second.value@x", "D")},
				"check":     {contact(9, destination.OpUpsert, "no-at-sign-one", "E"), contact(10, destination.OpUpsert, "no-at-sign-two", "F")},
			}
			if tc.name != "sqlite" { // SQLite's INTEGER takes any integer
				kinds["out of range"] = []destination.Record{ageRecord(11, 1<<40), ageRecord(12, 1<<41)}
			}
			classes := map[string][]string{}
			for kind, recs := range kinds {
				for _, r := range recs {
					classes[kind] = append(classes[kind], reject(r))
				}
			}
			seen := map[string]string{}
			for kind, msgs := range classes {
				a, b := destination.ErrorClass(msgs[0]), destination.ErrorClass(msgs[1])
				t.Logf("%s: %q -> %q", kind, msgs[0], a)
				if a != b {
					t.Errorf("%s: two records give two classes:\n%q\n%q", kind, a, b)
				}
				for _, v := range []string{"first.value", "second.value", "no-at-sign", "1099511627776", "2199023255552"} {
					if strings.Contains(a, v) {
						t.Errorf("%s: class %q still quotes %q", kind, a, v)
					}
				}
				if other, dup := seen[a]; dup {
					t.Errorf("%s and %s share the class %q", kind, other, a)
				}
				seen[a] = kind
			}
		})
	}
}

// ageRecord is a contact with an age.
func ageRecord(id int64, age int64) destination.Record {
	return destination.Record{Key: fmt.Sprint(id), KeyValue: id, Op: destination.OpUpsert,
		Fields: map[string]any{"email": fmt.Sprintf("u%d@x", id), "name": "n", "age": age}}
}
