package reconcile

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/internal/crashpoint"
	"github.com/backflowhq/backflow/state"
)

// Recorder receives the outcome of every record as soon as it is known
// (state.SyncWriter implements it).
type Recorder interface {
	Accept(key string, hash uint64, values map[string]any)
	Forget(key string)
	Fail(f state.Failure)
	Checkpoint() error
	// InFlight records durably that these records are about to be sent,
	// so that a crash before their outcomes are recorded leaves them to be
	// retried rather than forgotten, and makes durable with them what was
	// recorded before, as Checkpoint does. Nothing is sent when it fails.
	// It does not keep recs once it returns (the applier reuses it).
	//
	// With several requests in flight, InFlight and Checkpoint run in a
	// goroutine of their own, while Accept, Forget and Fail record the
	// answers coming meanwhile (never beside another InFlight, Checkpoint
	// or Unsent).
	InFlight(recs []state.InFlightRecord) error
	// Unsent says the destination wrote none of these records in flight
	// and said nothing about them (a fatal answer): they stay pending,
	// not failure entries whose outcome is unknown.
	Unsent(keys []string)
}

// valuesAccepter is a Recorder that takes accepted values in order, as a
// plan read back for an apply holds them (Change.vals), without a map:
// AcceptValues(key, hash, names, vals) records what Accept(key, hash, m)
// does of the map m of names to vals (state.SyncWriter implements it).
type valuesAccepter interface {
	AcceptValues(key string, hash uint64, names []string, vals []any)
}

// Policy is how a destination is written to (destination.PolicySpec
// declares it and its defaults).
type Policy = destination.Policy

// ApplyOptions tune one apply of one sync.
type ApplyOptions struct {
	Policy Policy
	// Threshold is the fraction of the records attempted for the first
	// time that may be rejected before the run fails (failure_threshold).
	Threshold float64
	// Strict counts the records still failing (rejected again with the
	// error they were rejected with before) against the threshold too.
	Strict bool
	// Halving selects plain recursive halving for split retries instead of
	// the adaptive splitter (for comparison only).
	Halving bool
	// Progress, when set, is called after every request with the number of
	// records resolved so far and the total to send.
	Progress func(done, total int)
	// Rand seeds backoff jitter; nil uses a random seed.
	Rand *rand.Rand
	// Limiter, when set, spaces the requests (rate_limit); syncs writing
	// to one destination share it.
	Limiter *RateLimiter
	// Now and Sleep replace the clock in tests; nil uses the real ones.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// Mask, when set, masks the secrets of every message a destination
	// gave that the run keeps (failure index, row logs, halt reasons):
	// whatever a driver masked itself, none of them reaches the state
	// unmasked.
	Mask func(string) string

	// keepAccepted, when bounded, is how many more accepted records the
	// result's Records may list (ApplyPlan's row log budget): the others
	// are counted, not listed.
	keepAccepted int
	bounded      bool
}

// ErrorCount is one kind of error and how many records it rejected. Error
// is the message with its values normalised out (destination.ErrorClass),
// so that one kind of error is one line however many values it quoted;
// Example is one message as the destination said it.
type ErrorCount struct {
	Error   string `json:"error"`
	Count   int    `json:"count"`
	Example string `json:"example"`
}

// HaltReason is why a sync stopped sending before its plan was carried out.
type HaltReason string

const (
	// HaltFatal: the destination answered that the sync cannot proceed
	// (credentials or permission refused, the table or an endpoint missing).
	HaltFatal HaltReason = "fatal"
	// HaltBreaker: the circuit breaker tripped.
	HaltBreaker HaltReason = "circuit_breaker"
)

// Halt says why a sync stopped sending. The records it had not settled
// stay pending (not in the failure index) and are planned again next run.
type Halt struct {
	Reason HaltReason
	// Err is the destination's error: the fatal one, or for the breaker
	// the last of the requests that tripped it.
	Err string
	// Requests is, for the breaker, the consecutive requests rejected.
	Requests int
}

func (h *Halt) String() string {
	if h.Reason == HaltBreaker {
		return fmt.Sprintf("circuit breaker: the last %d requests had every record rejected with the same error, so nothing more was sent: %s", h.Requests, h.Err)
	}
	return "the destination refused the sync, so nothing more was sent: " + h.Err
}

// Counts are the record counts of one apply of one sync.
type Counts struct {
	Added, Changed, Removed, Retried int // planned, by action
	Accepted, Rejected               int // outcomes
	Excluded                         int // rows left out of the model
}

// Outcomes counts the records of one action by their end.
type Outcomes struct{ Accepted, Rejected int }

// RecordResult is how one record of the apply ended.
type RecordResult struct {
	Key       string
	Operation destination.Operation
	Status    state.RowStatus
	Error     string // the destination's last error, for a rejected record
	Attempts  int    // sends within this apply
}

// SyncResult is what one apply of one sync did.
type SyncResult struct {
	Sync   string
	Counts Counts
	// ByAction counts accepted and rejected records per plan action.
	ByAction  map[Action]Outcomes
	Requests  int // calls to the destination, retries and split sub-batches included
	Resent    int // records sent more than once
	Records   []RecordResult
	TopErrors []ErrorCount
	// StillFailing counts the records of the failure index (plan action
	// retry) rejected again with the same kind of error as before: a
	// warning, left out of the threshold unless ApplyOptions.Strict.
	StillFailing int
	// ThresholdExceeded is set when the records rejected for the first
	// time are more than the threshold of those attempted for the first
	// time (all records with Strict).
	ThresholdExceeded bool
	// TookNothing is set when every record attempted was rejected (the
	// still failing aside, unless Strict): the run fails whatever the
	// threshold.
	TookNothing bool
	// Halted is set when the sync stopped sending (a fatal answer, the
	// circuit breaker); the run fails.
	Halted *Halt
	// Interrupted is set when the context was cancelled: the records not
	// yet resolved stay pending and are planned again next run.
	Interrupted bool
	Started     time.Time
	Duration    time.Duration

	strict    bool
	threshold float64
	unsettled int
}

// sortErrors orders error summaries by count, most frequent first, then
// by message.
func sortErrors(es []ErrorCount) {
	sort.Slice(es, func(i, j int) bool {
		if es[i].Count != es[j].Count {
			return es[i].Count > es[j].Count
		}
		return es[i].Error < es[j].Error
	})
}

