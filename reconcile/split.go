package reconcile

import "math"

// A splitter isolates the bad records of a batch the destination rejected
// whole. It proposes groups to send (next) and learns from each answer
// (report). Records it infers bad without sending them alone are only ever
// inferred from a rejected group whose other members were all accepted, so
// the error they are rejected with is their own.
type splitter interface {
	// next returns the group to send next; nil when every record is resolved.
	next() []int
	// report tells what happened to the group last returned by next: ok
	// when every record was accepted; err when the group was rejected whole;
	// resolved when the group got per-record answers with some failure (its
	// records are settled elsewhere). It returns the records it now knows to
	// be good and the records it infers bad, with their error.
	report(ok bool, err error, resolved bool) (good []int, bad []int, badErr error)
	// remaining lists the records not yet resolved.
	remaining() []int
	// stats returns how many records were found bad and how many resolved.
	stats() (found, resolved int)
}

// halving is plain recursive halving, the documented behaviour: a rejected
// group is split in two and both halves are sent. It is kept as the
// baseline the adaptive splitter is measured against.
type halving struct {
	queue   [][]int
	pending []int
	found   int
	settled int
}

func newHalving(recs []int) *halving {
	h := &halving{}
	h.push(recs)
	return h
}

func (h *halving) push(recs []int) {
	mid := len(recs) / 2
	h.queue = append(h.queue, recs[:mid:mid], recs[mid:])
}

func (h *halving) next() []int {
	if len(h.queue) == 0 {
		return nil
	}
	h.pending = h.queue[0]
	h.queue = h.queue[1:]
	return h.pending
}

func (h *halving) report(ok bool, err error, resolved bool) ([]int, []int, error) {
	g := h.pending
	h.pending = nil
	switch {
	case ok:
		h.settled += len(g)
		return g, nil, nil
	case resolved:
		h.settled += len(g)
		return nil, nil, nil
	case len(g) == 1:
		h.settled++
		h.found++
		return nil, g, err
	default:
		h.push(g)
		return nil, nil, nil
	}
}

func (h *halving) remaining() []int {
	var out []int
	out = append(out, h.pending...)
	for _, g := range h.queue {
		out = append(out, g...)
	}
	return out
}

func (h *halving) stats() (int, int) { return h.found, h.settled }

// adaptive isolates bad records with Hwang's generalized binary splitting,
// driven by an estimate of how many bad records remain. With d bad among n
// it sends groups of 2^⌊log2((n−d+1)/d)⌋; a rejected group is bisected by
// sending one half only (the other half's status follows from the answer),
// which finds one bad record in ⌈log2 |group|⌉ sends. The estimate starts
// from a prior (records that failed before, what earlier splits in the run
// found) and is updated from what this split has seen.
type adaptive struct {
	unknown   []int // records whose status is unknown
	knownBad  bool  // unknown holds at least one bad record …
	unknownEr error // … and this is the error of a group whose other members were all good
	search    []int // a group known to hold a bad record, being bisected
	searchErr error
	pending   []int
	fromSrch  bool

	n0     int     // records at the start
	prior  float64 // expected bad records at the start
	found  int
	settle int
}

func newAdaptive(recs []int, batchErr error, prior float64) *adaptive {
	if prior < 1 {
		prior = 1
	}
	return &adaptive{unknown: recs, knownBad: true, unknownEr: batchErr, n0: len(recs), prior: prior}
}

// estimate is the expected number of bad records among the unknown ones: a
// density blending the prior (worth a few records of evidence) with what
// this split has resolved so far.
func (a *adaptive) estimate() int {
	n := len(a.unknown)
	const priorWeight = 8.0
	p := (float64(a.found) + a.prior/float64(a.n0)*priorWeight) / (float64(a.settle) + priorWeight)
	d := int(math.Round(p * float64(n)))
	if d < 1 {
		d = 1
	}
	if d > n {
		d = n
	}
	return d
}

func (a *adaptive) next() []int {
	if len(a.search) > 1 {
		a.pending, a.fromSrch = a.search[:len(a.search)/2], true
		return a.pending
	}
	n := len(a.unknown)
	if n == 0 {
		return nil
	}
	d := a.estimate()
	g := 1
	if n > 2*d-2 {
		g = 1 << uint(math.Floor(math.Log2(float64(n-d+1)/float64(d))))
	}
	if a.knownBad && g >= n {
		g = n / 2
	}
	if g < 1 {
		g = 1
	}
	if g > n {
		g = n
	}
	a.pending, a.fromSrch = a.unknown[:g], false
	return a.pending
}

func (a *adaptive) report(ok bool, err error, resolved bool) (good []int, bad []int, badErr error) {
	g := a.pending
	a.pending = nil
	if a.fromSrch {
		rest := a.search[len(g):]
		switch {
		case ok:
			good = g
			a.settle += len(g)
			a.search = rest
		case resolved:
			a.settle += len(g)
			a.unknown = append(append([]int(nil), rest...), a.unknown...)
			a.search = nil
		default:
			a.unknown = append(append([]int(nil), rest...), a.unknown...)
			a.search, a.searchErr = g, err
		}
		if len(a.search) == 1 {
			bad, badErr = a.search, a.searchErr
			a.search = nil
			a.found++
			a.settle++
		}
		return good, bad, badErr
	}
	a.unknown = a.unknown[len(g):]
	switch {
	case ok:
		good = g
		a.settle += len(g)
		if a.knownBad && len(a.unknown) == 1 {
			bad, badErr = a.unknown, a.unknownEr
			a.unknown = nil
			a.found++
			a.settle++
		}
		return good, bad, badErr
	case resolved:
		a.settle += len(g)
	case len(g) == 1:
		bad, badErr = g, err
		a.found++
		a.settle++
	default:
		a.search, a.searchErr = g, err
	}
	a.knownBad = false
	return good, bad, badErr
}

func (a *adaptive) remaining() []int {
	var out []int
	out = append(out, a.search...)
	out = append(out, a.unknown...)
	return out
}

func (a *adaptive) stats() (int, int) { return a.found, a.settle }
