package reconcile

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/state"
)

// gateDest takes concurrent writes. Its first others+1 requests wait until
// they are all in flight at once; then the one holding key first waits
// until the others have been answered, so answers arrive out of order.
type gateDest struct {
	*poisonDest
	first    string
	others   int
	mu       sync.Mutex
	now      int
	most     int
	arrived  int
	done     int
	together chan struct{}
	release  chan struct{}
}

func newGateDest(first string, others int) *gateDest {
	return &gateDest{poisonDest: newPoisonDest(), first: first, others: others, together: make(chan struct{}), release: make(chan struct{})}
}

// wait waits for ch, or gives up after a guard time (the requests it
// waits for never came: the test then fails on the error).
func wait(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-time.After(10 * time.Second):
		return false
	}
}

func (d *gateDest) ConcurrentWrites() {}

func (d *gateDest) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	d.mu.Lock()
	d.now++
	d.most = max(d.most, d.now)
	d.arrived++
	gated := d.arrived <= d.others+1
	if d.arrived == d.others+1 {
		close(d.together)
	}
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.now--
		d.done++
		if d.done == d.others {
			close(d.release)
		}
		d.mu.Unlock()
	}()
	if gated && !wait(d.together) {
		return destination.RejectBatch(errors.New("the requests were not in flight together"))
	}
	if b.Records[0].Key == d.first && !wait(d.release) {
		return destination.RejectBatch(errors.New("the other requests were not answered while this one was in flight"))
	}
	return d.poisonDest.Write(ctx, b)
}

// orderRecorder is a memRecorder that remembers the order of accepts.
type orderRecorder struct {
	*memRecorder
	order []string
}

func (r *orderRecorder) Accept(key string, h uint64, v map[string]any) {
	r.order = append(r.order, key)
	r.memRecorder.Accept(key, h, v)
}

