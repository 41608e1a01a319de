package destination_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/backflowhq/backflow/destination"
	"github.com/backflowhq/backflow/redact"
	"github.com/backflowhq/backflow/schema"
)

// fakeAPI answers like an API speaking the default protocol; reply decides
// each answer from the decoded request.
type fakeAPI struct {
	mu       sync.Mutex
	requests []map[string]any
	headers  []http.Header
	reply    func(w http.ResponseWriter, records []map[string]any)
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Records []map[string]any `json:"records"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	f.mu.Lock()
	f.requests = append(f.requests, map[string]any{"records": body.Records, "method": r.Method})
	f.headers = append(f.headers, r.Header.Clone())
	f.mu.Unlock()
	f.reply(w, body.Records)
}

func openHTTP(t *testing.T, api *fakeAPI, headers map[string]string) destination.Destination {
	t.Helper()
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	d, err := destination.OpenHTTP(context.Background(), config(t, "http", "api", "", map[string]any{"url": srv.URL + "/records", "headers": headers, "timeout": 5 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func httpBatch() *destination.Batch {
	return &destination.Batch{Object: "contacts", KeyField: "external_id", Fields: []string{"email"}, Records: []destination.Record{
		{Key: "1", KeyValue: int64(1), Op: destination.OpUpsert, Fields: map[string]any{"email": "a@x"}},
		{Key: "2", KeyValue: int64(2), Op: destination.OpUpsert, Fields: map[string]any{"email": "bad"}},
		{Key: "3", KeyValue: int64(3), Op: destination.OpDelete},
	}}
}

func TestHTTPPerRecordResultsAndTheRequestShape(t *testing.T) {
	api := &fakeAPI{reply: func(w http.ResponseWriter, recs []map[string]any) {
		json.NewEncoder(w).Encode(map[string]any{"results": []map[string]any{
			{"key": "1", "ok": true}, {"key": "2", "ok": false, "error": "invalid email"}, // no result for 3
		}})
	}}
	d := openHTTP(t, api, map[string]string{"Authorization": "Bearer s3cret"})
	out := d.Write(context.Background(), httpBatch())
	if out.Err != nil || len(out.Results) != 3 {
		t.Fatalf("outcome %+v", out)
	}
	if out.Results[0].Err != nil || out.Results[1].Err == nil || out.Results[1].Err.Error() != "invalid email" || out.Results[1].Retryable {
		t.Fatalf("results %+v", out.Results)
	}
	if !out.Results[2].Retryable {
		t.Fatal("a record without a result must stay retryable")
	}
	recs := api.requests[0]["records"].([]map[string]any)
	first := recs[0]
	if api.requests[0]["method"] != "POST" || first["key"] != "1" || first["operation"] != "upsert" {
		t.Fatalf("request %v", api.requests[0])
	}
	fields := first["fields"].(map[string]any)
	if fields["email"] != "a@x" || fields["external_id"] != float64(1) {
		t.Fatalf("fields %v, want the mapped field and the key field", fields)
	}
	if _, ok := recs[2]["fields"]; ok || recs[2]["operation"] != "delete" {
		t.Fatalf("delete record %v", recs[2])
	}
	if h := api.headers[0]; h.Get("Authorization") != "Bearer s3cret" || h.Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", h)
	}
}

func TestHTTPStatusClassification(t *testing.T) {
	for _, tc := range []struct {
		status     int
		header     string
		body       string
		retryable  bool
		wait       time.Duration
		wantErrMsg string
	}{
		{422, "", `{"error":"record 2: email is invalid"}`, false, 0, "email is invalid"},
		{409, "", "conflict", false, 0, "409 Conflict: conflict"},
		{400, "", "", false, 0, "400 Bad Request"},
		{429, "7", "slow down", true, 7 * time.Second, "429"},
		{503, "", "", true, 0, "503"},
		{408, "", "", true, 0, "408 Request Timeout"}, // the API gave up waiting for the batch: nothing refused
		{500, "2", `{"error":"boom"}`, true, 2 * time.Second, "boom"},
	} {
		api := &fakeAPI{reply: func(w http.ResponseWriter, _ []map[string]any) {
			if tc.header != "" {
				w.Header().Set("Retry-After", tc.header)
			}
			w.WriteHeader(tc.status)
			w.Write([]byte(tc.body))
		}}
		out := openHTTP(t, api, map[string]string{"X-Token": "tok3n"}).Write(context.Background(), httpBatch())
		if out.Err == nil || out.Retryable != tc.retryable || out.RetryAfter != tc.wait || !strings.Contains(out.Err.Error(), tc.wantErrMsg) {
			t.Errorf("status %d: %+v", tc.status, out)
		}
		if out.Err != nil && strings.Contains(out.Err.Error(), "tok3n") {
			t.Errorf("status %d: header secret in %q", tc.status, out.Err)
		}
	}
}

func TestHTTPConnectionFailureIsRetryableAndHidesCredentials(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.Listener.Addr().String()
	srv.Close() // nothing listens there now
	d, err := destination.OpenHTTP(context.Background(), config(t, "http", "api", "", map[string]any{"url": "http://user:pa55word@" + addr + "/records?token=t0ken"}))
	if err != nil {
		t.Fatal(err)
	}
	out := d.Write(context.Background(), httpBatch())
	if out.Err == nil || !out.Retryable || strings.Contains(out.Err.Error(), "pa55word") || strings.Contains(out.Err.Error(), "t0ken") || !strings.Contains(out.Err.Error(), addr+"/records") {
		t.Fatalf("outcome %+v", out)
	}
	if _, err := destination.OpenHTTP(context.Background(), config(t, "http", "api", "", map[string]any{"url": "ftp://example"})); err == nil {
		t.Fatal("a non-http URL must be refused")
	}
}

// Decimal fields go as JSON numbers with their exact digits (12.50 stays
// 12.50, a 30-digit decimal is not rounded through a float), unless
// DecimalsAsStrings; other strings stay strings.
func TestHTTPDecimalsAreExactJSONNumbers(t *testing.T) {
	for _, asStrings := range []bool{false, true} {
		var raw []byte
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, _ = io.ReadAll(r.Body)
			json.NewEncoder(w).Encode(map[string]any{"results": []map[string]any{{"key": "1", "ok": true}}})
		}))
		d, err := destination.OpenHTTP(context.Background(), config(t, "http", "api", "", map[string]any{"url": srv.URL, "decimals_as_strings": asStrings}))
		if err != nil {
			t.Fatal(err)
		}
		err = d.(destination.TypeChecker).CheckTypes(context.Background(), "deals", map[string]schema.Type{
			"id": schema.TypeInt, "amount": schema.TypeDecimal, "big": schema.TypeDecimal, "odd": schema.TypeDecimal, "code": schema.TypeString,
		})
		if err != nil {
			t.Fatal(err)
		}
		mustAccept(t, d.Write(context.Background(), &destination.Batch{Object: "deals", KeyField: "id", Fields: []string{"amount", "big", "odd", "code"}, Records: []destination.Record{
			{Key: "1", KeyValue: int64(1), Op: destination.OpUpsert, Fields: map[string]any{"amount": "12.50", "big": tmDecimal, "odd": "NaN", "code": "12.50"}},
		}}), 1)
		srv.Close()
		want := `"fields":{"amount":12.50,"big":12345678901234567890.0123456789,"code":"12.50","id":1,"odd":"NaN"}`
		if asStrings {
			want = `"fields":{"amount":"12.50","big":"12345678901234567890.0123456789","code":"12.50","id":1,"odd":"NaN"}`
		}
		if !strings.Contains(string(raw), want) {
			t.Errorf("DecimalsAsStrings=%v: request %s, want it to contain %s", asStrings, raw, want)
		}
	}
}

// An API whose connection drops before or in the middle of its answer:
// the batch is retryable, never rejected.
func TestHTTPDroppedConnectionIsRetryable(t *testing.T) {
	for _, partial := range []string{"", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"results\":["} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			buf.WriteString(partial)
			buf.Flush()
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}))
		d, err := destination.OpenHTTP(context.Background(), config(t, "http", "api", "", map[string]any{"url": srv.URL}))
		if err != nil {
			t.Fatal(err)
		}
		o := d.Write(context.Background(), httpBatch())
		srv.Close()
		if o.Err == nil || !o.Retryable || o.Fatal {
			t.Errorf("answer cut after %d bytes: want retryable, got %+v", len(partial), o)
		}
	}
}

// Requests in flight at once reuse their connections: rounds of 8
// concurrent requests open 8 connections, not new ones for most requests
// of every round.
func TestHTTPKeepsAConnectionPerRequestInFlight(t *testing.T) {
	api := &fakeAPI{reply: func(w http.ResponseWriter, records []map[string]any) {
		results := make([]map[string]any, len(records))
		for i, r := range records {
			results[i] = map[string]any{"key": r["key"], "ok": true}
		}
		json.NewEncoder(w).Encode(map[string]any{"results": results})
	}}
	srv := httptest.NewUnstartedServer(api)
	var mu sync.Mutex
	opened := 0
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			opened++
			mu.Unlock()
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	d, err := destination.OpenHTTP(context.Background(), config(t, "http", "api", "", map[string]any{"url": srv.URL, "max_in_flight": 8}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	for round := 0; round < 10; round++ {
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b := &destination.Batch{Object: "contacts", KeyField: "id", Fields: []string{"email"}, Records: []destination.Record{
					{Key: "1", KeyValue: int64(1), Op: destination.OpUpsert, Fields: map[string]any{"email": "a@x"}},
				}}
				if o := d.Write(context.Background(), b); o.Err != nil {
					t.Error(o.Err)
				}
			}()
		}
		wg.Wait()
	}
	mu.Lock()
	defer mu.Unlock()
	if opened > 16 {
		t.Fatalf("80 requests, 8 at a time, opened %d connections", opened)
	}
}

// A redirect is not followed: a 301, 302 or 303 would turn the POST into a
// GET whose answer (here results saying ok) is not about the records, and
// a 307 or 308 to another host would take the batch and the configured
// headers there. The sync stops, naming where the API points to.
func TestHTTPRedirectIsNotFollowed(t *testing.T) {
	for _, status := range []int{301, 302, 303, 307, 308} {
		var elsewhere []string
		other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			elsewhere = append(elsewhere, r.Method+" "+r.Header.Get("X-Token"))
			json.NewEncoder(w).Encode(map[string]any{"results": []map[string]any{
				{"key": "1", "ok": true}, {"key": "2", "ok": true}, {"key": "3", "ok": true},
			}})
		}))
		t.Cleanup(other.Close)
		target := strings.Replace(other.URL, "127.0.0.1", "localhost", 1) + "/v2/records?sig=abc"
		api := &fakeAPI{reply: func(w http.ResponseWriter, _ []map[string]any) {
			w.Header().Set("Location", target)
			w.WriteHeader(status)
		}}
		out := openHTTP(t, api, map[string]string{"X-Token": "tok3n"}).Write(context.Background(), httpBatch())
		if len(elsewhere) != 0 {
			t.Errorf("status %d: the redirect was followed: %v", status, elsewhere)
		}
		if out.Err == nil || !out.Fatal || !strings.Contains(out.Err.Error(), "/v2/records") || strings.Contains(out.Err.Error(), "sig=abc") {
			t.Errorf("status %d: %+v", status, out)
		}
	}
}

// A redirect's Location is the peer's to make as long as it likes: the
// error (kept as the run's halt reason) shows a bounded part of it.
func TestHTTPRedirectLocationIsBounded(t *testing.T) {
	api := &fakeAPI{reply: func(w http.ResponseWriter, _ []map[string]any) {
		w.Header().Set("Location", "https://elsewhere.example/"+strings.Repeat("a", 100_000))
		w.WriteHeader(http.StatusFound)
	}}
	out := openHTTP(t, api, nil).Write(context.Background(), httpBatch())
	if out.Err == nil || !out.Fatal || !strings.Contains(out.Err.Error(), "elsewhere.example/aaa") || len(out.Err.Error()) > 1000 {
		t.Errorf("error of %d bytes: %.200s", len(out.Err.Error()), out.Err)
	}
}

// A result without "ok" says neither that the record was written nor that
// it was refused (an API answering {"key":"1","status":"done"} wrote it):
// the record stays retryable, with a message naming what is missing,
// rather than rejected "without a reason".
func TestHTTPResultWithoutOKIsNoResult(t *testing.T) {
	api := &fakeAPI{reply: func(w http.ResponseWriter, _ []map[string]any) {
		w.Write([]byte(`{"results":[{"key":"1","status":"done"},{"key":"2","ok":false},{"key":"3","ok":true}]}`))
	}}
	out := openHTTP(t, api, nil).Write(context.Background(), httpBatch())
	if out.Err != nil || len(out.Results) != 3 {
		t.Fatalf("outcome %+v", out)
	}
	if r := out.Results[0]; r.Err == nil || !r.Retryable || !strings.Contains(r.Err.Error(), `"ok"`) {
		t.Errorf("record without ok: %+v", r)
	}
	if r := out.Results[1]; r.Err == nil || r.Retryable {
		t.Errorf("record with ok false: %+v", r)
	}
	if r := out.Results[2]; r.Err != nil {
		t.Errorf("record with ok true: %+v", r)
	}
}

// An answer that gives a key two different results says nothing certain
// about it: the record stays retryable rather than taking the last one
// (which counted a refused record written).
func TestHTTPConflictingResultsForAKeyAreNoResult(t *testing.T) {
	api := &fakeAPI{reply: func(w http.ResponseWriter, _ []map[string]any) {
		w.Write([]byte(`{"results":[{"key":"1","ok":true},{"key":"2","ok":false,"error":"bad"},{"key":"2","ok":true},{"key":"1","ok":true},{"key":"3","ok":true}]}`))
	}}
	out := openHTTP(t, api, nil).Write(context.Background(), httpBatch())
	if out.Err != nil || len(out.Results) != 3 {
		t.Fatalf("outcome %+v", out)
	}
	if r := out.Results[1]; r.Err == nil || !r.Retryable || !strings.Contains(r.Err.Error(), "conflicting") {
		t.Errorf("key given two results: %+v", r)
	}
	if out.Results[0].Err != nil || out.Results[2].Err != nil {
		t.Errorf("keys given one result (key 1 twice alike): %+v", out.Results)
	}
}

// A result object naming "ok" twice says two things (Go's decoder keeps
// the last): the answer is taken as saying nothing, retryable, rather
// than counting a refused record written.
func TestHTTPResultRepeatingAMemberIsNoResult(t *testing.T) {
	api := &fakeAPI{reply: func(w http.ResponseWriter, _ []map[string]any) {
		w.Write([]byte(`{"results":[{"key":"1","ok":false,"error":"no","ok":true},{"key":"2","ok":true},{"key":"3","ok":true}]}`))
	}}
	out := openHTTP(t, api, nil).Write(context.Background(), httpBatch())
	if out.Err == nil || !out.Retryable || !strings.Contains(out.Err.Error(), `gives member "ok" twice`) {
		t.Errorf("outcome %+v, want the whole answer retryable, naming the member", out)
	}
	for i, r := range out.Results {
		if r.Err == nil {
			t.Errorf("record %d taken as written: %+v", i, out)
		}
	}
}

// Any 2xx answer is read for results, as 200 is: a 201 with results gives
// them, and a 204 or 202 without says nothing of the records, which stay
// retryable instead of being rejected as if the API had refused them.
func TestHTTPOther2xxAnswersAreReadForResults(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
	}{
		{201, `{"results":[{"key":"1","ok":true},{"key":"2","ok":false,"error":"invalid email"},{"key":"3","ok":true}]}`},
		{202, ""},
		{204, ""},
	} {
		api := &fakeAPI{reply: func(w http.ResponseWriter, _ []map[string]any) {
			w.WriteHeader(tc.status)
			w.Write([]byte(tc.body))
		}}
		out := openHTTP(t, api, nil).Write(context.Background(), httpBatch())
		if tc.body == "" {
			if out.Err == nil || !out.Retryable || out.Fatal || !strings.Contains(out.Err.Error(), strconv.Itoa(tc.status)) {
				t.Errorf("status %d without results: %+v", tc.status, out)
			}
			continue
		}
		if out.Err != nil || len(out.Results) != 3 || out.Results[0].Err != nil || out.Results[1].Err == nil || out.Results[2].Err != nil {
			t.Errorf("status %d with results: %+v", tc.status, out)
		}
	}
}

// A 200 answer that says what went wrong beside its results ({"error":
// "quota exceeded"}) has that message in the errors of the records it
// gave no result for, which stay retryable.
func TestHTTPAnswerErrorIsInTheMissingResults(t *testing.T) {
	api := &fakeAPI{reply: func(w http.ResponseWriter, _ []map[string]any) {
		w.Write([]byte(`{"error":"daily quota exceeded","results":[{"key":"1","ok":true}]}`))
	}}
	out := openHTTP(t, api, nil).Write(context.Background(), httpBatch())
	if out.Err != nil || len(out.Results) != 3 || out.Results[0].Err != nil {
		t.Fatalf("outcome %+v", out)
	}
	for _, r := range out.Results[1:] {
		if r.Err == nil || !r.Retryable || !strings.Contains(r.Err.Error(), "daily quota exceeded") {
			t.Errorf("record without a result: %+v", r)
		}
	}
}

// A long message from the API is cut at a character boundary: the error
// stays valid UTF-8 however the 300 bytes kept fall.
func TestHTTPLongAPIMessageIsCutAtACharacter(t *testing.T) {
	body := strings.Repeat("a", 299) + strings.Repeat("é", 50)
	api := &fakeAPI{reply: func(w http.ResponseWriter, _ []map[string]any) {
		w.WriteHeader(422)
		w.Write([]byte(body))
	}}
	out := openHTTP(t, api, nil).Write(context.Background(), httpBatch())
	if out.Err == nil || !utf8.ValidString(out.Err.Error()) || !strings.HasSuffix(out.Err.Error(), "a…") {
		t.Errorf("outcome %+v", out)
	}
}

// An answer longer than the bound on its read (64 MiB) is said to be too long,
// not reported as JSON that ends early.
func TestHTTPAnswerTooLongIsSaidSo(t *testing.T) {
	// The bound is lowered to 1 MiB (the default 64 MiB took 8 s to read
	// under -race on a loaded runner, past the destination's timeout); the
	// answer is still valid JSON past the bound, so only the bound refuses it.
	destination.SetMaxAnswer(t, 1<<20)
	api := &fakeAPI{reply: func(w http.ResponseWriter, _ []map[string]any) {
		w.Write([]byte(`{"results":[]`))
		w.Write([]byte(strings.Repeat(" ", 1<<20)))
		w.Write([]byte(`}`))
	}}
	out := openHTTP(t, api, nil).Write(context.Background(), httpBatch())
	if out.Err == nil || !out.Retryable || !strings.Contains(out.Err.Error(), "longer than 1 MiB") {
		t.Errorf("outcome %+v", out)
	}
}

// The API's words are masked wherever the destination passes them on: a
// record's refusal, the error of an answer without results, and a long
// message cut after the token began (the cut must not leave its start).
func TestHTTPAPIMessagesEchoingTheTokenAreMasked(t *testing.T) {
	const token = "S3cr3t-XYZ-123456"
	for name, reply := range map[string]string{
		"record":   `{"results":[{"key":"1","ok":false,"error":"token ` + token + ` refused"}]}`,
		"noresult": `{"results":[],"error":"nothing done for token ` + token + `"}`,
		"cut":      `{"error":"` + strings.Repeat("x", 290) + " " + token + ` tail"}`,
		"cuttext":  strings.Repeat("x", 290) + " " + token + " tail",
	} {
		api := &fakeAPI{reply: func(w http.ResponseWriter, _ []map[string]any) {
			if strings.HasPrefix(name, "cut") {
				w.WriteHeader(422)
			}
			w.Write([]byte(reply))
		}}
		srv := httptest.NewServer(api)
		defer srv.Close()
		cfg := config(t, "http", "api", "", map[string]any{"url": srv.URL, "headers": map[string]string{"Authorization": "Bearer " + token}})
		cfg.Redact = redact.New("Bearer " + token) // as env() gives it
		d, err := destination.OpenHTTP(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		out := d.Write(context.Background(), httpBatch())
		d.Close()
		msgs := []string{}
		if out.Err != nil {
			msgs = append(msgs, out.Err.Error())
		}
		for _, r := range out.Results {
			if r.Err != nil {
				msgs = append(msgs, r.Err.Error())
			}
		}
		if len(msgs) == 0 {
			t.Fatalf("%s: no error: %+v", name, out)
		}
		for _, m := range msgs {
			if strings.Contains(m, "S3cr3t") {
				t.Errorf("%s: the token shows: %s", name, m)
			}
		}
	}
}

// Text JSON cannot carry (bytes that are not UTF-8, which it would send as
// U+FFFD: k\xff and k\xfe both k\uFFFD) rejects its record on its own; the
// others go, in the http and the file destinations alike.
func TestRecordsNotUTF8AreRejectedNotChanged(t *testing.T) {
	batch := func() *destination.Batch {
		return &destination.Batch{Object: "contacts", KeyField: "external_id", Fields: []string{"email"}, Records: []destination.Record{
			{Key: "k\xff", KeyValue: "k\xff", Op: destination.OpUpsert, Fields: map[string]any{"email": "a@x"}},
			{Key: "ok", KeyValue: "ok", Op: destination.OpUpsert, Fields: map[string]any{"email": "b@x"}},
			{Key: "v", KeyValue: "v", Op: destination.OpUpsert, Fields: map[string]any{"email": "c\xfe@x"}},
			{Key: "k\xfe", Op: destination.OpDelete},
		}}
	}
	check := func(what string, out destination.Outcome) {
		t.Helper()
		if out.Err != nil || len(out.Results) != 4 || out.Results[1].Err != nil {
			t.Fatalf("%s: outcome %+v, want per-record results with ok accepted", what, out)
		}
		for _, i := range []int{0, 2, 3} {
			if err := out.Results[i].Err; err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
				t.Errorf("%s: record %d: %v, want a rejection naming UTF-8", what, i, err)
			}
		}
		// A removal's row is gone from the model: the way out is not to
		// convert it there.
		if err := out.Results[3].Err; err == nil || !strings.Contains(err.Error(), "--skip-removals") {
			t.Errorf("%s: the removal's rejection %v, want the way out of it", what, err)
		}
	}
	api := &fakeAPI{reply: func(w http.ResponseWriter, recs []map[string]any) {
		res := []map[string]any{}
		for _, r := range recs {
			res = append(res, map[string]any{"key": r["key"], "ok": true})
		}
		json.NewEncoder(w).Encode(map[string]any{"results": res})
	}}
	d := openHTTP(t, api, nil)
	check("http", d.Write(context.Background(), batch()))
	if len(api.requests) != 1 || len(api.requests[0]["records"].([]map[string]any)) != 1 {
		t.Errorf("the API received %v, want the one UTF-8 record", api.requests)
	}

	dir := t.TempDir()
	f, err := destination.Default().Open(context.Background(), "file", config(t, "file", "log", dir, map[string]any{"path": "out.jsonl"}))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	check("file", f.Write(context.Background(), batch()))
	if data, _ := os.ReadFile(filepath.Join(dir, "out.jsonl")); strings.Count(string(data), "\n") != 1 || strings.Contains(string(data), `\ufffd`) {
		t.Errorf("the file holds %q, want the one UTF-8 record", data)
	}
}
