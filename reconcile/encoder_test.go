package reconcile

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/state"
)

// failAtExcluder fails on the row whose id is at.
type failAtExcluder struct{ at int64 }

func (f failAtExcluder) Exclude(row []any) (string, error) {
	if row[0] == f.at {
		return "", errors.New("rule broke")
	}
	return "", nil
}

// A change the encoder cannot write fails the diff, naming the key, and
// a diff that fails, there or on a rule, leaves no goroutine behind.
func TestEncoderErrorsEndTheDiff(t *testing.T) {
	rows := func(bad any) *sliceRows {
		var rs [][]any
		for i := range 3000 {
			name := any(fmt.Sprint("n", i))
			if i == 2500 {
				name = bad
			}
			rs = append(rs, []any{int64(i), fmt.Sprintf("u%d@x", i), name})
		}
		return newRows(cols, rs...)
	}
	before := runtime.NumGoroutine()
	for _, spill := range []int{0, 100, 100_000} {
		withSpillAfter(t, spill, func() {
			_, err := Diff(context.Background(), DiffInput{Sync: testSync("upsert", "delete"), Rows: rows(struct{}{}), Snapshot: EmptySnapshot{}, Failures: state.FailureIndex{}, SpillDir: t.TempDir()})
			if err == nil || !strings.Contains(err.Error(), `key "2500"`) || !strings.Contains(err.Error(), "cannot be written to the plan") {
				t.Fatalf("spill after %d: err = %v", spill, err)
			}
			_, err = Diff(context.Background(), DiffInput{Sync: testSync("upsert", "delete"), Rows: rows("fine"), Rules: failAtExcluder{at: 2000}, Snapshot: EmptySnapshot{}, Failures: state.FailureIndex{}, SpillDir: t.TempDir()})
			if err == nil || !strings.Contains(err.Error(), "rule broke") {
				t.Fatalf("spill after %d: err = %v", spill, err)
			}
		})
	}
	// An encoder's goroutine signals its end (stop waits for it) just
	// before it returns: it may still be counted for a moment. One that
	// never ends is still counted seconds later. Goroutines an earlier
	// test left running may end meanwhile, so fewer is fine.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("%d goroutines before the diffs, %d after", before, after)
	}
}
