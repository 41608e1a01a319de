package reconcile

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/destination"
)

// leakyDest rejects its first record with a message quoting a secret and
// then answers fatally, quoting it again: a driver that forgot to mask.
type leakyDest struct{ requests int }

func (d *leakyDest) Close() error { return nil }

func (d *leakyDest) Write(_ context.Context, b *destination.Batch) destination.Outcome {
	d.requests++
	if d.requests > 1 {
		return destination.Fatal(errors.New("token S3cr3t-XYZ-123456 revoked"))
	}
	out := destination.Outcome{Results: make([]destination.Result, len(b.Records))}
	out.Results[0] = destination.Result{Err: errors.New("field refused for token S3cr3t-XYZ-123456")}
	return out
}

// TestApplyMasksWhatDestinationsSay: the messages a run keeps (failure
// index, row results, error counts, halt reason) are masked by the
// engine, whatever the driver masked itself.
func TestApplyMasksWhatDestinationsSay(t *testing.T) {
	rec := newRecorder()
	mask := func(s string) string { return strings.ReplaceAll(s, "S3cr3t-XYZ-123456", "(sensitive)") }
	res, err := ApplySync(context.Background(), upsertPlan(4), &leakyDest{}, rec, ApplyOptions{
		Policy: Policy{BatchSize: 2, MaxAttempts: 1}, Sleep: noSleep, Mask: mask,
	})
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, f := range rec.failed {
		kept = append(kept, f.Error)
	}
	for _, r := range res.Records {
		kept = append(kept, r.Error)
	}
	for _, e := range res.TopErrors {
		kept = append(kept, e.Error, e.Example)
	}
	if res.Halted == nil || len(rec.failed) == 0 {
		t.Fatalf("want a rejection and a halt: halted %+v, failures %v", res.Halted, rec.failed)
	}
	kept = append(kept, res.Halted.Err)
	for _, s := range kept {
		if strings.Contains(s, "S3cr3t") {
			t.Errorf("kept unmasked: %q", s)
		}
	}
}
