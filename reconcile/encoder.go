package reconcile

// encodeBatch is how many changes travel together to a diff's encoder.
const encodeBatch = 256

// changeBatch is a batch of changes on their way to the encoder.
type changeBatch struct {
	changes []Change
	vals    []any // the afterVals of its changes, copied from their rows
}

// spillEncoder encodes a diff's changes into its spill on a goroutine of
// its own, so that classifying the model's rows and encoding the changes
// (reading each Before from the snapshot, writing chunks) run side by
// side. The diff hands the changes over in batches, copying the values it
// borrowed from the row, and drains the encoder before it reads the spill
// itself. The encoder keeps the spill in memory until it holds more than
// SpillAfter changes, then moves it to a file in dir.
type spillEncoder struct {
	sf  *spillFile
	dir string
	nf  int // the values of a change's afterVals

	batches chan *changeBatch // nil: a drain
	free    chan *changeBatch
	drained chan struct{}
	done    chan struct{}
	cur     *changeBatch
	stopped bool
	// err is the encoder's first error: written by its goroutine, read by
	// the diff after a drain.
	err error
}

// encodeBatches is how many batches an encoder has: some being filled,
// some queued, one being encoded.
const encodeBatches = 6

func startEncoder(sf *spillFile, dir string, nf int) *spillEncoder {
	e := &spillEncoder{
		sf: sf, dir: dir, nf: nf,
		batches: make(chan *changeBatch, encodeBatches),
		free:    make(chan *changeBatch, encodeBatches),
		drained: make(chan struct{}),
		done:    make(chan struct{}),
	}
	for range encodeBatches {
		e.free <- &changeBatch{changes: make([]Change, 0, encodeBatch), vals: make([]any, 0, encodeBatch*nf)}
	}
	go e.run()
	return e
}

func (e *spillEncoder) run() {
	defer close(e.done)
	for b := range e.batches {
		if b == nil {
			e.drained <- struct{}{}
			continue
		}
		for i := range b.changes {
			if e.err == nil {
				e.err = e.sf.put(&b.changes[i], e.dir)
			}
		}
		clear(b.changes)
		clear(b.vals)
		b.changes, b.vals = b.changes[:0], b.vals[:0]
		e.free <- b
	}
}

// put hands c over; its afterVals are copied, the rest is the encoder's.
func (e *spillEncoder) put(c *Change) {
	if e.cur == nil {
		e.cur = <-e.free
	}
	b := e.cur
	b.changes = append(b.changes, *c)
	if c.afterVals != nil {
		start := len(b.vals)
		b.vals = append(b.vals, c.afterVals...)
		b.changes[len(b.changes)-1].afterVals = b.vals[start:len(b.vals):len(b.vals)]
	}
	if len(b.changes) == encodeBatch {
		e.batches <- b
		e.cur = nil
	}
}

// drain waits until every change handed over is encoded, and returns the
// encoder's error.
func (e *spillEncoder) drain() error {
	if e.stopped {
		return e.err
	}
	if e.cur != nil && len(e.cur.changes) > 0 {
		e.batches <- e.cur
		e.cur = nil
	}
	e.batches <- nil
	<-e.drained
	return e.err
}

// stop drains the encoder and ends its goroutine; the spill is the diff's
// again.
func (e *spillEncoder) stop() error {
	if e.stopped {
		return e.err
	}
	err := e.drain()
	close(e.batches)
	<-e.done
	e.stopped = true
	return err
}
