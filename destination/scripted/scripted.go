// Package scripted provides a destination whose behaviour tests program:
// records to reject, keys locked for a number of attempts, poison keys that
// make a whole batch fail, and retryable faults on the first requests. It
// records every request and keeps the accepted content, so tests of
// batching, backoff and split retries can count requests and re-sent records
// and assert what the destination finally holds. It is a test double, not a
// driver: it is never registered in destination.Default.
package scripted

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/spec"
)

// Rule programs one behaviour of a Destination; pass rules to New.
type Rule func(*Destination)

// Reject makes every send of key fail on its own with msg (a per-record,
// non-retryable result); the rest of the batch is accepted.
func Reject(key, msg string) Rule {
	return func(d *Destination) { d.reject[key] = msg }
}

// LockedFor makes the first n sends of key fail on their own as retryable
// ("record locked"); the n+1-th send is accepted. Only sends that reach
// per-record evaluation count: a request failed by a fault or a poison key
// does not.
func LockedFor(key string, n int) Rule {
	return func(d *Destination) { d.locked[key] = n }
}

// Poison makes any batch containing key fail as a whole with msg and
// nothing written, like a multi-row SQL statement that violates a
// constraint. When a batch holds several poison keys, the error is that of
// the first one in batch order.
func Poison(key, msg string) Rule {
	return func(d *Destination) { d.poison[key] = msg }
}

// FailFirst makes the first n requests fail whole as retryable, asking the
// caller to wait retryAfter (0: no advice), before any rule is looked at.
func FailFirst(n int, retryAfter time.Duration) Rule {
	return func(d *Destination) { d.failFirst, d.retryAfter = n, retryAfter }
}

// Seed puts records in the destination before the first request, as if
// accepted earlier.
func Seed(records map[string]map[string]any) Rule {
	return func(d *Destination) {
		for k, f := range records {
			d.content[k] = maps.Clone(f)
		}
	}
}

// Request is one Write the destination received.
type Request struct {
	Object  string
	Keys    []string // record keys, in batch order
	Outcome destination.Outcome
}

// Destination is the programmable destination. It is safe for concurrent
// use; all methods take its lock.
//
// Per record, in this order: a rejected key fails; a locked key fails as
// retryable while it has attempts left; otherwise the operation is applied
// to the content. Operations follow the SQL drivers' semantics: an insert of
// an existing key and an update of a missing key are per-record errors;
// deletes of missing keys succeed; a clear sets the batch's fields to nil.
type Destination struct {
	mu         sync.Mutex
	reject     map[string]string
	poison     map[string]string
	locked     map[string]int // remaining locked attempts
	failFirst  int
	retryAfter time.Duration
	content    map[string]map[string]any
	requests   []Request
	sends      map[string]int
	closed     bool
}

// New returns a destination programmed by rules; with none it accepts
// everything.
func New(rules ...Rule) *Destination {
	d := &Destination{
		reject:  map[string]string{},
		poison:  map[string]string{},
		locked:  map[string]int{},
		content: map[string]map[string]any{},
		sends:   map[string]int{},
	}
	for _, r := range rules {
		r(d)
	}
	return d
}

// Apply adds rules after creation, e.g. between two runs.
func (d *Destination) Apply(rules ...Rule) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range rules {
		r(d)
	}
}

// Heal removes every reject, poison and lock rule for key, as if the user
// fixed the record's data in the destination.
func (d *Destination) Heal(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.reject, key)
	delete(d.poison, key)
	delete(d.locked, key)
}

// Write implements destination.Destination.
func (d *Destination) Write(ctx context.Context, b *destination.Batch) destination.Outcome {
	d.mu.Lock()
	defer d.mu.Unlock()
	keys := make([]string, len(b.Records))
	for i, r := range b.Records {
		keys[i] = r.Key
		d.sends[r.Key]++
	}
	o := d.outcome(ctx, b)
	d.requests = append(d.requests, Request{Object: b.Object, Keys: keys, Outcome: o})
	return o
}

