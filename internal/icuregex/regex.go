package regex

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"gopkg.in/src-d/go-errors.v1"
)

// Regex is a compiled pattern and the text it is matched against, for one
// goroutine at a time. Call SetRegexString, then SetMatchString, then the
// others; Close when done.
type Regex interface {
	// SetRegexString compiles the pattern, replacing any earlier one.
	SetRegexString(ctx context.Context, regexStr string, flags RegexFlags) error
	// SetMatchString sets the text the pattern is matched against.
	SetMatchString(ctx context.Context, matchStr string) error
	// IndexOf returns the character position (from 1) where the
	// occurrence-th match at or after character start (from 1) begins, or
	// the position just after it ends when endIndex is set; 0 if there is
	// no such match.
	IndexOf(ctx context.Context, start int, occurrence int, endIndex bool) (int, error)
	// Matches reports whether there is an occurrence-th match at or after
	// character start, counted from 0.
	Matches(ctx context.Context, start int, occurrence int) (bool, error)
	// Replace returns the text with the occurrence-th match at or after
	// character position (from 1) replaced, or every match there and after
	// for occurrence 0.
	Replace(ctx context.Context, replacementStr string, position int, occurrence int) (string, error)
	// Substring returns the occurrence-th match at or after character start
	// (from 1), and whether there is one.
	Substring(ctx context.Context, start int, occurrence int) (string, bool, error)
	// StringBufferSize is 0: no buffers are preallocated.
	StringBufferSize() uint32
	// Close releases the pattern and text.
	Close() error
}

var (
	// ErrRegexNotYetSet is returned by a call before SetRegexString.
	ErrRegexNotYetSet = errors.NewKind("a regular expression must be set before it is used")
	// ErrMatchNotYetSet is returned by a search before SetMatchString.
	ErrMatchNotYetSet = errors.NewKind("a text to match must be set before searching it")
	// ErrInvalidRegex is returned for a pattern that does not compile, and
	// for a replacement that names a group the pattern does not have.
	ErrInvalidRegex = errors.NewKind("the regular expression is invalid")
)

// RegexFlags change how a pattern matches; combine them with |. The values
// are ICU's.
type RegexFlags uint32

const (
	RegexFlags_None                     RegexFlags = 0
	RegexFlags_Unix_Lines               RegexFlags = 1
	RegexFlags_Case_Insensitive         RegexFlags = 2
	RegexFlags_Comments                 RegexFlags = 4
	RegexFlags_Multiline                RegexFlags = 8
	RegexFlags_Literal                  RegexFlags = 16
	RegexFlags_Dot_All                  RegexFlags = 32
	RegexFlags_Unicode_Word             RegexFlags = 256
	RegexFlags_Error_On_Unknown_Escapes RegexFlags = 512
)

var leakHandler atomic.Value

// SetRegexLeakHandler records a function to call when a Regex is collected
// without Close. Nothing here needs closing, so it is never called; it is
// kept for callers of the ICU package's API.
func SetRegexLeakHandler(handler func()) { leakHandler.Store(handler) }

// CreateRegex returns an empty Regex. The buffer size is accepted for the
// ICU package's API and ignored.
func CreateRegex(stringBufferInBytes uint32) Regex { return &goRegex{} }

type goRegex struct {
	// re is the pattern; after finds it past the first character of its
	// input ((?s:.) then the least text, then the pattern as group 1), so a
	// search from the middle of the text still sees the character before.
	re, after *regexp.Regexp
	text      string
	textSet   bool
}

func (r *goRegex) SetRegexString(_ context.Context, pattern string, flags RegexFlags) error {
	r.re, r.after, r.textSet = nil, nil, false
	src, err := translate(pattern, flags)
	if err != nil {
		return ErrInvalidRegex.Wrap(err)
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return ErrInvalidRegex.Wrap(err)
	}
	after, err := regexp.Compile(`\A(?s:.)(?s:.*?)(` + src + `)`)
	if err != nil {
		return ErrInvalidRegex.Wrap(err)
	}
	r.re, r.after = re, after
	return nil
}

func (r *goRegex) SetMatchString(_ context.Context, text string) error {
	if r.re == nil {
		return ErrRegexNotYetSet.New()
	}
	r.text, r.textSet = text, true
	return nil
}

func (r *goRegex) ready() error {
	if r.re == nil {
		return ErrRegexNotYetSet.New()
	}
	if !r.textSet {
		return ErrMatchNotYetSet.New()
	}
	return nil
}

