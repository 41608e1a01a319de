package main

import (
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

// The apply-http settings: the API answers every request after httpLatency;
// httpMaxInFlight is the max_in_flight the destination is given (1, the
// behaviour of a destination without the setting, leaves it out of the
// config).
const (
	httpLatency     = 20 * time.Millisecond
	httpBatch       = 100
	httpMaxInFlight = 1
)

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
	api := &latencyAPI{latency: httpLatency}
	srv := httptest.NewServer(api) // 127.0.0.1
	defer srv.Close()
	dir := filepath.Join(e.tmp, "apply-http")
	defer os.RemoveAll(dir)
	dest := `type = "http"
  url  = "` + srv.URL + `/records"`
	if httpMaxInFlight > 1 {
		dest += "\n  max_in_flight = " + strconv.Itoa(httpMaxInFlight)
	}
	p, err := newApplyProject(ctx, e, dir, rows, "people", dest, httpBatch)
	if err != nil {
		return nil, err
	}
	defer p.close()
	e.logf("apply-http: backflow apply of %d adds, %d per request, %s per request", rows, httpBatch, httpLatency)
	t, res, err := p.apply(ctx, e, "")
	if err != nil {
		return nil, err
	}
	if got := api.records.Load(); got != int64(rows) {
		return nil, fmt.Errorf("the API received %d records, want %d", got, rows)
	}
	ideal := float64(httpBatch*httpMaxInFlight) / httpLatency.Seconds()
	got := rowsPerSec(rows, t.wall)
	e.logf("apply-http: %s, %.0f rows/s (ideal %.0f)", t.wall.Round(time.Millisecond), got, ideal)
	r := newResult("apply-http").
		set("rows", rows).set("batch_size", httpBatch).set("max_in_flight", httpMaxInFlight).
		set("latency_ms", httpLatency.Milliseconds()).
		set("requests", res.Requests).set("max_requests_in_flight_seen", api.maxFlight.Load()).
		set("apply_s", secs(t.wall)).set("rows_per_s", got).
		set("ideal_rows_per_s", ideal).
		set("vs_ideal", ratio(got, ideal))
	if httpMaxInFlight == 1 {
		r.set("note", "max_in_flight is not built: one request in flight, so the ideal is batch_size / latency")
	}
	return r.set("target", "vs_ideal ≥ 0.9 with max_in_flight = 8 (≥ 36,000 rows/s at 20 ms, batch 100)"), nil
}
