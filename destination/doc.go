// Package destination owns the drivers that write records to operational
// tools (sqlite, postgres, mysql, http, file) behind one small interface,
// and the registry they are found in. A driver classifies what happened to a
// batch — per-record results (a row another transaction holds is a
// retryable record), a retryable error, a whole-batch rejection, or a fatal
// outcome that stops the sync — and never sleeps, retries or splits: that
// is package reconcile's job. Every request a driver makes ends within its
// timeout, whatever the caller's context.
package destination
