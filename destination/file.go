package destination

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// File is the `file` driver: every record of every batch is appended to a
// file as one JSON object per line. It never rejects a record it can
// encode, which makes it the destination for debugging and tests.
//
// Invariant: a Write that reports success has appended and fsynced all its
// lines; on a retryable failure the file may hold a partial batch, which a
// retry appends again (the log is not deduplicated).
type File struct {
	f    *os.File
	path string // Config.Path as the user wrote it, for messages
	// scrub masks secrets in errors: the path may come from env().
	scrub func(error) error
}

// fileLine is one line of the file.
type fileLine struct {
	Object    string         `json:"object"`
	Key       string         `json:"key"`
	Operation Operation      `json:"operation"`
	Fields    map[string]any `json:"fields,omitempty"`
}

// OpenFile opens (creating if needed) cfg.Path, relative to cfg.Dir unless
// absolute, for appending.
func OpenFile(_ context.Context, cfg Config) (Destination, error) {
	path := cfg.Args.String("path")
	if path == "" {
		return nil, fmt.Errorf("destination %q: file needs a path", cfg.Name)
	}
	p := path
	if !filepath.IsAbs(p) && cfg.Dir != "" {
		p = filepath.Join(cfg.Dir, p)
	}
	if cfg.ReadOnly {
		// Nothing to inspect in a file of lines; never create it.
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("destination %q: file %s %w; apply creates it", cfg.Name, path, ErrNotCreated)
		}
		return &File{path: path, scrub: scrubber(cfg.Redact)}, nil
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("destination %q: %w", cfg.Name, err)
	}
	return &File{f: f, path: path, scrub: scrubber(cfg.Redact)}, nil
}

// Write appends one line per record. A record whose fields cannot be
// encoded as JSON (NaN, a channel) is rejected on its own; the others are
// written. A failed write or fsync makes the batch retryable.
func (d *File) Write(ctx context.Context, b *Batch) Outcome {
	if err := ctx.Err(); err != nil {
		return Retry(err, 0)
	}
	if d.f == nil {
		return Fatal(d.scrub(fmt.Errorf("file %s was opened read-only", d.path)))
	}
	results := make([]Result, len(b.Records))
	var buf bytes.Buffer
	for i, r := range b.Records {
		fields := r.FieldsOf(b)
		if err := notUTF8(r.Key, fields, r.Op == OpDelete || r.Op == OpClear); err != nil {
			results[i] = Result{Err: fmt.Errorf("record %q: %w", r.Key, err)}
			continue
		}
		line, err := json.Marshal(fileLine{Object: b.Object, Key: r.Key, Operation: r.Op, Fields: fields})
		if err != nil {
			if name, ferr := nonFiniteField(fields); ferr != nil {
				err = fmt.Errorf("field %q: %w", name, ferr)
			}
			results[i] = Result{Err: fmt.Errorf("record %q: encode as JSON: %w", r.Key, err)}
			continue
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	if _, err := d.f.Write(buf.Bytes()); err != nil {
		return Retry(d.scrub(fmt.Errorf("append to %s: %w", d.path, err)), 0)
	}
	if err := d.f.Sync(); err != nil {
		return Retry(d.scrub(fmt.Errorf("sync %s: %w", d.path, err)), 0)
	}
	return Outcome{Results: results}
}

// Close closes the file.
func (d *File) Close() error {
	if d.f == nil {
		return nil
	}
	return d.f.Close()
}
