// Package state owns the state directory: per sync, the snapshot of what the
// destination last accepted (key → hash and mapped values, compact binary)
// and the failure index of rejected records; the run history and per-row
// logs; the lineage / serial / version metadata; and the exclusive lock.
// Every write is atomic (temp file, fsync, rename, fsync dir) and files are
// created 0600. It knows nothing of configs, SQL or destinations.
package state
