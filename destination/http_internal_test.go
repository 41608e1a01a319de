package destination

import (
	"net/http"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"120", 120 * time.Second},
		{" 3 ", 3 * time.Second},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"soon", 0},
		{"-5", 0},
		{"0", 0},
		{"1.5", 1500 * time.Millisecond},
		{"3600", time.Hour},
		{"9223372036854775807", maxRetryAfter}, // overflows a Duration in nanoseconds
		{"99999999999999999999999999999", maxRetryAfter}, // overflows an int64
		{"1e400", 0},
		{"NaN", 0},
		{"Inf", 0},
		{now.Add(10 * 365 * 24 * time.Hour).Format(http.TimeFormat), maxRetryAfter}, // a date in 2036
		{"Wed, 21 Oct 2015 07:28:00 GMT", 0},
	} {
		if got := retryAfter(tc.in, now); got != tc.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestRepeatedMember(t *testing.T) {
	for _, tc := range []struct {
		in   string
		name string
	}{
		{`{"results":[{"key":"1","ok":false,"error":"no","ok":true}]}`, "ok"},
		{`{"results":[{"key":"1","ok":true}],"results":[]}`, "results"},
		{`{"results":[{"key":"1","ok":true,"meta":{"a":1,"b":[{"a":2},{"a":3}]}},{"key":"1","ok":true}]}`, ""},
		{`{"results":[{"key":"1","ok":true,"meta":{"a":1,"a":2}}]}`, "a"},
		{`{"a":{"x":1},"b":{"x":1},"c":[1,{"x":[]}],"d":"x"}`, ""},
		{`[{"a":1},{"a":1}]`, ""},
		{`{"a":"x\"a\"","a\"":{"a":"{\"a\":1}"},"b":"a"}`, ""},
		{`{"results":[{"key":"1","\u006fk":false,"ok":true}]}`, "ok"},
		{`{"k":"a,\"k\":1","k2":["k","k"],"k":2}`, "k"},
		{` { "a" : [ { "a" : 1 } , { "a" : 2 } ] , "b" : { } , "a" : 3 } `, "a"},
		{`{"results":[{"key":"1","ok":false,"error":"refused","OK":true}]}`, "OK"},
		{`{"results":[{"key":"1","ok":false}],"reſults":[{"key":"1","ok":true}]}`, "reſults"},
		{`{"results":[{"key":"1","ok":false,"\u004fK":true}]}`, "OK"},
		{`{"results":[{"K":"1","ok":true}]}`, ""},
	} {
		name, dup := repeatedMember([]byte(tc.in))
		if dup != (tc.name != "") || name != tc.name {
			t.Errorf("%s: %q %v, want %q", tc.in, name, dup, tc.name)
		}
		if sname, sdup := repeatedMemberSlow([]byte(tc.in)); sname != name || sdup != dup {
			t.Errorf("%s: slow %q %v, fast %q %v", tc.in, sname, sdup, name, dup)
		}
	}
}
