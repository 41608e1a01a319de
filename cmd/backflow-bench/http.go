package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The apply-http settings: the API answers every request after
// httpLatency; the apply runs once per max_in_flight of httpInFlight.
const (
	httpLatency = 20 * time.Millisecond
	httpBatch   = 100
)

var httpInFlight = []int{1, 8}

// latencyAPI is a loopback JSON batch API that accepts every record,
// answering a fixed latency after each request's handler starts,
// counting requests, the most ever in flight at once and the time its
// handler held them.
type latencyAPI struct {
	latency             time.Duration
	requests, records   atomic.Int64
	inFlight, maxFlight atomic.Int64
	// held and maxHeld are the total and the longest time from the
	// handler's start to its answer written to the connection.
	held, maxHeld atomic.Int64
	// firstArrival and lastAnswer are when the first request's handler
	// started and the last answer was flushed (Unix nanoseconds): the
	// client's time before its first request and after its last answer
	// are what its whole run took beyond them.
	firstArrival, lastAnswer atomic.Int64
	// answered is when each connection's last answer was flushed (by the
	// client's address): the time from it to the connection's next
	// request's arrival is the client's turnaround on that connection,
	// what it does between an answer and its next request (gaps, gapNS
	// and maxGap, under answeredMu).
	answeredMu          sync.Mutex
	answered            map[string]time.Time
	gaps, gapNS, maxGap int64
	// Every POST holds busy for reading until its counts are in; GET
	// /stats takes it for writing, so that a client asking for the counts
	// after its last answer has them all.
	busy sync.RWMutex
	// now, sleep and fine are time.Now, time.Sleep and fineSleep, or a
	// test's clock.
	now         func() time.Time
	sleep, fine func(time.Duration)
}

func newLatencyAPI(latency time.Duration) *latencyAPI {
	return &latencyAPI{latency: latency, now: time.Now, sleep: time.Sleep, fine: fineSleep, answered: map[string]time.Time{}}
}

// fineMargin is how long before a deadline the API stops sleeping on a
// runtime timer and sleeps the rest with fine.
const fineMargin = 2 * time.Millisecond

// waitUntil returns at deadline or just after it, never before. A runtime
// timer wakes up to a millisecond late where the Go runtime waits for it
// in epoll, whose timeout is in whole milliseconds (Linux): sleeping the
// whole latency on one, the API held a request 20.4–21.0 ms for 20. So
// the timer sleeps until fineMargin before the deadline, and the rest is
// slept by the OS thread (fine), tens of microseconds late at most on a
// quiet machine.
func (a *latencyAPI) waitUntil(deadline time.Time) {
	if d := deadline.Sub(a.now()) - fineMargin; d > 0 {
		a.sleep(d)
	}
	for d := deadline.Sub(a.now()); d > 0; d = deadline.Sub(a.now()) {
		a.fine(d)
	}
}

// apiStats are a latencyAPI's counts, as GET /stats gives them.
type apiStats struct {
	Requests    int64 `json:"requests"`
	Records     int64 `json:"records"`
	MaxInFlight int64 `json:"max_in_flight"`
	HeldNS      int64 `json:"held_ns"`
	MaxHeldNS   int64 `json:"max_held_ns"`
	// Unix nanoseconds.
	FirstArrival int64 `json:"first_arrival"`
	LastAnswer   int64 `json:"last_answer"`
	// Gaps are the requests that came on a connection after an answer on
	// it; GapNS and MaxGapNS the total and longest time from that answer
	// to their arrival.
	Gaps     int64 `json:"gaps"`
	GapNS    int64 `json:"gap_ns"`
	MaxGapNS int64 `json:"max_gap_ns"`
}

// meanGapMS is the mean time, in milliseconds, from an answer to the next
// request's arrival on the same connection.
func (s apiStats) meanGapMS() float64 {
	if s.Gaps == 0 {
		return 0
	}
	return float64(s.GapNS) / float64(s.Gaps) / 1e6
}

// meanHeldMS is the mean time, in milliseconds, the API's handler held a
// request: what the API's latency really was.
func (s apiStats) meanHeldMS() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.HeldNS) / float64(s.Requests) / 1e6
}

