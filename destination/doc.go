// Package destination owns the drivers that write records to operational
// tools (sqlite, postgres, mysql, http, file) behind one small interface,
// and the registry they are found in. A driver classifies what happened to a
// batch — per-record results, a retryable error, or a whole-batch rejection —
// and never sleeps, retries or splits: that is package reconcile's job.
package destination
