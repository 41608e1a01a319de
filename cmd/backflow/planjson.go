package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/backflowhq/backflow/reconcile"
)

// printPlanJSON prints wrap(plan) as printJSON does, streaming the changes
// of spilled syncs from their files one at a time: a spilled plan holds no
// changes in memory, so marshalling it whole would print none, and
// gathering them first would hold them all. Plans with nothing spilled
// print as printJSON prints them.
func printPlanJSON(w io.Writer, plan *reconcile.Plan, wrap func(*reconcile.Plan) any) error {
	spilled := false
	for _, sp := range plan.Syncs {
		spilled = spilled || sp.Spilled()
	}
	if !spilled {
		return printJSON(w, wrap(plan))
	}
	head := *plan
	head.Syncs = nil
	top, err := indentJSON(wrap(&head), "")
	if err != nil {
		return err
	}
	before, after, err := splitAt(top, "\n  \"syncs\": null")
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	bw.Write(before)
	bw.WriteString("\n  \"syncs\": [")
	for i, sp := range plan.Syncs {
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString("\n    ")
		if err := writeSyncJSON(bw, sp); err != nil {
			return err
		}
	}
	bw.WriteString("\n  ]")
	bw.Write(after)
	bw.WriteByte('\n')
	return bw.Flush()
}

// writeSyncJSON writes one sync's plan at the indentation of an element of
// the plan's "syncs".
func writeSyncJSON(w *bufio.Writer, sp *reconcile.SyncPlan) error {
	const prefix = "    "
	if !sp.Spilled() {
		b, err := indentJSON(sp, prefix)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	head := *sp
	head.Changes = nil
	b, err := indentJSON(&head, prefix)
	if err != nil {
		return err
	}
	before, after, err := splitAt(b, "\n"+prefix+"  \"changes\": null")
	if err != nil {
		return err
	}
	w.Write(before)
	w.WriteString("\n" + prefix + "  \"changes\": [")
	n := 0
	err = sp.Each(func(c *reconcile.Change) error {
		cb, err := indentJSON(c, prefix+"    ")
		if err != nil {
			return err
		}
		if n > 0 {
			w.WriteByte(',')
		}
		n++
		w.WriteString("\n" + prefix + "    ")
		_, err = w.Write(cb)
		return err
	})
	if err != nil {
		return fmt.Errorf("sync %q: reading its planned changes: %w", sp.Name, err)
	}
	if n > 0 {
		w.WriteString("\n" + prefix + "  ")
	}
	w.WriteByte(']')
	_, err = w.Write(after)
	return err
}

// indentJSON is v as printJSON writes it, each line after the first
// starting with prefix, without the final newline.
func indentJSON(v any, prefix string) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent(prefix, "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// splitAt cuts b around its one occurrence of marker.
func splitAt(b []byte, marker string) ([]byte, []byte, error) {
	i := bytes.Index(b, []byte(marker))
	if i < 0 || bytes.Contains(b[i+len(marker):], []byte(marker)) {
		return nil, nil, fmt.Errorf("printing the plan as JSON: %q not found once", marker)
	}
	return b[:i], b[i+len(marker):], nil
}
