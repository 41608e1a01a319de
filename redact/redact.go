// Package redact keeps secrets out of what backflow shows and stores. A
// Secret holds a value that prints as a mask; a Redactor masks, in any text
// or error, every secret it was given and the parts of it that are secret on
// their own (a DSN's password, user, database and options, a URL's
// userinfo, path segments and query values, a token without its "Bearer "
// prefix). It is the one place that decides what a mask looks like.
package redact

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Mask replaces a secret in everything shown to users.
const Mask = "(sensitive)"

// Secret holds a value that must never be printed. Its String method
// returns Mask, so it is safe in fmt output by accident. The value sits
// behind a pointer so that even fmt paths that skip String methods (a bad
// verb on an enclosing struct) print an address only.
type Secret struct{ value *string }

// NewSecret wraps a value.
func NewSecret(v string) Secret { return Secret{value: &v} }

// Reveal returns the value, to hand to a driver. Never log it.
func (s Secret) Reveal() string {
	if s.value == nil {
		return ""
	}
	return *s.value
}

// String masks the value.
func (s Secret) String() string {
	if s.Reveal() == "" {
		return ""
	}
	return Mask
}

// GoString masks the value in %#v too.
func (s Secret) GoString() string { return s.String() }

// MarshalText masks the value in JSON and other encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// minPart is the shortest part of a secret masked on its own: shorter
// fragments ("db", "1") would mask ordinary words all over the output.
const minPart = 4

// Redactor masks a set of secrets. The zero value and nil mask nothing.
type Redactor struct {
	// words are the secrets and their parts, longest first, so a DSN goes
	// whole before its parts. whole marks the secrets as given, masked
	// wherever they occur; parts are masked only as whole tokens, so the
	// path segment "hook" does not eat into "hooks.example.com".
	words []string
	whole map[string]bool
}

// New returns a Redactor for the given secrets and their secret parts.
func New(secrets ...string) *Redactor {
	r := &Redactor{}
	r.Add(secrets...)
	return r
}

// Add adds secrets (and their parts) to the set.
func (r *Redactor) Add(secrets ...string) {
	seen := map[string]bool{}
	for _, w := range r.words {
		seen[w] = true
	}
	if r.whole == nil {
		r.whole = map[string]bool{}
	}
	for _, s := range secrets {
		for _, f := range forms(s) {
			r.whole[f] = true
			if !seen[f] {
				seen[f] = true
				r.words = append(r.words, f)
			}
		}
		for _, p := range Parts(s) {
			if !seen[p] {
				seen[p] = true
				r.words = append(r.words, p)
			}
		}
	}
	sort.SliceStable(r.words, func(i, j int) bool { return len(r.words[i]) > len(r.words[j]) })
}

// Format prints how many words the Redactor masks, never the words.
func (r *Redactor) Format(f fmt.State, _ rune) {
	n := 0
	if r != nil {
		n = len(r.words)
	}
	fmt.Fprintf(f, "redact.Redactor(%d)", n)
}

// With returns a Redactor masking r's secrets and these strings, each as
// a whole (without Parts): r is unchanged.
func (r *Redactor) With(secrets ...string) *Redactor {
	more := &Redactor{whole: map[string]bool{}}
	for _, s := range secrets {
		for _, f := range forms(s) {
			if !more.whole[f] {
				more.whole[f] = true
				more.words = append(more.words, f)
			}
		}
	}
	return Join(r, more)
}

// Join returns a Redactor masking the secrets of every one given (nil
// ones mask nothing), as one: a secret of one inside a longer secret of
// another does not leave the longer one's rest shown. They are unchanged.
func Join(rs ...*Redactor) *Redactor {
	out := &Redactor{whole: map[string]bool{}}
	seen := map[string]bool{}
	for _, r := range rs {
		if r == nil {
			continue
		}
		for _, w := range r.words {
			if !seen[w] {
				seen[w] = true
				out.words = append(out.words, w)
			}
		}
		for w := range r.whole {
			out.whole[w] = true
		}
	}
	sort.SliceStable(out.words, func(i, j int) bool { return len(out.words[i]) > len(out.words[j]) })
	return out
}

// AddWords adds words masked only where they stand as whole tokens, such
// as a user or database name a driver quotes in its messages. Words of one
// character or only digits and dots (ports, flags) are left out: they are
// no secret, and masking them would mangle addresses.
func (r *Redactor) AddWords(words ...string) {
	seen := map[string]bool{}
	for _, w := range r.words {
		seen[w] = true
	}
	for _, w := range words {
		if len(w) < 2 || strings.Trim(w, "0123456789.") == "" || seen[w] {
			continue
		}
		seen[w] = true
		r.words = append(r.words, w)
	}
	sort.SliceStable(r.words, func(i, j int) bool { return len(r.words[i]) > len(r.words[j]) })
}

// Empty reports whether there is nothing to mask.
func (r *Redactor) Empty() bool { return r == nil || len(r.words) == 0 }

