package main

import (
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/reconcile"
)

// benchPlan is a plan of one sync with n changes of five mapped fields:
// four in five adds, the rest changes with their values before.
func benchPlan(n int) *reconcile.Plan {
	sp := &reconcile.SyncPlan{
		Name: "users", Model: "users", Destination: "crm", Object: "contacts", KeyField: "id",
		Fields: []string{"email", "name", "plan", "score", "active"}, Mode: "upsert",
		DeleteBehavior: "delete", Excluded: map[string]int{},
	}
	for i := range n {
		after := map[string]any{"id": int64(i), "email": fmt.Sprintf("user%d@example.com", i),
			"name": fmt.Sprintf("User \"%d\" <b>", i), "plan": "pro", "score": float64(i) / 7, "active": i%2 == 0}
		c := reconcile.Change{Action: reconcile.ActionAdd, Key: fmt.Sprint(i), Op: destination.OpUpsert,
			KeyValue: int64(i), After: after, Hash: uint64(i) * 0x9e3779b97f4a7c15}
		if i%5 == 4 {
			c.Action = reconcile.ActionChange
			c.Before = map[string]any{"email": after["email"], "name": after["name"], "plan": "free", "score": nil, "active": true}
			sp.Change++
		} else {
			sp.Add++
		}
		sp.Changes = append(sp.Changes, c)
	}
	sp.Rows = n
	return &reconcile.Plan{FormatVersion: reconcile.FormatVersion, Lineage: "l", Serial: 1, ConfigHash: "h", Syncs: []*reconcile.SyncPlan{sp}}
}

// BenchmarkPlanJSON measures plan --json's printing per change, of a plan
// held in memory and of one spilled to its file (read back from a saved
// plan, as show --json reads it).
func BenchmarkPlanJSON(b *testing.B) {
	const n = 20000
	plain := func(p *reconcile.Plan) any { return p }
	run := func(b *testing.B, plan *reconcile.Plan) {
		b.ReportAllocs()
		for b.Loop() {
			if err := printPlanJSON(io.Discard, plan, plain); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/change")
	}
	b.Run("memory", func(b *testing.B) { run(b, benchPlan(n)) })
	b.Run("spilled", func(b *testing.B) {
		file := filepath.Join(b.TempDir(), "p.plan")
		if err := benchPlan(n).WriteFile(file); err != nil {
			b.Fatal(err)
		}
		old := reconcile.SpillAfter
		reconcile.SpillAfter = 100
		defer func() { reconcile.SpillAfter = old }()
		plan, err := reconcile.ReadFile(file)
		if err != nil {
			b.Fatal(err)
		}
		defer plan.Close()
		if !plan.Syncs[0].Spilled() {
			b.Fatal("the plan read back is not spilled")
		}
		run(b, plan)
	})
}
