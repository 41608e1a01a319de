package reconcile

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/destination"
)

var update = flag.Bool("update", false, "rewrite golden files")

func renderPlan() *Plan {
	long := "The quick brown fox jumps over the lazy dog, then naps in the afternoon sun."
	sp := &SyncPlan{
		Name: "users_to_crm", Model: "active_users", Destination: "crm", Object: "contacts", KeyField: "external_id",
		Fields: []string{"bio", "email"}, Mode: "upsert", DeleteBehavior: "delete", Rows: 20, Unchanged: 4,
		Excluded: map[string]int{"missing_email": 3, ReasonNullKey: 1},
		Changes: []Change{
			{Action: ActionRemove, Key: "9", Op: destination.OpDelete, Before: map[string]any{"bio": nil, "email": "gone@x"}},
			{Action: ActionRetry, Key: "13", Op: destination.OpUpsert, LastError: "CHECK constraint failed: score >= 0", Attempts: 3,
				After: map[string]any{"bio": nil, "email": "r@x"}},
			{Action: ActionChange, Key: "7", Op: destination.OpUpsert,
				Before: map[string]any{"bio": long, "email": "a@x"},
				After:  map[string]any{"bio": strings.Replace(long, "lazy", "sleepy", 1), "email": "b@x"}},
		},
		DropFailures: []string{"21"},
	}
	for i := 0; i < 12; i++ {
		sp.Changes = append(sp.Changes, Change{Action: ActionAdd, Key: string(rune('a' + i)), Op: destination.OpUpsert, After: map[string]any{"bio": nil, "email": int64(i)}})
	}
	sp.Add, sp.Change, sp.Remove, sp.Retry = 12, 1, 1, 1
	return &Plan{FormatVersion: FormatVersion, Syncs: []*SyncPlan{sp}}
}

func TestRenderGolden(t *testing.T) {
	var b bytes.Buffer
	renderPlan().Render(&b, RenderOptions{})
	golden := "testdata/plan.golden"
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Fatalf("rendered plan differs from %s (go test -run Golden -update to accept):\n%s", golden, b.String())
	}
	if strings.Contains(b.String(), "\x1b[") {
		t.Fatal("colour codes without Color")
	}
	var c bytes.Buffer
	renderPlan().Render(&c, RenderOptions{Color: true})
	if !strings.Contains(c.String(), ansiGreen+"  + \"a\"") {
		t.Fatal("no colour with Color")
	}
}

func TestRenderNoChanges(t *testing.T) {
	var b bytes.Buffer
	(&Plan{Syncs: []*SyncPlan{{Name: "s", Excluded: map[string]int{}}}}).Render(&b, RenderOptions{})
	if !strings.Contains(b.String(), "No changes.") || strings.Contains(b.String(), "Plan:") {
		t.Fatalf("output %q", b.String())
	}
}

func TestTextDiffIsWordLevelAndSurvivesLargeVocabularies(t *testing.T) {
	if got := textDiff("one two three", "one 2 three"); got != `"one [-two-]{+2+} three"` {
		t.Fatalf("diff %s", got)
	}
	var a, b strings.Builder
	for i := 0; i < 60000; i++ {
		fmt.Fprintf(&a, "w%d ", i)
		if i == 59999 {
			b.WriteString("last ")
		} else {
			fmt.Fprintf(&b, "w%d ", i)
		}
	}
	if got := textDiff(a.String(), b.String()); !strings.HasSuffix(got, `[-w59999-]{+last+} "`) {
		t.Fatalf("diff ends %q", got[max(0, len(got)-40):])
	}
}

// TestRenderMarkdownGolden: the plan's markdown (a summary table, a
// collapsible section per sync, record lists capped with counts right after
// their action, long values cut around their change) against
// testdata/plan.md.golden.
func TestRenderMarkdownGolden(t *testing.T) {
	p := renderPlan()
	sp := p.Syncs[0]
	sp.Changes = append(sp.Changes, Change{Action: ActionChange, Key: "8", Op: destination.OpUpsert,
		Before: map[string]any{"bio": strings.Repeat("word ", 40) + "end", "email": "c@x"},
		After:  map[string]any{"bio": strings.Repeat("word ", 40) + "finish", "email": "c@x"}})
	sortChanges(sp.Changes)
	sp.Change++
	sp.Notes = []string{"destination \"crm\" <new>: apply creates it"}
	var b bytes.Buffer
	p.RenderMarkdownWith(&b, MarkdownOptions{Limit: 5, MaxValue: 40})
	golden := "testdata/plan.md.golden"
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Fatalf("markdown differs from %s (go test -run MarkdownGolden -update to accept):\n%s", golden, b.String())
	}
	for _, want := range []string{"+ … and 7 more to add\n", `"…word word word word word word word word word word word word [-end-]{+finish+}"`, "&lt;new&gt;"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
}

func TestCodeFenceOutlastsBackticks(t *testing.T) {
	if f := CodeFence("a ``` b ```` c"); f != "`````" {
		t.Fatalf("fence %q", f)
	}
	if f := CodeFence("plain"); f != "```" {
		t.Fatalf("fence %q", f)
	}
}