// judge sets ThresholdExceeded and TookNothing from the counts.
func (r *SyncResult) judge() {
	att, rej := r.Attempted(), r.Counts.Rejected
	if !r.strict {
		att -= r.StillFailing
		rej -= r.StillFailing
	}
	r.ThresholdExceeded = att > 0 && float64(rej)/float64(att) > r.threshold
	r.TookNothing = rej > 0 && rej == att && r.Counts.Accepted == 0
}

// Status is the run's outcome as recorded in the run history.
func (r *SyncResult) Status() state.RunStatus {
	switch {
	case r.Interrupted:
		return state.RunInterrupted
	case r.Failed():
		return state.RunFailed
	}
	return state.RunSucceeded
}

// Failed reports whether the run failed: the sync halted, the destination
// took nothing, or the failure threshold was exceeded.
func (r *SyncResult) Failed() bool { return r.Halted != nil || r.TookNothing || r.ThresholdExceeded }

// FailureReason says why the run failed; "" when it did not.
func (r *SyncResult) FailureReason() string {
	first := r.Attempted()
	rejected := r.Counts.Rejected
	what := "attempted records"
	if !r.strict {
		first -= r.StillFailing
		rejected -= r.StillFailing
		what = "records attempted for the first time"
	}
	switch {
	case r.Halted != nil:
		return r.Halted.String()
	case r.ThresholdExceeded:
		return fmt.Sprintf("%d of %d %s were rejected, more than the failure threshold of %s", rejected, first, what, formatPercent(r.threshold))
	case r.TookNothing:
		return fmt.Sprintf("the destination took none of the %d %s", first, what)
	}
	return ""
}

func formatPercent(f float64) string {
	return strconv.FormatFloat(f*100, 'f', -1, 64) + "%"
}

// Unsettled is the number of records to send that got no outcome: left
// pending by a halt or an interruption.
func (r *SyncResult) Unsettled() int { return r.unsettled }

// Attempted is the number of records that got an answer from the destination.
func (r *SyncResult) Attempted() int { return r.Counts.Accepted + r.Counts.Rejected }

// item is a group of records scheduled for sending.
type item struct {
	recs []int // indices into the sync plan's changes
	// retries counts the retryable failures met by the group being sent
	// (the batch, or during a split the current sub-group), and started is
	// that group's first send: the retry policy's budget is per group.
	retries int
	// waiting is set while the item waits to be sent again after a
	// retryable answer: the outcome of its records in flight is unknown.
	waiting bool
	readyAt time.Time
	started time.Time
	split   splitter
	seq     int
	// tookSome is set once the destination accepted a record of the item:
	// its rejections are then bad records among good ones.
	tookSome bool
	// low is the least of recs (set by push): what a streamed apply
	// holds on to while the item is queued or sent (every group of it is
	// among recs).
	low int
}

// nextGroup starts a fresh retry budget for the next group of a split.
func (it *item) nextGroup() {
	it.retries, it.started = 0, time.Time{}
}

type queue []*item

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if !q[i].readyAt.Equal(q[j].readyAt) {
		return q[i].readyAt.Before(q[j].readyAt)
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(*item)) }
func (q *queue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}

// applier carries the state of one ApplySync call.
type applier struct {
	sp    *SyncPlan
	dest  destination.Destination
	rec   Recorder
	lock  state.LockChecker // the state's lock, when it can be lost (nil: it cannot)
	opts  ApplyOptions
	bo    backoff
	now   func() time.Time
	sleep func(context.Context, time.Duration) error

	q   queue
	seq int
	// segs hold the plan's changes: all of them, or for a streamed apply
	// (feed) the windows received whose records are not all settled, in
	// order. base is the first change held, end the one after the last;
	// sends, status and mayHold are indexed from base (i-base for the
	// change of index i).
	segs   []segment
	base   int
	end    int
	sends  []int // per change: times sent
	status []int8
	// mayHold marks the changes a request may have written without
	// saying so (a retryable answer: a timeout, a lock): until an answer
	// settles them they stay in flight, their outcome unknown, and are
	// never released as unsent (Recorder.Unsent), whatever later answers
	// of requests that wrote nothing say.
	mayHold []bool
	res     *SyncResult
	errs    map[string]*ErrorCount // by class
	total   int
	done    int
	density struct{ found, settled int } // what earlier splits of this run saw

	// What the request being handled settled, for the circuit breaker.
	req struct {
		accepted, rejected int
		retried            int    // of the rejected, records of the failure index
		class              string // of the rejections; "" when mixed
		err                string
	}
	streak struct {
		class string
		n     int
	}
	// pauseUntil: a server asked for a wait (Retry-After); no request
	// goes out before it, whichever batch it was about (back-pressure).
	pauseUntil time.Time
	// announce is the array of the last announcement (inFlightRecords),
	// for the next: one announcement is under way at a time.
	announce []state.InFlightRecord
	// byAction counts the outcomes of the actions of actionOrder, by
	// index, until finish adds them to res.ByAction: two map updates
	// per record cost more than the rest of its bookkeeping.
	byAction [len(actionOrder)]Outcomes
	// va is rec as a valuesAccepter, when it is one.
	va valuesAccepter

	// feed, for a streamed apply, gives the plan's next window of
	// changes (nil once it gave the last; end counts those it gave) and
	// feedTotal is the plan's number of changes; forgot counts those
	// that needed no request, resent the records sent more than once
	// among the changes dropped (settled, no longer held), scan the
	// first change that may still be pending, and start the apply's
	// start (every batch is ready from then on).
	feed      *feeder
	streamed  bool
	feedTotal int
	forgot    int
	resent    int
	scan      int
	start     time.Time
}

// segment is a run of the plan's changes, from index base; release, when
// set, gives its array back once the apply no longer holds it.
type segment struct {
	base    int
	changes []Change
	release func()
}

// feeder gives a streamed apply the plan's changes a window at a time,
// while the requests of the windows before are out: the pipeline of
// requests in flight does not drain between windows.
type feeder struct {
	// next returns the next window's changes and what gives their array
	// back to be decoded into again; false when the plan holds no more or
	// could not be read (the reader's error is returned by ApplyPlan).
	next func() ([]Change, func(), bool)
	// total is the number of changes in the plan.
	total int
	// live bounds the changes held (windows received and not settled):
	// another window is taken only when fewer are held, unless nothing
	// else is left to send.
	live int
}

