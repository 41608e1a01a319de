package destination

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrorClass returns msg with the values it quotes replaced by "?", so that
// errors of one kind group together however many records they hit:
// `Duplicate entry 'a@x' for key 'email'` and `Duplicate entry 'b@y' for key
// 'email'` are both `Duplicate entry '?' for key 'email'`.
//
// What is replaced: quoted text that is a value (after a colon, "entry",
// "value"…), numbers, dates and times, UUIDs and e-mail addresses, and a
// PostgreSQL detail's key values (`Key (id)=(5)`). What is kept: names
// (quoted after "column", "table", "constraint", "relation", "key"…, or in
// backticks), error codes (`Error 1062`, `(SQLSTATE 23505)`, `(2067)`),
// type sizes (`varying(10)`), HTTP status lines (`422 Unprocessable
// Entity`), addresses (`127.0.0.1:5432`) and words with digits in them.
func ErrorClass(msg string) string {
	msg = pgKeyDetail.ReplaceAllString(msg, ")=(?)")
	var out strings.Builder
	rest := msg
	for rest != "" {
		i := strings.IndexAny(rest, "'\"`")
		if i < 0 {
			out.WriteString(plainClass(rest))
			break
		}
		q := rest[i]
		if q == '\'' && wordBefore(rest[:i]) && wordAfter(rest[i+1:]) {
			// An apostrophe (API's, doesn't), not a quote.
			out.WriteString(plainClass(rest[:i+1]))
			rest = rest[i+1:]
			continue
		}
		out.WriteString(plainClass(rest[:i]))
		end := closingQuote(rest[i+1:], q)
		if end < 0 { // unbalanced: keep as it is
			out.WriteString(rest[i:])
			break
		}
		quoted := rest[i+1 : i+1+end]
		out.WriteByte(q)
		if q == '`' || isNameBefore(rest[:i], q) {
			out.WriteString(quoted)
		} else {
			out.WriteByte('?')
		}
		out.WriteByte(q)
		rest = rest[i+2+end:]
	}
	return out.String()
}

var (
	pgKeyDetail = regexp.MustCompile(`\)=\([^)]*\)`)
	uuidPattern = regexp.MustCompile(`(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`)
	mailPattern = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+`)
	// numberToken is a run starting with a digit that no letter, digit or
	// underscore precedes; what it is decides whether it is replaced.
	numberToken = regexp.MustCompile(`(^|[^A-Za-z0-9_.])([0-9][0-9A-Za-z_.:+-]*)`)
	pureNumber  = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)
	dateOrTime  = regexp.MustCompile(`^([0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9:.]+(Z|[+-][0-9:]+)?)?|[0-9]{1,2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)$`)
	statusLine  = regexp.MustCompile(`^ [A-Z]`)
)

// wordBefore and wordAfter report whether s ends, or starts, with a
// letter or a digit (any script's: l'été).
func wordBefore(s string) bool {
	r, n := utf8.DecodeLastRuneInString(s)
	return n > 0 && (unicode.IsLetter(r) || unicode.IsDigit(r))
}

func wordAfter(s string) bool {
	r, n := utf8.DecodeRuneInString(s)
	return n > 0 && (unicode.IsLetter(r) || unicode.IsDigit(r))
}

// closingQuote is the index in s of the quote q closing a quoted text, -1
// when none. A single quote closes only where a word does not go on
// after it or a quote: O'Brien, D'9, a value starting with an apostrophe
// ('90s) or ending with one (Jones') is each one quoted value.
func closingQuote(s string, q byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] != q {
			continue
		}
		if q == '\'' && (wordAfter(s[i+1:]) || strings.HasPrefix(s[i+1:], "'")) {
			continue
		}
		return i
	}
	return -1
}

// nameWords are the words after which quoted text is a name, not a value
// (lower case). "key" names a MySQL index in single quotes; our own
// messages quote a record's key in double quotes, which is a value.
var nameWords = map[string]bool{
	"column": true, "table": true, "relation": true, "constraint": true, "index": true, "schema": true,
	"database": true, "type": true, "function": true, "role": true, "sequence": true, "view": true,
	"trigger": true, "field": true, "user": true, "object": true, "destination": true, "sync": true,
}

// isNameBefore reports whether quoted text (quote q) that follows before is
// a name: the word right before it is one of nameWords.
func isNameBefore(before string, q byte) bool {
	before = strings.TrimRight(before, " ")
	j := strings.LastIndexFunc(before, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_')
	})
	word := strings.ToLower(before[j+1:])
	return nameWords[word] || (q == '\'' && word == "key")
}

// plainClass replaces the values in unquoted text.
func plainClass(s string) string {
	s = uuidPattern.ReplaceAllString(s, "?")
	s = mailPattern.ReplaceAllString(s, "?")
	idx := numberToken.FindAllStringSubmatchIndex(s, -1)
	if idx == nil {
		return s
	}
	var out strings.Builder
	last := 0
	for _, m := range idx {
		start, end := m[4], m[5]
		tok := s[start:end]
		// A trailing full stop ends the sentence, not the number.
		trimmed := strings.TrimRight(tok, ".:")
		end = start + len(trimmed)
		out.WriteString(s[last:start])
		last = end
		if keepNumber(s, start, end, trimmed) {
			out.WriteString(trimmed)
		} else {
			out.WriteByte('?')
		}
	}
	out.WriteString(s[last:])
	return out.String()
}

// keepNumber reports whether tok, at s[start:end], is part of what an
// error is rather than a value it quotes.
func keepNumber(s string, start, end int, tok string) bool {
	if !pureNumber.MatchString(tok) {
		return !dateOrTime.MatchString(tok) // words, addresses, durations stay
	}
	before := s[:start]
	switch {
	case strings.HasSuffix(before, "Error "), strings.HasSuffix(before, "SQLSTATE "), strings.HasSuffix(before, "errno "):
		return true // error codes
	case strings.HasSuffix(before, "(") && strings.HasPrefix(s[end:], ")"):
		return true // (23000), varying(10)
	case len(tok) == 3 && statusLine.MatchString(s[end:]):
		return true // 422 Unprocessable Entity
	}
	return false
}
