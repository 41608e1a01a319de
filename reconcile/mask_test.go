package reconcile

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/destination"
)

func maskPlan(sensitive []string, redact bool) *Plan {
	sp := &SyncPlan{
		Name: "users", Model: "users", Destination: "crm", Object: "contacts", KeyField: "id",
		Fields: []string{"email", "id", "plan"}, Mode: "upsert", DeleteBehavior: "delete",
		SensitiveFields: sensitive, RedactValues: redact, Excluded: map[string]int{},
		Changes: []Change{
			{Action: ActionRemove, Key: "9", Op: destination.OpDelete, Before: map[string]any{"email": "gone@secret.example", "id": int64(9), "plan": "free"}},
			{Action: ActionRetry, Key: "13", Op: destination.OpUpsert, Attempts: 2,
				LastError: `duplicate value "r@secret.example" for email`,
				After:     map[string]any{"email": "r@secret.example", "id": int64(13), "plan": "pro"}},
			{Action: ActionChange, Key: "7", Op: destination.OpUpsert,
				Before: map[string]any{"email": "old@secret.example", "id": int64(7), "plan": "free"},
				After:  map[string]any{"email": "new@secret.example", "id": int64(7), "plan": "pro"}},
			{Action: ActionChange, Key: "8", Op: destination.OpUpsert,
				Before: map[string]any{"email": "same@secret.example", "id": int64(8), "plan": "free"},
				After:  map[string]any{"email": "same@secret.example", "id": int64(8), "plan": "pro"}},
			{Action: ActionAdd, Key: "1", Op: destination.OpUpsert, After: map[string]any{"email": "a@secret.example", "id": int64(1), "plan": "free"}},
		},
	}
	sp.Add, sp.Change, sp.Remove, sp.Retry = 1, 2, 1, 1
	return &Plan{FormatVersion: FormatVersion, Syncs: []*SyncPlan{sp}}
}

// TestMaskedHidesSensitiveValuesInEveryRendering renders a plan with a
// sensitive field as text, markdown and JSON: no value of the field
// appears, not even in a retry's last error, the key and other fields do,
// and a changed sensitive field still shows as changed. The plan itself
// keeps its values (apply sends them).
func TestMaskedHidesSensitiveValuesInEveryRendering(t *testing.T) {
	plan := maskPlan([]string{"email"}, false)
	masked := plan.Masked()
	var text, md bytes.Buffer
	masked.Render(&text, RenderOptions{})
	masked.RenderMarkdown(&md, RenderOptions{})
	js, err := json.Marshal(masked)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"text": text.String(), "markdown": md.String(), "json": string(js)} {
		if strings.Contains(out, "secret.example") {
			t.Errorf("%s shows a sensitive value:\n%s", name, out)
		}
		if !strings.Contains(out, "pro") || !strings.Contains(out, "(sensitive)") {
			t.Errorf("%s lacks the other fields' values or the mask:\n%s", name, out)
		}
	}
	for _, want := range []string{
		"email: (sensitive) -> (sensitive, changed)", // key 7: which field changed is still said
		`plan: "free" -> "pro"`,
		`+ "1" { email = (sensitive), id = 1, plan = "free" }`,
		`last error: duplicate value "(sensitive)" for email`,
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	// Key 8's email did not change: no line for it.
	if i := strings.Index(text.String(), `~ "8"`); i < 0 || strings.Contains(text.String()[i:], "email: (sensitive) -> (sensitive)\n") {
		t.Errorf("an unchanged sensitive field is shown as changed:\n%s", text.String())
	}
	if got := plan.Syncs[0].Changes[2].After["email"]; got != "new@secret.example" {
		t.Errorf("Masked changed the plan itself: %v", got)
	}
}

// TestRedactValuesMasksEveryFieldButTheKey: with redact_values every
// mapped value is masked, the key field's is not.
func TestRedactValuesMasksEveryFieldButTheKey(t *testing.T) {
	var text bytes.Buffer
	maskPlan(nil, true).Masked().Render(&text, RenderOptions{})
	out := text.String()
	if strings.Contains(out, "secret.example") || strings.Contains(out, `"pro"`) || strings.Contains(out, `"free"`) {
		t.Errorf("redact_values leaves values:\n%s", out)
	}
	if !strings.Contains(out, `+ "1" { email = (sensitive), id = 1, plan = (sensitive) }`) {
		t.Errorf("key field masked or line missing:\n%s", out)
	}
	// Without either option nothing is masked.
	text.Reset()
	maskPlan(nil, false).Masked().Render(&text, RenderOptions{})
	if strings.Contains(text.String(), "(sensitive)") || !strings.Contains(text.String(), "a@secret.example") {
		t.Errorf("masked without options:\n%s", text.String())
	}
}

// TestMaskedHidesKeptValues: a failure entry kept synced (KeepSynced,
// mode insert) carries the snapshot's values and the last error, which
// plan --json and show --json print: masked as a change's are.
func TestMaskedHidesKeptValues(t *testing.T) {
	plan := maskPlan([]string{"email"}, false)
	sp := plan.Syncs[0]
	sp.KeepSynced = []Change{{Key: "5", Hash: 1, Attempts: 1,
		LastError: `duplicate value "k@secret.example" for email`,
		Before:    map[string]any{"email": "k@secret.example", "id": int64(5), "plan": "pro"}}}
	js, err := json.Marshal(plan.Masked())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(js), "secret.example") || !strings.Contains(string(js), `"keep_synced"`) {
		t.Errorf("JSON shows a kept record's sensitive value, or no kept record:\n%s", js)
	}
	if got := sp.KeepSynced[0].Before["email"]; got != "k@secret.example" {
		t.Errorf("Masked changed the plan itself: %v", got)
	}
}