func (a *latencyAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/stats" {
		a.busy.Lock()
		defer a.busy.Unlock()
		w.Header().Set("Content-Type", "application/json")
		a.answeredMu.Lock()
		gaps, gapNS, maxGap := a.gaps, a.gapNS, a.maxGap
		a.answeredMu.Unlock()
		json.NewEncoder(w).Encode(apiStats{Requests: a.requests.Load(), Records: a.records.Load(), MaxInFlight: a.maxFlight.Load(),
			HeldNS: a.held.Load(), MaxHeldNS: a.maxHeld.Load(), FirstArrival: a.firstArrival.Load(), LastAnswer: a.lastAnswer.Load(),
			Gaps: gaps, GapNS: gapNS, MaxGapNS: maxGap})
		return
	}
	start := a.now()
	a.busy.RLock()
	defer a.busy.RUnlock()
	a.answeredMu.Lock()
	if last, ok := a.answered[r.RemoteAddr]; ok {
		gap := int64(start.Sub(last))
		a.gaps++
		a.gapNS += gap
		a.maxGap = max(a.maxGap, gap)
	}
	a.answeredMu.Unlock()
	a.firstArrival.CompareAndSwap(0, start.UnixNano())
	n := a.inFlight.Add(1)
	defer a.inFlight.Add(-1)
	storeMax(&a.maxFlight, n)
	var body struct {
		Records []struct {
			Key string `json:"key"`
		} `json:"records"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	type res struct {
		Key string `json:"key"`
		OK  bool   `json:"ok"`
	}
	out := struct {
		Results []res `json:"results"`
	}{Results: make([]res, len(body.Records))}
	for i, rec := range body.Records {
		out.Results[i] = res{Key: rec.Key, OK: true}
	}
	var answer bytes.Buffer
	json.NewEncoder(&answer).Encode(out)
	// The API's latency, as a remote service's would be, counted from the
	// request's arrival: its own decoding and encoding are part of it,
	// not added to it (until 2026-11-29 it slept the whole latency after
	// decoding and encoded after, answering 21–22 ms after a request
	// arrived on this machine).
	a.waitUntil(start.Add(a.latency))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(answer.Len()))
	w.Write(answer.Bytes())
	// Flushed here rather than when the handler returns, so that the
	// time held ends with the answer on the connection.
	w.(http.Flusher).Flush()
	end := a.now()
	a.answeredMu.Lock()
	a.answered[r.RemoteAddr] = end
	a.answeredMu.Unlock()
	a.countHeld(end.Sub(start))
	storeMax(&a.lastAnswer, end.UnixNano())
	a.requests.Add(1)
	a.records.Add(int64(len(body.Records)))
}

func (a *latencyAPI) countHeld(d time.Duration) {
	a.held.Add(int64(d))
	storeMax(&a.maxHeld, int64(d))
}

// storeMax stores x in v if it is larger than v's value.
func storeMax(v *atomic.Int64, x int64) {
	for {
		m := v.Load()
		if x <= m || v.CompareAndSwap(m, x) {
			return
		}
	}
}

// apiEnv, set in a copy of this program, makes it serve a latencyAPI
// answering after that many milliseconds (see serveAPI).
const apiEnv = "BACKFLOW_BENCH_HTTP_API"

// serveAPI is a child process's work: a latencyAPI on a free loopback
// port, whose address it prints on stdout, served until stdin closes
// (the harness closes it, or exits). It returns the exit code.
func serveAPI(latencyMS string) int {
	ms, err := strconv.Atoi(latencyMS)
	if err != nil || ms < 0 {
		fmt.Fprintf(os.Stderr, "backflow-bench: %s=%q: want a number of milliseconds\n", apiEnv, latencyMS)
		return 2
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "backflow-bench:", err)
		return 1
	}
	srv := &http.Server{Handler: newLatencyAPI(time.Duration(ms) * time.Millisecond)}
	go srv.Serve(ln)
	fmt.Printf("http://%s\n", ln.Addr())
	io.Copy(io.Discard, os.Stdin)
	srv.Close()
	return 0
}

// apiProcess is a latencyAPI served by a child process. The API runs
// outside the process measured, as a real one would: in the same process
// its goroutines shared the measured client's two Ps and its garbage
// collector (it decodes every record it is sent), so the client's work
// made the API's 20 ms sleeps longer and the API's garbage paused the
// client, which no remote API does. It still shares the machine's cores.
type apiProcess struct {
	URL   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

func startAPI(ctx context.Context, latency time.Duration) (*apiProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), apiEnv+"="+strconv.FormatInt(latency.Milliseconds(), 10))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	a := &apiProcess{cmd: cmd, stdin: stdin}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if a.URL = strings.TrimSpace(line); err != nil || !strings.HasPrefix(a.URL, "http://127.0.0.1:") {
		a.close()
		return nil, fmt.Errorf("the API process printed %q, want its address (%v)", line, err)
	}
	return a, nil
}

// stats asks the API for its counts.
func (a *apiProcess) stats(ctx context.Context) (apiStats, error) {
	var s apiStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL+"/stats", nil)
	if err != nil {
		return s, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET /stats: %s", resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// close ends the API process and waits for it.
func (a *apiProcess) close() {
	a.stdin.Close()
	a.cmd.Wait()
}

func runApplyHTTP(ctx context.Context, e *env) (*result, error) {
	rows := e.pick(2_000, 50_000)
	r := newResult("apply-http").set("rows", rows).set("batch_size", httpBatch).set("latency_ms", httpLatency.Milliseconds())
	var first float64
	for _, inFlight := range httpInFlight {
		api, err := startAPI(ctx, httpLatency)
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(e.tmp, fmt.Sprintf("apply-http-%d", inFlight))
		dest := `type = "http"
  url  = ` + hclString(api.URL+"/records") + `
  max_in_flight = ` + strconv.Itoa(inFlight)
		p, err := newApplyProject(ctx, e, dir, rows, "people", dest, httpBatch)
		if err != nil {
			api.close()
			return nil, err
		}
		e.logf("apply-http: backflow apply of %d adds, %d per request, %s per request, max_in_flight %d", rows, httpBatch, httpLatency, inFlight)
		t, res, err := p.apply(ctx, e, "")
		p.close()
		os.RemoveAll(dir)
		var stats apiStats
		if err == nil {
			stats, err = api.stats(ctx)
		}
		api.close()
		if err != nil {
			return nil, err
		}
		if stats.Records != int64(rows) {
			return nil, fmt.Errorf("the API received %d records, want %d", stats.Records, rows)
		}
		ideal := float64(httpBatch*inFlight) / httpLatency.Seconds()
		got := rowsPerSec(rows, t.wall)
		e.logf("apply-http: %s, %.0f rows/s (ideal %.0f)", t.wall.Round(time.Millisecond), got, ideal)
		// Backflow's fixed costs: from the apply's start to the first
		// request's arrival at the API, and from the last answer to the
		// apply's end (the state's work before anything may be sent and
		// after everything was answered).
		before := time.Duration(stats.FirstArrival - t.start.UnixNano())
		after := time.Duration(t.start.Add(t.wall).UnixNano() - stats.LastAnswer)
		e.logf("apply-http: %s before the first request arrived, %s after the last answer", before.Round(100*time.Microsecond), after.Round(100*time.Microsecond))
		k := fmt.Sprintf("in_flight_%d_", inFlight)
		r.set(k+"requests", res.Requests).set(k+"max_requests_in_flight_seen", stats.MaxInFlight).
			set(k+"api_held_ms_mean", round3(stats.meanHeldMS())).set(k+"api_held_ms_max", round3(float64(stats.MaxHeldNS)/1e6)).
			set(k+"api_gap_ms_mean", round3(stats.meanGapMS())).set(k+"api_gap_ms_max", round3(float64(stats.MaxGapNS)/1e6)).
			set(k+"before_first_request_ms", round3(float64(before)/1e6)).set(k+"after_last_answer_ms", round3(float64(after)/1e6)).
			set(k+"apply_s", secs(t.wall)).set(k+"rows_per_s", got).
			set(k+"ideal_rows_per_s", ideal).set(k+"vs_ideal", ratio(got, ideal))
		if first == 0 {
			first = got
		} else {
			r.set(k+"vs_in_flight_1", ratio(got, first))
		}
		// The same API, written by a bare client: what this machine
		// allows at that latency and concurrency, backflow aside.
		bareT, bareStats, err := bareClient(ctx, rows, inFlight)
		if err != nil {
			return nil, fmt.Errorf("bare client: %w", err)
		}
		bare := bareT.wall
		bareRate := rowsPerSec(rows, bare)
		e.logf("apply-http: bare client with %d in flight: %s, %.0f rows/s", inFlight, bare.Round(time.Millisecond), bareRate)
		bareBefore := time.Duration(bareStats.FirstArrival - bareT.start.UnixNano())
		bareAfter := time.Duration(bareT.start.Add(bare).UnixNano() - bareStats.LastAnswer)
		e.logf("apply-http: the API held a request %.2f ms on average for backflow, %.2f ms for the bare client", stats.meanHeldMS(), bareStats.meanHeldMS())
		r.set(k+"bare_client_s", secs(bare)).set(k+"bare_client_rows_per_s", bareRate).
			set(k+"bare_client_api_held_ms_mean", round3(bareStats.meanHeldMS())).
			set(k+"bare_client_api_gap_ms_mean", round3(bareStats.meanGapMS())).set(k+"bare_client_api_gap_ms_max", round3(float64(bareStats.MaxGapNS)/1e6)).
			set(k+"bare_client_before_first_request_ms", round3(float64(bareBefore)/1e6)).
			set(k+"bare_client_after_last_answer_ms", round3(float64(bareAfter)/1e6)).
			set(k+"bare_client_vs_ideal", ratio(bareRate, ideal)).set(k+"vs_bare_client", ratio(got, bareRate))
	}
	most := httpInFlight[len(httpInFlight)-1]
	return r.set("target", fmt.Sprintf("in_flight_%d_vs_ideal ≥ 0.9 (≥ %.0f rows/s at %s, batch %d)",
		most, 0.9*float64(httpBatch*most)/httpLatency.Seconds(), httpLatency, httpBatch)), nil
}

// bareClient posts rows records, httpBatch per request and inFlight at a
// time, to a fresh latencyAPI, as a client without backflow would: bodies
// of the shape backflow sends encoded beforehand, one goroutine per
// request in flight, the answers read and decoded. It returns the time
// (and start) from the first request to the last answer, and the API's
// counts.
func bareClient(ctx context.Context, rows, inFlight int) (timing, apiStats, error) {
	api, err := startAPI(ctx, httpLatency)
	if err != nil {
		return timing{}, apiStats{}, err
	}
	defer api.close()
	type record struct {
		Key       string         `json:"key"`
		Operation string         `json:"operation"`
		Fields    map[string]any `json:"fields"`
	}
	var bodies [][]byte
	for start := 1; start <= rows; start += httpBatch {
		var recs []record
		for i := start; i < start+httpBatch && i <= rows; i++ {
			p := genPerson(i, "")
			recs = append(recs, record{Key: strconv.Itoa(i), Operation: "upsert", Fields: map[string]any{
				"id": p.id, "email": p.email, "name": p.name, "company": p.company, "country": p.country,
				"score": p.score, "ltv": p.ltv, "active": p.active}})
		}
		body, err := json.Marshal(map[string]any{"object": "people", "records": recs})
		if err != nil {
			return timing{}, apiStats{}, err
		}
		bodies = append(bodies, body)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = inFlight
	client := &http.Client{Transport: transport, Timeout: time.Minute}
	defer client.CloseIdleConnections()
	var next atomic.Int64
	errs := make(chan error, inFlight)
	start := time.Now()
	for range inFlight {
		go func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(bodies) {
					errs <- nil
					return
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, api.URL+"/records", bytes.NewReader(bodies[i]))
				if err != nil {
					errs <- err
					return
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				var answer struct {
					Results []struct {
						Key string `json:"key"`
						OK  bool   `json:"ok"`
					} `json:"results"`
				}
				err = json.NewDecoder(resp.Body).Decode(&answer)
				resp.Body.Close()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var first error
	for range inFlight {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	elapsed := time.Since(start)
	if first != nil {
		return timing{}, apiStats{}, first
	}
	stats, err := api.stats(ctx)
	if err != nil {
		return timing{}, apiStats{}, err
	}
	if stats.Records != int64(rows) {
		return timing{}, stats, fmt.Errorf("the API received %d records, want %d", stats.Records, rows)
	}
	return timing{wall: elapsed, start: start}, stats, nil
}
