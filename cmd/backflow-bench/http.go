package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
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

// latencyAPI is a loopback JSON batch API that accepts every record after
// a fixed delay, counting requests and the most ever in flight at once.
type latencyAPI struct {
	latency             time.Duration
	requests, records   atomic.Int64
	inFlight, maxFlight atomic.Int64
}

func (a *latencyAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := a.inFlight.Add(1)
	defer a.inFlight.Add(-1)
	for {
		m := a.maxFlight.Load()
		if n <= m || a.maxFlight.CompareAndSwap(m, n) {
			break
		}
	}
	var body struct {
		Records []struct {
			Key string `json:"key"`
		} `json:"records"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// The API's own latency, as a remote service's would be.
	time.Sleep(a.latency)
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
	a.requests.Add(1)
	a.records.Add(int64(len(body.Records)))
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func runApplyHTTP(ctx context.Context, e *env) (*result, error) {
	rows := e.pick(2_000, 50_000)
	r := newResult("apply-http").set("rows", rows).set("batch_size", httpBatch).set("latency_ms", httpLatency.Milliseconds())
	var first float64
	for _, inFlight := range httpInFlight {
		api := &latencyAPI{latency: httpLatency}
		srv := httptest.NewServer(api) // 127.0.0.1
		dir := filepath.Join(e.tmp, fmt.Sprintf("apply-http-%d", inFlight))
		dest := `type = "http"
  url  = ` + hclString(srv.URL+"/records") + `
  max_in_flight = ` + strconv.Itoa(inFlight)
		p, err := newApplyProject(ctx, e, dir, rows, "people", dest, httpBatch)
		if err != nil {
			srv.Close()
			return nil, err
		}
		e.logf("apply-http: backflow apply of %d adds, %d per request, %s per request, max_in_flight %d", rows, httpBatch, httpLatency, inFlight)
		t, res, err := p.apply(ctx, e, "")
		p.close()
		srv.Close()
		os.RemoveAll(dir)
		if err != nil {
			return nil, err
		}
		if got := api.records.Load(); got != int64(rows) {
			return nil, fmt.Errorf("the API received %d records, want %d", got, rows)
		}
		ideal := float64(httpBatch*inFlight) / httpLatency.Seconds()
		got := rowsPerSec(rows, t.wall)
		e.logf("apply-http: %s, %.0f rows/s (ideal %.0f)", t.wall.Round(time.Millisecond), got, ideal)
		k := fmt.Sprintf("in_flight_%d_", inFlight)
		r.set(k+"requests", res.Requests).set(k+"max_requests_in_flight_seen", api.maxFlight.Load()).
			set(k+"apply_s", secs(t.wall)).set(k+"rows_per_s", got).
			set(k+"ideal_rows_per_s", ideal).set(k+"vs_ideal", ratio(got, ideal))
		if first == 0 {
			first = got
		} else {
			r.set(k+"vs_in_flight_1", ratio(got, first))
		}
		// The same API, written by a bare client: what this machine
		// allows at that latency and concurrency, backflow aside.
		bare, err := bareClient(ctx, rows, inFlight)
		if err != nil {
			return nil, fmt.Errorf("bare client: %w", err)
		}
		bareRate := rowsPerSec(rows, bare)
		e.logf("apply-http: bare client with %d in flight: %s, %.0f rows/s", inFlight, bare.Round(time.Millisecond), bareRate)
		r.set(k+"bare_client_s", secs(bare)).set(k+"bare_client_rows_per_s", bareRate).
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
// from the first request to the last answer.
func bareClient(ctx context.Context, rows, inFlight int) (time.Duration, error) {
	api := &latencyAPI{latency: httpLatency}
	srv := httptest.NewServer(api)
	defer srv.Close()
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
			return 0, err
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
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/records", bytes.NewReader(bodies[i]))
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
		return 0, first
	}
	if got := api.records.Load(); got != int64(rows) {
		return 0, fmt.Errorf("the API received %d records, want %d", got, rows)
	}
	return elapsed, nil
}
