package reconcile

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/state"
)

func noSleep(context.Context, time.Duration) error { return nil }

// upsertPlan is a plan adding keys 0..n-1.
func upsertPlan(n int) *SyncPlan {
	sp := &SyncPlan{Name: "s", Object: "t", KeyField: "id", Fields: []string{"v"}}
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("%05d", i)
		sp.Changes = append(sp.Changes, Change{Action: ActionAdd, Key: k, KeyValue: k, Op: destination.OpUpsert, After: map[string]any{"v": int64(i)}})
	}
	sp.Add = n
	return sp
}

func randomBad(r *rand.Rand, n, k int) []string {
	var out []string
	for _, i := range r.Perm(n)[:k] {
		out = append(out, fmt.Sprintf("%05d", i))
	}
	return out
}

func TestSplitRetriesIsolateEachBadRecordWithItsOwnError(t *testing.T) {
	for _, halving := range []bool{false, true} {
		for _, tc := range []struct{ n, k, batch int }{{1000, 7, 100}, {100, 1, 100}, {100, 50, 100}, {64, 64, 64}, {37, 3, 10}, {2, 1, 2}} {
			name := fmt.Sprintf("halving=%v/n=%d/k=%d/batch=%d", halving, tc.n, tc.k, tc.batch)
			t.Run(name, func(t *testing.T) {
				bad := randomBad(rand.New(rand.NewPCG(uint64(tc.n), uint64(tc.k))), tc.n, tc.k)
				dest := newPoisonDest(bad...)
				rec := newRecorder()
				res, err := ApplySync(context.Background(), upsertPlan(tc.n), dest, rec, ApplyOptions{
					Policy: Policy{BatchSize: tc.batch, SplitRetries: true, MaxAttempts: 3}, Threshold: 1, Halving: halving, Sleep: noSleep,
				})
				if err != nil {
					t.Fatal(err)
				}
				if res.Counts.Accepted != tc.n-tc.k || res.Counts.Rejected != tc.k {
					t.Fatalf("accepted %d rejected %d, want %d and %d", res.Counts.Accepted, res.Counts.Rejected, tc.n-tc.k, tc.k)
				}
				for _, k := range bad {
					f, ok := rec.failed[k]
					if !ok {
						t.Fatalf("bad key %s not in failure index", k)
					}
					if want := "CHECK constraint failed: " + k; f.Error != want {
						t.Errorf("key %s rejected with %q, want its own error %q", k, f.Error, want)
					}
				}
				if len(rec.accepted) != tc.n-tc.k || len(dest.written) != tc.n-tc.k {
					t.Fatalf("recorded %d accepted, destination holds %d; want %d", len(rec.accepted), len(dest.written), tc.n-tc.k)
				}
				// A group once accepted is never sent again.
				for k := range rec.accepted {
					if dest.sent[k] > 1 && !containsBatchWithFailure(dest, k, bad) {
						t.Errorf("accepted key %s was re-sent after its acceptance", k)
					}
				}
			})
		}
	}
}

// containsBatchWithFailure reports whether every send of key but the last was
// in a batch that was rejected (contained a bad key): resending is only
// allowed while the record's fate is unknown.
func containsBatchWithFailure(d *poisonDest, key string, bad []string) bool {
	isBad := map[string]bool{}
	for _, b := range bad {
		isBad[b] = true
	}
	var sends []bool // per send of key: did that batch fail?
	for _, b := range d.batches {
		has, failed := false, false
		for _, k := range b {
			if k == key {
				has = true
			}
			if isBad[k] && len(b) > 1 {
				failed = true
			}
		}
		if has {
			sends = append(sends, failed)
		}
	}
	for _, f := range sends[:len(sends)-1] {
		if !f {
			return false
		}
	}
	return true
}

func TestAdaptiveSplitSendsFewerRequestsThanHalving(t *testing.T) {
	// The input: 1,000 rows, 7 violating a constraint, batches of 100.
	requests := func(halving bool) int {
		bad := randomBad(rand.New(rand.NewPCG(7, 1000)), 1000, 7)
		dest := newPoisonDest(bad...)
		if _, err := ApplySync(context.Background(), upsertPlan(1000), dest, newRecorder(), ApplyOptions{
			Policy: Policy{BatchSize: 100, SplitRetries: true, MaxAttempts: 3}, Threshold: 1, Halving: halving, Sleep: noSleep,
		}); err != nil {
			t.Fatal(err)
		}
		return dest.requests
	}
	adaptive, halving := requests(false), requests(true)
	t.Logf("requests: adaptive %d, halving %d", adaptive, halving)
	if adaptive >= halving {
		t.Fatalf("adaptive split sent %d requests, plain halving %d: want fewer", adaptive, halving)
	}
}

