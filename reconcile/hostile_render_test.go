package reconcile

import (
	"bytes"
	"strings"
	"testing"

	"github.com/backflowhq/backflow/destination"
)

// hostilePlan holds names from a pull request's config and notes that
// carry terminal escapes, line breaks and markdown: the object, a mapped
// field, an exclude rule's name, a note naming a destination path and a
// retried record's error.
func hostilePlan() *Plan {
	const evil = "\x1b[2J\x1b]0;pwned\a`</details>\n# Forged heading |\u202e"
	sp := &SyncPlan{
		Name: "s", Model: "m", Destination: "d", Object: "contacts" + evil, KeyField: "id",
		Fields: []string{"email" + evil}, Mode: "upsert", DeleteBehavior: "delete", Rows: 2,
		Excluded: map[string]int{"rule" + evil: 1},
		Notes:    []string{"file out" + evil + ".jsonl does not exist yet"},
		Changes: []Change{
			{Action: ActionAdd, Key: "1", Op: destination.OpUpsert, After: map[string]any{"email" + evil: "a@x"}},
			{Action: ActionChange, Key: "2", Op: destination.OpUpsert,
				Before: map[string]any{"email" + evil: "b@x"}, After: map[string]any{"email" + evil: "c@x"}},
			{Action: ActionRetry, Key: "3", Op: destination.OpUpsert, LastError: "refused" + evil, Attempts: 1,
				After: map[string]any{"email" + evil: "d@x"}},
		},
	}
	sp.Add, sp.Change, sp.Retry = 1, 1, 1
	return &Plan{FormatVersion: FormatVersion, Syncs: []*SyncPlan{sp}}
}

// TestRenderEscapesHostileNames checks that no name or note in a plan can
// send control characters to a terminal, forge a line of the text plan, or
// start a heading or leave a table in the markdown posted to a pull request.
func TestRenderEscapesHostileNames(t *testing.T) {
	var text, md bytes.Buffer
	hostilePlan().Render(&text, RenderOptions{})
	hostilePlan().RenderMarkdown(&md, RenderOptions{})
	for name, out := range map[string]string{"text": text.String(), "markdown": md.String()} {
		if i := strings.IndexFunc(out, func(r rune) bool {
			return (r < ' ' && r != '\n') || r == 0x7f || r == '\u202e'
		}); i >= 0 {
			t.Errorf("%s plan holds control character %q:\n%s", name, out[i], out)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(strings.TrimLeft(line, " >"), "# Forged") {
				t.Errorf("%s plan has a line forged by a name: %q", name, line)
			}
		}
		if !strings.Contains(out, `\x1b[2J`) || !strings.Contains(out, `\n# Forged heading`) {
			t.Errorf("%s plan does not show the escaped characters:\n%s", name, out)
		}
	}
}
