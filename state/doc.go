// Package state owns the state directory: per sync, the snapshot of what the
// destination last accepted (key → hash and mapped values, compact binary)
// and the failure index of rejected records; the run history and per-row
// logs; the lineage / serial / version metadata; and the exclusive lock.
// Every write is atomic (temp file, fsync, rename, fsync dir), every file
// is checksummed, and files are created 0600 in folders 0700. It knows
// nothing of configs or destinations.
//
// The same state can live in a PostgreSQL schema or a MySQL database
// instead (sqlstate.go: tables, checkpoints as transactions, a lock per
// sync held by a database session), behind the same interfaces
// (backend.go); Copy moves state between backends.
//
// Layout of a state directory (format version 2):
//
//	state.json              Meta: version, lineage, serial, and a CRC-32C
//	lock                    LockInfo of the holder (JSON)
//	lock.flock              flock(2) target; the lock itself
//	runs.jsonl              one Run per line, oldest first (sealed, see sealed.go)
//	logs/<sync>/<run>.jsonl RowLogs of the sync's most recent runs (sealed)
//	syncs/<sync>/snapshot   values in key order, each with its CRC-32C,
//	                        then the index (keys, hashes, value offsets)
//	                        and a checksummed footer naming the snapshot's
//	                        generation and its parent's
//	syncs/<sync>/failures.json  the failure index, sorted by key (sealed),
//	                        naming the snapshot generation it goes with
//	syncs/<sync>/journal    checkpoints of an apply in progress (or crashed)
//	*.prev                  the previous good generation of each file a
//	                        commit replaced; journal.prev is the journal
//	                        that led from snapshot.prev to snapshot
//
// A loaded Snapshot holds only its index in memory, in flat arrays (about
// 24 bytes per key plus the key); values are read from the file on demand
// and checked against their checksum. An apply announces each request's
// records as in flight (InFlight, fsynced before anything is sent) and
// appends its results to the journal at each Checkpoint, as one
// all-or-nothing group; Commit merges them into a new snapshot and moves the
// journal to journal.prev. Loads replay a journal left by a crash on top of
// the snapshot, so no checkpointed result is lost, and records in flight
// without an outcome come back as failure entries whose outcome is unknown
// (Failure.Unknown), to be sent again.
//
// Damage is never skipped or written over: a file that fails its checksum,
// is cut short (except the torn tail of a journal's last group, which a
// crash leaves), is missing while the files beside it need it, or belongs
// to another commit is refused with a *CorruptError naming it;
// PlanRecovery and Recover (`backflow state recover`) restore the last good
// generation, saying first what that loses. State of a newer format
// version is refused with a *VersionError naming both versions. Version 1
// state is read as it is and upgraded file by file as it is rewritten.
package state