func (r *goRegex) IndexOf(_ context.Context, start, occurrence int, endIndex bool) (int, error) {
	if err := r.ready(); err != nil {
		return 0, err
	}
	from, err := r.offset(start - 1)
	if err != nil {
		return 0, err
	}
	m := r.nth(from, occurrence)
	if m == nil {
		return 0, nil
	}
	at := m[0]
	if endIndex {
		at = m[1]
	}
	return utf8.RuneCountInString(r.text[:at]) + 1, nil
}

func (r *goRegex) Matches(_ context.Context, start, occurrence int) (bool, error) {
	if err := r.ready(); err != nil {
		return false, err
	}
	from, err := r.offset(start)
	if err != nil {
		return false, err
	}
	return r.nth(from, occurrence) != nil, nil
}

func (r *goRegex) Substring(_ context.Context, start, occurrence int) (string, bool, error) {
	if err := r.ready(); err != nil {
		return "", false, err
	}
	from, err := r.offset(start - 1)
	if err != nil {
		return "", false, err
	}
	m := r.nth(from, occurrence)
	if m == nil {
		return "", false, nil
	}
	return r.text[m[0]:m[1]], true, nil
}

func (r *goRegex) Replace(_ context.Context, replacement string, position, occurrence int) (string, error) {
	if err := r.ready(); err != nil {
		return "", err
	}
	from, err := r.offset(position - 1)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	out.WriteString(r.text[:from])
	done := from // text before done is in out
	count := 0
	for m := r.find(from); m != nil; m = r.next(m) {
		count++
		if occurrence > 0 && count < occurrence {
			continue
		}
		out.WriteString(r.text[done:m[0]])
		if err := r.expand(&out, replacement, m); err != nil {
			return "", err
		}
		done = m[1]
		if occurrence > 0 {
			break
		}
	}
	out.WriteString(r.text[done:])
	return out.String(), nil
}

func (r *goRegex) StringBufferSize() uint32 { return 0 }

func (r *goRegex) Close() error {
	r.re, r.after, r.text, r.textSet = nil, nil, "", false
	return nil
}

// offset is the byte offset of character chars (from 0) of the text; the
// end of the text is a valid position, past it is an error.
func (r *goRegex) offset(chars int) (int, error) {
	if chars < 0 {
		return 0, fmt.Errorf("position %d is out of range for a regular expression search", chars+1)
	}
	off := 0
	for range chars {
		if off >= len(r.text) {
			return 0, fmt.Errorf("position %d is out of bounds for a regular expression search", chars+1)
		}
		_, w := utf8.DecodeRuneInString(r.text[off:])
		off += w
	}
	return off, nil
}

// nth returns the occurrence-th match (the first for 0 or 1) at or after
// byte offset from.
func (r *goRegex) nth(from, occurrence int) []int {
	m := r.find(from)
	for i := 1; i < occurrence && m != nil; i++ {
		m = r.next(m)
	}
	return m
}

// next returns the match after m: searched from its end, or from the
// character after an empty match.
func (r *goRegex) next(m []int) []int {
	from := m[1]
	if m[0] == m[1] {
		if from >= len(r.text) {
			return nil
		}
		_, w := utf8.DecodeRuneInString(r.text[from:])
		from += w
	}
	return r.find(from)
}

// find returns the submatch offsets, into the text, of the first match at
// or after byte offset from.
func (r *goRegex) find(from int) []int {
	if from == 0 {
		return r.re.FindStringSubmatchIndex(r.text)
	}
	_, w := utf8.DecodeLastRuneInString(r.text[:from])
	base := from - w
	m := r.after.FindStringSubmatchIndex(r.text[base:])
	if m == nil {
		return nil
	}
	out := m[2:] // group 1 of after is the pattern's match
	for i, x := range out {
		if x >= 0 {
			out[i] = x + base
		}
	}
	return out
}

