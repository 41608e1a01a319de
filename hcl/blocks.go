package config

import (
	"fmt"

	"github.com/backflowhq/backflow/schema"
	"github.com/backflowhq/backflow/spec"
)

// The config's own blocks, declared as specs like the drivers' so that
// their defaults live here once and the reference documentation lists them
// with everything else. Their arguments are decoded by the loader's own
// code (references, mappings and rules need more than a spec says).

var modelSpec = spec.Spec{Args: []spec.Arg{
	{Name: "source", Kind: spec.Reference, Required: true, Doc: "The source the query runs on.", Example: "source = source.warehouse"},
	{Name: "query", Kind: spec.String, Required: true, Doc: "The model's SELECT statement, inline or read with file().", Example: `query = file("models/active_users.sql")`},
	{Name: "primary_key", Kind: spec.StringList, Required: true, Doc: "The column identifying a row, or a list of columns for a composite key.", Example: `primary_key = "id"`},
	{Name: "column_types", Kind: spec.StringMap, Check: checkColumnType,
		Doc:     "Reads result columns of a live source as another type where the database cannot say: a MySQL TINYINT(1) flag as bool (0 and 1 only), a MariaDB JSON column (described as text) as json.",
		Example: `column_types = { active = "bool" }`},
}}

var excludeSpec = spec.Spec{Args: []spec.Arg{
	{Name: "when", Kind: spec.Rule, Required: true, Doc: "A CEL expression over row that is true for rows to leave out. It reads a column as `row.<column>` (typed as the model's column, null when the column may be null; `has(row.<column>)` tests whether it is set); the row itself is no value, so a rule that passes it to a function, compares, converts, indexes it or puts it in a list or map is refused.", Example: `when = "row.email == null || !row.email.contains('@')"`},
	{Name: "reason", Kind: spec.String, Doc: "Why such rows are left out, for people reading the config.", Example: `reason = "the CRM rejects contacts without an email"`},
}}

var syncSpec = spec.Spec{
	Args: []spec.Arg{
		{Name: "model", Kind: spec.Reference, Required: true, Doc: "The model whose rows are sent.", Example: "model = model.active_users"},
		{Name: "destination", Kind: spec.Reference, Required: true, Doc: "The destination written to.", Example: "destination = destination.crm"},
		{Name: "object", Kind: spec.String, Required: true, Doc: "The table (SQL) or object (API) written to.", Example: `object = "contacts"`},
		{Name: "key", Kind: spec.String, Required: true, Doc: "The destination field matched to the model's primary key; always written, mapped or not.", Example: `key = "external_id"`},
		{Name: "mode", Kind: spec.String, Default: ModeUpsert, OneOf: modes,
			Doc: "upsert sends adds and changes; update only changes; insert only adds; all every included row on every run (no CDC).", Example: `mode = "update"`},
		{Name: "delete_behavior", Kind: spec.String, Default: DeleteNothing, OneOf: deleteBehaviors,
			Doc: "What happens to records whose rows left the model: delete them, clear their mapped fields, or nothing (only forget them).", Example: `delete_behavior = "delete"`},
		{Name: "clear_fields", Kind: spec.StringList,
			Doc: "With delete_behavior = \"clear\": the mapped fields a clear sets to null (default: every mapped field but the key). Leave out fields whose destination column is NOT NULL.", Example: `clear_fields = ["email", "phone"]`},
		{Name: "cdc", Kind: spec.String, OneOf: cdcKinds,
			Doc:     "Where changes are found: \"local\" diffs the model's rows against the snapshot in the state; \"warehouse\" (PostgreSQL and MySQL/MariaDB sources) has the source database compare them with a snapshot table it keeps, so that only changed rows leave it. Default: the source's cdc.",
			Example: `cdc = "warehouse"`},
		{Name: "failure_threshold", Kind: spec.Percent, Default: 1.0,
			Doc: "The run fails (exit 1) when more of the records attempted for the first time (adds, changes, removals) are rejected. Records of the failure index rejected again with the same error are still failing: a warning, not counted (apply --strict counts them). Whatever the threshold, the run fails when the destination took none of the records attempted, answered that the sync cannot proceed, or the circuit breaker stopped it. The default, 100%, fails only those runs. The state is saved either way.", Example: `failure_threshold = "5%"`},
		{Name: "max_removals", Kind: spec.String, Default: "25%",
			Doc: "Apply refuses a plan that removes or clears more records than this — a count, or a percentage of the records synced — or whose model returned no rows while records are synced, unless given --allow-mass-removal: a broken model must not wipe a destination.", Example: `max_removals = "10%"`},
		{Name: "log_accepted", Kind: spec.String, Default: "1000",
			Doc: "Which accepted records a run's row log keeps (rejected records are always kept): \"all\", \"none\", or a number — the first N of the run. About 80 bytes per record kept, for each of the last 20 runs.", Example: `log_accepted = "all"`},
		{Name: "mapping", Kind: spec.Object, Doc: "Destination field = model column; only mapped columns count toward change detection.", Example: `mapping = { email = "email", full_name = "name" }`},
		{Name: "sensitive_fields", Kind: spec.StringList, Doc: "Mapped fields whose values plans never show (text, JSON, markdown): they read (sensitive). Keys are always shown.", Example: `sensitive_fields = ["email", "phone"]`},
		{Name: "redact_values", Kind: spec.Bool, Default: false, Doc: "Plans show no value of any mapped field, only keys and which fields change.", Example: "redact_values = true"},
	},
	Blocks: []spec.Block{{Type: "exclude", Label: "name", Multi: true, Doc: "A rule leaving rows out of the model; the first rule that matches names the reason. Rows already synced that a rule now excludes count as removed.", Spec: excludeSpec}},
}

