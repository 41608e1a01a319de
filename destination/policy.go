package destination

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/backflowhq/backflow/spec"
)

// Policy is how a destination is written to: the bound of one request,
// batching, retries and split retries. Every destination block takes these
// arguments, whatever its type; reconcile carries them out the same way for
// every driver.
type Policy struct {
	Timeout        time.Duration // bound of one request
	BatchSize      int
	SplitRetries   bool
	MaxAttempts    int           // sends of a record within a run, the first included
	InitialBackoff time.Duration // base of the exponential backoff
	MaxBackoff     time.Duration // cap of one wait
	MaxElapsed     time.Duration // 0 = no limit on the time spent retrying one batch
	// CircuitBreaker is how many consecutive requests, each with every
	// record it settled rejected by the same error class, stop a sync
	// (0 = never).
	CircuitBreaker int
	// MaxInFlight is how many requests of one sync may await an answer at
	// once (for destinations that take concurrent writes).
	MaxInFlight int
	// RateLimit is the most requests per second sent to the destination,
	// by all syncs writing to it together; 0 = no limit.
	RateLimit float64
}

// MaxBatchSize and MaxInFlight bound batch_size and max_in_flight: an
// apply holds a window of batches and max_in_flight requests at once, and
// a config under review must not be able to make it allocate without
// bound.
const (
	MaxBatchSize = 100_000
	MaxInFlight  = 64
)

// DefaultCircuitBreaker is circuit_breaker's default.
const DefaultCircuitBreaker = 10

// RetrySpec is the `retry` block of a destination.
var RetrySpec = spec.Spec{
	Args: []spec.Arg{
		{Name: "max_attempts", Kind: spec.Int, Min: 1, Default: 5,
			Doc: "Sends of a record within a run, the first included; a record still failing then is rejected with its last error.", Example: "max_attempts = 6"},
		{Name: "initial_backoff", Kind: spec.Duration, Default: 200 * time.Millisecond,
			Doc: "Base of the exponential backoff: the n-th retry waits a random time up to initial_backoff·2ⁿ (full jitter).", Example: `initial_backoff = "500ms"`},
		{Name: "max_backoff", Kind: spec.Duration, Default: 30 * time.Second,
			Doc: "Cap of one wait, also of a server's Retry-After: a longer Retry-After waits max_backoff.", Example: `max_backoff = "1m"`},
		{Name: "max_elapsed", Kind: spec.Duration,
			Doc: "Longest time spent retrying one batch, from its first send; no wait goes past it, whatever a server's Retry-After says. Unset means no limit.", Example: `max_elapsed = "5m"`},
	},
	Validate: func(v spec.Values) *spec.Problem {
		if v.Valid("initial_backoff", "max_backoff") && v.Duration("initial_backoff") > v.Duration("max_backoff") {
			arg := "max_backoff"
			if !v.IsSet(arg) {
				arg = "initial_backoff"
			}
			return &spec.Problem{Arg: arg, Summary: "Invalid backoff",
				Detail: "The initial backoff (" + spec.FormatDuration(v.Duration("initial_backoff")) + ") is longer than the maximum backoff (" +
					spec.FormatDuration(v.Duration("max_backoff")) + "). Raise max_backoff or lower initial_backoff."}
		}
		return nil
	},
}

