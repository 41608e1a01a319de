package main

import (
	"bytes"
	"flag"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/txtar"
)

var showBad = flag.Bool("show-bad", false, "print each bad-input case's output (to write its want: lines)")

// The bad-input corpus: every testdata/bad/*.txtar is one invalid input —
// a config, a fixture, a saved plan, state or a folder the CLI cannot use —
// with the command to run and what its error must say. Each archive's
// comment holds directives, one per line:
//
//	base: NAME             start from testdata/bad/_NAME.txtar's files
//	setup: ARGS…           a command that must succeed first (repeatable;
//	                       $DIR is the case's folder, which -C names)
//	mutate: OP PATH [ARG]  then change a file: truncate PATH N, flip PATH
//	                       OFFSET (negative counts from the end), remove
//	                       PATH, chmod PATH MODE, write PATH (from the
//	                       archive's "after/PATH"), replace PATH OLD NEW
//	                       (OLD and NEW %-escaped: %20 is a space)
//	run: ARGS…             the command under test; it must fail
//	exit: N                its exit code (default 1)
//	want: TEXT             a substring of its output (repeatable)
//	once: TEXT             a substring its output holds exactly once
//	env: NAME=VALUE        set for the case
//
// Whatever the case, the output may never hold a Go panic or stack trace.
func TestBadInputCorpus(t *testing.T) {
	cases, err := filepath.Glob("testdata/bad/[^_]*.txtar")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 60 {
		t.Errorf("the corpus holds %d cases; keep at least 60", len(cases))
	}
	for _, path := range cases {
		name := strings.TrimSuffix(filepath.Base(path), ".txtar")
		t.Run(name, func(t *testing.T) { runBadCase(t, path) })
	}
}

type badDirective struct{ verb, rest string }

func runBadCase(t *testing.T, path string) {
	ar, err := txtar.ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []badDirective
	for _, line := range strings.Split(string(ar.Comment), "\n") {
		verb, rest, ok := strings.Cut(line, ":")
		if !ok || strings.ContainsAny(verb, " #") {
			continue
		}
		dirs = append(dirs, badDirective{verb, strings.TrimSpace(rest)})
	}
	dir := t.TempDir()
	extract := func(ar *txtar.Archive, prefix string) {
		for _, f := range ar.Files {
			name, ok := strings.CutPrefix(f.Name, prefix)
			if !ok || (prefix == "" && strings.HasPrefix(f.Name, "after/")) {
				continue
			}
			p := filepath.Join(dir, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, f.Data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, d := range dirs {
		if d.verb == "base" {
			base, err := txtar.ParseFile(filepath.Join("testdata/bad", "_"+d.rest+".txtar"))
			if err != nil {
				t.Fatal(err)
			}
			extract(base, "")
		}
	}
	extract(ar, "")
	exit, ran := 1, false
	var wants, onces []string
	var out bytes.Buffer
	for _, d := range dirs {
		switch d.verb {
		case "base":
		case "env":
			k, v, _ := strings.Cut(d.rest, "=")
			t.Setenv(k, v)
		case "setup":
			var so, se bytes.Buffer
			if code := run(append([]string{"-C", dir, "--no-color"}, strings.Fields(strings.ReplaceAll(d.rest, "$DIR", dir))...), strings.NewReader(""), &so, &se); code != 0 {
				t.Fatalf("setup %q: exit %d\n%s%s", d.rest, code, so.String(), se.String())
			}
		case "mutate":
			mutateBadCase(t, dir, ar, d.rest)
		case "run":
			ran = true
			args := append([]string{"-C", dir, "--no-color"}, strings.Fields(strings.ReplaceAll(d.rest, "$DIR", dir))...)
			code := run(args, strings.NewReader(""), &out, &out)
			if *showBad {
				t.Logf("exit %d\n%s", code, out.String())
			}
			if code == 0 {
				t.Errorf("%s: exit 0, want a failure\n%s", d.rest, out.String())
			} else if code != exit {
				t.Errorf("%s: exit %d, want %d\n%s", d.rest, code, exit, out.String())
			}
		case "exit":
			exit, err = strconv.Atoi(d.rest)
			if err != nil {
				t.Fatal(err)
			}
		case "want":
			wants = append(wants, d.rest)
		case "once":
			onces = append(onces, d.rest)
		default:
			t.Fatalf("unknown directive %q", d.verb)
		}
	}
	if !ran {
		t.Fatal("the case has no run: line")
	}
	if len(wants) == 0 {
		t.Error("the case has no want: line")
	}
	got := strings.ReplaceAll(out.String(), dir+string(filepath.Separator), "")
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("the output lacks %q:\n%s", w, got)
		}
	}
	for _, w := range onces {
		if n := strings.Count(got, w); n != 1 {
			t.Errorf("the output holds %q %d times, want once:\n%s", w, n, got)
		}
	}
	for _, bad := range []string{"panic:", "goroutine ", "runtime error", ".go:"} {
		if strings.Contains(got, bad) {
			t.Errorf("the output holds %q:\n%s", bad, got)
		}
	}
}

func mutateBadCase(t *testing.T, dir string, ar *txtar.Archive, spec string) {
	f := strings.Fields(spec)
	if len(f) < 2 {
		t.Fatalf("mutate %q: want OP PATH [ARG]", spec)
	}
	p := filepath.Join(dir, filepath.FromSlash(f[1]))
	arg := func(i int) int {
		if len(f) <= i {
			t.Fatalf("mutate %q: missing argument", spec)
		}
		n, err := strconv.Atoi(f[i])
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	switch f[0] {
	case "truncate":
		if err := os.Truncate(p, int64(arg(2))); err != nil {
			t.Fatal(err)
		}
	case "flip":
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		at := arg(2)
		if at < 0 {
			at += len(data)
		}
		data[at] ^= 0x04
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	case "remove":
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	case "chmod":
		mode, err := strconv.ParseUint(f[2], 8, 32)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, os.FileMode(mode)); err != nil {
			t.Fatal(err)
		}
	case "write":
		for _, af := range ar.Files {
			if af.Name == "after/"+f[1] {
				if err := os.WriteFile(p, af.Data, 0o600); err != nil {
					t.Fatal(err)
				}
				return
			}
		}
		t.Fatalf("mutate %q: the archive has no after/%s", spec, f[1])
	case "replace":
		if len(f) < 4 {
			t.Fatalf("mutate %q: want replace PATH OLD NEW", spec)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f[2], f[3] = unescapeBad(t, f[2]), unescapeBad(t, f[3])
		if !bytes.Contains(data, []byte(f[2])) {
			t.Fatalf("mutate %q: %s holds no %q", spec, f[1], f[2])
		}
		if err := os.WriteFile(p, bytes.Replace(data, []byte(f[2]), []byte(f[3]), 1), 0o600); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("mutate %q: unknown operation", spec)
	}
}

func unescapeBad(t *testing.T, s string) string {
	u, err := url.PathUnescape(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