// String masks every secret in s.
func (r *Redactor) String(s string) string {
	if r.Empty() {
		return s
	}
	for _, w := range r.words {
		if !strings.Contains(s, w) {
			continue
		}
		if r.whole[w] {
			s = strings.ReplaceAll(s, w, Mask)
		} else {
			s = replaceToken(s, w)
		}
	}
	return s
}

// replaceToken masks the occurrences of w in s that are not part of a
// longer token (letters, digits, '_' and '-' on either side).
func replaceToken(s, w string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, w)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		end := i + len(w)
		if (i > 0 && tokenByte(s[i-1])) || (end < len(s) && tokenByte(s[end])) {
			b.WriteString(s[:i+1])
			s = s[i+1:]
			continue
		}
		b.WriteString(s[:i])
		b.WriteString(Mask)
		s = s[end:]
	}
}

func tokenByte(c byte) bool {
	return c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// Error returns err with every secret masked from its message; errors.Is
// and errors.As still reach the original.
func (r *Redactor) Error(err error) error {
	if err == nil || r.Empty() {
		return err
	}
	msg := err.Error()
	masked := r.String(msg)
	if masked == msg {
		return err
	}
	return &maskedError{msg: masked, err: err}
}

type maskedError struct {
	msg string
	err error
}

func (e *maskedError) Error() string { return e.msg }
func (e *maskedError) Unwrap() error { return e.err }

// forms returns s as messages may quote it: as given, escaped by Go's %q
// and by JSON (quotes, backslashes, control characters, <, > and &), and
// without the spaces or newline around it (a secret read from a file).
func forms(s string) []string {
	if s == "" {
		return nil
	}
	out := []string{s}
	add := func(f string) {
		if f != "" && (f == s || len(f) >= minPart) && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	for _, v := range []string{s, strings.TrimSpace(s)} {
		add(v)
		if q := strconv.Quote(v); len(q) > 2 {
			add(q[1 : len(q)-1])
		}
		if j, err := json.Marshal(v); err == nil && len(j) > 2 {
			add(string(j[1 : len(j)-1]))
		}
	}
	return out
}

// Parts returns s and the pieces of s that are secret on their own: for a
// URL (postgres://user:pw@host/db?opt=v, https://h/hook/TOKEN?key=K) its
// user, password, path segments and query values; for a key=value DSN
// (host=h user=u password=p) and a go-sql-driver DSN (user:pw@tcp(h)/db?o=v)
// the same; for "Scheme token" (a header such as "Bearer abc") the token.
// Host names are not secret: messages name them. Parts shorter than four
// bytes are left out.
func Parts(s string) []string {
	if s == "" {
		return nil
	}
	out := []string{s}
	add := func(p string) {
		p = strings.TrimSpace(p)
		if len(p) >= minPart && p != s {
			out = append(out, p)
			if u, err := url.QueryUnescape(p); err == nil && u != p && len(u) >= minPart {
				out = append(out, u)
			}
		}
	}
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && (u.Host != "" || u.Opaque != "") {
		if u.User != nil {
			add(u.User.Username())
			if p, ok := u.User.Password(); ok {
				add(p)
			}
		}
		for _, seg := range strings.Split(u.EscapedPath(), "/") {
			add(seg)
		}
		for _, vs := range u.Query() {
			for _, v := range vs {
				add(v)
			}
		}
		add(u.RawQuery)
		add(u.Fragment)
		return out
	}
	if i := strings.Index(s, "@tcp("); i >= 0 || strings.Contains(s, "@unix(") || strings.Contains(s, ")/") || strings.Contains(s, "@/") {
		// go-sql-driver: [user[:password]@][net[(addr)]]/dbname[?param=value]
		at := strings.LastIndex(s, "@")
		if at >= 0 {
			cred := s[:at]
			user, pw, _ := strings.Cut(cred, ":")
			add(user)
			add(pw)
		}
		slash := strings.LastIndex(s, ")/") + 1
		if slash == 0 && strings.HasPrefix(s[at+1:], "/") {
			slash = at + 1 // user:pw@/dbname: the default address
		}
		if slash > 0 {
			rest := s[slash+1:]
			db, query, _ := strings.Cut(rest, "?")
			add(db)
			for _, kv := range strings.Split(query, "&") {
				_, v, _ := strings.Cut(kv, "=")
				add(v)
			}
		}
		return out
	}
	if strings.Contains(s, "=") {
		// libpq key=value: host=h user=u password='p w'
		for _, f := range strings.Fields(s) {
			if k, v, ok := strings.Cut(f, "="); ok && k != "host" && k != "port" {
				add(strings.Trim(v, "'"))
			}
		}
		return out
	}
	if scheme, tok, ok := strings.Cut(s, " "); ok && scheme != "" && !strings.Contains(strings.TrimSpace(tok), " ") {
		add(tok)
	}
	return out
}
