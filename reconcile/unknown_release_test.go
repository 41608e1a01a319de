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

// TestARefusalAfterATimeoutKeepsTheUnknownOutcome: a record whose first
// request was answered retryably (a timeout may have written it), then
// refused on the re-send, is a failure entry whose outcome is unknown, as
// one a crash left in flight stays after a refusal: the destination may
// hold what the first send wrote (mode insert then retries it as an
// upsert, not as an insert refused as a duplicate forever). A record
// refused at its only send is not.
func TestARefusalAfterATimeoutKeepsTheUnknownOutcome(t *testing.T) {
	dest := newPoisonDest("00000", "00001")
	dest.failFirst = 1 // key 00000's first request
	st, w := beginSync(t)
	res, err := ApplySync(context.Background(), upsertPlan(3), dest, w, ApplyOptions{
		Policy: Policy{BatchSize: 1, MaxAttempts: 3}, Sleep: noSleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if res.Counts.Rejected != 2 || dest.batches[0][0] != "00000" || dest.sent["00000"] != 2 {
		t.Fatalf("%d rejected, requests %v: want two rejections, key 00000 sent first and twice", res.Counts.Rejected, dest.batches)
	}
	failures, err := st.LoadFailures("s")
	if err != nil {
		t.Fatal(err)
	}
	if f := failures["00000"]; f == nil || !f.Unknown {
		t.Errorf("key 00000, refused after a retryable answer: %+v, want a failure whose outcome is unknown", f)
	}
	if f := failures["00001"]; f == nil || f.Unknown {
		t.Errorf("key 00001, refused at its only send: %+v, want a failure whose outcome is known", f)
	}
}