// change is the change of index i.
func (a *applier) change(i int) *Change {
	for k := range a.segs {
		s := &a.segs[k]
		if j := i - s.base; j < len(s.changes) {
			return &s.changes[j]
		}
	}
	panic(fmt.Sprintf("change %d is not held (%d to %d)", i, a.base, a.end))
}

const (
	pending int8 = iota
	accepted
	rejected
)

// ApplySync carries out one sync's plan against dest, recording every
// outcome in rec as it is known. Batching, backoff, split retries and the
// failure threshold are handled here, the same for every destination.
//
// It returns an error only when the run could not go on (the recorder
// failed); rejections are outcomes, counted in the result. When ctx is
// cancelled the request in flight is completed and recorded, nothing more
// is sent, and the result is marked Interrupted.
func ApplySync(ctx context.Context, sp *SyncPlan, dest destination.Destination, rec Recorder, opts ApplyOptions) (*SyncResult, error) {
	return applySync(ctx, sp, dest, rec, opts, nil)
}

// applySync is ApplySync; with feed, the plan's changes are feed's windows
// rather than sp.Changes (ApplyPlan).
func applySync(ctx context.Context, sp *SyncPlan, dest destination.Destination, rec Recorder, opts ApplyOptions, feed *feeder) (*SyncResult, error) {
	a := &applier{sp: sp, dest: dest, rec: rec, opts: opts, now: opts.Now, sleep: opts.Sleep, errs: map[string]*ErrorCount{}, feed: feed}
	a.va, _ = rec.(valuesAccepter)
	a.lock, _ = rec.(state.LockChecker)
	if a.now == nil {
		a.now = time.Now
	}
	if a.sleep == nil {
		a.sleep = sleepCtx
	}
	r := opts.Rand
	if r == nil {
		r = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	p := &a.opts.Policy
	if p.BatchSize < 1 || p.MaxAttempts < 1 {
		return nil, fmt.Errorf("sync %q: invalid policy: batch size %d and max attempts %d must be at least 1", sp.Name, p.BatchSize, p.MaxAttempts)
	}
	a.bo = backoff{base: p.InitialBackoff, cap: p.MaxBackoff, rand: r}
	a.res = &SyncResult{Sync: sp.Name, Started: a.now(), ByAction: map[Action]Outcomes{}, strict: opts.Strict, threshold: opts.Threshold}
	for _, c := range sp.Excluded {
		a.res.Counts.Excluded += c
	}
	if feed != nil {
		a.streamed, a.feedTotal = true, feed.total
	}
	a.start = a.now()
	recorded := len(sp.DropFailures) + len(sp.KeepSynced) // outcomes recorded before any request
	sends := 0
	if feed == nil {
		recorded, sends = a.add(sp.Changes, nil, recorded)
	} else if changes, release, ok := feed.next(); ok {
		recorded, sends = a.add(changes, release, recorded)
	}
	for _, k := range sp.DropFailures {
		rec.Forget(k)
	}
	for _, c := range sp.KeepSynced {
		rec.Accept(c.Key, c.Hash, c.Before) // what the snapshot has: only the failure entry goes
	}
	// What was recorded so far is made durable before any request, by a
	// checkpoint of its own or, when there is something to send, by the
	// first announcement (InFlight makes durable what was recorded before
	// it): a plan of sends alone then goes out after one fsync, not a
	// checkpoint of nothing (the journal's creation) and the announcement.
	if recorded > 0 || sends == 0 {
		if err := rec.Checkpoint(); err != nil {
			return a.res, err
		}
	}

	staged, err := a.loop(ctx)
	if err == nil && (a.res.Halted != nil || len(staged) > 0) {
		err = a.release(staged)
	}
	a.finish()
	return a.res, err
}

// add takes changes as the plan's next: it counts them, records at once
// those that need no request (forgotten removals), and queues the others
// in batches. release gives their array back once they are dropped. It
// returns recorded plus the changes recorded, and the number to send.
func (a *applier) add(changes []Change, release func(), recorded int) (int, int) {
	from := a.end
	a.segs = append(a.segs, segment{base: from, changes: changes, release: release})
	a.end += len(changes)
	a.sends = append(a.sends, make([]int, len(changes))...)
	a.status = append(a.status, make([]int8, len(changes))...)
	a.mayHold = append(a.mayHold, make([]bool, len(changes))...)
	send := make([]int, 0, len(changes))
	for k := range changes {
		i, c := from+k, &changes[k]
		switch c.Action {
		case ActionAdd:
			a.res.Counts.Added++
		case ActionChange:
			a.res.Counts.Changed++
		case ActionRemove:
			a.res.Counts.Removed++
		case ActionRetry:
			a.res.Counts.Retried++
		}
		if c.Op == OpForget {
			a.rec.Forget(c.Key)
			a.status[i-a.base] = accepted
			a.forgot++
			recorded++
			continue
		}
		send = append(send, i)
	}
	a.total += len(send)
	b := a.opts.Policy.BatchSize
	for i := 0; i < len(send); i += b {
		end := min(i+b, len(send))
		// Ready since the apply started: a split or a retry of an
		// earlier batch goes before them, as it does before the batches
		// queued at the start.
		a.push(&item{recs: send[i:end:end], readyAt: a.start})
	}
	return recorded, len(send)
}

// refill takes the plan's next window (a streamed apply) once fewer than
// low batches are queued, dropping first the changes settled before every
// record still pending or in a request (held lists the requests out,
// staged or being announced). It takes none while feed.live changes (or
// low batches' worth, when more) are held, unless nothing is queued or
// out: a split of an early window going on for long holds later windows
// back rather than letting them pile up.
func (a *applier) refill(low int, held ...[]*flight) {
	if a.feed == nil || a.q.Len() >= low {
		return
	}
	// Settled changes are let go at once (a few comparisons per queued
	// batch and request): their arrays go back to the reader, which
	// otherwise allocates others (peak RSS of the CLI's plan and apply of
	// 300,000 adds: 162 and 166 MB in two runs when they were let go only
	// once the bound below was reached, against 144–159 MB in five).
	a.drop(held...)
	busy := a.q.Len() > 0
	for _, fs := range held {
		busy = busy || len(fs) > 0
	}
	if busy && a.end-a.base >= max(a.feed.live, low*a.opts.Policy.BatchSize) {
		return
	}
	changes, release, ok := a.feed.next()
	if !ok {
		a.feed = nil
		return
	}
	a.add(changes, release, 0)
}

// drop lets go of the changes before the first one still pending or in a
// request (queued, out, staged or being announced), counting those sent
// more than once.
func (a *applier) drop(held ...[]*flight) {
	low := a.end
	for _, it := range a.q {
		low = min(low, it.low)
	}
	for _, fs := range held {
		for _, f := range fs {
			low = min(low, f.it.low)
		}
	}
	for a.scan = max(a.scan, a.base); a.scan < low && a.status[a.scan-a.base] != pending; a.scan++ {
	}
	k := min(low, a.scan) - a.base
	if k <= 0 {
		return
	}
	for _, n := range a.sends[:k] {
		if n > 1 {
			a.resent++
		}
	}
	a.sends, a.status, a.mayHold = a.sends[k:], a.status[k:], a.mayHold[k:]
	a.base += k
	for len(a.segs) > 0 && a.segs[0].base+len(a.segs[0].changes) <= a.base {
		if r := a.segs[0].release; r != nil {
			r()
		}
		a.segs[0] = segment{}
		a.segs = a.segs[1:]
	}
}

// release says which records in flight were written by none of the
// requests they were in: those announced and never sent (staged), and
// after a halt those whose last answer was a whole-batch rejection (a
// split under way). Records a retryable answer left unknown (a timeout
// may have written them) keep their unknown outcome, be they waiting to be
// sent again or announced again and not sent (mayHold).
func (a *applier) release(staged []int) error {
	keys := a.unsettled(nil, staged)
	if a.res.Halted != nil {
		for _, it := range a.q {
			if it.split != nil && !it.waiting {
				keys = a.unsettled(keys, it.recs)
			}
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	if len(keys) == 0 {
		return nil
	}
	a.rec.Unsent(keys)
	if err := a.rec.Checkpoint(); err != nil {
		return fmt.Errorf("saving progress: %w", err)
	}
	return nil
}

// unsettled appends the keys of the records of recs still pending that
// no request may have written (mayHold): those a request wrote nothing of
// may be released as unsent.
func (a *applier) unsettled(keys []string, recs []int) []string {
	for _, i := range recs {
		if a.status[i-a.base] == pending && !a.mayHold[i-a.base] {
			keys = append(keys, a.change(i).Key)
		}
	}
	return keys
}

// push schedules it by readyAt, then by the order items were first
// scheduled: a split goes on before batches not sent yet, so it settles
// its records (and tells later splits how dense bad records are) before
// more are put in flight.
func (a *applier) push(it *item) {
	if it.seq == 0 {
		a.seq++
		it.seq = a.seq
		it.low = slices.Min(it.recs)
	}
	heap.Push(&a.q, it)
}

// flight is a request dispatched: the item and group it sends, and the
// destination's answer once done.
type flight struct {
	it    *item
	group []int
	batch *destination.Batch
	out   destination.Outcome
	done  bool
	at    time.Time // when the answer came
	// The item's started and waiting before the request was taken, for a
	// request prepared ahead and put back unsent.
	started time.Time
	waiting bool
	// ready, when set, is closed once the destination prepared the batch
	// (BatchPreparer): the request is sent after that.
	ready chan struct{}
}

// loop sends the queued items, up to the policy's max_in_flight requests at
// once, and handles the answers strictly in the order the requests were
// sent (a reorder buffer of at most twice max_in_flight requests): the
// outcome of a later request is never recorded before that of an earlier
// one, so a crash leaves a prefix of outcomes and the rest in flight. With
// more than one request in flight, more are announced in flight ahead
// (staged), so that the checkpoint making them durable, with the outcomes
// handled since the last one, is written while earlier requests are out
// rather than between them: max_in_flight of them, and while answers write
// everything up to deepAhead times as many (at most aheadRecords records),
// so that a slow fsync (a busy disk) holds no request back while the
// requests announced before it last. With one request in flight, the next batch is built and announced
// while a request is out (as long as answers write everything), and goes
// as soon as an answer that accepted every record comes, before that
// answer is recorded: the destination works while backflow builds,
// journals and records. Any other answer is recorded first, as it decides
// what goes next, and the prepared request goes back to the queue, its
// records released.
//
// Requests in flight are never cancelled: when ctx is done, or the sync
// halts, nothing more is sent, the answers of the requests in flight are
// waited for and recorded, and loop returns the records staged but never
// sent.
func (a *applier) loop(ctx context.Context) (unsent []int, failed error) {
	n := a.opts.Policy.MaxInFlight
	if _, ok := a.dest.(destination.ConcurrentWriter); !ok || n < 1 {
		n = 1
	}
	ahead, deep := 0, 0
	if n > 1 {
		ahead = n
		deep = max(ahead, min(deepAhead*n, aheadRecords/a.opts.Policy.BatchSize))
	}
	answers := make(chan *flight, n)
	// Batches are prepared (BatchPreparer: values converted, bodies
	// encoded) by a goroutine of their own, one at a time in the order
	// they were taken, while the loop records answers and announces; a
	// request waits for its batch in the goroutine that sends it.
	var toPrepare chan *flight
	if p, ok := a.dest.(destination.BatchPreparer); ok {
		toPrepare = make(chan *flight, 2*(n+deep)+2)
		prepared := make(chan struct{})
		defer func() {
			// Nothing prepares once the loop is over: the destination
			// may be closed next.
			close(toPrepare)
			<-prepared
		}()
		go func() {
			defer close(prepared)
			for f := range toPrepare {
				p.PrepareBatch(f.batch)
				close(f.ready)
			}
		}()
	}
	var window []*flight // sent, in order, not yet handled
	var staged []*flight // announced in flight, in order, not sent yet
	// With several requests in flight, the checkpoint announcing the next
	// ones, or making the outcomes so far durable, is written by a
	// goroutine of its own while the loop goes on receiving answers and
	// sending what is staged: an answer that comes during the fsync waits
	// for nothing. One such checkpoint at a time; the loop records
	// outcomes meanwhile (Recorders take concurrent records during a
	// checkpoint) but calls no other Checkpoint, Unsent or Commit.
	var announcing []*flight // handed to that goroutine (empty: a plain checkpoint), not durable yet
	dirty := false           // outcomes handled that no checkpoint under way or done covers
	durable := make(chan error, 1)
	out := 0          // requests sent and not answered yet
	lastClean := true // the last answer handled wrote every record
	fatal := false    // a fatal answer came: nothing more goes out
	sending := true
	stop := func() {
		if failed == nil && a.res.Halted == nil {
			a.res.Interrupted = true
		}
		sending = false
	}
	launch := func() {
		for sending && !fatal && len(staged) > 0 && out < n && (n == 1 || len(window) < n+ahead) {
			if ctx.Err() != nil {
				stop()
				return
			}
			if wait := a.pauseUntil.Sub(a.now()); wait > 0 {
				if out > 0 {
					return // answers first; sent after the pause
				}
				if err := a.sleep(ctx, wait); err != nil {
					stop()
					return
				}
			}
			if a.opts.Limiter != nil {
				if wait := a.opts.Limiter.reserve(a.now()); wait > 0 {
					if err := a.sleep(ctx, wait); err != nil {
						stop()
						return
					}
				}
			}
			if a.lock != nil {
				// Announced a while ago (ahead, or before a slow answer):
				// the lock may have been lost since, and another runner
				// may be writing what this request would overwrite.
				if err := a.lock.StillHeld(ctx, lockFresh); err != nil {
					failed = fmt.Errorf("before sending: %w", err)
					stop()
					return
				}
			}
			f := staged[0]
			staged = staged[1:]
			if f.it.started.IsZero() {
				// max_elapsed counts from the first send, not from when
				// the request was prepared and staged ahead.
				f.it.started = a.now()
			}
			for _, i := range f.group {
				a.sends[i-a.base]++
			}
			a.res.Requests++
			out++
			window = append(window, f)
			go func() {
				if f.ready != nil {
					<-f.ready
				}
				// Not cancelled by ctx: a batch in flight is finished and
				// its outcome recorded, so Ctrl-C loses nothing.
				f.out = a.dest.Write(context.WithoutCancel(ctx), f.batch)
				crashpoint.Hit("apply.sent") // the destination answered; its outcome is not recorded
				answers <- f
			}()
			// The request goes first: the goroutine just started is
			// queued on this P and would otherwise wait until the loop
			// blocks, after it has handled the answer and announced the
			// next batch (0.42–0.58 ms a batch of 1,000 adds with one
			// request in flight, during which the destination had
			// nothing to do; BENCHMARKS.md, sixth session).
			runtime.Gosched()
		}
	}
	// received takes an answer as it comes, before it is handled (in
	// order): a server's Retry-After holds back at once every request not
	// sent yet, rather than once the answers before it are handled.
	received := func(f *flight) {
		f.done, f.at, out, fatal = true, a.now(), out-1, fatal || f.out.Fatal
		if o := f.out; o.Err != nil && o.Retryable && o.RetryAfter > 0 {
			// Capped as the request's own wait will be (wait).
			d := a.withinElapsed(f.it, f.at, min(o.RetryAfter, a.bo.cap))
			if until := f.at.Add(d); until.After(a.pauseUntil) {
				a.pauseUntil = until
			}
		}
	}
	// take pops the items ready to go, as requests, while fewer than limit
	// are sent, staged or taken.
	take := func(limit int) []*flight {
		var next []*flight
		for sending && announcing == nil && len(window)+len(staged)+len(next) < limit && a.q.Len() > 0 {
			it := a.q[0]
			if wait := it.readyAt.Sub(a.now()); wait > 0 {
				if len(window)+len(staged)+len(next) > 0 {
					break // an answer may come first; the item waits its turn
				}
				if err := a.sleep(ctx, wait); err != nil {
					stop()
					break
				}
			}
			heap.Pop(&a.q)
			group := it.recs
			if it.split != nil {
				group = it.split.next()
				if group == nil {
					a.endSplit(it)
					continue
				}
			}
			f := &flight{it: it, group: group, started: it.started, waiting: it.waiting}
			it.waiting = false
			f.batch = a.batch(group)
			if toPrepare != nil {
				// While the requests before it are out.
				f.ready = make(chan struct{})
				toPrepare <- f
			}
			next = append(next, f)
		}
		return next
	}
	// putBack returns requests prepared ahead, announced but not sent, to
	// the queue, their records released (they were written by nothing).
	putBack := func() {
		var keys []string
		for _, f := range staged {
			keys = a.unsettled(keys, f.group)
			f.it.started, f.it.waiting = f.started, f.waiting
			a.push(f.it)
		}
		staged = nil
		if len(keys) > 0 {
			a.rec.Unsent(keys)
		}
	}
	// announced takes requests whose announcement is durable (err nil)
	// as staged, and sends what may go.
	announced := func(next []*flight, err error) {
		if err != nil {
			failed = fmt.Errorf("saving progress: %w", err)
			for _, f := range next {
				a.push(f.it)
			}
			stop()
			return
		}
		crashpoint.Hit("apply.inflight") // announced, not sent
		staged = append(staged, next...)
		launch()
	}
	// stage announces requests in flight: at once with one request in
	// flight (the request out overlaps it), in the background otherwise.
	stage := func(next []*flight) {
		dirty = false
		recs := a.inFlightRecords(next)
		if n == 1 {
			announced(next, a.rec.InFlight(recs))
			return
		}
		announcing = next
		go func() { durable <- a.rec.InFlight(recs) }()
	}
	// checkpoint makes the outcomes recorded so far durable in the
	// background, in the announcement's place (with nothing to stage).
	checkpoint := func() {
		dirty = false
		announcing = []*flight{}
		go func() { durable <- a.rec.Checkpoint() }()
	}
	// settle takes the outcome of the announcement under way.
	settle := func(err error) {
		next := announcing
		announcing = nil
		announced(next, err)
	}
	// fill takes the plan's next window (a streamed apply) while sending
	// goes on and fewer batches are queued than a pipeline's worth.
	fill := func() {
		if sending && !fatal && failed == nil && a.res.Halted == nil && ctx.Err() == nil {
			a.refill(n+deep+1, window, staged, announcing)
		}
	}
	for {
		if n == 1 && len(staged) > 0 && len(window) == 1 && window[0].done &&
			!(sending && !fatal && ctx.Err() == nil && clean(window[0])) {
			// One request at a time, the next prepared while it was out:
			// it goes as soon as an answer that wrote every record comes,
			// before that answer is recorded, so that recording it
			// overlaps the destination's work. Any other answer is
			// handled first (a split, a pause, a halt or the breaker
			// decide what is next): the prepared request goes back.
			putBack()
		}
		// Requests staged go out as soon as answers make room, before the
		// answers are handled: their records' in-flight marks are durable.
		launch()
		handled := false
		for len(window) > 0 && window[0].done {
			f := window[0]
			window = window[1:]
			lastClean = clean(f)
			if failed == nil {
				a.answer(f)
				handled = true
			}
		}
		if handled && a.opts.Progress != nil {
			a.opts.Progress(a.progress())
		}
		if sending && (failed != nil || a.res.Halted != nil || (ctx.Err() != nil && (a.q.Len() > 0 || len(staged) > 0))) {
			stop()
		}
		launch()

		fill()
		var next []*flight
		limit := n + ahead
		if lastClean && len(window)+len(staged) > 0 {
			// Deeper while answers write everything (the first requests
			// go after an announcement of the usual size): a split, a
			// retry or a pause decides what goes next, and the requests
			// staged before it go first.
			limit = n + deep
		}
		if n == 1 || len(window)+len(staged) == 0 || limit-len(window)-len(staged) >= ahead/2 {
			// With several in flight, requests are announced a few at a
			// time (at least half of max_in_flight), so that one fsync
			// covers them and the outcomes handled since the last.
			next = take(limit)
		}
		switch {
		case len(next) > 0:
			stage(next)
		case n > 1:
			if handled {
				dirty = true
			}
			if dirty && announcing == nil && !(sending && a.q.Len() > 0 && !a.q[0].readyAt.After(a.now())) {
				// Nothing to announce soon that would make the outcomes
				// durable: a checkpoint of its own, in the background
				// like an announcement (of nothing).
				checkpoint()
			}
		case handled && announcing == nil:
			// (An announcement under way makes them durable, or the
			// next checkpoint will.) With one request in flight, the
			// announcement of the next batch, just below, makes them
			// durable with it: one fsync for both.
			dirty = true
		}
		if n == 1 && lastClean && len(window) == 1 && len(staged) == 0 && failed == nil && a.q.Len() > 0 && a.q[0].split == nil && !a.q[0].readyAt.After(a.now()) {
			// The next batch, prepared and announced while one is out,
			// as long as answers write everything (otherwise it would
			// mostly be put back).
			if next := take(2); len(next) > 0 {
				stage(next)
			}
		}
		if n == 1 && dirty && failed == nil {
			// Nothing was announced since outcomes were handled.
			dirty = false
			if err := a.rec.Checkpoint(); err != nil {
				failed = fmt.Errorf("saving progress: %w", err)
				stop()
			}
		}
		if len(window) == 0 {
			if announcing != nil {
				settle(<-durable)
				continue
			}
			if len(staged) > 0 && sending {
				continue
			}
			fill()
			if !sending || a.q.Len() == 0 {
				break
			}
			continue
		}
		var f *flight
		if announcing != nil {
			select {
			case f = <-answers:
			case err := <-durable:
				settle(err)
				continue
			}
		} else {
			f = <-answers
		}
		received(f)
		for more := true; more; { // and whatever else has come
			select {
			case f := <-answers:
				received(f)
			default:
				more = false
			}
		}
	}
	if failed != nil {
		return nil, failed
	}
	for _, f := range staged {
		unsent = append(unsent, f.group...)
		a.push(f.it)
	}
	return unsent, nil
}

// lockFresh is how recently a state's lock that can be lost
// (state.LockChecker) must have been seen held for a request to go without
// asking again: the writes that announce requests see it, so a request
// sent soon after its announcement costs nothing, and one announced before
// a stall asks first.
const lockFresh = 250 * time.Millisecond

// With several requests in flight, while answers write everything, up to
// deepAhead × max_in_flight requests are announced ahead of their sending,
// and no more than aheadRecords records: an announcement's fsync that takes
// longer than the requests announced before it last holds requests back,
// and a busy disk takes tens of milliseconds at times (20–60 ms seen beside
// other benchmarks, against requests of 20 ms). A crash re-sends those
// announced and not sent, as retries whose outcome is unknown.
const (
	deepAhead    = 4
	aheadRecords = 16_384
)

// clean reports whether a request's answer accepted every record it sent.
func clean(f *flight) bool {
	if f.out.Err != nil || len(f.out.Results) != len(f.group) {
		return false
	}
	for _, r := range f.out.Results {
		if r.Err != nil {
			return false
		}
	}
	return true
}

// answer handles the destination's answer to one request.
func (a *applier) answer(f *flight) {
	out := f.out
	if out.Err == nil && len(out.Results) != len(f.group) {
		out = destination.RejectBatch(fmt.Errorf("destination answered %d results for %d records", len(out.Results), len(f.group)))
	}
	a.req.accepted, a.req.rejected, a.req.retried, a.req.class, a.req.err = 0, 0, 0, "", ""
	if out.Err != nil && out.Fatal {
		// Nothing of the request was written, and nothing more will be:
		// its records stay pending, as does the rest of the item (a
		// split's records were last answered by a rejection of their
		// whole batch, which wrote nothing either).
		if a.res.Halted == nil {
			a.res.Halted = &Halt{Reason: HaltFatal, Err: a.mask(out.Err.Error())}
		}
		a.rec.Unsent(a.unsettled(nil, f.it.recs))
		return
	}
	a.handle(f.it, f.group, out, f.at)
	a.trackBreaker(f.it)
}

// trackBreaker counts the consecutive requests whose settled records were
// all rejected with one error class, and trips the circuit breaker at the
// policy's count. A request that settled nothing (a retryable answer, a
// batch rejected whole while a split narrows it down) neither counts nor
// breaks the streak; one that had a record accepted breaks it. Neither
// does one that only rejected records of the failure index (retries, be
// they still failing as before or after a crash left their outcome
// unknown): known-bad records are the failure threshold's business, not
// the breaker's, which judges the destination by records it never refused
// before. Nor do
// the rejections of a batch the destination took records of (a split
// isolating bad rows among good ones: a cluster of bad rows is not a
// destination that takes nothing).
func (a *applier) trackBreaker(it *item) {
	r := &a.req
	if r.accepted > 0 {
		it.tookSome = true
	}
	switch {
	case r.accepted == 0 && r.rejected > 0 && r.retried == r.rejected:
	case r.accepted > 0 || (r.rejected > 0 && r.class == ""):
		a.streak.class, a.streak.n = "", 0
	case it.tookSome:
	case r.rejected > 0 && r.class == a.streak.class:
		a.streak.n++
	case r.rejected > 0:
		a.streak.class, a.streak.n = r.class, 1
	}
	if n := a.opts.Policy.CircuitBreaker; n > 0 && a.streak.n >= n && a.res.Halted == nil {
		a.res.Halted = &Halt{Reason: HaltBreaker, Err: r.err, Requests: a.streak.n}
	}
}

// batch builds the request for a group of records, counting the send.
func (a *applier) batch(group []int) *destination.Batch {
	b := &destination.Batch{Object: a.sp.Object, KeyField: a.sp.KeyField, Fields: a.sp.Fields, ClearFields: a.sp.ClearFields, Records: make([]destination.Record, len(group))}
	for j, i := range group {
		c := a.change(i)
		r := destination.Record{Key: c.Key, KeyValue: c.KeyValue, Op: c.Op, Fields: c.fields, New: c.Action == ActionAdd}
		switch {
		case r.Fields != nil:
		case c.vals != nil && c.Op != destination.OpDelete && c.Op != destination.OpClear:
			// Decoded in order only for a destination that reads Values
			// (ApplyPlan).
			r.Values = c.vals[:len(a.sp.Fields)]
		default:
			r.Fields = recordFields(a.sp, c)
		}
		b.Records[j] = r
	}
	return b
}

// recordFields is what a request carries of c: the mapped fields' values,
// nil for every cleared field, nothing for a delete.
func recordFields(sp *SyncPlan, c *Change) map[string]any {
	switch c.Op {
	case destination.OpDelete:
		return nil
	case destination.OpClear:
		m := make(map[string]any, len(sp.Fields))
		for _, f := range sp.ClearedFields() {
			m[f] = nil
		}
		return m
	default:
		if c.vals != nil {
			return valuesMap(sp.valNames, c.vals)
		}
		if c.afterExact || holdsFields(c.After, sp.Fields, sp.KeyField) {
			// Destinations only read a record's fields: After is shared.
			return c.After
		}
		m := make(map[string]any, len(sp.Fields))
		for _, f := range sp.Fields {
			m[f] = c.After[f]
		}
		return m
	}
}

// holdsFields reports whether m's keys are the fields (distinct names),
// with keyField or without it: what destination.Record.Fields may hold.
func holdsFields(m map[string]any, fields []string, keyField string) bool {
	switch len(m) {
	case len(fields):
	case len(fields) + 1:
		if _, ok := m[keyField]; !ok || slices.Contains(fields, keyField) {
			return false
		}
	default:
		return false
	}
	for _, f := range fields {
		if _, ok := m[f]; !ok {
			return false
		}
	}
	return true
}

// inFlightRecords is what Recorder.InFlight announces of the requests:
// their records' keys and operations (one checkpoint for them all, with
// the outcomes recorded before).
func (a *applier) inFlightRecords(fs []*flight) []state.InFlightRecord {
	n := 0
	for _, f := range fs {
		n += len(f.group)
	}
	recs := a.announce[:0]
	if cap(recs) < n {
		recs = make([]state.InFlightRecord, 0, n)
	}
	for _, f := range fs {
		for _, i := range f.group {
			c := a.change(i)
			recs = append(recs, state.InFlightRecord{Key: c.Key, Operation: string(c.Op)})
		}
	}
	a.announce = recs
	return recs
}

// handle records an answer that came at now (flight.at): waits before
// sending again are counted from then, not from when the answer is
// handled (after the answers of earlier requests, or a pause).
func (a *applier) handle(it *item, group []int, out destination.Outcome, now time.Time) {
	switch {
	case out.Err != nil && out.Retryable:
		for _, i := range group {
			a.mayHold[i-a.base] = true
		}
		it.retries++
		if it.retries >= a.opts.Policy.MaxAttempts || a.elapsedOut(it, now) {
			for _, i := range group {
				a.reject(i, out.Err)
			}
			if it.split != nil {
				// Only the group that kept failing is given up; the split
				// goes on with the rest, knowing nothing of that group.
				good, bad, badErr := it.split.report(false, nil, true)
				a.settle(good, bad, badErr)
				it.nextGroup()
				a.push(it)
			}
			return
		}
		it.readyAt = now.Add(a.wait(it, now, out.RetryAfter))
		it.waiting = true
		if out.RetryAfter > 0 && it.readyAt.After(a.pauseUntil) {
			a.pauseUntil = it.readyAt
		}
		a.push(it)
		return

	case out.Err != nil: // rejected whole
		switch {
		case it.split != nil:
			good, bad, badErr := it.split.report(false, out.Err, false)
			a.settle(good, bad, badErr)
			it.nextGroup()
			a.push(it)
		case a.opts.Policy.SplitRetries && len(group) > 1:
			if a.opts.Halving {
				it.split = newHalving(group)
			} else {
				it.split = newAdaptive(group, out.Err, a.prior(group))
			}
			it.nextGroup()
			a.push(it)
		default:
			for _, i := range group {
				a.reject(i, out.Err)
			}
		}
		return
	}

	// Per-record results.
	var retry []int
	var retryErrs []error // index-aligned with retry
	allOK, took := true, it.tookSome
	for j, r := range out.Results {
		i := group[j]
		switch {
		case r.Err == nil:
			a.accept(i)
			took = true
		case r.Retryable:
			allOK = false
			a.mayHold[i-a.base] = true
			retry = append(retry, i)
			retryErrs = append(retryErrs, r.Err)
		default:
			allOK = false
			a.reject(i, r.Err)
		}
	}
	retries, started := it.retries, it.started
	if it.split != nil {
		good, bad, badErr := it.split.report(allOK, nil, !allOK)
		a.settle(good, bad, badErr)
		it.nextGroup()
		a.push(it)
	}
	if len(retry) > 0 {
		// The records to retry (rows locked by another transaction) are
		// of a batch the destination took records of: their rejection,
		// once their attempts run out, is not a destination that takes
		// nothing (trackBreaker).
		next := &item{recs: retry, retries: retries + 1, started: started, waiting: true, tookSome: took}
		if next.retries >= a.opts.Policy.MaxAttempts || a.elapsedOut(next, now) {
			for k, i := range retry {
				a.reject(i, retryErrs[k])
			}
			return
		}
		next.readyAt = now.Add(a.wait(next, now, out.RetryAfter))
		a.push(next)
	}
}

// wait is how long it waits before its next send: the backoff, or the
// server's wait when longer, capped by max_backoff and never past the
// item's max_elapsed.
func (a *applier) wait(it *item, now time.Time, serverWait time.Duration) time.Duration {
	return a.withinElapsed(it, now, a.bo.wait(it.retries-1, serverWait))
}

// withinElapsed is d, shortened so that it never goes past it's
// max_elapsed.
func (a *applier) withinElapsed(it *item, now time.Time, d time.Duration) time.Duration {
	if limit := a.opts.Policy.MaxElapsed; limit > 0 {
		if left := it.started.Add(limit).Sub(now); d > left {
			d = max(left, 0)
		}
	}
	return d
}

func (a *applier) elapsedOut(it *item, now time.Time) bool {
	max := a.opts.Policy.MaxElapsed
	return max > 0 && now.Sub(it.started) >= max
}

// prior is the expected number of bad records in a rejected batch: records
// that failed before are suspects, and earlier splits of this run tell how
// dense bad records are.
func (a *applier) prior(group []int) float64 {
	suspects := 0
	for _, i := range group {
		if a.change(i).Attempts > 0 {
			suspects++
		}
	}
	est := float64(suspects)
	if a.density.settled > 0 {
		if d := float64(a.density.found) / float64(a.density.settled) * float64(len(group)); d > est {
			est = d
		}
	}
	return max(est, 1)
}

func (a *applier) settle(good, bad []int, badErr error) {
	for _, i := range good {
		a.accept(i)
	}
	for _, i := range bad {
		a.reject(i, badErr)
	}
}

func (a *applier) endSplit(it *item) {
	f, s := it.split.stats()
	a.density.found += f
	a.density.settled += s
}

func (a *applier) accept(i int) {
	j := i - a.base
	if a.status[j] != pending {
		return
	}
	a.status[j] = accepted
	a.done++
	a.req.accepted++
	a.res.Counts.Accepted++
	c := a.change(i)
	a.count(c.Action, true)
	switch c.Op {
	case destination.OpDelete, destination.OpClear:
		a.rec.Forget(c.Key)
	default:
		switch {
		case c.vals == nil:
			a.rec.Accept(c.Key, c.Hash, c.After)
		case a.va != nil:
			a.va.AcceptValues(c.Key, c.Hash, a.sp.valNames, c.vals)
		default:
			a.rec.Accept(c.Key, c.Hash, recordFields(a.sp, c))
		}
	}
	if a.opts.bounded {
		if a.opts.keepAccepted <= 0 {
			return
		}
		a.opts.keepAccepted--
	}
	key := c.Key
	if a.streamed {
		// A slice of the plan's chunk (see reject).
		key = strings.Clone(key)
	}
	a.res.Records = append(a.res.Records, RecordResult{Key: key, Operation: c.Op, Status: state.RowAccepted, Attempts: a.sends[j]})
}

func (a *applier) reject(i int, err error) {
	j := i - a.base
	if a.status[j] != pending {
		return
	}
	if err == nil {
		err = errors.New("rejected without a reason")
	}
	a.status[j] = rejected
	a.done++
	a.res.Counts.Rejected++
	c := a.change(i)
	a.count(c.Action, false)
	msg := a.mask(err.Error())
	class := destination.ErrorClass(msg)
	if e := a.errs[class]; e != nil {
		e.Count++
	} else {
		a.errs[class] = &ErrorCount{Error: class, Count: 1, Example: msg}
	}
	if a.req.rejected == 0 {
		a.req.class = class
	} else if a.req.class != class {
		a.req.class = ""
	}
	a.req.rejected++
	a.req.err = msg
	if c.Action == ActionRetry {
		a.req.retried++
		if before := state.RejectedBefore(c.LastError); before != "" && class == destination.ErrorClass(before) {
			a.res.StillFailing++
		}
	}
	now := a.now()
	// The key of a change read from a plan's chunk is a slice of the
	// chunk: what outlives the window gets a copy, or a rejection would
	// keep its whole chunk in memory.
	key := strings.Clone(c.Key)
	// A send of it answered retryably may have written it: the refusal
	// of a later one leaves that unknown (Failure.Unknown).
	a.rec.Fail(state.Failure{Key: key, Operation: string(c.Op), Error: msg, Attempts: a.sends[j], FirstFailed: now, LastFailed: now, Unknown: a.mayHold[j]})
	a.res.Records = append(a.res.Records, RecordResult{Key: key, Operation: c.Op, Status: state.RowRejected, Error: msg, Attempts: a.sends[j]})
}

// progress is what ApplyOptions.Progress is told: the records resolved
// and the total, of the whole plan for a streamed apply (its forgotten
// removals counted as resolved).
func (a *applier) progress() (int, int) {
	if a.streamed {
		return a.done + a.forgot, a.feedTotal
	}
	return a.done, a.total
}

// mask is opts.Mask of msg.
func (a *applier) mask(msg string) string {
	if a.opts.Mask == nil {
		return msg
	}
	return a.opts.Mask(msg)
}

// count adds one outcome of action: to byAction for the actions of
// actionOrder, to the result's map for any other.
func (a *applier) count(action Action, accepted bool) {
	k := actionIndex(action)
	var other Outcomes
	o := &other
	if k >= 0 {
		o = &a.byAction[k]
	} else {
		other = a.res.ByAction[action]
	}
	if accepted {
		o.Accepted++
	} else {
		o.Rejected++
	}
	if k < 0 {
		a.res.ByAction[action] = other
	}
}

func (a *applier) finish() {
	r := a.res
	for k, o := range a.byAction {
		if o != (Outcomes{}) {
			x := r.ByAction[actionOrder[k]]
			x.Accepted += o.Accepted
			x.Rejected += o.Rejected
			r.ByAction[actionOrder[k]] = x
		}
	}
	a.byAction = [len(actionOrder)]Outcomes{}
	r.Resent = a.resent
	for _, n := range a.sends {
		if n > 1 {
			r.Resent++
		}
	}
	for _, e := range a.errs {
		r.TopErrors = append(r.TopErrors, *e)
	}
	sortErrors(r.TopErrors)
	r.judge()
	r.unsettled = a.total - a.done
	if a.streamed {
		// The changes of windows never taken (after a halt, an interrupt
		// or a plan that could not be read further) are planned again.
		r.unsettled += a.feedTotal - a.end
	}
	r.Duration = a.now().Sub(r.Started)
}
