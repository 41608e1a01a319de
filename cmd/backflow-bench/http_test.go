package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeClock is a latencyAPI's clock in a test: sleeping advances it, and
// so does reading a request's body (slowBody), standing for the time the
// API spends receiving and decoding it.
type fakeClock struct {
	t time.Time
	// slept and fined are the durations asked of sleep (a runtime
	// timer, which wakes late after each) and of fine (the OS thread's
	// sleep, which wakes on time, or after short when set).
	slept, fined []time.Duration
	late, short  time.Duration
}

func (c *fakeClock) now() time.Time { return c.t }

func (c *fakeClock) sleep(d time.Duration) {
	c.slept = append(c.slept, d)
	c.t = c.t.Add(d + c.late)
}

func (c *fakeClock) fine(d time.Duration) {
	c.fined = append(c.fined, d)
	if c.short > 0 && c.short < d {
		d = c.short // interrupted
	}
	c.t = c.t.Add(d)
}

// slowBody is a request body whose first read advances clock by took.
type slowBody struct {
	io.Reader
	clock *fakeClock
	took  time.Duration
	read  bool
}

func (b *slowBody) Read(p []byte) (int, error) {
	if !b.read {
		b.read = true
		b.clock.t = b.clock.t.Add(b.took)
	}
	return b.Reader.Read(p)
}

// testAPI is a latencyAPI of latency on a fake clock.
func testAPI(latency time.Duration) (*latencyAPI, *fakeClock) {
	c := &fakeClock{t: time.Date(2026, 11, 29, 23, 0, 0, 0, time.UTC)}
	a := newLatencyAPI(latency)
	a.now, a.sleep, a.fine = c.now, c.sleep, c.fine
	return a, c
}

// post sends the API a batch of the given keys, whose body takes took to
// read, and returns the keys it accepted.
func post(t *testing.T, a *latencyAPI, c *fakeClock, took time.Duration, keys ...string) []string {
	t.Helper()
	return postFrom(t, a, c, "", took, keys...)
}

