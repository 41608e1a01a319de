// Package state owns the state directory: per sync, the snapshot of what the
// destination last accepted (key → hash and mapped values, compact binary)
// and the failure index of rejected records; the run history and per-row
// logs; the lineage / serial / version metadata; and the exclusive lock.
// Every write is atomic (temp file, fsync, rename, fsync dir) and files are
// created 0600. It knows nothing of configs, SQL or destinations.
//
// Layout of a state directory:
//
//	state.json              Meta: version, lineage, serial
//	lock                    LockInfo of the holder (JSON)
//	lock.flock              flock(2) target; the lock itself
//	runs.jsonl              one Run per line, oldest first
//	logs/<sync>/<run>.jsonl RowLogs of the sync's most recent runs
//	syncs/<sync>/snapshot   values in key order, then the index (keys,
//	                        hashes, value offsets) and a checksummed footer
//	syncs/<sync>/failures.json  the failure index, a JSON list sorted by key
//	syncs/<sync>/journal    checkpoints of an apply in progress (or crashed)
//
// A loaded Snapshot holds only its index in memory, in flat arrays (about
// 24 bytes per key plus the key itself); values are read from the file on
// demand. An apply appends its results to the journal at each Checkpoint;
// Commit merges them into a new snapshot and removes the journal. Loads
// replay a journal left by a crash on top of the snapshot, so no
// checkpointed result is lost.
package state
