package reconcile

import (
	"context"
)

// chunkRows is how many rows travel together from the reader goroutine.
const chunkRows = 1024

// rowChunk holds up to chunkRows rows, their values laid out flat.
type rowChunk struct {
	vals []any
	n    int
}

// aheadReader reads a query's rows in a goroutine of its own, so that the
// engine producing rows and the diff consuming them run side by side: the
// plan then costs little more than the bare scan. Chunks are recycled
// through a free list, so a steady-state read allocates nothing.
type aheadReader struct {
	cols     int
	chunks   chan *rowChunk
	free     chan *rowChunk
	done     chan struct{}
	cur      *rowChunk
	i        int
	errc     chan error
	failed   error
	finished bool
}

func readAhead(ctx context.Context, rows Rows, cols int) *aheadReader {
	r := &aheadReader{
		cols:   cols,
		chunks: make(chan *rowChunk, 4),
		free:   make(chan *rowChunk, 6),
		done:   make(chan struct{}),
		errc:   make(chan error, 1),
	}
	for i := 0; i < 6; i++ {
		r.free <- &rowChunk{vals: make([]any, chunkRows*cols)}
	}
	go r.produce(ctx, rows)
	return r
}

func (r *aheadReader) produce(ctx context.Context, rows Rows) {
	defer close(r.chunks)
	var c *rowChunk
	for {
		if c == nil {
			select {
			case c = <-r.free:
				c.n = 0
			case <-r.done:
				r.errc <- nil
				return
			}
		}
		if !rows.Next() {
			break
		}
		copy(c.vals[c.n*r.cols:(c.n+1)*r.cols], rows.Row())
		c.n++
		if c.n == chunkRows {
			if err := ctx.Err(); err != nil {
				r.errc <- err
				return
			}
			select {
			case r.chunks <- c:
				c = nil
			case <-r.done:
				r.errc <- nil
				return
			}
		}
	}
	if c != nil && c.n > 0 {
		select {
		case r.chunks <- c:
		case <-r.done:
		}
	}
	r.errc <- rows.Err()
}

// next advances to the next row.
func (r *aheadReader) next() bool {
	if r.cur != nil {
		r.i++
		if r.i < r.cur.n {
			return true
		}
		clear(r.cur.vals)
		r.free <- r.cur
		r.cur = nil
	}
	c, ok := <-r.chunks
	if !ok {
		return false
	}
	r.cur, r.i = c, 0
	return true
}

// row returns the current row; it is valid until the next call to next.
func (r *aheadReader) row() []any {
	return r.cur.vals[r.i*r.cols : (r.i+1)*r.cols]
}

// err waits for the reader and returns its error.
func (r *aheadReader) err() error {
	if !r.finished {
		r.failed, r.finished = <-r.errc, true
	}
	return r.failed
}

// stop ends the reader early (on an error in the consumer) and waits for it.
func (r *aheadReader) stop() {
	select {
	case <-r.done:
	default:
		close(r.done)
	}
	for range r.chunks {
	}
	r.err()
}
