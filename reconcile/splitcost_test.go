package reconcile

import "testing"

// TestSplitRetriesStayNearTheBound guards the quality of split retries, not
// just their correctness: over fixed seeds, the mean ratio of requests to
// ⌈log2 C(n,k)⌉ must stay within 1.25, which plain halving (about 1.5–2×)
// does not meet, so a regression that still beats halving fails too.
func TestSplitRetriesStayNearTheBound(t *testing.T) {
	const trials = 8
	var sum, sumHalving float64
	cells := 0
	for _, n := range []int{100, 1000} {
		for _, k := range []int{1, 2, 5, 10, 50} {
			var ours, half float64
			for s := 0; s < trials; s++ {
				a, err := SplitRequests(n, k, uint64(s), false)
				if err != nil {
					t.Fatal(err)
				}
				h, err := SplitRequests(n, k, uint64(s), true)
				if err != nil {
					t.Fatal(err)
				}
				ours += float64(a)
				half += float64(h)
			}
			bound := SplitBound(n, k)
			sum += ours / trials / bound
			sumHalving += half / trials / bound
			cells++
		}
	}
	mean, meanHalving := sum/float64(cells), sumHalving/float64(cells)
	t.Logf("mean requests / bound: adaptive %.3f, halving %.3f", mean, meanHalving)
	if mean > 1.25 {
		t.Errorf("split retries use %.3f× the bound on average, more than 1.25×", mean)
	}
	if meanHalving <= 1.25 {
		t.Errorf("halving scores %.3f×: the guard no longer tells a regression from halving", meanHalving)
	}
}
