package scripted_test

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/destination/scripted"
)

func upserts(keys ...string) *destination.Batch {
	b := &destination.Batch{Object: "contacts", KeyField: "id", Fields: []string{"email"}}
	for _, k := range keys {
		b.Records = append(b.Records, destination.Record{Key: k, Op: destination.OpUpsert, Fields: map[string]any{"email": k + "@x"}})
	}
	return b
}

// summary renders an outcome compactly: "retry(1s): msg", "batch: msg" or
// one entry per record ("ok", "err: msg", "retry: msg").
func summary(o destination.Outcome) any {
	if o.Err != nil {
		if o.Retryable {
			return fmt.Sprintf("retry(%v): %v", o.RetryAfter, o.Err)
		}
		return "batch: " + o.Err.Error()
	}
	out := make([]string, len(o.Results))
	for i, r := range o.Results {
		switch {
		case r.Err == nil:
			out[i] = "ok"
		case r.Retryable:
			out[i] = "retry: " + r.Err.Error()
		default:
			out[i] = "err: " + r.Err.Error()
		}
	}
	return out
}

func TestScripted(t *testing.T) {
	tests := []struct {
		name      string
		rules     []scripted.Rule
		batches   [][]string
		want      []any // summary per request
		wantKeys  []string
		wantSends map[string]int
	}{
		{
			name:     "accepts everything by default",
			batches:  [][]string{{"1", "2"}},
			want:     []any{[]string{"ok", "ok"}},
			wantKeys: []string{"1", "2"},
		},
		{
			name:     "reject is per record",
			rules:    []scripted.Rule{scripted.Reject("2", "email is invalid")},
			batches:  [][]string{{"1", "2", "3"}, {"2"}},
			want:     []any{[]string{"ok", "err: email is invalid", "ok"}, []string{"err: email is invalid"}},
			wantKeys: []string{"1", "3"},
		},
		{
			name:      "locked for two attempts then accepted",
			rules:     []scripted.Rule{scripted.LockedFor("2", 2)},
			batches:   [][]string{{"1", "2"}, {"2"}, {"2"}},
			want:      []any{[]string{"ok", "retry: record 2 is locked"}, []string{"retry: record 2 is locked"}, []string{"ok"}},
			wantKeys:  []string{"1", "2"},
			wantSends: map[string]int{"1": 1, "2": 3},
		},
		{
			name:     "poison rejects the whole batch, first poison wins",
			rules:    []scripted.Rule{scripted.Poison("3", "CHECK constraint failed: 3"), scripted.Poison("4", "CHECK constraint failed: 4")},
			batches:  [][]string{{"1", "4", "3"}, {"1", "2"}, {"3"}},
			want:     []any{"batch: CHECK constraint failed: 4", []string{"ok", "ok"}, "batch: CHECK constraint failed: 3"},
			wantKeys: []string{"1", "2"},
		},
		{
			name:     "fault injection on the first requests, before rules",
			rules:    []scripted.Rule{scripted.FailFirst(2, time.Second), scripted.LockedFor("1", 1)},
			batches:  [][]string{{"1"}, {"1"}, {"1"}, {"1"}},
			want:     []any{"retry(1s): scripted: service unavailable", "retry(1s): scripted: service unavailable", []string{"retry: record 1 is locked"}, []string{"ok"}},
			wantKeys: []string{"1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := scripted.New(tt.rules...)
			var got []any
			for _, keys := range tt.batches {
				got = append(got, summary(d.Write(context.Background(), upserts(keys...))))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("outcomes:\n got %v\nwant %v", got, tt.want)
			}
			if d.RequestCount() != len(tt.batches) {
				t.Fatalf("RequestCount = %d, want %d", d.RequestCount(), len(tt.batches))
			}
			if !reflect.DeepEqual(d.Keys(), tt.wantKeys) {
				t.Fatalf("content keys = %v, want %v", d.Keys(), tt.wantKeys)
			}
			for k, n := range tt.wantSends {
				if d.Sends(k) != n {
					t.Fatalf("Sends(%q) = %d, want %d", k, d.Sends(k), n)
				}
			}
			reqs := d.Requests()
			for i, r := range reqs {
				if !reflect.DeepEqual(r.Keys, tt.batches[i]) || !reflect.DeepEqual(summary(r.Outcome), tt.want[i]) {
					t.Fatalf("request %d recorded as %v %v", i, r.Keys, summary(r.Outcome))
				}
			}
		})
	}
}

