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
	if h.pending != nil {
		return h.pending // sent again after a retryable error
	}
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

func (h *halving) stats() (int, int) { return h.found, h.settled }

// adaptive isolates bad records with Hwang's generalized binary splitting,
// driven by an estimate of how many bad records remain. With d bad expected
// among n it sends groups of 2^⌊log2((n−d+1)/d)⌋; a rejected group is
// bisected by sending one half only (the other half's status follows from
// the answer), which finds one bad record in ⌈log2 |group|⌉ sends.
//
// The estimate is the most likely density of bad records given every answer
// so far — each one the probability of the outcome of a group of s records
// given that a group of t records holding it was known bad — and a prior
// from outside the batch (records that failed before, what earlier splits in
// the run found).
type adaptive struct {
	unknown   []int // records whose status is unknown
	knownBad  bool  // unknown holds at least one bad record …
	unknownEr error // … and this is the error of a group whose other members were all good
	search    []int // a group known to hold a bad record, being bisected
	searchErr error
	pending   []int
	pendCond  int // size of the known-bad group the pending one was drawn from (0: none)
	fromSrch  bool

	n0     int     // records at the start
	prior  float64 // expected bad records at the start
	obs    map[observation]int
	found  int
	settle int
}

// observation is the answer to one group: s records sent, drawn from a
// group of t known to hold a bad record (t = 0: nothing known), and whether
// the destination rejected them.
type observation struct {
	s, t int
	bad  bool
}

func newAdaptive(recs []int, batchErr error, prior float64) *adaptive {
	if prior < 1 {
		prior = 1
	}
	a := &adaptive{unknown: recs, knownBad: true, unknownEr: batchErr, n0: len(recs), prior: prior, obs: map[observation]int{}}
	a.obs[observation{s: len(recs), bad: true}]++
	return a
}

// priorWeight is how many records' worth of evidence the prior counts for.
const priorWeight = 12.0

// logLikelihood is the log-probability of the answers seen, plus the
// prior's, for a density p of bad records.
func (a *adaptive) logLikelihood(p float64) float64 {
	p0 := min(a.prior/float64(a.n0), 0.5)
	ll := priorWeight * (p0*math.Log(p) + (1-p0)*math.Log1p(-p))
	lq := math.Log1p(-p)
	for o, n := range a.obs {
		good := float64(o.s) * lq // log q^s
		var lp float64
		if o.bad {
			lp = math.Log(-math.Expm1(good))
		} else {
			lp = good
		}
		if o.t > 0 {
			condBad := math.Log(-math.Expm1(float64(o.t) * lq))
			if !o.bad {
				// q^s − q^t = q^s (1 − q^(t−s))
				lp += math.Log(-math.Expm1(float64(o.t-o.s) * lq))
			}
			lp -= condBad
		}
		ll += float64(n) * lp
	}
	return ll
}

// density is the most likely density of bad records, found by golden-section
// search over logit(p).
func (a *adaptive) density() float64 {
	lo, hi := -12.0, 8.0
	f := func(x float64) float64 { return a.logLikelihood(1 / (1 + math.Exp(-x))) }
	const g = 0.6180339887498949
	x1, x2 := hi-g*(hi-lo), lo+g*(hi-lo)
	f1, f2 := f(x1), f(x2)
	for i := 0; i < 40; i++ {
		if f1 < f2 {
			lo, x1, f1 = x1, x2, f2
			x2 = lo + g*(hi-lo)
			f2 = f(x2)
		} else {
			hi, x2, f2 = x2, x1, f1
			x1 = hi - g*(hi-lo)
			f1 = f(x1)
		}
	}
	return 1 / (1 + math.Exp(-(lo+hi)/2))
}

// estimate is the expected number of bad records among the unknown ones.
func (a *adaptive) estimate() float64 {
	n := float64(len(a.unknown))
	p := a.density()
	d := p * n
	if a.knownBad {
		d = max(d/(-math.Expm1(n*math.Log1p(-p))), 1)
	}
	return min(d, n)
}

func (a *adaptive) next() []int {
	if len(a.search) > 1 {
		a.pending, a.fromSrch, a.pendCond = a.search[:len(a.search)/2], true, len(a.search)
		return a.pending
	}
	n := len(a.unknown)
	if n == 0 {
		return nil
	}
	d := a.estimate()
	g := n
	switch {
	case float64(n) <= 2*d-2:
		g = 1
	case d > 0:
		if x := math.Log2((float64(n) - d + 1) / d); x < 62 {
			g = 1 << uint(max(math.Floor(x), 0))
		}
	}
	if a.knownBad && g >= n {
		g = n / 2
	}
	g = min(max(g, 1), n)
	a.pending, a.fromSrch, a.pendCond = a.unknown[:g], false, 0
	if a.knownBad {
		a.pendCond = n
	}
	return a.pending
}

func (a *adaptive) report(ok bool, err error, resolved bool) (good []int, bad []int, badErr error) {
	g := a.pending
	a.pending = nil
	if !resolved {
		a.obs[observation{s: len(g), t: a.pendCond, bad: !ok}]++
	}
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

func (a *adaptive) stats() (int, int) { return a.found, a.settle }