func TestWithoutSplitRetriesThePoisonedBatchIsRejectedWhole(t *testing.T) {
	bad := randomBad(rand.New(rand.NewPCG(7, 1000)), 1000, 7)
	dest := newPoisonDest(bad...)
	rec := newRecorder()
	res, err := ApplySync(context.Background(), upsertPlan(1000), dest, rec, ApplyOptions{
		Policy: Policy{BatchSize: 100, MaxAttempts: 3}, Threshold: 1, Sleep: noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	poisoned := map[int]bool{}
	for _, k := range bad {
		var i int
		fmt.Sscanf(k, "%d", &i)
		poisoned[i/100] = true
	}
	if want := len(poisoned) * 100; res.Counts.Rejected != want || len(rec.failed) != want {
		t.Fatalf("rejected %d (index %d), want the %d records of the poisoned batches", res.Counts.Rejected, len(rec.failed), want)
	}
	if res.Requests != 10 {
		t.Fatalf("sent %d requests, want 10 (no splitting)", res.Requests)
	}
}

func TestLockedRecordsAreRetriedWithBackoffAndOnlyThey(t *testing.T) {
	// The documented example: 10,000 records, 5 locked at the start; 2 unlock
	// during the run, 3 stay locked.
	dest := newPoisonDest()
	for i, k := range []string{"00010", "02000", "05000", "07777", "09999"} {
		if i < 2 {
			dest.locked[k] = 2 // accepted on the third send
		} else {
			dest.locked[k] = 1 << 30
		}
	}
	var waits []time.Duration
	sleep := func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }
	rec := newRecorder()
	res, err := ApplySync(context.Background(), upsertPlan(10000), dest, rec, ApplyOptions{
		Policy: Policy{BatchSize: 100, MaxAttempts: 5, InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}, Threshold: 0.05, Sleep: sleep,
		Rand: rand.New(rand.NewPCG(1, 2)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts.Accepted != 9997 || res.Counts.Rejected != 3 {
		t.Fatalf("accepted %d rejected %d, want 9997 and 3", res.Counts.Accepted, res.Counts.Rejected)
	}
	if res.Resent != 5 {
		t.Fatalf("resent %d records, want only the 5 locked ones", res.Resent)
	}
	for _, k := range []string{"05000", "07777", "09999"} {
		if f := rec.failed[k]; f.Attempts != 5 || f.Error != "record locked" {
			t.Errorf("key %s: failure %+v, want 5 attempts with the lock error", k, f)
		}
	}
	if len(waits) == 0 {
		t.Fatal("no backoff wait between retries")
	}
	for _, w := range waits {
		if w < 0 || w > time.Second {
			t.Errorf("wait %v outside [0, max_backoff]", w)
		}
	}
	if res.ThresholdExceeded {
		t.Fatal("3 of 10,000 rejected must not exceed a 5% threshold")
	}
}

func TestRetryableBatchErrorsAreRetriedThenTheRunCompletes(t *testing.T) {
	dest := newPoisonDest()
	dest.failFirst = 4
	rec := newRecorder()
	res, err := ApplySync(context.Background(), upsertPlan(300), dest, rec, ApplyOptions{
		Policy: Policy{BatchSize: 100, MaxAttempts: 6}, Threshold: 0, Sleep: noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts.Accepted != 300 || res.Counts.Rejected != 0 || len(dest.written) != 300 {
		t.Fatalf("accepted %d rejected %d written %d, want all 300", res.Counts.Accepted, res.Counts.Rejected, len(dest.written))
	}
	if res.Requests != 3+4 {
		t.Fatalf("requests %d, want 7 (3 batches + 4 failed)", res.Requests)
	}
}

func TestExhaustedRetriesRejectWithLastError(t *testing.T) {
	dest := newPoisonDest()
	dest.failFirst = 1 << 30
	rec := newRecorder()
	res, _ := ApplySync(context.Background(), upsertPlan(10), dest, rec, ApplyOptions{
		Policy: Policy{BatchSize: 5, MaxAttempts: 3}, Threshold: 0.5, Sleep: noSleep,
	})
	if res.Counts.Rejected != 10 || !res.ThresholdExceeded {
		t.Fatalf("rejected %d threshold %v, want 10 and exceeded", res.Counts.Rejected, res.ThresholdExceeded)
	}
	if res.Requests != 6 {
		t.Fatalf("requests %d, want 2 batches × 3 attempts", res.Requests)
	}
	if f := rec.failed["00003"]; f.Error != "connection refused" || f.Attempts != 3 {
		t.Fatalf("failure %+v, want the last error and 3 attempts", f)
	}
}

func TestBackoffDoesNotStallOtherBatches(t *testing.T) {
	// Batch 1's only record is locked for a while; batches 2 and 3 must be
	// sent before batch 1's first retry.
	dest := newPoisonDest()
	dest.locked["00000"] = 1
	clock := time.Unix(0, 0)
	now := func() time.Time { return clock }
	sleep := func(_ context.Context, d time.Duration) error { clock = clock.Add(d); return nil }
	_, err := ApplySync(context.Background(), upsertPlan(3), dest, newRecorder(), ApplyOptions{
		Policy: Policy{BatchSize: 1, MaxAttempts: 3, InitialBackoff: time.Second, MaxBackoff: time.Second}, Now: now, Sleep: sleep,
		Rand: rand.New(rand.NewPCG(3, 3)),
	})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, b := range dest.batches {
		order = append(order, b[0])
	}
	if fmt.Sprint(order) != "[00000 00001 00002 00000]" {
		t.Fatalf("send order %v, want the retry after the other batches", order)
	}
}

// interruptingDest cancels the apply (Ctrl-C) while its first request is
// out.
type interruptingDest struct {
	*poisonDest
	cancel context.CancelFunc
}

func (d *interruptingDest) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	d.cancel()
	return d.poisonDest.Write(ctx, b)
}

func TestInterruptedApplyStopsAfterTheBatchInFlight(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	dest := &interruptingDest{poisonDest: newPoisonDest(), cancel: cancel}
	rec := newRecorder()
	res, err := ApplySync(ctx, upsertPlan(50), dest, rec, ApplyOptions{
		Policy: Policy{BatchSize: 10, MaxAttempts: 1},
		Sleep:  noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || dest.requests != 1 || len(rec.accepted) != 10 {
		t.Fatalf("interrupted=%v requests=%d accepted=%d, want one batch finished and recorded", res.Interrupted, dest.requests, len(rec.accepted))
	}
}

// Interrupted after an answer that wrote everything, the request sent
// meanwhile (the next one goes out before a clean answer is recorded) is
// finished and recorded too; nothing more is sent.
func TestInterruptedApplyRecordsTheRequestSentAhead(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	dest := newPoisonDest()
	rec := newRecorder()
	res, err := ApplySync(ctx, upsertPlan(50), dest, rec, ApplyOptions{
		Policy:   Policy{BatchSize: 10, MaxAttempts: 1},
		Progress: func(done, total int) { cancel() },
		Sleep:    noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || dest.requests > 2 || len(rec.accepted) != 10*dest.requests {
		t.Fatalf("interrupted=%v requests=%d accepted=%d, want at most two batches, each finished and recorded", res.Interrupted, dest.requests, len(rec.accepted))
	}
	for i := 10 * dest.requests; i < 50; i++ {
		if k := fmt.Sprintf("%05d", i); rec.inFlight[k] != 0 {
			t.Errorf("key %s announced in flight, never sent", k)
		}
	}
}

func TestRetryableErrorsDuringSplittingAreRetriedNotRejected(t *testing.T) {
	// The batch is rejected whole for one bad record; then the destination
	// fails with a transient error while the split is under way.
	for _, halving := range []bool{false, true} {
		for _, failures := range []int{1, 2} {
			bad := []string{"00042"}
			dest := newPoisonDest(bad...)
			rec := newRecorder()
			var afterFirst bool
			res, err := ApplySync(context.Background(), upsertPlan(100), dest, rec, ApplyOptions{
				Policy: Policy{BatchSize: 100, SplitRetries: true, MaxAttempts: 4}, Threshold: 1, Sleep: noSleep, Halving: halving,
				Progress: func(done, total int) {
					if !afterFirst {
						afterFirst = true
						dest.failFirst = failures
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Counts.Accepted != 99 || res.Counts.Rejected != 1 || rec.failed["00042"].Error != "CHECK constraint failed: 00042" {
				t.Fatalf("halving=%v failures=%d: %+v, failures %v; want 99 accepted and the bad record rejected with its own error",
					halving, failures, res.Counts, rec.failed)
			}
		}
	}
}

// flakyDest answers a retryable error on the requests listed in fail (1-based)
// and otherwise behaves like a poisonDest.
type flakyDest struct {
	*poisonDest
	fail map[int]bool
	n    int
}

func (d *flakyDest) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	d.n++
	if d.fail[d.n] {
		d.poisonDest.requests++
		return destination.Retry(errors.New("503 service unavailable"), 0)
	}
	return d.poisonDest.Write(ctx, b)
}

func TestRetryBudgetIsPerGroupDuringSplits(t *testing.T) {
	// Requests 2 and 4 fail transiently. With a budget of 2 sends, the group
	// sent by request 4 was only tried once before (request 3 was another
	// group): nothing may be given up, and the bad record keeps its own error.
	for _, halving := range []bool{false, true} {
		dest := &flakyDest{poisonDest: newPoisonDest("00000"), fail: map[int]bool{2: true, 4: true}}
		rec := newRecorder()
		res, err := ApplySync(context.Background(), upsertPlan(8), dest, rec, ApplyOptions{
			Policy: Policy{BatchSize: 8, SplitRetries: true, MaxAttempts: 2}, Threshold: 1, Sleep: noSleep, Halving: halving,
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Counts.Accepted != 7 || res.Counts.Rejected != 1 || rec.failed["00000"].Error != "CHECK constraint failed: 00000" {
			t.Fatalf("halving=%v: %+v, failures %v", halving, res.Counts, rec.failed)
		}
	}
	// A group that keeps failing is given up alone; the split goes on.
	// Halving sends [0-3] (requests 2 and 3, both failing), then [4-7].
	dest := &flakyDest{poisonDest: newPoisonDest("00000"), fail: map[int]bool{2: true, 3: true}}
	rec := newRecorder()
	res, _ := ApplySync(context.Background(), upsertPlan(8), dest, rec, ApplyOptions{
		Policy: Policy{BatchSize: 8, SplitRetries: true, MaxAttempts: 2}, Threshold: 1, Sleep: noSleep, Halving: true,
	})
	if res.Counts.Accepted != 4 || res.Counts.Rejected != 4 {
		t.Fatalf("%+v, want the failing half given up and the other half accepted", res.Counts)
	}
	for _, k := range []string{"00000", "00001", "00002", "00003"} {
		if rec.failed[k].Error != "503 service unavailable" {
			t.Fatalf("key %s: %+v", k, rec.failed[k])
		}
	}
	for _, k := range []string{"00004", "00005", "00006", "00007"} {
		if _, ok := rec.accepted[k]; !ok {
			t.Fatalf("key %s not accepted", k)
		}
	}
}

func TestMaxElapsedCountsFromTheBatchsFirstSend(t *testing.T) {
	// Each request takes a second; the last batch meets a lock after 9 s of
	// run time, which must not count against its own 5 s budget.
	clock := &fakeClock{t: time.Unix(0, 0)}
	dest := &clockDest{poisonDest: newPoisonDest(), tick: time.Second, clock: clock}
	dest.locked["00009"] = 1
	res, err := ApplySync(context.Background(), upsertPlan(10), dest, newRecorder(), ApplyOptions{
		Policy: Policy{BatchSize: 1, MaxAttempts: 5, MaxElapsed: 5 * time.Second},
		Now:    clock.now, Sleep: func(_ context.Context, d time.Duration) error { clock.add(d); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts.Accepted != 10 {
		t.Fatalf("%+v: the locked record must be retried and accepted", res.Counts)
	}
}

// fakeClock is a clock the test moves; requests may read and move it
// while the apply records answers.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// clockDest advances a fake clock by tick on every request.
type clockDest struct {
	*poisonDest
	tick  time.Duration
	clock *fakeClock
}

func (d *clockDest) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	d.clock.add(d.tick)
	return d.poisonDest.Write(ctx, b)
}

func TestZeroInitialBackoffDoesNotWait(t *testing.T) {
	b := backoff{base: 0, cap: time.Minute, rand: rand.New(rand.NewPCG(1, 1))}
	for retry := 0; retry < 5; retry++ {
		if d := b.wait(retry, 0); d != 0 {
			t.Fatalf("retry %d waits %v with initial_backoff 0", retry, d)
		}
	}
	if d := b.wait(0, 2*time.Second); d != 2*time.Second {
		t.Fatalf("server wait ignored: %v", d)
	}
}

func TestServerRetryAfterIsHonoured(t *testing.T) {
	dest := &retryAfterDest{poisonDest: newPoisonDest(), wait: 3 * time.Second}
	var waits []time.Duration
	clock := time.Unix(0, 0)
	sleep := func(_ context.Context, d time.Duration) error {
		waits = append(waits, d)
		clock = clock.Add(d)
		return nil
	}
	_, err := ApplySync(context.Background(), upsertPlan(1), dest, newRecorder(), ApplyOptions{
		Policy: Policy{BatchSize: 1, MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Second},
		Sleep:  sleep, Now: func() time.Time { return clock },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(waits) != 1 || waits[0] != 3*time.Second {
		t.Fatalf("waits %v, want the server's 3s", waits)
	}
}

// retryAfterDest fails its first request asking for a wait.
type retryAfterDest struct {
	*poisonDest
	wait time.Duration
	done bool
}

func (d *retryAfterDest) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	if !d.done {
		d.done = true
		return destination.Retry(errors.New("429 too many requests"), d.wait)
	}
	return d.poisonDest.Write(ctx, b)
}

// announcedDest checks, on every request, that each record in it was
// announced in flight at least as many times as it has been sent.
type announcedDest struct {
	*poisonDest
	rec  *lockedRecorder
	sent map[string]int
	bad  []string
}

func (d *announcedDest) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	d.rec.mu.Lock()
	for _, r := range b.Records {
		d.sent[r.Key]++
		if d.rec.inFlight[r.Key] < d.sent[r.Key] {
			d.bad = append(d.bad, r.Key)
		}
	}
	d.rec.mu.Unlock()
	return d.poisonDest.Write(ctx, b)
}

// lockedRecorder is a memRecorder a destination may read while the apply
// records (the next request is announced while one is out).
type lockedRecorder struct {
	*memRecorder
	mu sync.Mutex
}

func (l *lockedRecorder) Accept(key string, hash uint64, v map[string]any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.memRecorder.Accept(key, hash, v)
}

func (l *lockedRecorder) Forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.memRecorder.Forget(key)
}

func (l *lockedRecorder) Fail(f state.Failure) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.memRecorder.Fail(f)
}

func (l *lockedRecorder) Unsent(keys []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.memRecorder.Unsent(keys)
}

func (l *lockedRecorder) InFlight(recs []state.InFlightRecord) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.memRecorder.InFlight(recs)
}

func TestEveryRequestIsAnnouncedInFlightFirst(t *testing.T) {
	rec := &lockedRecorder{memRecorder: newRecorder()}
	bad := randomBad(rand.New(rand.NewPCG(3, 4)), 500, 5)
	dest := &announcedDest{poisonDest: newPoisonDest(bad...), rec: rec, sent: map[string]int{}}
	dest.locked["00007"] = 2
	if _, err := ApplySync(context.Background(), upsertPlan(500), dest, rec, ApplyOptions{
		Policy: Policy{BatchSize: 50, SplitRetries: true, MaxAttempts: 5}, Threshold: 1, Sleep: noSleep,
	}); err != nil {
		t.Fatal(err)
	}
	if len(dest.bad) > 0 {
		t.Fatalf("records sent without being announced in flight first: %v", dest.bad)
	}
	// A request prepared ahead and put back (the answer before it was not
	// clean) was announced and released without being sent.
	if k := "00007"; dest.sent[k] < 3 || rec.inFlight[k]-rec.unsent[k] != dest.sent[k] {
		t.Errorf("locked record sent %d times, announced %d, released %d: want sent = announced - released, at least 3", dest.sent[k], rec.inFlight[k], rec.unsent[k])
	}
	for k, n := range dest.sent {
		if rec.inFlight[k]-rec.unsent[k] != n {
			t.Errorf("key %s sent %d times, announced %d, released %d", k, n, rec.inFlight[k], rec.unsent[k])
		}
	}
}

func TestNothingIsSentWhenInFlightCannotBeRecorded(t *testing.T) {
	rec := newRecorder()
	rec.inFlightErr = errors.New("disk full")
	dest := newPoisonDest()
	_, err := ApplySync(context.Background(), upsertPlan(10), dest, rec, ApplyOptions{Policy: Policy{BatchSize: 5, MaxAttempts: 1}, Threshold: 1, Sleep: noSleep})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("ApplySync = %v, want the recorder's error", err)
	}
	if dest.requests != 0 {
		t.Errorf("%d requests sent although the in-flight record failed", dest.requests)
	}
}

// gatedRecorder holds the recording of the first accepted record until
// the destination has the second request: it shows that the next request
// goes out while a clean answer is being recorded.
type gatedRecorder struct {
	*memRecorder
	second <-chan struct{}
	t      *testing.T
	once   sync.Once
}

func (g *gatedRecorder) Accept(key string, hash uint64, v map[string]any) {
	g.once.Do(func() {
		select {
		case <-g.second:
		case <-time.After(10 * time.Second):
			g.t.Error("the second request was not sent while the first answer was recorded")
		}
	})
	g.memRecorder.Accept(key, hash, v)
}

// secondDest closes second when its second request arrives.
type secondDest struct {
	*poisonDest
	second chan struct{}
	n      atomic.Int32
}

func (d *secondDest) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	if d.n.Add(1) == 2 {
		close(d.second)
	}
	return d.poisonDest.Write(ctx, b)
}

// With one request in flight, the next request is sent as soon as an
// answer that accepted everything arrives, before that answer is recorded.
func TestCleanAnswerSendsTheNextRequestBeforeRecording(t *testing.T) {
	dest := &secondDest{poisonDest: newPoisonDest(), second: make(chan struct{})}
	rec := &gatedRecorder{memRecorder: newRecorder(), second: dest.second, t: t}
	res, err := ApplySync(context.Background(), upsertPlan(30), dest, rec, ApplyOptions{
		Policy: Policy{BatchSize: 10, MaxAttempts: 1},
		Sleep:  noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 3 || len(rec.accepted) != 30 {
		t.Fatalf("%d requests, %d accepted: want 3 and 30", res.Requests, len(rec.accepted))
	}
}

// newFlagDest accepts everything and keeps each record's New flag by key.
type newFlagDest struct{ seen map[string]bool }

func (d *newFlagDest) Write(_ context.Context, b *destination.Batch) destination.Outcome {
	for _, r := range b.Records {
		d.seen[r.Key] = r.New
	}
	return destination.AllAccepted(len(b.Records))
}
func (d *newFlagDest) Close() error { return nil }

// Only adds reach a destination as new records (Record.New, which lets a
// SQL destination insert rather than upsert them): changes, retries and
// removals may have a row there.
func TestOnlyAddsAreNewRecords(t *testing.T) {
	sp := &SyncPlan{Name: "s", Object: "t", KeyField: "id", Fields: []string{"v"}}
	for _, c := range []struct {
		a  Action
		op destination.Operation
	}{{ActionAdd, destination.OpUpsert}, {ActionChange, destination.OpUpsert}, {ActionRetry, destination.OpUpsert},
		{ActionRemove, destination.OpDelete}, {ActionAdd, destination.OpInsert}} {
		k := fmt.Sprintf("%s-%s", c.a, c.op)
		ch := Change{Action: c.a, Key: k, KeyValue: k, Op: c.op, After: map[string]any{"v": int64(1)}}
		if c.op == destination.OpDelete {
			ch.After = nil
		}
		sp.Changes = append(sp.Changes, ch)
	}
	dest := &newFlagDest{seen: map[string]bool{}}
	if _, err := ApplySync(context.Background(), sp, dest, newRecorder(), ApplyOptions{Policy: Policy{BatchSize: 2, MaxAttempts: 1}, Threshold: 1, Sleep: noSleep}); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"add-upsert": true, "change-upsert": false, "retry-upsert": false, "remove-delete": false, "add-insert": true}
	if !reflect.DeepEqual(dest.seen, want) {
		t.Fatalf("New by record: %v, want %v", dest.seen, want)
	}
}
