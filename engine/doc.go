// Package engine owns the SQL engines that models run on: an embedded,
// in-process go-mysql-server database loaded from fixture files (the offline
// default for quickstarts, validation and tests) and live PostgreSQL / MySQL
// sources. It answers one question: given a query, what are the columns and
// rows. It knows nothing of syncs, rules, destinations or state.
package engine
