package reconcile_test

import (
	"os"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/reconcile"
)

func ExamplePlan_Render() {
	plan := &reconcile.Plan{FormatVersion: reconcile.FormatVersion, Syncs: []*reconcile.SyncPlan{{
		Name: "users_to_crm", Model: "active_users", Destination: "crm", Object: "contacts", KeyField: "external_id",
		Fields: []string{"email"}, Mode: "upsert", DeleteBehavior: "delete", Rows: 3, Unchanged: 1,
		Excluded: map[string]int{"missing_email": 1},
		Add:      1, Change: 1,
		Changes: []reconcile.Change{
			{Action: reconcile.ActionChange, Key: "7", Op: destination.OpUpsert,
				Before: map[string]any{"email": "old@example.com"}, After: map[string]any{"email": "new@example.com"}},
			{Action: reconcile.ActionAdd, Key: "8", Op: destination.OpUpsert, After: map[string]any{"email": "ann@example.com"}},
		},
	}}}
	plan.Render(os.Stdout, reconcile.RenderOptions{})
	// Output:
	// sync "users_to_crm": model.active_users → destination.crm (contacts)
	//   mode upsert, delete_behavior delete; 3 rows in model, 1 unchanged
	//   + 1 to add, ~ 1 to change, - 0 to remove, ↻ 0 to retry
	//   excluded: missing_email 1
	//
	//   ~ "7"
	//       email: "old@example.com" -> "new@example.com"
	//   + "8" { email = "ann@example.com" }
	//
	// Plan: 1 to add, 1 to change, 0 to remove, 0 to retry.
}
