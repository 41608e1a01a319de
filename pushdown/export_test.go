package pushdown

import "time"

// ForceMD5 makes PostgreSQL hash with md5 of the row's text, as servers
// before 14 do, until the returned function restores the default.
func ForceMD5() func() {
	forceMD5 = true
	return func() { forceMD5 = false }
}

// ForceLookup makes PostgreSQL read the values stored of the keys picked
// one by one (always) or by hashing the table (not always), until the
// returned function restores the choice by their number.
func ForceLookup(always bool) func() {
	lookupMode = lookupNever
	if always {
		lookupMode = lookupAlways
	}
	return func() { lookupMode = 0 }
}

// SetLockWait sets how long apply's writes and a plan's reads of the
// snapshot tables wait for a lock, until the returned function restores
// it.
func SetLockWait(d time.Duration) func() {
	old := lockWait
	lockWait = d
	return func() { lockWait = old }
}

// ForceSplit makes PostgreSQL's diff statement run split in parts at once
// (always) or whole (not always), whatever the table's size, until the
// returned function restores the choice by size.
func ForceSplit(always bool) func() {
	splitMode = splitNever
	if always {
		splitMode = splitAlways
	}
	return func() { splitMode = 0 }
}

// SetSplitRows sets how many rows of a sync in the snapshot table split
// its statement, until the returned function restores it.
func SetSplitRows(n int) func() {
	old := splitRows
	splitRows = n
	return func() { splitRows = old }
}
