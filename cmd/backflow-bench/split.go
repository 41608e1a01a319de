package main

import (
	"fmt"

	"github.com/backflowhq/backflow/reconcile"
)

func benchSplit(trials int) error {
	fmt.Printf("Split retries: requests to isolate k bad records among n after the batch was rejected\n")
	fmt.Printf("(mean over %d random placements with fixed seeds; the first, rejected request is not counted)\n\n", trials)
	fmt.Printf("| n | k | backflow | halving | bound ⌈log2 C(n,k)⌉ | backflow / bound | backflow / halving |\n")
	fmt.Printf("|---:|---:|---:|---:|---:|---:|---:|\n")
	var sumRatio float64
	cells := 0
	for _, n := range []int{100, 1000} {
		for _, k := range []int{1, 2, 5, 10, 50} {
			var ours, half float64
			for s := 0; s < trials; s++ {
				a, err := reconcile.SplitRequests(n, k, uint64(s), false)
				if err != nil {
					return err
				}
				h, err := reconcile.SplitRequests(n, k, uint64(s), true)
				if err != nil {
					return err
				}
				ours += float64(a)
				half += float64(h)
			}
			ours /= float64(trials)
			half /= float64(trials)
			bound := reconcile.SplitBound(n, k)
			ratio := ours / bound
			sumRatio += ratio
			cells++
			fmt.Printf("| %d | %d | %.1f | %.1f | %.0f | %.2f | %.2f |\n", n, k, ours, half, bound, ratio, ours/half)
		}
	}
	fmt.Printf("\nmean backflow / bound over the %d cells: %.3f\n", cells, sumRatio/float64(cells))
	return nil
}