// postFrom is post on the connection from addr ("": httptest's).
func postFrom(t *testing.T, a *latencyAPI, c *fakeClock, addr string, took time.Duration, keys ...string) []string {
	t.Helper()
	var recs []string
	for _, k := range keys {
		recs = append(recs, `{"key":"`+k+`","operation":"upsert","fields":{"id":1}}`)
	}
	body := &slowBody{Reader: strings.NewReader(`{"object":"people","records":[` + strings.Join(recs, ",") + `]}`), clock: c, took: took}
	req := httptest.NewRequest(http.MethodPost, "/records", body)
	if addr != "" {
		req.RemoteAddr = addr
	}
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if got, want := rec.Header().Get("Content-Length"), len(rec.Body.String()); got == "" || got != strconv.Itoa(want) {
		t.Errorf("Content-Length %q for an answer of %d bytes", got, want)
	}
	var answer struct {
		Results []struct {
			Key string `json:"key"`
			OK  bool   `json:"ok"`
		} `json:"results"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
		t.Fatal(err)
	}
	var ok []string
	for _, r := range answer.Results {
		if r.OK {
			ok = append(ok, r.Key)
		}
	}
	return ok
}

func stats(t *testing.T, a *latencyAPI) apiStats {
	t.Helper()
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/stats", nil))
	var s apiStats
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// The API counts the time from its handler's start to its answer written:
// the latency a client sees from it, its own work included.
func TestLatencyAPICountsHeldTime(t *testing.T) {
	a, c := testAPI(20 * time.Millisecond)
	start := c.t
	if got := post(t, a, c, 3*time.Millisecond, "1", "2"); strings.Join(got, ",") != "1,2" {
		t.Fatalf("accepted %v, want 1,2", got)
	}
	first := c.t.Sub(start)
	if got := post(t, a, c, time.Millisecond, "3"); strings.Join(got, ",") != "3" {
		t.Fatalf("accepted %v, want 3", got)
	}
	second := c.t.Sub(start) - first
	s := stats(t, a)
	if s.Requests != 2 || s.Records != 3 {
		t.Fatalf("stats %+v, want 2 requests of 3 records", s)
	}
	if s.HeldNS != int64(first+second) || s.MaxHeldNS != int64(max(first, second)) {
		t.Fatalf("held %v in all, at most %v; the clock moved %v and %v", time.Duration(s.HeldNS), time.Duration(s.MaxHeldNS), first, second)
	}
	if got, want := s.meanHeldMS(), float64(first+second)/2/1e6; got != want {
		t.Fatalf("mean held %v ms, want %v", got, want)
	}
	if s.FirstArrival != start.UnixNano() || s.LastAnswer != c.t.UnixNano() {
		t.Fatalf("first arrival %v, last answer %v; want %v and %v", time.Unix(0, s.FirstArrival).UTC(), time.Unix(0, s.LastAnswer).UTC(), start, c.t)
	}
}

// The API answers its latency after the request arrived: the time it
// takes to read and decode the body is part of the latency, not added to
// it, and a body slower than the latency is answered without a sleep.
func TestLatencyAPIAnswersAfterItsLatency(t *testing.T) {
	a, c := testAPI(20 * time.Millisecond)
	start := c.t
	post(t, a, c, 3*time.Millisecond, "1", "2")
	if got := c.t.Sub(start); got != 20*time.Millisecond {
		t.Fatalf("answered %v after the request arrived, want 20ms", got)
	}
	if got := slices.Concat(c.slept, c.fined); len(got) != 2 || got[0]+got[1] != 17*time.Millisecond {
		t.Fatalf("slept %v after 3 ms of decoding, want 17ms in all", got)
	}
	c.slept, c.fined = nil, nil
	post(t, a, c, 25*time.Millisecond, "3")
	if len(c.slept)+len(c.fined) != 0 {
		t.Fatalf("slept %v and %v; want no sleep after a body that took longer than the latency", c.slept, c.fined)
	}
	if s := stats(t, a); s.HeldNS != int64(45*time.Millisecond) || s.MaxHeldNS != int64(25*time.Millisecond) {
		t.Fatalf("held %v in all, at most %v; want 45ms and 25ms", time.Duration(s.HeldNS), time.Duration(s.MaxHeldNS))
	}
}

// The API's runtime timer may wake up to a millisecond late (its epoll
// wait is in whole milliseconds): it sleeps on it until fineMargin before
// the answer is due and sleeps the rest finely, so that a late timer makes
// no late answer; an answer is never early, even when the fine sleep is
// cut short, and a timer late past the deadline means no fine sleep.
func TestLatencyAPISleepsTheLastStretchFinely(t *testing.T) {
	a, c := testAPI(20 * time.Millisecond)
	c.late = 900 * time.Microsecond
	start := c.t
	post(t, a, c, 3*time.Millisecond, "1")
	if got := c.t.Sub(start); got != 20*time.Millisecond {
		t.Fatalf("answered %v after the request arrived with a timer 0.9 ms late, want 20ms", got)
	}
	if want := []time.Duration{17*time.Millisecond - fineMargin}; !slices.Equal(c.slept, want) {
		t.Fatalf("slept %v on the timer, want %v", c.slept, want)
	}
	if want := []time.Duration{fineMargin - c.late}; !slices.Equal(c.fined, want) {
		t.Fatalf("slept %v finely, want %v", c.fined, want)
	}

	c.slept, c.fined, c.short = nil, nil, 300*time.Microsecond
	start = c.t
	post(t, a, c, time.Millisecond, "2")
	if got := c.t.Sub(start); got != 20*time.Millisecond {
		t.Fatalf("answered %v after the request arrived with fine sleeps cut short, want 20ms", got)
	}
	if len(c.fined) < 2 {
		t.Fatalf("slept %v finely; want the rest slept again after a sleep cut short", c.fined)
	}

	c.slept, c.fined, c.late, c.short = nil, nil, 3*time.Millisecond, 0
	start = c.t
	post(t, a, c, 0, "3")
	if got := c.t.Sub(start); got != 21*time.Millisecond {
		t.Fatalf("answered %v after the request arrived with a timer 3 ms late, want 21ms (late, never early)", got)
	}
	if len(c.fined) != 0 {
		t.Fatalf("slept %v finely after the timer woke past the deadline", c.fined)
	}
}

// The API reports, per connection, the time from an answer to the next
// request's arrival: the client's turnaround between its requests. A
// connection's first request has no gap.
func TestLatencyAPIReportsTheGapsAfterAnswers(t *testing.T) {
	a, c := testAPI(20 * time.Millisecond)
	postFrom(t, a, c, "127.0.0.1:1001", 0, "1")
	c.t = c.t.Add(time.Millisecond)
	postFrom(t, a, c, "127.0.0.1:1002", 0, "2") // another connection's first
	c.t = c.t.Add(3 * time.Millisecond)
	postFrom(t, a, c, "127.0.0.1:1001", 0, "3") // 24 ms after its answer
	c.t = c.t.Add(500 * time.Microsecond)
	postFrom(t, a, c, "127.0.0.1:1002", 0, "4") // 23.5 ms after its answer
	s := stats(t, a)
	if s.Gaps != 2 || s.GapNS != int64(47500*time.Microsecond) || s.MaxGapNS != int64(24*time.Millisecond) {
		t.Fatalf("%d gaps of %v in all, at most %v; want 2 of 47.5ms, at most 24ms", s.Gaps, time.Duration(s.GapNS), time.Duration(s.MaxGapNS))
	}
	if got := s.meanGapMS(); got != 23.75 {
		t.Fatalf("mean gap %v ms, want 23.75", got)
	}
}