func TestMaxInFlightSendsSeveralRequestsAndRecordsInOrder(t *testing.T) {
	// The first batch is answered last, after the seven others.
	dest := newGateDest("00000", 7)
	rec := &orderRecorder{memRecorder: newRecorder()}
	res, err := ApplySync(context.Background(), upsertPlan(800), dest, rec, ApplyOptions{
		Policy: Policy{BatchSize: 10, MaxAttempts: 3, MaxInFlight: 8}, Threshold: 0, Sleep: noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts.Accepted != 800 || res.Requests != 80 || len(dest.written) != 800 {
		t.Fatalf("accepted %d in %d requests, written %d", res.Counts.Accepted, res.Requests, len(dest.written))
	}
	if dest.most != 8 {
		t.Fatalf("at most %d requests in flight at once, want 8", dest.most)
	}
	// Outcomes are recorded in the order the requests were sent, although
	// the first was answered last.
	if !slices.IsSorted(rec.order) || len(rec.order) != 800 {
		t.Fatalf("accepts recorded out of order: %v…", rec.order[:20])
	}
}

func TestMaxInFlightIsOneForDestinationsWithoutConcurrentWrites(t *testing.T) {
	dest := &countingDest{poisonDest: newPoisonDest()}
	res, err := ApplySync(context.Background(), upsertPlan(100), dest, newRecorder(), ApplyOptions{
		Policy: Policy{BatchSize: 10, MaxAttempts: 3, MaxInFlight: 8}, Threshold: 0, Sleep: noSleep,
	})
	if err != nil || res.Counts.Accepted != 100 {
		t.Fatal(err, res.Counts)
	}
	if dest.most != 1 {
		t.Fatalf("%d requests at once to a destination that takes one at a time", dest.most)
	}
}

// countingDest counts the requests in flight at once (no ConcurrentWrites).
type countingDest struct {
	*poisonDest
	mu        sync.Mutex
	now, most int
}

func (d *countingDest) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	d.mu.Lock()
	d.now++
	d.most = max(d.most, d.now)
	d.mu.Unlock()
	out := d.poisonDest.Write(ctx, b)
	d.mu.Lock()
	d.now--
	d.mu.Unlock()
	return out
}

// With requests in flight at once, splits, retries and a fatal answer
// still settle every record exactly once.
func TestMaxInFlightWithSplitsRetriesAndAHalt(t *testing.T) {
	dest := &concurrentPoison{poisonDest: newPoisonDest("00013", "00250", "00251", "00777")}
	dest.locked["00100"] = 2
	rec := newRecorder()
	res, err := ApplySync(context.Background(), upsertPlan(1000), dest, rec, ApplyOptions{
		Policy: Policy{BatchSize: 50, SplitRetries: true, MaxAttempts: 5, MaxInFlight: 4}, Threshold: 1, Sleep: noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts.Accepted != 996 || res.Counts.Rejected != 4 || len(rec.accepted) != 996 || len(rec.failed) != 4 {
		t.Fatalf("%+v, recorded %d accepted %d failed", res.Counts, len(rec.accepted), len(rec.failed))
	}

	fd := &concurrentFatal{fatalDest: &fatalDest{poisonDest: newPoisonDest(), fatalAfter: 5}}
	rec = newRecorder()
	res, err = ApplySync(context.Background(), upsertPlan(1000), fd, rec, ApplyOptions{
		Policy: Policy{BatchSize: 10, MaxAttempts: 5, MaxInFlight: 4}, Threshold: 1, Sleep: noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Halted == nil || len(rec.failed) != 0 {
		t.Fatalf("halt %+v, failures %v", res.Halted, rec.failed)
	}
	// Every record sent is accepted or released; nothing else was sent.
	for k := range rec.inFlight {
		if _, ok := rec.accepted[k]; !ok && rec.unsent[k] == 0 {
			t.Errorf("key %s sent, neither accepted nor released", k)
		}
	}
	if fd.requests > 5+4 {
		t.Errorf("%d requests: at most max_in_flight more than the fatal one's", fd.requests)
	}
}

type concurrentPoison struct{ *poisonDest }

func (concurrentPoison) ConcurrentWrites() {}

type concurrentFatal struct {
	*fatalDest
}

func (concurrentFatal) ConcurrentWrites() {}

func (d *concurrentFatal) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	d.mu.Lock()
	fatal := d.requests >= d.fatalAfter
	if fatal {
		d.requests++
	}
	d.mu.Unlock()
	if fatal {
		return destination.Fatal(errors.New("401 Unauthorized"))
	}
	return d.poisonDest.Write(ctx, b)
}

func TestRateLimiterSpacesRequestsAcrossSyncs(t *testing.T) {
	l := NewRateLimiter(100)
	now := time.Unix(0, 0)
	var waits []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := l.reserve(now)
			mu.Lock()
			waits = append(waits, w)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(waits)
	for i, w := range waits {
		if want := time.Duration(i) * 10 * time.Millisecond; w != want {
			t.Fatalf("waits %v, want 0, 10ms, … 90ms", waits)
		}
	}
	if NewRateLimiter(0) != nil {
		t.Fatal("a rate of 0 is no limit")
	}

	// In an apply: 20 requests at 100/s take 190 ms of the fake clock.
	clock := time.Unix(0, 0)
	var sent []time.Time
	dest := &stampDest{poisonDest: newPoisonDest(), clock: &clock, sent: &sent}
	_, err := ApplySync(context.Background(), upsertPlan(20), dest, newRecorder(), ApplyOptions{
		Policy: Policy{BatchSize: 1, MaxAttempts: 1}, Limiter: NewRateLimiter(100),
		Now: func() time.Time { return clock }, Sleep: func(_ context.Context, d time.Duration) error { clock = clock.Add(d); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(sent); i++ {
		if gap := sent[i].Sub(sent[i-1]); gap < 10*time.Millisecond {
			t.Fatalf("requests %d and %d %v apart, want at least 10ms", i-1, i, gap)
		}
	}
	if len(sent) != 20 || sent[19].Sub(sent[0]) != 190*time.Millisecond {
		t.Fatalf("%d requests over %v", len(sent), sent[len(sent)-1].Sub(sent[0]))
	}
}

type stampDest struct {
	*poisonDest
	clock *time.Time
	sent  *[]time.Time
}

func (d *stampDest) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	*d.sent = append(*d.sent, *d.clock)
	return d.poisonDest.Write(ctx, b)
}

// Ctrl-C with requests in flight and more announced ahead: the requests
// out are answered and recorded; those announced and never sent are
// released, not left with an unknown outcome.
func TestInterruptWithRequestsInFlightReleasesTheOnesNotSent(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	dest := &cancelDest{concurrentPoison: concurrentPoison{newPoisonDest()}, cancel: cancel}
	rec := newRecorder()
	res, err := ApplySync(ctx, upsertPlan(1000), dest, rec, ApplyOptions{
		Policy: Policy{BatchSize: 10, MaxAttempts: 1, MaxInFlight: 4},
		Sleep:  noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || res.Requests != dest.requests || res.Counts.Accepted != len(dest.written) || len(dest.written) >= 1000 {
		t.Fatalf("interrupted %v, %d requests (destination saw %d), %d accepted, %d written", res.Interrupted, res.Requests, dest.requests, res.Counts.Accepted, len(dest.written))
	}
	released := 0
	for k := range rec.inFlight {
		_, ok := rec.accepted[k]
		switch {
		case ok && rec.unsent[k] > 0:
			t.Fatalf("key %s accepted and released", k)
		case !ok && rec.unsent[k] == 0:
			t.Fatalf("key %s announced, neither accepted nor released", k)
		case !ok:
			released++
			if dest.sent[k] != 0 {
				t.Fatalf("key %s released although it was sent", k)
			}
		}
	}
	if released == 0 {
		t.Fatal("nothing was announced ahead: the test does not test the release")
	}
}

// A server asking for a wait (429 with Retry-After) holds back every
// request of the sync, not only the batch it refused.
func TestRetryAfterHoldsBackTheOtherBatches(t *testing.T) {
	clock := time.Unix(0, 0)
	var sent []time.Time
	dest := &retryAfterDest{poisonDest: newPoisonDest(), wait: 2 * time.Second}
	stamped := &stampDest{poisonDest: newPoisonDest(), clock: &clock, sent: &sent}
	both := &pressureDest{first: dest, then: stamped}
	res, err := ApplySync(context.Background(), upsertPlan(3), both, newRecorder(), ApplyOptions{
		Policy: Policy{BatchSize: 1, MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Second},
		Now:    func() time.Time { return clock }, Sleep: func(_ context.Context, d time.Duration) error { clock = clock.Add(d); return nil },
	})
	if err != nil || res.Counts.Accepted != 3 {
		t.Fatal(err, res.Counts)
	}
	for _, at := range sent {
		if at.Before(time.Unix(2, 0)) {
			t.Fatalf("requests sent at %v: none may go before the server's 2s", sent)
		}
	}
}

// pressureDest answers its first request with first, the others with then.
type pressureDest struct {
	first, then destination.Destination
	n           int
}

func (d *pressureDest) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	d.n++
	if d.n == 1 {
		return d.first.Write(ctx, b)
	}
	return d.then.Write(ctx, b)
}

func (d *pressureDest) Close() error { return nil }

// cancelDest cancels the apply's context (Ctrl-C) as its requests arrive.
type cancelDest struct {
	concurrentPoison
	cancel func()
}

func (d *cancelDest) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	d.cancel()
	return d.concurrentPoison.Write(ctx, b)
}

// slowAnnounceRecorder holds its second InFlight (the announcement of the
// next requests, made while others are out) until proceed is closed.
type slowAnnounceRecorder struct {
	*memRecorder
	calls            atomic.Int32
	started, proceed chan struct{}
}

func (r *slowAnnounceRecorder) InFlight(recs []state.InFlightRecord) error {
	if r.calls.Add(1) == 2 {
		close(r.started)
		if !wait(r.proceed) {
			return errors.New("the requests announced before were not sent while this announcement was written")
		}
	}
	return r.memRecorder.InFlight(recs)
}

// heldDest answers the batch starting with key held once the recorder's
// second announcement has started, every other one at once, and closes
// full when its fourth request arrives.
type heldDest struct {
	*poisonDest
	held          string
	started, full chan struct{}
	arrived       atomic.Int32
}

func (d *heldDest) ConcurrentWrites() {}

func (d *heldDest) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	if d.arrived.Add(1) == 4 {
		close(d.full)
	}
	if b.Records[0].Key == d.held && !wait(d.started) {
		return destination.RejectBatch(errors.New("the second announcement never started"))
	}
	return d.poisonDest.Write(ctx, b)
}

func TestRequestsGoOutWhileTheNextAreAnnounced(t *testing.T) {
	// max_in_flight 2: four requests are announced, two sent. The first
	// answer sends the third and announces a fifth; the second answer
	// comes while that announcement is being written, and must send the
	// fourth (announced already) without waiting for it: the announcement
	// only completes once the fourth request has arrived.
	started, full := make(chan struct{}), make(chan struct{})
	rec := &slowAnnounceRecorder{memRecorder: newRecorder(), started: started, proceed: full}
	dest := &heldDest{poisonDest: newPoisonDest(), held: "00010", started: started, full: full}
	res, err := ApplySync(context.Background(), upsertPlan(100), dest, rec, ApplyOptions{
		Policy: Policy{BatchSize: 10, MaxAttempts: 3, MaxInFlight: 2}, Sleep: noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts.Accepted != 100 || res.Counts.Rejected != 0 || len(dest.written) != 100 {
		t.Fatalf("accepted %d, rejected %d, written %d of 100", res.Counts.Accepted, res.Counts.Rejected, len(dest.written))
	}
	for k, n := range dest.sent {
		if rec.inFlight[k] < n {
			t.Fatalf("key %s sent %d times, announced %d", k, n, rec.inFlight[k])
		}
	}
}

// preparingDest is a poisonDest that converts batches ahead: it counts
// the requests whose batch was prepared before it was written.
type preparingDest struct {
	*poisonDest
	mu         sync.Mutex
	prepared   map[*destination.Batch]bool
	unprepared int
}

func (d *preparingDest) PrepareBatch(b *destination.Batch) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.prepared[b] = true
}

func (d *preparingDest) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	d.mu.Lock()
	if !d.prepared[b] {
		d.unprepared++
	}
	delete(d.prepared, b)
	d.mu.Unlock()
	return d.poisonDest.Write(ctx, b)
}

type concurrentPreparingDest struct{ *preparingDest }

func (concurrentPreparingDest) ConcurrentWrites() {}

func TestEveryBatchIsPreparedBeforeItIsWritten(t *testing.T) {
	for _, inFlight := range []int{1, 4} {
		pd := &preparingDest{poisonDest: newPoisonDest("00042"), prepared: map[*destination.Batch]bool{}}
		var dest destination.Destination = pd
		if inFlight > 1 {
			dest = concurrentPreparingDest{pd}
		}
		res, err := ApplySync(context.Background(), upsertPlan(300), dest, newRecorder(), ApplyOptions{
			Policy: Policy{BatchSize: 10, MaxAttempts: 3, MaxInFlight: inFlight, SplitRetries: true}, Threshold: 1, Sleep: noSleep,
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Counts.Accepted != 299 || res.Counts.Rejected != 1 {
			t.Fatalf("max_in_flight %d: accepted %d, rejected %d", inFlight, res.Counts.Accepted, res.Counts.Rejected)
		}
		if pd.unprepared != 0 || res.Requests <= 30 {
			t.Fatalf("max_in_flight %d: %d of %d requests written unprepared", inFlight, pd.unprepared, res.Requests)
		}
	}
}

// slowCheckpointRecorder holds its first Checkpoint (the loop's first:
// ApplySync makes none before the first announcement of a plan of sends
// alone) until proceed is closed, and counts announcements.
type slowCheckpointRecorder struct {
	*memRecorder
	checkpoints, announcements atomic.Int32
	started, proceed           chan struct{}
}

func (r *slowCheckpointRecorder) Checkpoint() error {
	if r.checkpoints.Add(1) == 1 && r.started != nil {
		close(r.started)
		if !wait(r.proceed) {
			return errors.New("the request staged was not sent while this checkpoint was written")
		}
	}
	return r.memRecorder.Checkpoint()
}

func (r *slowCheckpointRecorder) InFlight(recs []state.InFlightRecord) error {
	r.announcements.Add(1)
	return r.memRecorder.InFlight(recs)
}

func TestRequestsGoOutWhileOutcomesAreCheckpointed(t *testing.T) {
	// max_in_flight 2, four requests, all announced at once. The first
	// answer sends the third; with nothing left to announce, its outcome
	// is checkpointed on its own. The second answer comes during that
	// checkpoint and must send the fourth without waiting for it: the
	// checkpoint only completes once the fourth request has arrived.
	started, full := make(chan struct{}), make(chan struct{})
	rec := &slowCheckpointRecorder{memRecorder: newRecorder(), started: started, proceed: full}
	dest := &heldDest{poisonDest: newPoisonDest(), held: "00010", started: started, full: full}
	res, err := ApplySync(context.Background(), upsertPlan(40), dest, rec, ApplyOptions{
		Policy: Policy{BatchSize: 10, MaxAttempts: 3, MaxInFlight: 2}, Sleep: noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts.Accepted != 40 || len(dest.written) != 40 {
		t.Fatalf("accepted %d, written %d of 40", res.Counts.Accepted, len(dest.written))
	}
	if n := rec.checkpoints.Load(); n < 1 {
		t.Fatalf("%d checkpoints: the outcomes were never checkpointed in the loop", n)
	}
}

func TestAnnouncementsCoverSeveralRequests(t *testing.T) {
	// With 8 in flight and 8 kept ahead, requests are announced at least
	// four at a time: one fsync for several, not one per answer.
	rec := &slowCheckpointRecorder{memRecorder: newRecorder()}
	dest := concurrentPoison{newPoisonDest()}
	res, err := ApplySync(context.Background(), upsertPlan(1000), dest, rec, ApplyOptions{
		Policy: Policy{BatchSize: 10, MaxAttempts: 3, MaxInFlight: 8}, Sleep: noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts.Accepted != 1000 || res.Requests != 100 {
		t.Fatalf("accepted %d in %d requests, want 1000 in 100", res.Counts.Accepted, res.Requests)
	}
	if n := rec.announcements.Load(); n > 100/4+1 {
		t.Errorf("%d announcements for 100 requests: want at most %d", n, 100/4+1)
	}
	// Every outcome was checkpointed before ApplySync returned.
	if got := rec.checkpoints.Load(); got < 2 {
		t.Errorf("%d checkpoints", got)
	}
}

// failingCheckpointRecorder fails every Checkpoint: for a plan of sends
// alone ApplySync makes none before its first announcement, so the first
// is the loop's, checkpointing answers while other requests are out.
type failingCheckpointRecorder struct {
	*memRecorder
	calls atomic.Int32
}

func (r *failingCheckpointRecorder) Checkpoint() error {
	r.calls.Add(1)
	return errors.New("disk full")
}

func TestACheckpointFailingInTheBackgroundStopsTheApply(t *testing.T) {
	// Four requests, all announced at once; the checkpoint of the first
	// answer's outcomes fails while the others are out or staged.
	rec := &failingCheckpointRecorder{memRecorder: newRecorder()}
	dest := concurrentPoison{newPoisonDest()}
	res, err := ApplySync(context.Background(), upsertPlan(40), dest, rec, ApplyOptions{
		Policy: Policy{BatchSize: 10, MaxAttempts: 3, MaxInFlight: 2}, Sleep: noSleep,
	})
	if err == nil || !strings.Contains(err.Error(), "saving progress: disk full") {
		t.Fatalf("err %v, want the checkpoint's failure", err)
	}
	if res == nil {
		t.Fatal("no result")
	}
}

// announceWatch is a recorder that tells who waits when keys are
// announced in flight.
type announceWatch struct {
	*memRecorder
	mu        sync.Mutex
	announced map[string]bool
	changed   chan struct{} // closed and replaced at each announcement
}

func (r *announceWatch) InFlight(recs []state.InFlightRecord) error {
	r.mu.Lock()
	for _, rec := range recs {
		r.announced[rec.Key] = true
	}
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	return r.memRecorder.InFlight(recs)
}

// waitAnnounced waits until key is announced, reporting false after 10 s.
func (r *announceWatch) waitAnnounced(key string) bool {
	for {
		r.mu.Lock()
		ok, ch := r.announced[key], r.changed
		r.mu.Unlock()
		if ok {
			return true
		}
		if !wait(ch) {
			return false
		}
	}
}

// announcedFirstDest prepares a batch only once its records are announced
// in flight, which the loop does after taking the batch: a PrepareBatch
// run by the loop itself would wait for ever (10 s, then it gives up).
type announcedFirstDest struct {
	*preparingDest
	rec    *announceWatch
	gaveUp atomic.Bool
}

func (d *announcedFirstDest) PrepareBatch(b *destination.Batch) {
	if !d.gaveUp.Load() && !d.rec.waitAnnounced(b.Records[0].Key) {
		d.gaveUp.Store(true)
	}
	d.preparingDest.PrepareBatch(b)
}

// Batches are prepared beside the loop: the loop announces a batch (and
// records answers) while the destination prepares it, and the request
// still waits for its batch to be prepared.
func TestBatchesArePreparedBesideTheLoop(t *testing.T) {
	rec := &announceWatch{memRecorder: newRecorder(), announced: map[string]bool{}, changed: make(chan struct{})}
	pd := &preparingDest{poisonDest: newPoisonDest(), prepared: map[*destination.Batch]bool{}}
	dest := &announcedFirstDest{preparingDest: pd, rec: rec}
	res, err := ApplySync(context.Background(), upsertPlan(200), dest, rec, ApplyOptions{
		Policy: Policy{BatchSize: 10, MaxAttempts: 3}, Sleep: noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if dest.gaveUp.Load() {
		t.Fatal("a batch was prepared before its records were announced: the loop prepared it")
	}
	if res.Counts.Accepted != 200 || pd.unprepared != 0 || res.Requests != 20 {
		t.Fatalf("accepted %d, %d of %d requests written unprepared", res.Counts.Accepted, pd.unprepared, res.Requests)
	}
}

func TestOneRequestInFlightSyncsOncePerBatch(t *testing.T) {
	// One request in flight: the announcement of the next batch makes the
	// outcomes handled before it durable too, so an apply of 100 batches
	// that write everything costs about one durable write per batch, not
	// one for the outcomes and one for the announcement.
	rec := &slowCheckpointRecorder{memRecorder: newRecorder()}
	res, err := ApplySync(context.Background(), upsertPlan(1000), newPoisonDest(), rec, ApplyOptions{
		Policy: Policy{BatchSize: 10, MaxAttempts: 3, MaxInFlight: 1}, Sleep: noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts.Accepted != 1000 || res.Requests != 100 {
		t.Fatalf("accepted %d in %d requests, want 1000 in 100", res.Counts.Accepted, res.Requests)
	}
	syncs := rec.checkpoints.Load() + rec.announcements.Load()
	if syncs > 100+3 {
		t.Errorf("%d checkpoints and %d announcements for 100 requests: want at most %d in all",
			rec.checkpoints.Load(), rec.announcements.Load(), 100+3)
	}
	// Every outcome was recorded.
	if len(rec.accepted) != 1000 {
		t.Errorf("%d outcomes recorded, want 1000", len(rec.accepted))
	}
}

// With several requests in flight, a Retry-After holds back the requests
// not sent yet as soon as it comes, before it is handled in turn, and the
// wait counts from when it came: the server's 3 s lockout costs 3 s and
// the 8 requests that were out, not a second wave refused and 6 s.
func TestRetryAfterWithSeveralInFlight(t *testing.T) {
	var mu sync.Mutex
	clock := time.Unix(0, 0)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	dest := &lockoutDest{concurrentPoison: concurrentPoison{newPoisonDest()}, now: now, lockout: 3 * time.Second}
	res, err := ApplySync(context.Background(), upsertPlan(300), dest, newRecorder(), ApplyOptions{
		Policy: Policy{BatchSize: 10, MaxAttempts: 5, MaxInFlight: 8, InitialBackoff: time.Millisecond, MaxBackoff: 30 * time.Second},
		Now:    now,
		Sleep: func(_ context.Context, d time.Duration) error {
			mu.Lock()
			clock = clock.Add(d)
			mu.Unlock()
			return nil
		},
	})
	if err != nil || res.Counts.Accepted != 300 {
		t.Fatal(err, res.Counts)
	}
	if dest.refused != 8 {
		t.Errorf("%d requests refused during the lockout, want the 8 sent before its first answer", dest.refused)
	}
	if end := now().Sub(time.Unix(0, 0)); end > 3*time.Second {
		t.Errorf("the apply ended %v after it started, want the server's 3s", end)
	}
}

// lockoutDest refuses every request with a Retry-After of lockout until
// lockout after its first request.
type lockoutDest struct {
	concurrentPoison
	now     func() time.Time
	lockout time.Duration
	mu      sync.Mutex
	until   time.Time
	refused int
	// first and last, when set, record when each key was first and last
	// sent; accepted, the keys accepted.
	first, last map[string]time.Time
	accepted    map[string]bool
}

func (d *lockoutDest) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	at := d.now()
	d.mu.Lock()
	if d.until.IsZero() {
		d.until = at.Add(d.lockout)
	}
	locked := at.Before(d.until)
	if locked {
		d.refused++
	}
	if d.first != nil {
		for _, r := range b.Records {
			if _, ok := d.first[r.Key]; !ok {
				d.first[r.Key] = at
			}
			d.last[r.Key] = at
			if !locked {
				if d.accepted == nil {
					d.accepted = map[string]bool{}
				}
				d.accepted[r.Key] = true
			}
		}
	}
	d.mu.Unlock()
	if locked {
		return destination.Retry(errors.New("429 Too Many Requests"), d.lockout)
	}
	return d.concurrentPoison.Write(ctx, b)
}

// max_elapsed counts from a request's first send: requests prepared and
// staged ahead, then held back by a Retry-After, keep their whole budget.
// No record is given up on before max_elapsed has passed since it was
// first sent.
func TestMaxElapsedCountsFromTheFirstSend(t *testing.T) {
	var mu sync.Mutex
	clock := time.Unix(0, 0)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	dest := &lockoutDest{concurrentPoison: concurrentPoison{newPoisonDest()}, now: now, lockout: 2 * time.Second, until: time.Unix(4, 0)}
	dest.first, dest.last = map[string]time.Time{}, map[string]time.Time{}
	res, err := ApplySync(context.Background(), upsertPlan(12), dest, newRecorder(), ApplyOptions{
		Policy: Policy{BatchSize: 1, MaxAttempts: 10, MaxInFlight: 8, InitialBackoff: time.Millisecond, MaxBackoff: 30 * time.Second, MaxElapsed: 3 * time.Second},
		Now:    now,
		Sleep: func(_ context.Context, d time.Duration) error {
			mu.Lock()
			clock = clock.Add(d)
			mu.Unlock()
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts.Accepted+res.Counts.Rejected != 12 {
		t.Fatalf("counts %+v", res.Counts)
	}
	for k, first := range dest.first {
		if !dest.accepted[k] && dest.last[k].Sub(first) < 3*time.Second {
			t.Errorf("record %s given up on %v after its first send, within max_elapsed (3s)", k, dest.last[k].Sub(first))
		}
	}
	if res.Counts.Accepted == 0 {
		t.Error("no record outlived the lockout: the test tests nothing")
	}
}

// stallingRecorder holds its third announcement until release is closed,
// as a slow fsync would; the third is the first made while requests
// announced before it are out.
type stallingRecorder struct {
	*memRecorder
	calls   atomic.Int32
	release chan struct{}
}

func (r *stallingRecorder) InFlight(recs []state.InFlightRecord) error {
	if r.calls.Add(1) == 3 && !wait(r.release) {
		return errors.New("the requests announced before were not sent while this announcement was written")
	}
	return r.memRecorder.InFlight(recs)
}

// reachDest closes reached once it has had `at` requests.
type reachDest struct {
	*poisonDest
	n       atomic.Int32
	at      int32
	reached chan struct{}
}

func (d *reachDest) ConcurrentWrites() {}

func (d *reachDest) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	if d.n.Add(1) == d.at {
		close(d.reached)
	}
	return d.poisonDest.Write(ctx, b)
}

func TestASlowAnnouncementHoldsNoRequestBack(t *testing.T) {
	// max_in_flight 2, answers writing everything: the first announcement
	// covers 4 requests, the second (made at once, while the first two
	// are out) 6 more, up to 5 × 2. The third waits, as a slow fsync on a
	// busy disk, until the 10 announced before it have all been sent:
	// with only twice max_in_flight announced ahead, the requests ran out
	// during it.
	reached := make(chan struct{})
	rec := &stallingRecorder{memRecorder: newRecorder(), release: reached}
	dest := &reachDest{poisonDest: newPoisonDest(), at: 10, reached: reached}
	res, err := ApplySync(context.Background(), upsertPlan(200), dest, rec, ApplyOptions{
		Policy: Policy{BatchSize: 10, MaxAttempts: 3, MaxInFlight: 2}, Sleep: noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts.Accepted != 200 || len(dest.written) != 200 {
		t.Fatalf("accepted %d, written %d of 200", res.Counts.Accepted, len(dest.written))
	}
	for k, n := range dest.sent {
		if rec.inFlight[k] < n {
			t.Fatalf("key %s sent %d times, announced %d", k, n, rec.inFlight[k])
		}
	}
}

// callOrder records the order of a recorder's Checkpoint and InFlight
// calls.
type callOrder struct {
	*memRecorder
	mu    sync.Mutex
	calls []string
}

func (r *callOrder) call(what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, what)
}

func (r *callOrder) Checkpoint() error {
	r.call("checkpoint")
	return r.memRecorder.Checkpoint()
}

func (r *callOrder) InFlight(recs []state.InFlightRecord) error {
	r.call("inflight")
	return r.memRecorder.InFlight(recs)
}

// The first announcement makes durable what was recorded before it: a
// plan of sends alone goes out after one durable write (the announcement),
// not a checkpoint of nothing before it. Outcomes recorded without a
// request (forgotten keys) are still checkpointed before the first
// request, and a plan with nothing to send still checkpoints.
func TestTheFirstAnnouncementIsTheFirstDurableWrite(t *testing.T) {
	for _, inFlight := range []int{1, 8} {
		rec := &callOrder{memRecorder: newRecorder()}
		res, err := ApplySync(context.Background(), upsertPlan(200), newPoisonDest(), rec, ApplyOptions{
			Policy: Policy{BatchSize: 10, MaxAttempts: 3, MaxInFlight: inFlight}, Sleep: noSleep,
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Counts.Accepted != 200 {
			t.Fatalf("max_in_flight %d: accepted %d, want 200", inFlight, res.Counts.Accepted)
		}
		if len(rec.calls) == 0 || rec.calls[0] != "inflight" {
			t.Errorf("max_in_flight %d: durable writes began %v, want the announcement first", inFlight, rec.calls[:min(3, len(rec.calls))])
		}
	}

	sp := upsertPlan(20)
	sp.Changes[0].Op = OpForget
	rec := &callOrder{memRecorder: newRecorder()}
	if _, err := ApplySync(context.Background(), sp, newPoisonDest(), rec, ApplyOptions{
		Policy: Policy{BatchSize: 10, MaxAttempts: 3, MaxInFlight: 8}, Sleep: noSleep,
	}); err != nil {
		t.Fatal(err)
	}
	if len(rec.calls) == 0 || rec.calls[0] != "checkpoint" {
		t.Errorf("with a key forgotten before any request, durable writes began %v, want a checkpoint first", rec.calls[:min(3, len(rec.calls))])
	}

	rec = &callOrder{memRecorder: newRecorder()}
	if _, err := ApplySync(context.Background(), upsertPlan(0), newPoisonDest(), rec, ApplyOptions{
		Policy: Policy{BatchSize: 10, MaxAttempts: 3, MaxInFlight: 8}, Sleep: noSleep,
	}); err != nil {
		t.Fatal(err)
	}
	if len(rec.calls) != 1 || rec.calls[0] != "checkpoint" {
		t.Errorf("with nothing to send, durable writes %v, want one checkpoint", rec.calls)
	}
}

// lostLock is a Recorder whose lock is lost after held checks.
type lostLock struct {
	*memRecorder
	mu     sync.Mutex
	held   int
	checks int
}

func (l *lostLock) StillHeld(_ context.Context, maxAge time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checks++
	if l.checks > l.held {
		return errors.New("the lock on sync \"s\" was lost")
	}
	return nil
}

// A lost lock stops the requests not sent yet, announced or not: another
// runner may hold the lock and write what they would overwrite.
func TestLostLockSendsNothingMore(t *testing.T) {
	for _, inFlight := range []int{1, 4} {
		dest := &concurrentPoison{poisonDest: newPoisonDest()}
		rec := &lostLock{memRecorder: newRecorder(), held: 3}
		res, err := ApplySync(context.Background(), upsertPlan(100), dest, rec, ApplyOptions{
			Policy: Policy{BatchSize: 10, MaxAttempts: 3, MaxInFlight: inFlight}, Threshold: 1, Sleep: noSleep,
		})
		if err == nil || !strings.Contains(err.Error(), "was lost") {
			t.Fatalf("max_in_flight %d: apply ended with %v (%d requests); want the lost lock", inFlight, err, res.Requests)
		}
		if dest.requests != 3 || len(rec.accepted) > 30 {
			t.Errorf("max_in_flight %d: %d requests sent (%d accepted) with the lock held for 3", inFlight, dest.requests, len(rec.accepted))
		}
	}
}
