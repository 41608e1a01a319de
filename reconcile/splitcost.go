package reconcile

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/state"
)

// SplitRequests measures split retries: the requests needed to isolate k
// bad records placed at random (seeded) among n, after the batch of all n
// was rejected whole (that first request is not counted). halving selects
// plain recursive halving instead of the adaptive splitter. The benchmark
// and a regression test share it.
func SplitRequests(n, k int, seed uint64, halving bool) (int, error) {
	r := rand.New(rand.NewPCG(seed, uint64(n*1000+k)))
	sp := &SyncPlan{Name: "split", Object: "t", KeyField: "id", Fields: []string{"v"}}
	for i := 0; i < n; i++ {
		key := fmt.Sprint(i)
		sp.Changes = append(sp.Changes, Change{Action: ActionAdd, Key: key, KeyValue: int64(i), Op: destination.OpUpsert, After: map[string]any{"v": int64(i)}})
	}
	dest := &poisoned{bad: map[string]bool{}}
	for _, i := range r.Perm(n)[:k] {
		dest.bad[fmt.Sprint(i)] = true
	}
	res, err := ApplySync(context.Background(), sp, dest, discard{}, ApplyOptions{
		Policy: Policy{BatchSize: n, SplitRetries: true, MaxAttempts: 1}, Threshold: 1, Halving: halving,
	})
	if err != nil {
		return 0, err
	}
	if res.Counts.Rejected != k || res.Counts.Accepted != n-k {
		return 0, fmt.Errorf("n=%d k=%d: %d rejected, %d accepted", n, k, res.Counts.Rejected, res.Counts.Accepted)
	}
	return dest.requests - 1, nil
}

// SplitBound is ⌈log2 C(n, k)⌉, the information-theoretic least number of
// yes/no answers that can single out k bad records among n.
func SplitBound(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return math.Ceil((a-b-c)/math.Ln2 - 1e-9)
}

// poisoned rejects a multi-record batch holding a bad key as a whole, and a
// single bad record with its own error, like a multi-row SQL statement.
type poisoned struct {
	bad      map[string]bool
	requests int
}

func (p *poisoned) Write(_ context.Context, b *destination.Batch) destination.Outcome {
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

func (p *poisoned) Close() error { return nil }

// discard records nothing.
type discard struct{}

func (discard) Accept(string, uint64, map[string]any) {}
func (discard) Forget(string)                         {}
func (discard) Fail(state.Failure)                    {}
func (discard) Checkpoint() error                     { return nil }
func (discard) InFlight([]state.InFlightRecord) error { return nil }
func (discard) Unsent([]string)                       {}
