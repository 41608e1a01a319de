// Package reconcile is the heart of backflow: it diffs a model's rows against
// the state (CDC) into a Plan — plain, serialisable data — and applies a Plan:
// batching, exponential backoff with jitter, split retries, failure
// thresholds and checkpoints, the same for every destination. It does not
// parse config, run CEL or speak any destination's protocol itself.
package reconcile
