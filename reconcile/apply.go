package reconcile

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
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
	// retried rather than forgotten. Nothing is sent when it fails.
	InFlight(recs []state.InFlightRecord) error
}

// Policy is how a destination is written to (destination.PolicySpec
// declares it and its defaults).
type Policy = destination.Policy

// ApplyOptions tune one apply of one sync.
type ApplyOptions struct {
	Policy Policy
	// Threshold is the fraction of attempted records that may be rejected
	// before the run fails (failure_threshold).
	Threshold float64
	// Halving selects plain recursive halving for split retries instead of
	// the adaptive splitter (for comparison only).
	Halving bool
	// Progress, when set, is called after every request with the number of
	// records resolved so far and the total to send.
	Progress func(done, total int)
	// Rand seeds backoff jitter; nil uses a random seed.
	Rand *rand.Rand
	// Now and Sleep replace the clock in tests; nil uses the real ones.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// ErrorCount is one distinct error and how many records it rejected.
type ErrorCount struct {
	Error string `json:"error"`
	Count int    `json:"count"`
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
	// ThresholdExceeded is set when rejected/attempted > the threshold.
	ThresholdExceeded bool
	// Interrupted is set when the context was cancelled: the records not
	// yet resolved stay pending and are planned again next run.
	Interrupted bool
	Started     time.Time
	Duration    time.Duration
}

// Status is the run's outcome as recorded in the run history.
func (r *SyncResult) Status() state.RunStatus {
	switch {
	case r.Interrupted:
		return state.RunInterrupted
	case r.ThresholdExceeded:
		return state.RunFailed
	}
	return state.RunSucceeded
}

// Attempted is the number of records that got an answer from the destination.
func (r *SyncResult) Attempted() int { return r.Counts.Accepted + r.Counts.Rejected }

// item is a group of records scheduled for sending.
type item struct {
	recs []int // indices into the sync plan's changes
	// retries counts the retryable failures met by the group being sent
	// (the batch, or during a split the current sub-group), and started is
	// that group's first send: the retry policy's budget is per group.
	retries int
	readyAt time.Time
	started time.Time
	split   splitter
	seq     int
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
	opts  ApplyOptions
	bo    backoff
	now   func() time.Time
	sleep func(context.Context, time.Duration) error

	q       queue
	seq     int
	sends   []int // per change: times sent
	status  []int8
	res     *SyncResult
	errs    map[string]int
	total   int
	done    int
	density struct{ found, settled int } // what earlier splits of this run saw
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
	a := &applier{sp: sp, dest: dest, rec: rec, opts: opts, now: opts.Now, sleep: opts.Sleep, errs: map[string]int{}}
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
	a.res = &SyncResult{Sync: sp.Name, Started: a.now(), ByAction: map[Action]Outcomes{}}
	a.sends = make([]int, len(sp.Changes))
	a.status = make([]int8, len(sp.Changes))
	for _, c := range sp.Excluded {
		a.res.Counts.Excluded += c
	}

	// Forgotten removals and dropped failures need no request.
	var send []int
	for i, c := range sp.Changes {
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
			rec.Forget(c.Key)
			a.status[i] = accepted
			continue
		}
		send = append(send, i)
	}
	for _, k := range sp.DropFailures {
		rec.Forget(k)
	}
	for _, c := range sp.KeepSynced {
		rec.Accept(c.Key, c.Hash, c.Before) // what the snapshot has: only the failure entry goes
	}
	if err := rec.Checkpoint(); err != nil {
		return a.res, err
	}
	a.total = len(send)
	start := a.now()
	for i := 0; i < len(send); i += p.BatchSize {
		end := min(i+p.BatchSize, len(send))
		a.push(&item{recs: send[i:end:end], readyAt: start})
	}

	err := a.loop(ctx)
	a.finish()
	return a.res, err
}

func (a *applier) push(it *item) {
	a.seq++
	it.seq = a.seq
	heap.Push(&a.q, it)
}

func (a *applier) loop(ctx context.Context) error {
	for a.q.Len() > 0 {
		if ctx.Err() != nil {
			a.res.Interrupted = true
			return nil
		}
		it := heap.Pop(&a.q).(*item)
		if wait := it.readyAt.Sub(a.now()); wait > 0 {
			if err := a.sleep(ctx, wait); err != nil {
				heap.Push(&a.q, it)
				a.res.Interrupted = true
				return nil
			}
		}
		group := it.recs
		if it.split != nil {
			group = it.split.next()
			if group == nil {
				a.endSplit(it)
				continue
			}
		}
		if it.started.IsZero() {
			it.started = a.now()
		}
		out, err := a.send(group)
		if err != nil {
			return fmt.Errorf("saving progress: %w", err)
		}
		if err := a.handle(it, group, out); err != nil {
			return err
		}
		if err := a.rec.Checkpoint(); err != nil {
			return fmt.Errorf("saving progress: %w", err)
		}
		if a.opts.Progress != nil {
			a.opts.Progress(a.done, a.total)
		}
	}
	return nil
}