// PolicySpec declares the arguments every destination block takes beside
// its type's own, with their defaults.
var PolicySpec = spec.Spec{
	Args: []spec.Arg{
		{Name: "timeout", Kind: spec.Duration, Default: 30 * time.Second,
			Doc: "Bound of one request to the destination; a request that takes longer fails as retryable.", Example: `timeout = "10s"`},
		{Name: "batch_size", Kind: spec.Int, Min: 1, Max: MaxBatchSize, Default: 100,
			Doc: "Records per request (at most 100,000).", Example: "batch_size = 500"},
		{Name: "split_retries", Kind: spec.Bool, Default: false,
			Doc: "Isolate the bad records of a batch rejected whole by sending smaller groups, instead of rejecting every record of it.", Example: "split_retries = true"},
		{Name: "max_in_flight", Kind: spec.Int, Min: 1, Max: MaxInFlight, Default: 1,
			Doc: "Requests of one sync sent without waiting for the answers of earlier ones, at most 64 (HTTP, PostgreSQL and MySQL; SQLite and file destinations take one request at a time). A PostgreSQL destination opens a connection per request in flight, as they are needed, at most max_in_flight, shared by the syncs writing to it. Outcomes are recorded in the order the requests were sent.", Example: "max_in_flight = 8"},
		{Name: "rate_limit", Kind: spec.String, Check: checkRate,
			Doc: "The most requests per second, minute or hour sent to this destination by every sync writing to it, together (a token bucket); unset means no limit.", Example: `rate_limit = "100/s"`},
		{Name: "circuit_breaker", Kind: spec.Int, Min: 0, Default: DefaultCircuitBreaker,
			Doc: "Stop a sync after this many consecutive requests whose every record was rejected with the same error (values in the messages aside; records of the failure index being retried, and refusals isolated by split retries in a batch the destination took records of, do not count): the records not sent stay pending and the run fails. 0 never stops.", Example: "circuit_breaker = 25"},
	},
	Blocks: []spec.Block{{Type: "retry", Doc: "Retries of records that failed for a transient reason, within a run.", Spec: RetrySpec}},
}

// PolicyOf reads a Policy from a destination block's common arguments.
func PolicyOf(v spec.Values) Policy {
	r := v.Block("retry")
	return Policy{
		Timeout:        v.Duration("timeout"),
		BatchSize:      v.Int("batch_size"),
		SplitRetries:   v.Bool("split_retries"),
		MaxAttempts:    r.Int("max_attempts"),
		InitialBackoff: r.Duration("initial_backoff"),
		MaxBackoff:     r.Duration("max_backoff"),
		MaxElapsed:     r.Duration("max_elapsed"),
		CircuitBreaker: v.Int("circuit_breaker"),
		MaxInFlight:    v.Int("max_in_flight"),
		RateLimit:      mustRate(v.String("rate_limit")),
	}
}

// ParseRate reads a rate such as "100/s", "600/m" or "5000/h" as requests
// per second; "" is no limit (0).
func ParseRate(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	num, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	num = strings.TrimSpace(num)
	n, err := strconv.ParseFloat(num, 64)
	if strings.Trim(num, "0123456789.") != "" {
		// Digits and a point only: ParseFloat also takes "+5", "1_000",
		// "1e3", "Inf" and hexadecimal.
		err = strconv.ErrSyntax
	}
	per := map[string]float64{"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}[strings.TrimSpace(unit)]
	if !ok || err != nil || per == 0 || !(n > 0) || n > 1e9 {
		return 0, fmt.Errorf("%q is not a rate: write a number of requests per second, minute or hour, like \"100/s\", \"600/m\" or \"5000/h\"", spec.Clip(s, spec.QuotedMax))
	}
	if n/per < 1.0/3600 {
		// Slower would wait for hours between requests (and, far slower,
		// overflow the interval between them to no limit at all).
		return 0, fmt.Errorf("%q is below one request an hour, the slowest rate_limit: write at least \"1/h\"", spec.Clip(s, spec.QuotedMax))
	}
	return n / per, nil
}

// checkRate checks a rate_limit written in the config: "" there is a
// mistake, not "no limit" (which is leaving it out).
func checkRate(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New(`an empty rate_limit is no rate: write one like "100/s", or leave rate_limit out for no limit`)
	}
	_, err := ParseRate(s)
	return err
}

func mustRate(s string) float64 {
	r, _ := ParseRate(s) // checked when the config was decoded
	return r
}

// DefaultPolicy is the policy of a destination block that sets none of
// PolicySpec's arguments.
func DefaultPolicy() Policy { return PolicyOf(spec.Defaults(PolicySpec)) }
