// Package engine owns the SQL engines that models run on: an embedded,
// in-process go-mysql-server database loaded from fixture files (the offline
// default for quickstarts, validation and tests) and live PostgreSQL / MySQL
// sources. It answers one question: given a query, what are the columns and
// rows. It knows nothing of syncs, rules, destinations or state.
//
// The embedded engine runs untrusted SQL (a pull request's fixtures and
// models) and is a sandbox: fixture .sql files may only create tables and
// insert rows, a model is one SELECT, and the engine reads and writes no
// host files (sandbox.go).
package engine