// send makes one request. The request is not cancelled by ctx: a batch in
// flight is finished and its outcome recorded, so Ctrl-C loses nothing.
func (a *applier) send(group []int) (destination.Outcome, error) {
	b := &destination.Batch{Object: a.sp.Object, KeyField: a.sp.KeyField, Fields: a.sp.Fields, ClearFields: a.sp.ClearFields, Records: make([]destination.Record, len(group))}
	inFlight := make([]state.InFlightRecord, len(group))
	for j, i := range group {
		c := &a.sp.Changes[i]
		inFlight[j] = state.InFlightRecord{Key: c.Key, Operation: string(c.Op)}
		r := destination.Record{Key: c.Key, KeyValue: c.KeyValue, Op: c.Op}
		switch c.Op {
		case destination.OpDelete:
		case destination.OpClear:
			r.Fields = make(map[string]any, len(a.sp.Fields))
			for _, f := range a.sp.ClearedFields() {
				r.Fields[f] = nil
			}
		default:
			r.Fields = make(map[string]any, len(a.sp.Fields))
			for _, f := range a.sp.Fields {
				r.Fields[f] = c.After[f]
			}
		}
		b.Records[j] = r
		a.sends[i]++
	}
	if err := a.rec.InFlight(inFlight); err != nil {
		return destination.Outcome{}, err
	}
	crashpoint.Hit("apply.inflight") // announced, not sent
	a.res.Requests++
	out := a.dest.Write(context.WithoutCancel(context.Background()), b)
	crashpoint.Hit("apply.sent") // the destination answered; its outcome is not recorded
	if out.Err == nil && len(out.Results) != len(group) {
		return destination.RejectBatch(fmt.Errorf("destination answered %d results for %d records", len(out.Results), len(group))), nil
	}
	return out, nil
}

func (a *applier) handle(it *item, group []int, out destination.Outcome) error {
	now := a.now()
	switch {
	case out.Err != nil && out.Retryable:
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
			return nil
		}
		it.readyAt = now.Add(a.bo.wait(it.retries-1, out.RetryAfter))
		a.push(it)
		return nil

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
			it.readyAt = now
			a.push(it)
		default:
			for _, i := range group {
				a.reject(i, out.Err)
			}
		}
		return nil
	}

	// Per-record results.
	var retry []int
	var retryErrs []error // index-aligned with retry
	allOK := true
	for j, r := range out.Results {
		i := group[j]
		switch {
		case r.Err == nil:
			a.accept(i)
		case r.Retryable:
			allOK = false
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
		next := &item{recs: retry, retries: retries + 1, started: started}
		if next.retries >= a.opts.Policy.MaxAttempts || a.elapsedOut(next, now) {
			for k, i := range retry {
				a.reject(i, retryErrs[k])
			}
			return nil
		}
		next.readyAt = now.Add(a.bo.wait(next.retries-1, out.RetryAfter))
		a.push(next)
	}
	return nil
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
		if a.sp.Changes[i].Attempts > 0 {
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
	if a.status[i] != pending {
		return
	}
	a.status[i] = accepted
	a.done++
	a.res.Counts.Accepted++
	c := &a.sp.Changes[i]
	o := a.res.ByAction[c.Action]
	o.Accepted++
	a.res.ByAction[c.Action] = o
	switch c.Op {
	case destination.OpDelete, destination.OpClear:
		a.rec.Forget(c.Key)
	default:
		a.rec.Accept(c.Key, c.Hash, c.After)
	}
	a.res.Records = append(a.res.Records, RecordResult{Key: c.Key, Operation: c.Op, Status: state.RowAccepted, Attempts: a.sends[i]})
}

func (a *applier) reject(i int, err error) {
	if a.status[i] != pending {
		return
	}
	if err == nil {
		err = errors.New("rejected without a reason")
	}
	a.status[i] = rejected
	a.done++
	a.res.Counts.Rejected++
	c := &a.sp.Changes[i]
	o := a.res.ByAction[c.Action]
	o.Rejected++
	a.res.ByAction[c.Action] = o
	msg := err.Error()
	a.errs[msg]++
	now := a.now()
	a.rec.Fail(state.Failure{Key: c.Key, Operation: string(c.Op), Error: msg, Attempts: a.sends[i], FirstFailed: now, LastFailed: now})
	a.res.Records = append(a.res.Records, RecordResult{Key: c.Key, Operation: c.Op, Status: state.RowRejected, Error: msg, Attempts: a.sends[i]})
}

func (a *applier) finish() {
	r := a.res
	for _, n := range a.sends {
		if n > 1 {
			r.Resent++
		}
	}
	for msg, n := range a.errs {
		r.TopErrors = append(r.TopErrors, ErrorCount{Error: msg, Count: n})
	}
	sort.Slice(r.TopErrors, func(i, j int) bool {
		if r.TopErrors[i].Count != r.TopErrors[j].Count {
			return r.TopErrors[i].Count > r.TopErrors[j].Count
		}
		return r.TopErrors[i].Error < r.TopErrors[j].Error
	})
	if att := r.Attempted(); att > 0 && float64(r.Counts.Rejected)/float64(att) > a.opts.Threshold {
		r.ThresholdExceeded = true
	}
	r.Duration = a.now().Sub(r.Started)
}
