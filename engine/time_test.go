package engine

import (
	"testing"
	"time"
)

// parseTimeLayouts is parseTime without its plain fast path: the layouts
// alone.
func parseTimeLayouts(s string) (time.Time, bool) {
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return time.Time{}, false
	}
	var layout string
	switch {
	case len(s) == 10:
		layout = "2006-01-02"
	case s[10] == ' ':
		layout = "2006-01-02 15:04:05.999999999"
	case s[10] == 'T' && (s[len(s)-1] == 'Z' || lastSign(s) > 10):
		layout = time.RFC3339Nano
	case s[10] == 'T':
		layout = "2006-01-02T15:04:05.999999999"
	default:
		return time.Time{}, false
	}
	t, err := time.Parse(layout, s)
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

func lastSign(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '+' || s[i] == '-' {
			return i
		}
	}
	return -1
}

func checkTimeSame(t *testing.T, s string) {
	t.Helper()
	got, gotOK := parseTime(s)
	want, wantOK := parseTimeLayouts(s)
	if gotOK != wantOK || !got.Equal(want) || got.Location() != want.Location() {
		t.Fatalf("parseTime(%q) = %v, %v; the layouts give %v, %v", s, got, gotOK, want, wantOK)
	}
}

var timeSeeds = []string{
	"2024-01-02", "2024-02-29", "2023-02-29", "2024-13-01", "2024-00-10", "2024-04-31", "0000-01-01",
	"2024-01-02 03:04:05", "2024-01-02T03:04:05", "2024-01-02T03:04:05Z", "2024-01-02 03:04:05Z",
	"2024-01-02 24:00:00", "2024-01-02 23:60:00", "2024-01-02 23:59:60", "2024-01-02 3:04:05",
	"2024-01-02T03:04:05+02:00", "2024-01-02 03:04:05.123", "2024-1-02", "2024-01-0x", "+024-01-02",
	"2024-01-02x03:04:05", "2024-01-02T03-04-05Z", "2024-01-02T03:04:05z",
}

func TestPlainTimeMatchesLayouts(t *testing.T) {
	for _, s := range timeSeeds {
		checkTimeSame(t, s)
	}
}

// FuzzParseTime checks parseTime's plain fast path against its layouts.
func FuzzParseTime(f *testing.F) {
	for _, s := range timeSeeds {
		f.Add(s)
	}
	f.Fuzz(checkTimeSame)
}
