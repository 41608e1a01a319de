package destination_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
)

// The lock scenario (10,000 changed rows, 5 held by another session) written
// three ways: one batch with the lock step (FOR UPDATE SKIP LOCKED), one
// batch without it narrowed down by halving the sub-batches that fail on a
// lock timeout, and one request per row. Reports requests and statements
// per write of the 10,000 and the wall time. Run once:
//
//	go test ./destination -run '^$' -bench LockedRows -benchtime 1x
func BenchmarkPostgresLockedRows(b *testing.B) {
	benchLockedRows(b, postgresHarness, 100*time.Millisecond)
}

func BenchmarkMySQLLockedRows(b *testing.B) {
	benchLockedRows(b, mysqlHarness, time.Second) // innodb_lock_wait_timeout's floor
}

func benchLockedRows(b *testing.B, setup func(t testing.TB) *sqlHarness, lockTimeout time.Duration) {
	const n = 10000
	held := []int64{1, 17, 4242, 5000, 9999}
	for _, mode := range []string{"skip-locked", "narrowing", "one-row"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				runLockedRows(b, setup(b), mode, n, held, lockTimeout)
			}
		})
	}
}

func runLockedRows(b *testing.B, h *sqlHarness, mode string, n int, held []int64, lockTimeout time.Duration) {
	b.StopTimer()
	ctx := context.Background()
	table := contactsTable(b, h)
	mustExec(b, h, seedContacts(table, n))
	d := h.open(b, lockTimeout, "")
	destination.SetSkipLocked(d, mode == "skip-locked")
	release := h.lock(b, table, held...)
	defer release()
	recs := make([]destination.Record, n)
	for i := range recs {
		id := int64(i + 1)
		recs[i] = contact(id, destination.OpUpsert, fmt.Sprintf("v2-%d@x", id), "v2")
	}
	before := destination.Statements(d)
	requests, locked := 0, 0
	var write func(rs []destination.Record)
	write = func(rs []destination.Record) {
		requests++
		o := d.Write(ctx, batchFor(table, rs...))
		switch {
		case o.Err != nil && o.Retryable && len(rs) > 1: // a lock timeout: halve
			write(rs[:len(rs)/2])
			write(rs[len(rs)/2:])
		case o.Err != nil && o.Retryable:
			locked++
		case o.Err != nil:
			b.Fatalf("write: %v", o.Err)
		default:
			for _, r := range o.Results {
				if r.Retryable {
					locked++
				}
			}
		}
	}
	b.StartTimer()
	if mode == "one-row" {
		for _, r := range recs {
			write([]destination.Record{r})
		}
	} else {
		write(recs)
	}
	b.StopTimer()
	if locked != len(held) {
		b.Fatalf("%d records found locked, want %d", locked, len(held))
	}
	b.ReportMetric(float64(requests), "requests/op")
	b.ReportMetric(float64(destination.Statements(d)-before), "statements/op")
}
