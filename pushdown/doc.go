// Package pushdown is warehouse CDC: the diff of a sync whose model runs
// on a live PostgreSQL or MySQL/MariaDB source, computed by that database.
//
// backflow keeps, in a schema it owns in the source database, one row per
// record it tracks (table cdc_rows): the database's own key of the record
// (text of the key columns), backflow's key, a hash the database computes
// of the columns the diff depends on, and — for records the destination
// accepted — backflow's hash and the values last sent. One statement per
// sync joins the model's result with that table and returns only the rows
// that need a look (new keys, changed hashes, failed keys, duplicated or
// NULL keys) plus the snapshot entries whose rows left the model, and a
// count of the rest. Those rows then go through reconcile's own diff, so
// rules, modes and delete behaviours act exactly as with the local diff.
//
// Plans read and never write: the snapshot table is created, and written,
// by apply, in its own transactions (the model query stays read-only).
//
// This package must not send anything to destinations, nor read or write
// the state backend: project wires it between the two.
package pushdown
