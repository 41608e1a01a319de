package reconcile

import (
	"context"
	"errors"
	"strings"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/state"
)

// ApplyPlan carries out one sync's plan like ApplySync. A spilled plan is
// streamed: its changes are read and sent a window at a time (prefetch),
// so memory holds at most three windows of up to maxWindow changes, not
// the plan. The windows run in plan order; a window's retries and split
// retries finish before the next window's requests go out.
//
// keepAccepted bounds the accepted records kept in the result's Records
// (rejected ones are all kept; negative keeps every record), which is what
// a run's row log can hold.
func ApplyPlan(ctx context.Context, sp *SyncPlan, dest destination.Destination, rec Recorder, opts ApplyOptions, keepAccepted int) (*SyncResult, error) {
	if !sp.Spilled() && sp.view == nil {
		if keepAccepted >= 0 {
			opts.bounded, opts.keepAccepted = true, keepAccepted
		}
		return ApplySync(ctx, sp, dest, rec, opts)
	}
	// Whole batches per window: a window's last batch is not cut short.
	b := max(opts.Policy.BatchSize, 1)
	window := max(maxWindow/b*b, b)
	first := min(b*firstBatches, window)
	total := sp.NumChanges()
	var merged *SyncResult
	errs := map[string]*ErrorCount{}
	kept := 0
	progress := opts.Progress
	doneBefore := 0
	// A destination that reads Record.Values gets a spilled plan's values
	// as decoded, by the codec's names, without a map per record.
	inOrder := false
	if r, ok := dest.(destination.ValuesReader); ok && r.ReadsValues() && sp.spill != nil && sp.view == nil {
		inOrder = true
	}
	var names []string
	if sp.spill != nil {
		names = sp.spill.codec.names
	}
	err := sp.prefetch(first, window, inOrder, func(start int, changes []Change) error {
		sub := *sp
		sub.spill, sub.view = nil, nil
		sub.valNames = names
		sub.Changes = changes
		if start > 0 {
			sub.Excluded, sub.DropFailures, sub.KeepSynced = nil, nil, nil
		}
		o := opts
		if keepAccepted >= 0 {
			o.bounded, o.keepAccepted = true, keepAccepted-kept
		}
		if progress != nil {
			o.Progress = func(done, _ int) { progress(doneBefore+done, total) }
		}
		res, err := ApplySync(ctx, &sub, dest, rec, o)
		if res != nil {
			doneBefore += len(changes)
			for _, e := range res.TopErrors {
				if x := errs[e.Error]; x != nil {
					x.Count += e.Count
				} else {
					e := e
					errs[e.Error] = &e
				}
			}
			for i := range res.Records {
				// Keys kept past the window, not slices of its chunks.
				if res.Records[i].Status == state.RowAccepted {
					res.Records[i].Key = strings.Clone(res.Records[i].Key)
					kept++
				}
			}
			merged = mergeResults(merged, res)
		}
		if err != nil {
			return err
		}
		if res.Interrupted || res.Halted != nil {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	if merged == nil && err != nil {
		return &SyncResult{Sync: sp.Name, ByAction: map[Action]Outcomes{}}, err
	}
	if merged == nil {
		res, aerr := ApplySync(ctx, &SyncPlan{Name: sp.Name, Object: sp.Object, KeyField: sp.KeyField, Fields: sp.Fields, Excluded: sp.Excluded, DropFailures: sp.DropFailures, KeepSynced: sp.KeepSynced}, dest, rec, opts)
		if err == nil {
			err = aerr
		}
		return res, err
	}
	// Records of windows never reached (after a halt or an interrupt) are
	// pending like the unsettled ones: planned again next run.
	merged.unsettled += total - doneBefore
	merged.TopErrors = merged.TopErrors[:0]
	for _, e := range errs {
		merged.TopErrors = append(merged.TopErrors, *e)
	}
	sortErrors(merged.TopErrors)
	merged.judge()
	return merged, err
}

// A window of a streamed apply holds the whole batches that fit in
// maxWindow changes, or one batch when it is larger. Up to three windows
// are in memory at once (one sent, one read ahead, one being read). The
// requests of a window are answered before the next window's go out, so
// windows are large: each costs the wait for the last answers of the one
// before.
//
// The first window holds firstBatches batches only, so that the first
// requests go out after a short read rather than after a whole window's:
// one window boundary more, against tens of milliseconds of decoding
// before anything is sent.
//
// maxWindow was 65,536: three windows of 8-column adds held 130 MB live
// and an apply of 300,000 of them peaked at 259 MB RSS. At 16,384 it
// peaks at 142 MB, and the apply-postgres adds took as long (10 runs of
// each, 4 in flight: wall 1.03–1.14 s against 0.90–1.12 s, medians 1.14
// and 1.12 s, on a shared machine).
var (
	maxWindow    = 16_384
	firstBatches = 8
)

// prefetch calls fn with the plan's changes in order, without their Before
// values (apply sends After), first then n at a time. Each window is read in a
// goroutine of its own while fn handles the one before, so that decoding
// the plan overlaps the requests. fn owns the slice it gets until it
// returns: the slice's array is then decoded into again. An error from fn
// (or errStop) ends the reading and is returned.
func (sp *SyncPlan) prefetch(first, n int, inOrder bool, fn func(start int, changes []Change) error) error {
	type window struct {
		start   int
		changes []Change
		array   []Change // changes' whole array, to decode into again
	}
	ch := make(chan window, 1)
	// Arrays of windows fn is done with, for the next windows: a window is
	// millions of bytes of pointers the collector would otherwise be
	// handed anew each time.
	free := make(chan []Change, 2)
	quit := make(chan struct{})
	var readErr error
	go func() {
		defer close(ch)
		size := first
		// A window has room for the chunk that fills it (a chunk holds at
		// most spillChunkSize changes): the chunk is decoded in place
		// rather than the window grown, a copy of it all, for its last
		// chunk.
		alloc := func(need int) []Change {
			select {
			case a := <-free:
				if cap(a) >= need {
					clear(a[:cap(a)])
					return a[:0]
				}
			default:
			}
			return make([]Change, 0, need)
		}
		buf := alloc(size + spillChunkSize)
		start := 0
		// emit sends buf's first size changes (all of them, at the end)
		// as a window; the rest begin the next one, copied out before the
		// window goes (its array may come back as soon as fn is done).
		emit := func() bool {
			array := buf[:cap(buf)]
			var rest []Change
			if len(buf) > size {
				buf, rest = buf[:size:size], buf[size:]
			}
			// What the requests carry is built here too, beside the
			// decoding, rather than by the loop sending them.
			for i := range buf {
				if buf[i].vals == nil {
					buf[i].fields = recordFields(sp, &buf[i])
				}
			}
			next := append(alloc(n+max(len(rest), spillChunkSize)), rest...)
			select {
			case ch <- window{start, buf, array}:
			case <-quit:
				return false
			}
			start += len(buf)
			size = n
			buf = next
			return true
		}
		for _, a := range actionOrder {
			if sp.spill != nil && sp.view == nil {
				// A chunk at a time, decoded into the window.
				readErr = sp.spill.decodeEach(actionIndex(a), false, inOrder, func() []Change { return buf }, func(out []Change) error {
					buf = out
					for len(buf) >= size {
						if !emit() {
							return errStop
						}
					}
					return nil
				})
			} else {
				readErr = sp.eachOf(a, false, func(c *Change) error {
					buf = append(buf, *c)
					if len(buf) >= size && !emit() {
						return errStop
					}
					return nil
				})
			}
			if readErr != nil {
				return
			}
		}
		if len(buf) > 0 {
			emit()
		}
	}()
	var err error
	for w := range ch {
		if err = fn(w.start, w.changes); err != nil {
			break
		}
		select {
		case free <- w.array:
		default:
		}
	}
	close(quit)
	for range ch { // the reader stops at its next window
	}
	if err == nil && !errors.Is(readErr, errStop) {
		err = readErr
	}
	return err
}

// mergeResults adds the result of a later window to acc.
func mergeResults(acc, r *SyncResult) *SyncResult {
	if acc == nil {
		return r
	}
	c := &acc.Counts
	c.Added += r.Counts.Added
	c.Changed += r.Counts.Changed
	c.Removed += r.Counts.Removed
	c.Retried += r.Counts.Retried
	c.Accepted += r.Counts.Accepted
	c.Rejected += r.Counts.Rejected
	c.Excluded += r.Counts.Excluded
	for a, o := range r.ByAction {
		x := acc.ByAction[a]
		x.Accepted += o.Accepted
		x.Rejected += o.Rejected
		acc.ByAction[a] = x
	}
	acc.Requests += r.Requests
	acc.Resent += r.Resent
	acc.Records = append(acc.Records, r.Records...)
	acc.StillFailing += r.StillFailing
	acc.unsettled += r.unsettled
	if acc.Halted == nil {
		acc.Halted = r.Halted
	}
	acc.Interrupted = acc.Interrupted || r.Interrupted
	acc.Duration = r.Started.Add(r.Duration).Sub(acc.Started)
	return acc
}