// expand writes a replacement for match m: $n and ${name} are groups, \c
// is c, and a $ followed by neither a digit nor { is itself. A group
// number takes as many digits as still name a group.
func (r *goRegex) expand(out *strings.Builder, repl string, m []int) error {
	groups := len(m)/2 - 1
	group := func(n int) {
		if m[2*n] >= 0 {
			out.WriteString(r.text[m[2*n]:m[2*n+1]])
		}
	}
	for i := 0; i < len(repl); i++ {
		c := repl[i]
		switch {
		case c == '\\' && i+1 < len(repl):
			_, w := utf8.DecodeRuneInString(repl[i+1:])
			out.WriteString(repl[i+1 : i+1+w])
			i += w
		case c == '$' && i+1 < len(repl) && repl[i+1] >= '0' && repl[i+1] <= '9':
			n := int(repl[i+1] - '0')
			if n > groups {
				return ErrInvalidRegex.Wrap(fmt.Errorf("the replacement uses group %d, and the pattern has %d", n, groups))
			}
			i++
			for i+1 < len(repl) && repl[i+1] >= '0' && repl[i+1] <= '9' && n*10+int(repl[i+1]-'0') <= groups {
				n = n*10 + int(repl[i+1]-'0')
				i++
			}
			group(n)
		case c == '$' && i+1 < len(repl) && repl[i+1] == '{':
			end := strings.IndexByte(repl[i:], '}')
			if end < 0 {
				return ErrInvalidRegex.Wrap(fmt.Errorf("the replacement has an unterminated ${ at %d", i))
			}
			name := repl[i+2 : i+end]
			n := r.re.SubexpIndex(name)
			if n < 0 {
				return ErrInvalidRegex.Wrap(fmt.Errorf("the replacement uses group %q, which the pattern does not name", name))
			}
			group(n)
			i += end
		default:
			out.WriteByte(c)
		}
	}
	return nil
}

// translate turns an ICU pattern and flags into Go regexp syntax.
func translate(pattern string, flags RegexFlags) (string, error) {
	var mode string
	if flags&RegexFlags_Case_Insensitive != 0 {
		mode += "i"
	}
	if flags&RegexFlags_Literal != 0 {
		return prefixMode(mode, regexp.QuoteMeta(pattern)), nil
	}
	if flags&RegexFlags_Multiline != 0 {
		mode += "m"
	}
	if flags&RegexFlags_Dot_All != 0 {
		mode += "s"
	}
	src, err := translateSyntax(pattern, flags&RegexFlags_Comments != 0)
	if err != nil {
		return "", err
	}
	return prefixMode(mode, src), nil
}

func prefixMode(mode, src string) string {
	if mode == "" {
		return src
	}
	return "(?" + mode + ")" + src
}

// translateSyntax rewrites the ICU escapes Go lacks (\uhhhh, \Uhhhhhhhh,
// \e) and, in comments mode, drops white space and #-comments outside
// character classes and \Q…\E.
func translateSyntax(p string, comments bool) (string, error) {
	var b strings.Builder
	inClass := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\' && i+1 < len(p):
			e := p[i+1]
			switch {
			case e == 'Q':
				end := strings.Index(p[i+2:], `\E`)
				if end < 0 {
					b.WriteString(p[i:])
					return b.String(), nil
				}
				b.WriteString(p[i : i+2+end+2])
				i += 2 + end + 1
			case e == 'u' || e == 'U':
				n := 4
				if e == 'U' {
					n = 8
				}
				hex := p[i+2 : min(len(p), i+2+n)]
				if len(hex) != n || strings.Trim(hex, "0123456789abcdefABCDEF") != "" {
					return "", fmt.Errorf(`\%c needs %d hexadecimal digits`, e, n)
				}
				b.WriteString(`\x{` + hex + `}`)
				i += 1 + n
			case e == 'e':
				b.WriteString(`\x{1B}`)
				i++
			case comments && (e == ' ' || e == '\t'):
				fmt.Fprintf(&b, `\x{%X}`, e)
				i++
			default:
				_, w := utf8.DecodeRuneInString(p[i+1:])
				b.WriteString(p[i : i+1+w])
				i += w
			}
		case c == '[' && !inClass:
			inClass = true
			b.WriteByte(c)
			// A ] right after [ or [^ is a member, not the end.
			if strings.HasPrefix(p[i+1:], "^]") {
				b.WriteString("^]")
				i += 2
			} else if strings.HasPrefix(p[i+1:], "]") {
				b.WriteByte(']')
				i++
			}
		case c == '[' && inClass && strings.HasPrefix(p[i+1:], ":"):
			end := strings.Index(p[i:], ":]")
			if end < 0 {
				b.WriteByte(c)
				continue
			}
			b.WriteString(p[i : i+end+2])
			i += end + 1
		case c == ']' && inClass:
			inClass = false
			b.WriteByte(c)
		case comments && !inClass && (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'):
		case comments && c == '#' && !inClass:
			for i+1 < len(p) && p[i+1] != '\n' {
				i++
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}
