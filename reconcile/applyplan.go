package reconcile

import (
	"context"
	"errors"

	"github.com/backflowhq/backflow/destination"
)

// ApplyPlan carries out one sync's plan like ApplySync. A spilled plan is
// streamed: its changes are read a window at a time (windowReader) while
// the requests of the windows before are out, so memory holds a few
// windows of up to maxWindow changes, not the plan. Requests go in plan
// order, as they would from ApplySync; the window a change came in changes
// nothing of how it is sent, retried or recorded.
//
// keepAccepted bounds the accepted records kept in the result's Records
// (rejected ones are all kept; negative keeps every record), which is what
// a run's row log can hold.
func ApplyPlan(ctx context.Context, sp *SyncPlan, dest destination.Destination, rec Recorder, opts ApplyOptions, keepAccepted int) (*SyncResult, error) {
	if keepAccepted >= 0 {
		opts.bounded, opts.keepAccepted = true, keepAccepted
	}
	if !sp.Spilled() && sp.view == nil {
		return ApplySync(ctx, sp, dest, rec, opts)
	}
	// Whole batches per window: a window's last batch is not cut short.
	b := max(opts.Policy.BatchSize, 1)
	window := max(maxWindow/b*b, b)
	first := min(b*firstBatches, window)
	// A destination that reads Record.Values gets a spilled plan's values
	// as decoded, by the codec's names, without a map per record.
	inOrder := false
	if r, ok := dest.(destination.ValuesReader); ok && r.ReadsValues() && sp.spill != nil && sp.view == nil {
		inOrder = true
	}
	sub := *sp
	sub.spill, sub.view, sub.Changes = nil, nil, nil
	if sp.spill != nil {
		sub.valNames = sp.spill.codec.names
	}
	r := sp.windows(first, window, inOrder)
	// The first window is read before anything is recorded: a plan that
	// cannot be read changes nothing.
	head, headBack, got := r.next()
	if !got {
		if err := r.close(); err != nil {
			return &SyncResult{Sync: sp.Name, ByAction: map[Action]Outcomes{}}, err
		}
	}
	fed := false
	feed := &feeder{total: sp.NumChanges(), live: window, next: func() ([]Change, func(), bool) {
		if !fed {
			fed = true
			return head, headBack, got
		}
		return r.next()
	}}
	res, err := applySync(ctx, &sub, dest, rec, opts, feed)
	if rerr := r.close(); err == nil {
		err = rerr
	}
	return res, err
}

// A window of a streamed apply holds the whole batches that fit in
// maxWindow changes, or one batch when it is larger. The apply holds the
// windows whose records are not all settled, and the reader one more
// decoded ahead and one being decoded.
//
// The first window holds firstBatches batches only, so that the first
// requests go out after a short read rather than after a whole window's.
//
// maxWindow was 65,536, then 16,384 (an apply of 300,000 8-column adds
// peaked at 259 MB RSS, then at 142 MB), when each window's requests were
// all answered before the next window's went out, so that few windows
// meant few drains of the pipeline. Since requests go on across windows,
// a window costs a refill, not a drain; at 8,192 that apply (4 in flight,
// the CLI with its plan) peaks at 144–159 MB (seven runs), against
// 189–206 MB with windows of 16,384 and 135–156 MB before (two runs each,
// alternating).
var (
	maxWindow    = 8_192
	firstBatches = 8
)

// windowReader reads a spilled plan's changes, without their Before
// values (apply sends After), first then n at a time, in a goroutine of
// its own, a window ahead of the one its caller has.
type windowReader struct {
	ch   chan window
	free chan []Change
	quit chan struct{}
	// err is the reading's error, read once ch is closed.
	err    error
	closed bool
}

type window struct {
	changes []Change
	array   []Change // changes' whole array, to decode into again
}

// windows starts reading sp's changes.
func (sp *SyncPlan) windows(first, n int, inOrder bool) *windowReader {
	// Up to four arrays come back to be decoded into again: the apply may
	// drop a few windows at once.
	r := &windowReader{ch: make(chan window, 1), free: make(chan []Change, 4), quit: make(chan struct{})}
	go r.read(sp, first, n, inOrder)
	return r
}

// next returns the next window's changes, and what gives their array
// back, to be decoded into again, once the caller is done with them (or
// never: the reader then allocates another). It returns false when there
// is no other window (none left, the reading failed or was closed).
func (r *windowReader) next() ([]Change, func(), bool) {
	w, ok := <-r.ch
	if !ok {
		return nil, nil, false
	}
	return w.changes, func() {
		select {
		case r.free <- w.array:
		default:
		}
	}, true
}

// close stops the reading and returns its error.
func (r *windowReader) close() error {
	if !r.closed {
		r.closed = true
		close(r.quit)
	}
	for range r.ch { // the reader stops at its next window
	}
	if errors.Is(r.err, errStop) {
		return nil
	}
	return r.err
}

func (r *windowReader) read(sp *SyncPlan, first, n int, inOrder bool) {
	defer close(r.ch)
	size := first
	// A window has room for the chunk that fills it (a chunk holds at
	// most spillChunkSize changes): the chunk is decoded in place rather
	// than the window grown, a copy of it all, for its last chunk.
	alloc := func(need int) []Change {
		select {
		case a := <-r.free:
			if cap(a) >= need {
				clear(a[:cap(a)])
				return a[:0]
			}
		default:
		}
		return make([]Change, 0, need)
	}
	buf := alloc(size + spillChunkSize)
	// emit sends buf's first size changes (all of them, at the end) as a
	// window; the rest begin the next one, copied out before the window
	// goes (its array may come back as soon as the caller is done).
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
		case r.ch <- window{buf, array}:
		case <-r.quit:
			return false
		}
		size = n
		buf = next
		return true
	}
	for _, a := range actionOrder {
		if sp.spill != nil && sp.view == nil {
			// A chunk at a time, decoded into the window.
			r.err = sp.spill.decodeEach(actionIndex(a), false, inOrder, func() []Change { return buf }, func(out []Change) error {
				buf = out
				for len(buf) >= size {
					if !emit() {
						return errStop
					}
				}
				return nil
			})
		} else {
			r.err = sp.eachOf(a, false, func(c *Change) error {
				buf = append(buf, *c)
				if len(buf) >= size && !emit() {
					return errStop
				}
				return nil
			})
		}
		if r.err != nil {
			return
		}
	}
	if len(buf) > 0 {
		emit()
	}
}
