package reconcile

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/state"
)

// fatalDest answers like poisonDest until its fatalAfter-th request, and
// with a fatal error from then on (a table dropped mid-run, credentials
// revoked).
type fatalDest struct {
	*poisonDest
	fatalAfter int
}

func (d *fatalDest) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	if d.requests >= d.fatalAfter {
		d.requests++
		return destination.Fatal(errors.New(`destination "crm": table "t" not found`))
	}
	return d.poisonDest.Write(ctx, b)
}

func TestFatalOutcomeStopsTheSyncAndRejectsNothing(t *testing.T) {
	dest := &fatalDest{poisonDest: newPoisonDest(), fatalAfter: 2}
	rec := newRecorder()
	res, err := ApplySync(context.Background(), upsertPlan(100), dest, rec, ApplyOptions{
		Policy: Policy{BatchSize: 10, MaxAttempts: 5, CircuitBreaker: 10}, Threshold: 1, Sleep: noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if dest.requests != 3 || res.Requests != 3 {
		t.Fatalf("%d requests (counted %d), want 3: nothing is sent after a fatal answer", dest.requests, res.Requests)
	}
	if res.Halted == nil || res.Halted.Reason != HaltFatal || !strings.Contains(res.Halted.Err, `table "t" not found`) {
		t.Fatalf("halt %+v, want the fatal error", res.Halted)
	}
	if res.Counts.Accepted != 20 || res.Counts.Rejected != 0 || len(rec.failed) != 0 {
		t.Fatalf("accepted %d rejected %d, failure index %v: want 20, 0 and empty", res.Counts.Accepted, res.Counts.Rejected, rec.failed)
	}
	// The records of the refused request leave the in-flight set without
	// an outcome, and so do those of the next batch, prepared and
	// announced while it was out but never sent; later ones were never
	// announced.
	for i := 0; i < 100; i++ {
		k := fmt.Sprintf("%05d", i)
		wantUnsent := i >= 20 && i < 40
		if (rec.unsent[k] == 1) != wantUnsent {
			t.Errorf("key %s: released %d times, want %v", k, rec.unsent[k], wantUnsent)
		}
		if i >= 30 && dest.sent[k] != 0 {
			t.Errorf("key %s sent after the fatal answer", k)
		}
		if i >= 40 && rec.inFlight[k] != 0 {
			t.Errorf("key %s announced in flight after the fatal answer", k)
		}
	}
	if !res.Failed() || res.Status() != state.RunFailed || !strings.Contains(res.FailureReason(), "refused the sync") {
		t.Fatalf("failed %v status %s reason %q", res.Failed(), res.Status(), res.FailureReason())
	}
}

// A fatal answer while a split narrows down a rejected batch: the split's
// records were answered by rejections of their whole group, which wrote
// nothing, so they are released too — none becomes a rejection.
func TestFatalOutcomeDuringASplitReleasesTheSplitsRecords(t *testing.T) {
	dest := &fatalDest{poisonDest: newPoisonDest("00003"), fatalAfter: 2}
	rec := newRecorder()
	res, err := ApplySync(context.Background(), upsertPlan(20), dest, rec, ApplyOptions{
		Policy: Policy{BatchSize: 10, SplitRetries: true, MaxAttempts: 5}, Threshold: 1, Sleep: noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Halted == nil || dest.requests != 3 {
		t.Fatalf("halt %+v after %d requests, want fatal after 3", res.Halted, dest.requests)
	}
	if len(rec.failed) != 0 || res.Counts.Rejected != 0 {
		t.Fatalf("failure index %v, want empty", rec.failed)
	}
	for i := 0; i < 10; i++ {
		k := fmt.Sprintf("%05d", i)
		if _, ok := rec.accepted[k]; !ok && rec.unsent[k] == 0 {
			t.Errorf("key %s of the split batch is neither accepted nor released", k)
		}
	}
}

// allBadDest rejects every record with a message quoting the record's
// own key, like a CHECK or NOT NULL violation would.
func allBadDest() *poisonDest {
	d := newPoisonDest()
	d.poisonAll = true
	return d
}

func TestCircuitBreakerStopsASyncEveryRecordOfWhichIsRejected(t *testing.T) {
	const n = 45000
	run := func(breaker int) (*SyncResult, *poisonDest, *memRecorder) {
		dest := allBadDest()
		rec := newRecorder()
		res, err := ApplySync(context.Background(), upsertPlan(n), dest, rec, ApplyOptions{
			Policy: Policy{BatchSize: 100, SplitRetries: true, MaxAttempts: 3, CircuitBreaker: breaker}, Threshold: 1, Sleep: noSleep,
		})
		if err != nil {
			t.Fatal(err)
		}
		return res, dest, rec
	}
	res, dest, rec := run(10)
	t.Logf("45,000 records all rejected: %d requests with circuit_breaker = 10", dest.requests)
	if res.Halted == nil || res.Halted.Reason != HaltBreaker || res.Halted.Requests != 10 {
		t.Fatalf("halt %+v, want the circuit breaker after 10 requests", res.Halted)
	}
	if dest.requests > 100 {
		t.Fatalf("%d requests sent before the breaker tripped, want at most 100", dest.requests)
	}
	if !res.Failed() || !strings.Contains(res.FailureReason(), "circuit breaker") {
		t.Fatalf("reason %q", res.FailureReason())
	}
	// What was rejected is recorded; what was never settled is not.
	if len(rec.failed) != res.Counts.Rejected || res.Counts.Rejected >= n {
		t.Fatalf("failure index %d, rejected %d", len(rec.failed), res.Counts.Rejected)
	}
	for k, c := range rec.inFlight {
		_, failed := rec.failed[k]
		if c > 0 && !failed && rec.unsent[k] == 0 {
			t.Fatalf("key %s was sent and is neither rejected nor released", k)
		}
	}

	off, destOff, _ := run(0)
	t.Logf("without the breaker: %d requests", destOff.requests)
	if off.Halted != nil || off.Counts.Rejected != n {
		t.Fatalf("circuit_breaker = 0 must never trip: %+v, %d rejected", off.Halted, off.Counts.Rejected)
	}
}

// Narrowing down one bad record in a large batch sends many requests
// rejected whole in a row; they settle nothing and must not trip the
// breaker, nor must bad records scattered among good ones.
func TestCircuitBreakerIgnoresRequestsThatSettleNothing(t *testing.T) {
	for _, halving := range []bool{true, false} {
		bad := randomBad(rand.New(rand.NewPCG(11, 12)), 20000, 40)
		dest := newPoisonDest(bad...)
		res, err := ApplySync(context.Background(), upsertPlan(20000), dest, newRecorder(), ApplyOptions{
			Policy: Policy{BatchSize: 2000, SplitRetries: true, MaxAttempts: 3, CircuitBreaker: 3}, Threshold: 1, Halving: halving, Sleep: noSleep,
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Halted != nil || res.Counts.Rejected != 40 {
			t.Fatalf("halving=%v: halted %+v with %d rejected, want no halt and the 40 bad records", halving, res.Halted, res.Counts.Rejected)
		}
	}
}

// A destination that is down: every batch fails with a retryable error
// until its attempts run out, and the breaker stops the sync.
func TestCircuitBreakerTripsOnExhaustedRetries(t *testing.T) {
	dest := newPoisonDest()
	dest.failFirst = 1 << 30
	res, _ := ApplySync(context.Background(), upsertPlan(1000), dest, newRecorder(), ApplyOptions{
		Policy: Policy{BatchSize: 10, MaxAttempts: 2, CircuitBreaker: 4}, Threshold: 1, Sleep: noSleep,
	})
	// Every batch is sent once before the first exhausts its attempts
	// (a retryable answer settles nothing); 4 exhausted batches later the
	// sync stops, instead of sending 100 × 2.
	if res.Halted == nil || res.Halted.Reason != HaltBreaker || dest.requests != 100+4 {
		t.Fatalf("halt %+v after %d requests, want the breaker after 104", res.Halted, dest.requests)
	}
}

func TestTopErrorsGroupMessagesByTheirClass(t *testing.T) {
	dest := allBadDest()
	res, err := ApplySync(context.Background(), upsertPlan(7), dest, newRecorder(), ApplyOptions{
		Policy: Policy{BatchSize: 1, MaxAttempts: 1}, Threshold: 1, Sleep: noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.TopErrors) != 1 {
		t.Fatalf("top errors %+v, want one line for one kind of error", res.TopErrors)
	}
	e := res.TopErrors[0]
	if e.Count != 7 || e.Error != "CHECK constraint failed: ?" || e.Example != "CHECK constraint failed: 00000" {
		t.Fatalf("top error %+v", e)
	}
}

// retryAfterDest answering a long Retry-After: the wait is capped by
// max_backoff, and never goes past max_elapsed.
func TestRetryAfterIsCappedByMaxBackoffAndMaxElapsed(t *testing.T) {
	for _, tc := range []struct {
		name       string
		maxBackoff time.Duration
		maxElapsed time.Duration
		want       time.Duration
	}{
		{"max_backoff", 30 * time.Second, 0, 30 * time.Second},
		{"max_elapsed", 30 * time.Second, 10 * time.Second, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := &retryAfterDest{poisonDest: newPoisonDest(), wait: time.Hour}
			clock := time.Unix(0, 0)
			var waits []time.Duration
			sleep := func(_ context.Context, d time.Duration) error {
				waits = append(waits, d)
				clock = clock.Add(d)
				return nil
			}
			res, err := ApplySync(context.Background(), upsertPlan(1), dest, newRecorder(), ApplyOptions{
				Policy: Policy{BatchSize: 1, MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: tc.maxBackoff, MaxElapsed: tc.maxElapsed},
				Sleep:  sleep, Now: func() time.Time { return clock },
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(waits) != 1 || waits[0] != tc.want || res.Counts.Accepted != 1 {
				t.Fatalf("waits %v (accepted %d), want one wait of %v", waits, res.Counts.Accepted, tc.want)
			}
		})
	}
}

// retryPlan is a plan retrying keys 0..n-1, each rejected before with
// lastErr.
func retryPlan(n int, lastErr func(k string) string) *SyncPlan {
	sp := upsertPlan(n)
	for i := range sp.Changes {
		c := &sp.Changes[i]
		c.Action, c.LastError, c.Attempts = ActionRetry, lastErr(c.Key), 1
	}
	sp.Add, sp.Retry = 0, n
	return sp
}

func TestRecordsStillFailingDoNotFailTheRunUnlessStrict(t *testing.T) {
	// 5 known-bad records rejected again, as before, next to 100 new ones.
	sp := upsertPlan(105)
	bad := []string{"00100", "00101", "00102", "00103", "00104"}
	for i := 100; i < 105; i++ {
		c := &sp.Changes[i]
		c.Action, c.LastError, c.Attempts = ActionRetry, "CHECK constraint failed: "+c.Key, 2
	}
	for _, strict := range []bool{false, true} {
		res, err := ApplySync(context.Background(), sp, newPoisonDest(bad...), newRecorder(), ApplyOptions{
			Policy: Policy{BatchSize: 50, SplitRetries: true, MaxAttempts: 3}, Threshold: 0.01, Strict: strict, Sleep: noSleep,
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.StillFailing != 5 || res.Counts.Rejected != 5 {
			t.Fatalf("still failing %d, rejected %d, want 5 and 5", res.StillFailing, res.Counts.Rejected)
		}
		if res.Failed() != strict {
			t.Fatalf("strict=%v: failed %v (%s)", strict, res.Failed(), res.FailureReason())
		}
	}

	// Only the known-bad records: still no failure.
	res, _ := ApplySync(context.Background(), retryPlan(5, func(k string) string { return "CHECK constraint failed: " + k }), allBadDest(), newRecorder(), ApplyOptions{
		Policy: Policy{BatchSize: 50, SplitRetries: true, MaxAttempts: 3}, Threshold: 0.05, Sleep: noSleep,
	})
	if res.StillFailing != 5 || res.Failed() {
		t.Fatalf("still failing %d, failed %v: 5 known-bad records alone must not fail the run", res.StillFailing, res.Failed())
	}
}

// Records of the failure index rejected with another kind of error than
// before (a destination that went down) are news: they count, and a
// destination that took nothing fails the run whatever the threshold.
func TestAnotherErrorIsNotStillFailingAndTakingNothingFails(t *testing.T) {
	dest := newPoisonDest()
	dest.failFirst = 1 << 30
	res, _ := ApplySync(context.Background(), retryPlan(5, func(k string) string { return "CHECK constraint failed: " + k }), dest, newRecorder(), ApplyOptions{
		Policy: Policy{BatchSize: 50, MaxAttempts: 2}, Threshold: 1, Sleep: noSleep,
	})
	if res.StillFailing != 0 || !res.TookNothing || !res.Failed() || !strings.Contains(res.FailureReason(), "took none of the 5") {
		t.Fatalf("still failing %d, took nothing %v: %s", res.StillFailing, res.TookNothing, res.FailureReason())
	}
}

// Known-bad records in flight when a run was killed come back as unknown
// outcomes carrying their rejection: refused again as before, they are
// still failing and the run after the crash does not fail; records never
// rejected before the crash count as news.
func TestRecordsStillFailingAfterACrashDoNotFailTheRun(t *testing.T) {
	const unknown = "outcome unknown: the run stopped while this record was in flight"
	res, _ := ApplySync(context.Background(), retryPlan(5, func(k string) string { return unknown + "; rejected before: CHECK constraint failed: " + k }), allBadDest(), newRecorder(), ApplyOptions{
		Policy: Policy{BatchSize: 50, SplitRetries: true, MaxAttempts: 3}, Threshold: 1, Sleep: noSleep,
	})
	if res.StillFailing != 5 || res.Failed() {
		t.Fatalf("still failing %d, failed %v (%s): known-bad records refused again after a crash must not fail the run", res.StillFailing, res.Failed(), res.FailureReason())
	}
	res, _ = ApplySync(context.Background(), retryPlan(5, func(string) string { return unknown }), allBadDest(), newRecorder(), ApplyOptions{
		Policy: Policy{BatchSize: 50, SplitRetries: true, MaxAttempts: 3}, Threshold: 1, Sleep: noSleep,
	})
	if res.StillFailing != 0 || !res.TookNothing {
		t.Fatalf("still failing %d, took nothing %v: records never rejected before the crash are news", res.StillFailing, res.TookNothing)
	}
}

// Known-bad records rejected again as before do not trip the breaker: 500
// of them, each sent alone, and the run is not failed.
func TestRecordsStillFailingDoNotTripTheBreaker(t *testing.T) {
	sp := retryPlan(500, func(k string) string { return "CHECK constraint failed: " + k })
	res, err := ApplySync(context.Background(), sp, allBadDest(), newRecorder(), ApplyOptions{
		Policy: Policy{BatchSize: 1, MaxAttempts: 1, CircuitBreaker: 10}, Threshold: 0.05, Sleep: noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Halted != nil || res.StillFailing != 500 || res.Failed() || res.Requests != 500 {
		t.Fatalf("halt %+v, still failing %d, failed %v, %d requests", res.Halted, res.StillFailing, res.Failed(), res.Requests)
	}
}

// A cluster of bad records inside a batch the destination takes good
// records of (30 consecutive rows refused by one CHECK among 1,000) is
// isolated by the split one record at a time: those refusals are bad rows,
// not a destination that takes nothing, and must not trip the breaker.
func TestCircuitBreakerIgnoresAClusterOfBadRowsAmongGoodOnes(t *testing.T) {
	var bad []string
	for i := 150; i < 180; i++ {
		bad = append(bad, fmt.Sprintf("%05d", i))
	}
	for _, halving := range []bool{true, false} {
		dest := newPoisonDest(bad...)
		res, err := ApplySync(context.Background(), upsertPlan(1000), dest, newRecorder(), ApplyOptions{
			Policy: Policy{BatchSize: 100, SplitRetries: true, MaxAttempts: 2, CircuitBreaker: 10}, Threshold: 1, Halving: halving, Sleep: noSleep,
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Halted != nil || res.Counts.Accepted != 970 || res.Counts.Rejected != 30 {
			t.Fatalf("halving=%v: halted %+v, %d accepted, %d rejected; want no halt, 970 and 30", halving, res.Halted, res.Counts.Accepted, res.Counts.Rejected)
		}
	}
}

// After a crash, the records that were in flight are retried with an
// unknown outcome: when those are bad rows, the destination refusing them
// one by one is not a destination that takes nothing, and the breaker
// holds; a fresh record refused in the same way still counts.
func TestCircuitBreakerIgnoresRetriedRecords(t *testing.T) {
	plan := func(action Action, lastError string) *SyncPlan {
		sp := upsertPlan(300)
		for i := range sp.Changes {
			sp.Changes[i].Action, sp.Changes[i].LastError, sp.Changes[i].Attempts = action, lastError, 1
		}
		return sp
	}
	opts := ApplyOptions{Policy: Policy{BatchSize: 10, SplitRetries: true, MaxAttempts: 2, CircuitBreaker: 10}, Threshold: 1, Sleep: noSleep}
	for _, tc := range []struct {
		name      string
		sp        *SyncPlan
		wantTrips bool
	}{
		{"retries of unknown outcome", plan(ActionRetry, "outcome unknown: the run stopped while this record was in flight"), false},
		{"retries that failed otherwise before", plan(ActionRetry, "lock wait timeout"), false},
		{"fresh records", plan(ActionAdd, ""), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := ApplySync(context.Background(), tc.sp, allBadDest(), newRecorder(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if tripped := res.Halted != nil && res.Halted.Reason == HaltBreaker; tripped != tc.wantTrips {
				t.Fatalf("breaker tripped %v, want %v (%d rejected, %d requests)", tripped, tc.wantTrips, res.Counts.Rejected, res.Requests)
			}
			if !tc.wantTrips && res.Counts.Rejected != 300 {
				t.Fatalf("%d rejected, want all 300 settled", res.Counts.Rejected)
			}
		})
	}
}

// Rows locked by another transaction, one in every batch the destination
// takes the rest of: their rejections once their attempts run out do not
// trip the breaker.
func TestCircuitBreakerIgnoresLockedRowsOfTakenBatches(t *testing.T) {
	dest := newPoisonDest()
	for i := 3; i < 1000; i += 10 {
		dest.locked[fmt.Sprintf("%05d", i)] = 1 << 30
	}
	res, err := ApplySync(context.Background(), upsertPlan(1000), dest, newRecorder(), ApplyOptions{
		Policy: Policy{BatchSize: 25, MaxAttempts: 3, CircuitBreaker: 10}, Threshold: 1, Sleep: noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Halted != nil || res.Counts.Accepted != 900 || res.Counts.Rejected != 100 {
		t.Fatalf("halted %+v, %d accepted, %d rejected; want no halt, 900 and 100", res.Halted, res.Counts.Accepted, res.Counts.Rejected)
	}
}
