package config

import (
	"io"

	"github.com/hashicorp/hcl/v2"
)

// WriteDiagnostics renders diagnostics as text with source snippets taken
// from files (Config.Files), wrapped at width columns (0: no wrapping).
func WriteDiagnostics(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics, color bool, width uint) error {
	return hcl.NewDiagnosticTextWriter(w, files, width, color).WriteDiagnostics(diags)
}

// JSONDiagnostic is one diagnostic in machine-readable form, shaped like
// the entries of Terraform's `validate -json`.
type JSONDiagnostic struct {
	Severity string       `json:"severity"` // "error" | "warning"
	Summary  string       `json:"summary"`
	Detail   string       `json:"detail,omitempty"`
	Range    *JSONRange   `json:"range,omitempty"`
	Snippet  *JSONSnippet `json:"snippet,omitempty"`
}

// JSONRange is a source range; lines and columns count from 1, bytes from 0.
type JSONRange struct {
	Filename string  `json:"filename"`
	Start    JSONPos `json:"start"`
	End      JSONPos `json:"end"`
}

// JSONPos is a position in a file.
type JSONPos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
	Byte   int `json:"byte"`
}

// JSONSnippet is the source text around a diagnostic: Context names the
// enclosing block (like `sync "users"`), Code holds the whole lines of the
// diagnostic's context (or subject) range, starting at StartLine.
type JSONSnippet struct {
	Context   string `json:"context,omitempty"`
	Code      string `json:"code"`
	StartLine int    `json:"start_line"`
}

// DiagnosticsJSON converts diagnostics for JSON encoding (a non-nil
// []JSONDiagnostic, so an empty set encodes as []).
func DiagnosticsJSON(diags hcl.Diagnostics) any {
	return DiagnosticsJSONWithSnippets(diags, nil)
}

// DiagnosticsJSONWithSnippets is DiagnosticsJSON with source snippets taken
// from files (Config.Files) where the diagnostic's file is among them.
func DiagnosticsJSONWithSnippets(diags hcl.Diagnostics, files map[string]*hcl.File) []JSONDiagnostic {
	out := make([]JSONDiagnostic, 0, len(diags))
	for _, d := range diags {
		j := JSONDiagnostic{Severity: "error", Summary: d.Summary, Detail: d.Detail}
		if d.Severity == hcl.DiagWarning {
			j.Severity = "warning"
		}
		if s := d.Subject; s != nil {
			j.Range = &JSONRange{
				Filename: s.Filename,
				Start:    JSONPos{Line: s.Start.Line, Column: s.Start.Column, Byte: s.Start.Byte},
				End:      JSONPos{Line: s.End.Line, Column: s.End.Column, Byte: s.End.Byte},
			}
			j.Snippet = snippet(files, d)
		}
		out = append(out, j)
	}
	return out
}

func snippet(files map[string]*hcl.File, d *hcl.Diagnostic) *JSONSnippet {
	rng := *d.Subject
	if d.Context != nil && d.Context.Filename == rng.Filename {
		rng = *d.Context
	}
	f := files[rng.Filename]
	if f == nil || rng.Start.Byte > len(f.Bytes) || rng.End.Byte > len(f.Bytes) {
		return nil
	}
	src := f.Bytes
	start := rng.Start.Byte
	for start > 0 && src[start-1] != '\n' {
		start--
	}
	end := rng.End.Byte
	for end < len(src) && src[end] != '\n' {
		end++
	}
	var context string
	if cs, ok := f.Nav.(interface{ ContextString(offset int) string }); ok {
		context = cs.ContextString(d.Subject.Start.Byte)
	}
	return &JSONSnippet{Context: context, Code: string(src[start:end]), StartLine: rng.Start.Line}
}
