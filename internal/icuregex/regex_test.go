package regex

import (
	"context"
	"testing"
)

func compile(t *testing.T, pattern string, flags RegexFlags, text string) Regex {
	t.Helper()
	r := CreateRegex(1024)
	if err := r.SetRegexString(context.Background(), pattern, flags); err != nil {
		t.Fatalf("%q: %v", pattern, err)
	}
	if err := r.SetMatchString(context.Background(), text); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestFlags(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		pattern string
		flags   RegexFlags
		text    string
		want    bool
	}{
		{"a.c", RegexFlags_Literal, "abc", false},
		{"a.c", RegexFlags_Literal, "xa.cx", true},
		{"A.C", RegexFlags_Literal | RegexFlags_Case_Insensitive, "a.c", true},
		{"a b # the rest\n c", RegexFlags_Comments, "abc", true},
		{`a\ b`, RegexFlags_Comments, "a b", true},
		{"[ ]x", RegexFlags_Comments, " x", true},
		{"[#]", RegexFlags_Comments, "#", true},
		{`\u00e9`, RegexFlags_None, "é", true},
		{`\U0001F600`, RegexFlags_None, "😀", true},
		{`\e`, RegexFlags_None, "\x1b", true},
		{`\Qa.b\E`, RegexFlags_None, "axb", false},
		{`[]a]`, RegexFlags_None, "]", true},
		{`[[:digit:]]+`, RegexFlags_None, "x42", true},
		{"^b$", RegexFlags_Multiline | RegexFlags_Unix_Lines, "a\nb\nc", true},
		{"a.b", RegexFlags_Dot_All, "a\nb", true},
	}
	for _, tt := range tests {
		r := compile(t, tt.pattern, tt.flags, tt.text)
		if got, err := r.Matches(ctx, 0, 0); err != nil || got != tt.want {
			t.Errorf("%q (flags %d) on %q: %v, %v; want %v", tt.pattern, tt.flags, tt.text, got, err, tt.want)
		}
	}
}

func TestReplace(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		pattern, text, repl string
		pos, occ            int
		want                string
	}{
		{"a*", "baaac", "X", 1, 0, "XbXXcX"},
		{"(?P<w>o+)", "foo boo", "[${w}]", 1, 0, "f[oo] b[oo]"},
		{"(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)", "abcdefghijk", "$11$1", 1, 0, "ka"},
		{"(a)", "aa", "$10", 1, 0, "a0a0"},
		{"b", "abc", "$", 1, 0, "a$c"},
		{"b", "abc", `\\`, 1, 0, `a\c`},
		{"x", "xxx", "y", 3, 0, "xxy"},
		{"x", "xxx", "y", 1, 2, "xyx"},
		{"x", "xxx", "y", 1, 4, "xxx"},
	}
	for _, tt := range tests {
		r := compile(t, tt.pattern, 0, tt.text)
		got, err := r.Replace(ctx, tt.repl, tt.pos, tt.occ)
		if err != nil || got != tt.want {
			t.Errorf("replace %q in %q by %q (pos %d, occ %d): %q, %v; want %q", tt.pattern, tt.text, tt.repl, tt.pos, tt.occ, got, err, tt.want)
		}
	}
	r := compile(t, "(a)", 0, "a")
	if _, err := r.Replace(ctx, "${nope}", 1, 0); !ErrInvalidRegex.Is(err) {
		t.Errorf("unknown group name: %v", err)
	}
	if _, err := r.Replace(ctx, "$2", 1, 0); !ErrInvalidRegex.Is(err) {
		t.Errorf("group 2 of 1: %v", err)
	}
}

func TestPositions(t *testing.T) {
	ctx := context.Background()
	r := compile(t, "ö", 0, "aöböc")
	if i, err := r.IndexOf(ctx, 3, 1, false); err != nil || i != 4 {
		t.Errorf("IndexOf from 3: %d, %v; want 4", i, err)
	}
	if i, err := r.IndexOf(ctx, 1, 2, true); err != nil || i != 5 {
		t.Errorf("end of 2nd: %d, %v; want 5", i, err)
	}
	if s, ok, err := r.Substring(ctx, 6, 1); err != nil || ok || s != "" {
		t.Errorf("from the end: %q %v %v", s, ok, err)
	}
	if _, err := r.IndexOf(ctx, 7, 1, false); err == nil {
		t.Errorf("position past the end accepted")
	}
	if _, err := r.IndexOf(ctx, 0, 1, false); err == nil {
		t.Errorf("position 0 accepted")
	}
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	r := CreateRegex(0)
	if _, err := r.Matches(ctx, 0, 0); !ErrRegexNotYetSet.Is(err) {
		t.Errorf("before SetRegexString: %v", err)
	}
	if err := r.SetMatchString(ctx, "x"); !ErrRegexNotYetSet.Is(err) {
		t.Errorf("SetMatchString first: %v", err)
	}
	if err := r.SetRegexString(ctx, "x", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Matches(ctx, 0, 0); !ErrMatchNotYetSet.Is(err) {
		t.Errorf("before SetMatchString: %v", err)
	}
	if err := r.SetRegexString(ctx, `(a)\1`, 0); !ErrInvalidRegex.Is(err) {
		t.Errorf("backreference: %v", err)
	}
	if err := r.Close(); err != nil || r.StringBufferSize() != 0 {
		t.Errorf("Close: %v", err)
	}
}

// FuzzRegex runs any pattern, flags, text and replacement through every
// method: no panics, and IndexOf agrees with Substring.
func FuzzRegex(f *testing.F) {
	f.Add(`a(b)?`, uint32(0), "xabab", "[$1]", 2, 1)
	f.Add(`\u00e9 # c`, uint32(RegexFlags_Comments), "é", `\$`, 1, 0)
	f.Add(`[]a]\Q.\E`, uint32(RegexFlags_Case_Insensitive), "]. a.", "${x}", 1, 2)
	f.Add(`^`, uint32(RegexFlags_Multiline), "a\nb", "-", 2, 0)
	f.Fuzz(func(t *testing.T, pattern string, flags uint32, text, repl string, start, occ int) {
		ctx := context.Background()
		r := CreateRegex(0)
		if err := r.SetRegexString(ctx, pattern, RegexFlags(flags)); err != nil {
			if !ErrInvalidRegex.Is(err) {
				t.Fatalf("compile error of another kind: %v", err)
			}
			return
		}
		if err := r.SetMatchString(ctx, text); err != nil {
			t.Fatal(err)
		}
		start = 1 + abs(start)%8
		occ = abs(occ) % 4
		_, _ = r.Matches(ctx, start-1, occ)
		_, _ = r.Replace(ctx, repl, start, occ)
		i, err1 := r.IndexOf(ctx, start, occ, false)
		s, ok, err2 := r.Substring(ctx, start, occ)
		if (err1 == nil) != (err2 == nil) || (err1 == nil && (i > 0) != ok) {
			t.Fatalf("IndexOf %d %v, Substring %q %v %v", i, err1, s, ok, err2)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