func (d *Destination) outcome(ctx context.Context, b *destination.Batch) destination.Outcome {
	if d.closed {
		return destination.RejectBatch(errors.New("scripted: destination is closed"))
	}
	if err := ctx.Err(); err != nil {
		return destination.Retry(err, 0)
	}
	if len(d.requests) < d.failFirst {
		return destination.Retry(errors.New("scripted: service unavailable"), d.retryAfter)
	}
	for _, r := range b.Records {
		if msg, ok := d.poison[r.Key]; ok {
			return destination.RejectBatch(errors.New(msg))
		}
	}
	results := make([]destination.Result, len(b.Records))
	for i, r := range b.Records {
		if msg, ok := d.reject[r.Key]; ok {
			results[i] = destination.Result{Err: errors.New(msg)}
			continue
		}
		if n := d.locked[r.Key]; n > 0 {
			d.locked[r.Key] = n - 1
			results[i] = destination.Result{Err: fmt.Errorf("record %s is locked", r.Key), Retryable: true}
			continue
		}
		results[i].Err = d.apply(b, r)
	}
	return destination.Outcome{Results: results}
}

// apply changes the content for one accepted record.
func (d *Destination) apply(b *destination.Batch, r destination.Record) error {
	_, exists := d.content[r.Key]
	switch r.Op {
	case destination.OpUpsert:
		d.content[r.Key] = r.FieldsOf(b)
	case destination.OpInsert:
		if exists {
			return fmt.Errorf("record with key %s already exists", r.Key)
		}
		d.content[r.Key] = r.FieldsOf(b)
	case destination.OpUpdate:
		if !exists {
			return fmt.Errorf("no record with key %s to update", r.Key)
		}
		d.content[r.Key] = r.FieldsOf(b)
	case destination.OpDelete:
		delete(d.content, r.Key)
	case destination.OpClear:
		if exists {
			for _, f := range b.Fields {
				d.content[r.Key][f] = nil
			}
		}
	default:
		return fmt.Errorf("record %q: unknown operation %q", r.Key, r.Op)
	}
	return nil
}

// Close marks the destination closed; writes before the next open through
// Factory are rejected whole.
func (d *Destination) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	return nil
}

// Requests returns a copy of every request received, in order.
func (d *Destination) Requests() []Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Request, len(d.requests))
	for i, r := range d.requests {
		r.Keys = append([]string(nil), r.Keys...)
		out[i] = r
	}
	return out
}

// RequestCount is how many Write calls were made.
func (d *Destination) RequestCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.requests)
}

// Sends is how many times key was sent, in any request, whatever the outcome.
func (d *Destination) Sends(key string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sends[key]
}

// Resent is how many record sends repeated a key already sent before:
// total sends minus distinct keys.
func (d *Destination) Resent() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, c := range d.sends {
		n += c - 1
	}
	return n
}

// Content returns a deep-enough copy of the accepted records: key → fields
// as last written (deletes removed, clears nil-ed).
func (d *Destination) Content() map[string]map[string]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]map[string]any, len(d.content))
	for k, f := range d.content {
		out[k] = maps.Clone(f)
	}
	return out
}

// Keys returns the keys of the accepted records, sorted.
func (d *Destination) Keys() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.content))
	for k := range d.content {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Type is the destination type the double registers under.
const Type = "scripted"

// Driver returns a driver of type "scripted" that always opens d
// (reopening it if closed), so a test can register it in a fresh
// destination.Registry and configure it with `type = "scripted"`.
// Requests and content survive reopening, like a real destination's data.
// It takes one optional argument, `label`, ignored: configs of real
// destinations carry some arguments too.
func (d *Destination) Driver() destination.Driver {
	return destination.Driver{
		Type: spec.Type{Name: Type, Doc: "A programmable destination for tests.", Spec: spec.Spec{Args: []spec.Arg{
			{Name: "label", Kind: spec.String, Doc: "Ignored.", Example: `label = "crm"`},
		}}},
		Open: func(context.Context, destination.Config) (destination.Destination, error) {
			d.mu.Lock()
			defer d.mu.Unlock()
			d.closed = false
			return d, nil
		},
	}
}
