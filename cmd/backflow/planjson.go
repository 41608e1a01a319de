package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/backflowhq/backflow/reconcile"
)

// printPlanJSON prints wrap(plan) as printJSON would, writing each sync's
// changes one at a time: those of a spilled sync streamed from its file
// (marshalling the plan whole would print none, and gathering them first
// would hold them all), those held in memory in their order. A change is
// encoded as plain data, its NaN and infinite floats written as strings
// (reconcile.FiniteJSON): a MarshalJSON method on Change would have
// encoding/json check and re-indent each change's output again.
func printPlanJSON(w io.Writer, plan *reconcile.Plan, wrap func(*reconcile.Plan) any) error {
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
	if len(plan.Syncs) > 0 {
		bw.WriteString("\n  ")
	}
	bw.WriteByte(']')
	bw.Write(after)
	bw.WriteByte('\n')
	return bw.Flush()
}

// changeJSON is a Change as plan --json writes it: its fields, without
// the methods of Change, and its key's bytes when they are not UTF-8
// (keyBytes).
type changeJSON struct {
	changeFields
	KeyBytes []byte `json:"key_bytes,omitempty"`
}

type changeFields reconcile.Change

// keyBytes is key's bytes when JSON cannot carry them as a string: a
// string's invalid UTF-8 is written as U+FFFD, and k\xff and k\xfe would
// read as one key. Such a key comes with key_bytes (base64) beside it.
func keyBytes(key string) []byte {
	if utf8.ValidString(key) {
		return nil
	}
	return []byte(key)
}

// writeSyncJSON writes one sync's plan at the indentation of an element of
// the plan's "syncs".
func writeSyncJSON(w *bufio.Writer, sp *reconcile.SyncPlan) error {
	const prefix = "    "
	head := *sp
	head.Changes = nil
	if len(sp.KeepSynced) > 0 {
		head.KeepSynced = make([]reconcile.Change, len(sp.KeepSynced))
		for i, c := range sp.KeepSynced {
			head.KeepSynced[i] = finiteChange(&c)
		}
	}
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
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent(prefix+"    ", "  ")
	enc.SetEscapeHTML(false)
	n := 0
	cj := new(changeJSON) // one for every change: Encode takes it boxed
	write := func(c *reconcile.Change) error {
		buf.Reset()
		*cj = changeJSON{changeFields: changeFields(finiteChange(c)), KeyBytes: keyBytes(c.Key)}
		if err := enc.Encode(cj); err != nil {
			return err
		}
		if n > 0 {
			w.WriteByte(',')
		}
		n++
		w.WriteString("\n" + prefix + "    ")
		_, err := w.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
		return err
	}
	if sp.Spilled() {
		err = sp.Each(write)
	} else {
		// In the order the plan holds them, as encoding the plan whole
		// lists them. An unspilled sync has no view (Masked masks its
		// changes in place) for Each to apply.
		for i := range sp.Changes {
			if err = write(&sp.Changes[i]); err != nil {
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("sync %q: printing its planned changes: %w", sp.Name, err)
	}
	if n > 0 {
		w.WriteString("\n" + prefix + "  ")
	}
	w.WriteByte(']')
	_, err = w.Write(after)
	return err
}

// finiteChange is *c with its NaN and infinite float values written as
// strings (reconcile.FiniteJSON): JSON has no such numbers.
func finiteChange(c *reconcile.Change) reconcile.Change {
	out := *c
	out.KeyValue = reconcile.FiniteJSON(c.KeyValue)
	out.Before, out.After = reconcile.FiniteJSONMap(c.Before), reconcile.FiniteJSONMap(c.After)
	return out
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
