package rules

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// sourceMap is a `when` expression's decoded text with, for every decoded
// byte (and one past the end), the offset in Rule.Raw it was read from.
type sourceMap struct {
	text string
	raw  []int
}

// decodeRaw decodes Rule.Raw as HCL does: a quoted template (with escapes
// \n \r \t \" \\ \uNNNN \UNNNNNNNN and the literal-marker escapes $${ and
// %%{) or a heredoc (<<MARKER or <<-MARKER, whose flush form trims from
// every non-blank line the smallest leading whitespace of those lines).
// Anything else maps one to one.
func decodeRaw(raw []byte) sourceMap {
	s := string(raw)
	switch {
	case strings.HasPrefix(s, `"`):
		return decodeQuoted(s)
	case strings.HasPrefix(s, "<<"):
		return decodeHeredoc(s)
	}
	m := sourceMap{text: s, raw: make([]int, len(s)+1)}
	for i := range m.raw {
		m.raw[i] = i
	}
	return m
}

func decodeQuoted(s string) sourceMap {
	var b strings.Builder
	var pos []int
	emit := func(text string, at int) {
		b.WriteString(text)
		for range len(text) {
			pos = append(pos, at)
		}
	}
	i := 1
	for i < len(s) && s[i] != '"' {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			n, text := quotedEscape(s[i:])
			emit(text, i)
			i += n
		case strings.HasPrefix(s[i:], "$${") || strings.HasPrefix(s[i:], "%%{"):
			emit(s[i+1:i+3], i)
			i += 3
		default:
			emit(s[i:i+1], i)
			i++
		}
	}
	pos = append(pos, i)
	return sourceMap{text: b.String(), raw: pos}
}

// quotedEscape decodes the escape sequence at the start of s (s[0] is a
// backslash): it returns the bytes consumed and the decoded text.
func quotedEscape(s string) (int, string) {
	switch s[1] {
	case 'n':
		return 2, "\n"
	case 'r':
		return 2, "\r"
	case 't':
		return 2, "\t"
	case 'u', 'U':
		n := 4
		if s[1] == 'U' {
			n = 8
		}
		if len(s) >= 2+n {
			var r rune
			ok := true
			for _, c := range s[2 : 2+n] {
				d := strings.IndexRune("0123456789abcdef", unicode.ToLower(c))
				if d < 0 {
					ok = false
					break
				}
				r = r*16 + rune(d)
			}
			if ok {
				return 2 + n, string(r)
			}
		}
	}
	return 2, s[1:2]
}

func decodeHeredoc(s string) sourceMap {
	flush := strings.HasPrefix(s, "<<-")
	nl := strings.IndexByte(s, '\n')
	if nl < 0 {
		return sourceMap{raw: []int{len(s)}}
	}
	marker := strings.TrimSpace(strings.TrimLeft(s[:nl], "<-"))
	type line struct {
		start int
		text  string
	}
	var lines []line
	for at := nl + 1; at < len(s); {
		end := strings.IndexByte(s[at:], '\n')
		text := s[at:]
		if end >= 0 {
			text = s[at : at+end+1]
		}
		if strings.TrimSpace(text) == marker {
			break
		}
		lines = append(lines, line{at, text})
		at += len(text)
	}
	minSpaces := -1
	if flush {
		for _, l := range lines {
			trimmed := strings.TrimLeftFunc(l.text, unicode.IsSpace)
			if trimmed == "" && strings.HasSuffix(l.text, "\n") {
				continue // blank lines do not count
			}
			n := utf8.RuneCountInString(l.text[:len(l.text)-len(trimmed)])
			if minSpaces < 0 || n < minSpaces {
				minSpaces = n
			}
		}
	}
	var b strings.Builder
	var pos []int
	end := nl + 1
	for _, l := range lines {
		skip := 0
		if trimmed := strings.TrimLeftFunc(l.text, unicode.IsSpace); minSpaces > 0 && (trimmed != "" || !strings.HasSuffix(l.text, "\n")) {
			for range minSpaces {
				_, size := utf8.DecodeRuneInString(l.text[skip:])
				skip += size
			}
		}
		for i := skip; i < len(l.text); {
			if strings.HasPrefix(l.text[i:], "$${") || strings.HasPrefix(l.text[i:], "%%{") {
				b.WriteString(l.text[i+1 : i+3])
				pos = append(pos, l.start+i, l.start+i)
				i += 3
				continue
			}
			b.WriteByte(l.text[i])
			pos = append(pos, l.start+i)
			i++
		}
		end = l.start + len(l.text)
	}
	pos = append(pos, end)
	return sourceMap{text: b.String(), raw: pos}
}

// exprPos maps a position inside r.Expr — line (1-based) and column
// (0-based, in code points), as CEL reports them — to the position in the
// .hcl file. When Raw does not decode to text containing Expr, the
// position is found as if Expr were written verbatim at Range.Start.
func exprPos(r Rule, line, col int) hcl.Pos {
	off := exprOffset(r.Expr, line, col)
	raw := r.Raw
	m := decodeRaw(raw)
	base := strings.Index(m.text, r.Expr)
	if len(raw) == 0 || base < 0 {
		raw = []byte(r.Expr)
		m, base = decodeRaw(raw), 0
	}
	return advance(r.Range.Start, raw[:m.raw[base+off]])
}

// exprOffset converts a CEL line/column to a byte offset in expr, clamped
// to the expression.
func exprOffset(expr string, line, col int) int {
	off := 0
	for l := 1; l < line; l++ {
		nl := strings.IndexByte(expr[off:], '\n')
		if nl < 0 {
			return len(expr)
		}
		off += nl + 1
	}
	for range max(col, 0) {
		if off >= len(expr) || expr[off] == '\n' {
			break
		}
		_, size := utf8.DecodeRuneInString(expr[off:])
		off += size
	}
	return off
}

// advance returns the position reached from start after the bytes b.
func advance(start hcl.Pos, b []byte) hcl.Pos {
	p := start
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		p.Byte += size
		if r == '\n' {
			p.Line++
			p.Column = 1
		} else {
			p.Column++
		}
	}
	return p
}
