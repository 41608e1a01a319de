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
