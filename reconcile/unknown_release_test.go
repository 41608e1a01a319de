package reconcile

import (
	"context"
	"fmt"
	"testing"

	"github.com/backflowhq/backflow/state"
)

// reannounceRecorder cancels the apply when a record already sent is
// announced in flight again: its request had an answer that does not say
// whether it was written (a timeout), and the re-send is announced but,
// the apply stopping, never made.
type reannounceRecorder struct {
	Recorder
	dest   *poisonDest
	cancel func()
}

func (r *reannounceRecorder) InFlight(recs []state.InFlightRecord) error {
	r.dest.mu.Lock()
	for _, x := range recs {
		if r.dest.sent[x.Key] > 0 {
			r.cancel()
		}
	}
	r.dest.mu.Unlock()
	return r.Recorder.InFlight(recs)
}

// TestAStoppedResendKeepsTheUnknownOutcome: a record whose request was
// answered retryably (a timeout may have written it), announced again and
// not re-sent when the apply stops, keeps its unknown outcome: released
// as unsent, it would be pending as if never sent, and a record the
// timeout wrote would be an orphan once its row left the model (or, mode
// insert, a duplicate refused forever).
func TestAStoppedResendKeepsTheUnknownOutcome(t *testing.T) {
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprint("max_in_flight ", n), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			dest := concurrentPoison{newPoisonDest()}
			dest.failFirst = 1
			st, w := beginSync(t)
			rec := &reannounceRecorder{Recorder: w, dest: dest.poisonDest, cancel: cancel}
			res, err := ApplySync(ctx, upsertPlan(40), dest, rec, ApplyOptions{
				Policy: Policy{BatchSize: 10, MaxAttempts: 3, MaxInFlight: n}, Sleep: noSleep,
			})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Interrupted {
				t.Fatal("the apply was not interrupted: no record was announced again")
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			failures, err := st.LoadFailures("s")
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range dest.batches[0] { // answered retryably, never again
				if f := failures[k]; f == nil || !f.Unknown {
					t.Fatalf("key %s, sent once with an unknown outcome, is not an unknown outcome after the apply: %+v", k, f)
				}
			}
		})
	}
}