var testTableSpec = spec.Spec{Args: []spec.Arg{
	{Name: "rows", Kind: spec.Rows, Required: true, Doc: "The table's rows, replacing the source's.", Example: `rows = [{ id = 1, email = "a@example.com" }]`},
}}

var testSpec = spec.Spec{
	Args: []spec.Arg{
		{Name: "sync", Kind: spec.Reference, Required: true, Doc: "The sync under test.", Example: "sync = sync.users_to_crm"},
		{Name: "fixtures", Kind: spec.String, Doc: "A folder whose fixture files replace the source's tables of the same name. For a live source they go into scratch schemas of its server: schema.table.csv names a schema-qualified table, and *.sql files run in the source's own dialect (CREATE TABLE and INSERT) to declare column types.", Example: `fixtures = "tests/case1"`},
		{Name: "expect_excluded", Kind: spec.Object, Doc: "Exactly the keys excluded, each with the rule excluding it.", Example: `expect_excluded = { "2" = "missing_email" }`},
		{Name: "expect_sent", Kind: spec.StringList, Doc: "Exactly the keys sent on a first run.", Example: `expect_sent = ["1"]`},
		{Name: "expect_rows", Kind: spec.Object, Doc: "Fields a key's record must be sent with.", Example: `expect_rows = { "1" = { full_name = "Ann" } }`},
	},
	Blocks: []spec.Block{{Type: "table", Label: "name", Multi: true, Doc: "Inline rows replacing a table of the model's source; for a live source the name may be schema.table, as the model names it.", Spec: testTableSpec}},
}

// blockDocs are the config's own block types, for the reference.
var blockDocs = []struct {
	kind, doc string
	spec      spec.Spec
}{
	{kindModel, "A SQL query on a source; its rows are what syncs send.", modelSpec},
	{kindSync, "Keeps a destination object in step with a model.", syncSpec},
	{kindTest, "Fixture rows in, expected verdicts out: run by backflow test, offline on the embedded engine, or for a model of a live source on that database in its own SQL dialect (not run with --offline).", testSpec},
}

var (
	modelSchema     = schemaOf(modelSpec)
	syncSchema      = schemaOf(syncSpec)
	excludeSchema   = schemaOf(excludeSpec)
	testSchema      = schemaOf(testSpec)
	testTableSchema = schemaOf(testTableSpec)
)

// syncDefaults are the values of a sync's arguments when not set.
var syncDefaults = spec.Defaults(syncSpec)

func checkColumnType(s string) error {
	if _, ok := schema.ParseType(s); ok {
		return nil
	}
	return &spec.Problem{Summary: "Unknown column type",
		Detail: fmt.Sprintf("%q is not a column type. Use %s (or a common SQL spelling such as bigint or varchar).%s",
			s, quoteList(schema.PortableNames(), "or"), didYouMean(s, schema.TypeNames()))}
}
