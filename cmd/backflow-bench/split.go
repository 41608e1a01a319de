package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/reconcile"
	"github.com/backflowhq/backflow/state"
)

// poison rejects a multi-record batch holding a bad key as a whole, and a
// single bad record with its own error, like a multi-row SQL statement.
type poison struct {
	bad      map[string]bool
	requests int
}

func (p *poison) Write(_ context.Context, b *destination.Batch) destination.Outcome {
	p.requests++
	out := destination.AllAccepted(len(b.Records))
	for i, r := range b.Records {
		if p.bad[r.Key] {
			if len(b.Records) > 1 {
				return destination.RejectBatch(errors.New("constraint failed"))
			}
			out.Results[i].Err = errors.New("constraint failed: " + r.Key)
		}
	}
	return out
}

func (p *poison) Close() error { return nil }

type discard struct{}

func (discard) Accept(string, uint64, map[string]any) {}
func (discard) Forget(string)                         {}
func (discard) Fail(state.Failure)                    {}
func (discard) Checkpoint() error                     { return nil }
func (discard) InFlight([]state.InFlightRecord) error { return nil }

// isolate returns the requests needed after the batch's first rejection.
func isolate(n, k int, seed uint64, halving bool) (int, error) {
	r := rand.New(rand.NewPCG(seed, uint64(n*1000+k)))
	sp := &reconcile.SyncPlan{Name: "bench", Object: "t", KeyField: "id", Fields: []string{"v"}}
	for i := 0; i < n; i++ {
		k := fmt.Sprint(i)
		sp.Changes = append(sp.Changes, reconcile.Change{Action: reconcile.ActionAdd, Key: k, KeyValue: int64(i), Op: destination.OpUpsert, After: map[string]any{"v": int64(i)}})
	}
	dest := &poison{bad: map[string]bool{}}
	for _, i := range r.Perm(n)[:k] {
		dest.bad[fmt.Sprint(i)] = true
	}
	res, err := reconcile.ApplySync(context.Background(), sp, dest, discard{}, reconcile.ApplyOptions{
		Policy: reconcile.Policy{BatchSize: n, SplitRetries: true, MaxAttempts: 1}, Threshold: 1, Halving: halving,
	})
	if err != nil {
		return 0, err
	}
	if res.Counts.Rejected != k || res.Counts.Accepted != n-k {
		return 0, fmt.Errorf("n=%d k=%d: %d rejected, %d accepted", n, k, res.Counts.Rejected, res.Counts.Accepted)
	}
	return dest.requests - 1, nil
}

// log2Binomial is log2 C(n, k).
func log2Binomial(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return (a - b - c) / math.Ln2
}

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
				a, err := isolate(n, k, uint64(s), false)
				if err != nil {
					return err
				}
				h, err := isolate(n, k, uint64(s), true)
				if err != nil {
					return err
				}
				ours += float64(a)
				half += float64(h)
			}
			ours /= float64(trials)
			half /= float64(trials)
			bound := math.Ceil(log2Binomial(n, k) - 1e-9)
			ratio := ours / bound
			sumRatio += ratio
			cells++
			fmt.Printf("| %d | %d | %.1f | %.1f | %.0f | %.2f | %.2f |\n", n, k, ours, half, bound, ratio, ours/half)
		}
	}
	fmt.Printf("\nmean backflow / bound over the %d cells: %.3f\n", cells, sumRatio/float64(cells))
	return nil
}