func TestScriptedContentAndOperations(t *testing.T) {
	ctx := context.Background()
	d := scripted.New(scripted.Seed(map[string]map[string]any{"9": {"email": "old@x", "name": "Old"}}))
	b := &destination.Batch{Object: "contacts", KeyField: "id", Fields: []string{"email", "name"}, Records: []destination.Record{
		{Key: "1", Op: destination.OpInsert, Fields: map[string]any{"email": "a@x", "name": "A"}},
		{Key: "9", Op: destination.OpInsert, Fields: map[string]any{"email": "dup@x"}},
		{Key: "2", Op: destination.OpUpdate, Fields: map[string]any{"email": "b@x"}},
		{Key: "9", Op: destination.OpClear},
		{Key: "5", Op: destination.OpDelete},
	}}
	got := summary(d.Write(ctx, b))
	want := []string{"ok", "err: record with key 9 already exists", "err: no record with key 2 to update", "ok", "ok"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	wantContent := map[string]map[string]any{"1": {"email": "a@x", "name": "A"}, "9": {"email": nil, "name": nil}}
	if c := d.Content(); !reflect.DeepEqual(c, wantContent) {
		t.Fatalf("content %v, want %v", c, wantContent)
	}
	d.Write(ctx, &destination.Batch{Object: "contacts", KeyField: "id", Records: []destination.Record{{Key: "9", Op: destination.OpDelete}, {Key: "1", Op: destination.OpDelete}}})
	if len(d.Keys()) != 0 {
		t.Fatalf("deletes should empty the content: %v", d.Keys())
	}
	if d.Resent() != 3 { // key 9 sent three times, key 1 twice: 2 + 1 repeats
		t.Fatalf("Resent = %d, want 3", d.Resent())
	}
}

func TestScriptedHealApplyAndRegistry(t *testing.T) {
	ctx := context.Background()
	d := scripted.New(scripted.Poison("2", "bad"))
	reg := destination.NewRegistry()
	reg.Register(d.Driver())
	dst, err := reg.Open(ctx, scripted.Type, destination.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if o := dst.Write(ctx, upserts("1", "2")); o.Err == nil {
		t.Fatalf("poisoned batch accepted: %+v", o)
	}
	d.Heal("2")
	d.Apply(scripted.Reject("1", "nope"))
	if got := summary(dst.Write(ctx, upserts("1", "2"))); !reflect.DeepEqual(got, []string{"err: nope", "ok"}) {
		t.Fatalf("after heal/apply: %v", got)
	}
	dst.Close()
	if o := dst.Write(ctx, upserts("3")); o.Err == nil {
		t.Fatal("write after close should fail")
	}
	if _, err := reg.Open(ctx, scripted.Type, destination.Config{}); err != nil {
		t.Fatal(err)
	}
	if o := dst.Write(ctx, upserts("3")); o.Err != nil {
		t.Fatalf("reopened destination should accept: %v", o.Err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if o := dst.Write(cctx, upserts("4")); o.Err == nil || !o.Retryable {
		t.Fatalf("cancelled context should be retryable: %+v", o)
	}
}

func TestScriptedConcurrentUse(t *testing.T) {
	d := scripted.New()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				d.Write(context.Background(), upserts(fmt.Sprintf("%d-%d", g, i)))
				_ = d.Content()
			}
		}()
	}
	wg.Wait()
	if d.RequestCount() != 400 || len(d.Keys()) != 400 {
		t.Fatalf("requests %d, keys %d, want 400 each", d.RequestCount(), len(d.Keys()))
	}
}
