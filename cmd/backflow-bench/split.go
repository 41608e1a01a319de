package main

import (
	"context"

	"github.com/backflowhq/backflow/reconcile"
)

// runSplit is the group-testing table: for n records among which k are
// bad (random positions, fixed seeds), a batch is rejected whole, then
// isolated by backflow's split retries and by plain recursive halving,
// both through the real apply loop. Counted: requests after the first,
// rejected one, mean over the trials.
func runSplit(ctx context.Context, e *env) (*result, error) {
	trials := 200
	if e.quick {
		trials = 20
	}
	type cell struct {
		N, K               int
		Backflow, Halving  float64
		Bound              float64
		VsBound, VsHalving float64
	}
	var cells []cell
	var sumRatio float64
	for _, n := range []int{100, 1000} {
		for _, k := range []int{1, 2, 5, 10, 50} {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			var ours, half float64
			for s := 0; s < trials; s++ {
				a, err := reconcile.SplitRequests(n, k, uint64(s), false)
				if err != nil {
					return nil, err
				}
				h, err := reconcile.SplitRequests(n, k, uint64(s), true)
				if err != nil {
					return nil, err
				}
				ours += float64(a)
				half += float64(h)
			}
			ours /= float64(trials)
			half /= float64(trials)
			bound := reconcile.SplitBound(n, k)
			c := cell{N: n, K: k, Backflow: round3(ours), Halving: round3(half), Bound: bound,
				VsBound: ratio(ours, bound), VsHalving: ratio(ours, half)}
			sumRatio += ours / bound
			cells = append(cells, c)
			e.logf("n=%d k=%d: backflow %.1f, halving %.1f, bound %.0f", n, k, ours, half, bound)
		}
	}
	rows := make([]*result, len(cells))
	for i, c := range cells {
		rows[i] = (&result{vals: map[string]any{}}).set("n", c.N).set("k", c.K).
			set("backflow", c.Backflow).set("halving", c.Halving).set("bound", c.Bound).
			set("backflow_vs_bound", c.VsBound).set("backflow_vs_halving", c.VsHalving)
	}
	return newResult("split").
		set("trials", trials).
		set("mean_backflow_vs_bound", round3(sumRatio/float64(len(cells)))).
		set("cells", rows).
		set("target", "mean_backflow_vs_bound ≤ 1.25"), nil
}
