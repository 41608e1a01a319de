package config

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// WriteDiagnostics renders diagnostics as text: severity and summary, the
// position as file:line:column with the enclosing block, the source lines
// with the offending range underlined, and the detail wrapped at width
// columns (0: no wrapping). Snippets come from files (Config.Files); a
// diagnostic in a file not among them is shown without one.
func WriteDiagnostics(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics, color bool, width uint) error {
	bw := bufio.NewWriter(w)
	paint := func(code, s string) string {
		if !color {
			return s
		}
		return code + s + "\x1b[0m"
	}
	for _, d := range diags {
		severity := paint("\x1b[1;31m", "Error")
		if d.Severity == hcl.DiagWarning {
			severity = paint("\x1b[1;33m", "Warning")
		}
		fmt.Fprintf(bw, "%s: %s\n\n", severity, paint("\x1b[1m", d.Summary))
		if s := d.Subject; s != nil {
			f := files[s.Filename]
			where := ""
			if f != nil {
				if cs, ok := f.Nav.(interface{ ContextString(int) string }); ok {
					if c := cs.ContextString(s.Start.Byte); c != "" {
						where = ", in " + c
					}
				}
			}
			fmt.Fprintf(bw, "  on %s:%d:%d%s:\n", s.Filename, s.Start.Line, s.Start.Column, where)
			if f != nil {
				writeSnippet(bw, f.Bytes, *s, func(x string) string { return paint("\x1b[31m", x) })
			}
			bw.WriteString("\n")
		}
		if d.Detail != "" {
			bw.WriteString(wrap(d.Detail, int(width)))
			bw.WriteString("\n\n")
		}
	}
	return bw.Flush()
}

// writeSnippet prints the lines of rng (at most three) numbered, with the
// range underlined by carets.
func writeSnippet(w io.Writer, src []byte, rng hcl.Range, paint func(string) string) {
	lines := bytes.Split(src, []byte("\n"))
	last := min(rng.End.Line, rng.Start.Line+2)
	if rng.End.Line < rng.Start.Line || (rng.End.Line == rng.Start.Line && rng.End.Column <= rng.Start.Column) {
		last = rng.Start.Line
	}
	for n := rng.Start.Line; n <= last && n >= 1 && n <= len(lines); n++ {
		line := strings.TrimRight(string(lines[n-1]), "\r")
		fmt.Fprintf(w, "  %4d: %s\n", n, line)
		from, to := 1, len([]rune(line))+1
		if n == rng.Start.Line {
			from = rng.Start.Column
		}
		if n == rng.End.Line {
			to = rng.End.Column
		}
		if to <= from {
			to = from + 1
		}
		var pad strings.Builder
		for i, r := range []rune(line) {
			if i >= from-1 {
				break
			}
			if r == '\t' {
				pad.WriteRune('\t')
			} else {
				pad.WriteRune(' ')
			}
		}
		fmt.Fprintf(w, "        %s%s\n", pad.String(), paint(strings.Repeat("^", to-from)))
	}
}

// wrap folds text at width columns on spaces (0: no folding).
func wrap(text string, width int) string {
	if width <= 0 {
		return text
	}
	var out strings.Builder
	for i, para := range strings.Split(text, "\n") {
		if i > 0 {
			out.WriteString("\n")
		}
		col := 0
		for j, word := range strings.Fields(para) {
			if j > 0 && col+1+len(word) > width {
				out.WriteString("\n")
				col = 0
			} else if j > 0 {
				out.WriteString(" ")
				col++
			}
			out.WriteString(word)
			col += len(word)
		}
	}
	return out.String()
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
