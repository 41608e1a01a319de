package redact

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestRedactorMasksSecretsAndTheirParts(t *testing.T) {
	cases := []struct {
		secret string
		text   string // contains parts that must go
		gone   []string
		kept   []string
	}{
		{
			secret: "postgres://alice_canary:pw-canary@db.internal:5432/warehouse_canary?sslmode=require&application_name=appcanary",
			text:   `failed to connect to user=alice_canary database=warehouse_canary host=db.internal: password pw-canary rejected (application_name=appcanary)`,
			gone:   []string{"alice_canary", "pw-canary", "warehouse_canary", "appcanary"},
			kept:   []string{"db.internal"},
		},
		{
			secret: "https://hooks.example.com/services/T0KENCANARY/hook?key=querycanary",
			text:   "POST https://hooks.example.com/services/T0KENCANARY/hook: 404; key querycanary",
			gone:   []string{"T0KENCANARY", "querycanary"},
			kept:   []string{"hooks.example.com"},
		},
		{
			secret: "Bearer tok-canary-123",
			text:   `{"error":"token tok-canary-123 expired"}`,
			gone:   []string{"tok-canary-123"},
		},
		{
			// The default address: no net(addr) between @ and /.
			secret: "myuser_canary:mypw_canary@/mydb_canary?tls=canarytls",
			text:   "Error 1142: SELECT command denied to user 'myuser_canary'@'localhost' for table `mydb_canary`.`t` (tls=canarytls)",
			gone:   []string{"myuser_canary", "mydb_canary", "canarytls"},
			kept:   []string{"command denied"},
		},
		{
			secret: "myuser_canary:mypw_canary@tcp(127.0.0.1:3306)/mydb_canary?timeout=5s&tls=canarytls",
			text:   "Error 1045: Access denied for user 'myuser_canary'@'localhost' to database 'mydb_canary' (tls=canarytls)",
			gone:   []string{"myuser_canary", "mydb_canary", "canarytls"},
			kept:   []string{"Access denied"},
		},
		{
			secret: "host=localhost user=kvuser_canary password='kv pw' dbname=kvdb_canary",
			text:   "connect kvuser_canary on kvdb_canary",
			gone:   []string{"kvuser_canary", "kvdb_canary"},
			kept:   []string{"connect"},
		},
	}
	for _, c := range cases {
		r := New(c.secret)
		got := r.String(c.text + " " + c.secret)
		for _, g := range c.gone {
			if strings.Contains(got, g) {
				t.Errorf("secret %q: %q still in %q", c.secret, g, got)
			}
		}
		for _, k := range c.kept {
			if !strings.Contains(got, k) {
				t.Errorf("secret %q: %q was masked in %q", c.secret, k, got)
			}
		}
		if !strings.Contains(got, Mask) {
			t.Errorf("no mask in %q", got)
		}
	}
}

func TestShortPartsAreNotMasked(t *testing.T) {
	r := New("postgres://a:b@h/db")
	if got := r.String("a database on h"); got != "a database on h" {
		t.Errorf("short parts masked: %q", got)
	}
	if got := r.String("dsn postgres://a:b@h/db"); got != "dsn "+Mask {
		t.Errorf("whole secret not masked: %q", got)
	}
}

func TestErrorKeepsTheChain(t *testing.T) {
	r := New("s3cr3t-value")
	err := r.Error(fmt.Errorf("talking to s3cr3t-value: %w", io.ErrUnexpectedEOF))
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("secret in %q", err)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatal("errors.Is lost the wrapped error")
	}
	var nilR *Redactor
	if nilR.String("x") != "x" || nilR.Error(io.EOF) != io.EOF {
		t.Fatal("a nil Redactor must mask nothing")
	}
}

func TestSecretPrintsMasked(t *testing.T) {
	s := NewSecret("hunter22")
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v", s, s, s), fmt.Sprintf("%s", struct{ S Secret }{s})} {
		if strings.Contains(out, "hunter22") {
			t.Errorf("secret printed: %q", out)
		}
	}
	if s.Reveal() != "hunter22" {
		t.Fatal("Reveal lost the value")
	}
}

func TestJoinMasksEveryRedactorsSecrets(t *testing.T) {
	a := New("postgres://u@db/headcanary")
	b := New("S3cr3t-XYZ")
	b.AddWords("dbword")
	j := Join(a, nil, b)
	got := j.String("db headcanary, S3cr3t-XYZ-123456 and dbword; S3cr3t-XYZ")
	if want := "db (sensitive), (sensitive)-123456 and (sensitive); (sensitive)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// The longest secret goes first, whichever Redactor holds it.
	j = Join(New("S3cr3t"), New("long-S3cr3t-rest"))
	if got := j.String("long-S3cr3t-rest"); got != Mask {
		t.Errorf("got %q, want %q", got, Mask)
	}
	if got := a.String("S3cr3t-XYZ"); got != "S3cr3t-XYZ" {
		t.Errorf("Join changed its argument: %q", got)
	}
}

// A secret is masked in the forms messages quote it in: Go's %q and JSON
// escape quotes, backslashes and control characters, and a secret read
// from a file often ends in a newline the message does not show.
func TestSecretsAreMaskedQuotedAndTrimmed(t *testing.T) {
	for _, secret := range []string{"S3cr3t\"XYZ\\123456", "S3cr3t-XYZ\t123456", "S3cr3t-XYZ-123456\n", "S3cr3t<XYZ>&123456"} {
		r := New(secret)
		j, _ := json.Marshal(secret)
		for _, text := range []string{
			fmt.Sprintf("cannot use %q as year", secret),
			"{\"error\":" + string(j) + "}",
			"token " + strings.TrimSpace(secret) + " refused",
		} {
			if got := r.String(text); strings.Contains(got, "S3cr3t") || strings.Contains(got, "123456") {
				t.Errorf("secret %q shows in %q", secret, got)
			}
			if got := r.With().String(text); strings.Contains(got, "S3cr3t") {
				t.Errorf("With: secret %q shows in %q", secret, got)
			}
		}
	}
}
