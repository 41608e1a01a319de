package destination

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/backflowhq/backflow/schema"
	"github.com/backflowhq/backflow/spec"
)

// HTTP is the `http` destination speaking backflow's default JSON batch
// protocol:
//
//	POST url  {"records":[{"key":"42","operation":"upsert","fields":{…}}]}
//	200  {"results":[{"key":"42","ok":true} | {"key":"42","ok":false,"error":"…"}]}
//	     (any 2xx is read so)
//	401, 403, 404, 405, 407, 410: fatal, the sync cannot proceed
//	3xx: fatal too, redirects are not followed
//	409, 422 and other 4xx: the batch is rejected whole
//	408, 429, 5xx, transport failures: retryable, honouring Retry-After
//
// A 200 answer that gives no result for a record, one without "ok", or
// results that disagree on "ok", leaves that record retryable: nothing
// says it was written.
//
// Field values are JSON: strings, numbers, booleans, null; bytes as base64
// strings, times as RFC 3339 strings, JSON columns as their JSON text in a
// string. Decimal fields (as CheckTypes tells) are JSON numbers written with
// the decimal's exact digits (12.50, never through a float), unless
// Config.DecimalsAsStrings keeps them strings.
type HTTP struct {
	url     string
	shown   string // url with any password removed, for messages
	headers map[string]string
	client  *http.Client
	scrub   func(error) error

	decimalsAsStrings bool
	mu                sync.Mutex
	decimals          map[string]map[string]bool // object -> decimal fields, from CheckTypes
	decimalsGen       uint64                     // incremented by every CheckTypes
}

// The http driver's default for connect_timeout (TCP and TLS handshake).
// The bound of one request — connecting, sending the batch and reading the
// whole answer — is the common timeout argument.
const (
	HTTPDefaultConnectTimeout = 10 * time.Second
)

// OpenHTTP opens an http destination; Config.URL is required. Nothing is
// sent until the first Write.
func OpenHTTP(_ context.Context, cfg Config) (Destination, error) {
	rawURL, headers := cfg.Args.String("url"), cfg.Args.StringMap("headers")
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("destination %q: url must be an http:// or https:// address", cfg.Name)
	}
	timeout := cfg.Policy.Timeout
	connectTimeout := cfg.Args.Duration("connect_timeout")
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DialContext = (&net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}).DialContext
	transport.TLSHandshakeTimeout = connectTimeout
	// One connection per request in flight is kept between requests
	// (the default keeps two per host, so with more in flight the others
	// were closed after each answer and dialled again).
	transport.MaxIdleConnsPerHost = MaxInFlight
	// Messages name the endpoint without credentials or query string, where
	// API tokens often travel; those are scrubbed from errors too.
	secrets := []string{rawURL, u.RawQuery}
	if p, ok := u.User.Password(); ok {
		secrets = append(secrets, p)
	}
	for _, v := range headers {
		secrets = append(secrets, v)
	}
	shown := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return &HTTP{
		url: rawURL, shown: shown.String(), headers: headers,
		client: &http.Client{Timeout: timeout, Transport: transport, CheckRedirect: noRedirects},
		scrub:  scrubber(cfg.Redact, secrets...),

		decimalsAsStrings: cfg.Args.Bool("decimals_as_strings"),
	}, nil
}

// CheckTypes implements TypeChecker: it remembers which of object's fields
// are decimals, which Write sends as JSON numbers. Any type can be sent.
func (h *HTTP) CheckTypes(_ context.Context, object string, fields map[string]schema.Type) error {
	dec := map[string]bool{}
	for f, t := range fields {
		if t == schema.TypeDecimal {
			dec[f] = true
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.decimals == nil {
		h.decimals = map[string]map[string]bool{}
	}
	h.decimals[object] = dec
	h.decimalsGen++
	return nil
}

// jsonValue is v as a record field: a decimal field's value as a JSON
// number with the decimal's own digits, unless decimals go as strings.
func (h *HTTP) jsonValue(decimal bool, v any) any {
	switch x := v.(type) {
	case string:
		if decimal && !h.decimalsAsStrings && isJSONNumber(x) {
			return json.Number(x)
		}
	case json.Number:
		if h.decimalsAsStrings {
			return string(x)
		}
	}
	return v
}

type httpResult struct {
	Key   string `json:"key"`
	OK    *bool  `json:"ok"` // nil when the API left it out
	Error string `json:"error"`
}

// ConcurrentWrites implements ConcurrentWriter.
func (h *HTTP) ConcurrentWrites() {}

// PrepareBatch implements BatchPreparer: the body is encoded while the
// requests before are out.
func (h *HTTP) PrepareBatch(b *Batch) {
	h.mu.Lock()
	dec, gen := h.decimals[b.Object], h.decimalsGen
	h.mu.Unlock()
	b.prepared = nil
	if body, err := h.encodable(b, dec); err == nil {
		b.prepared = &httpBody{body: body, gen: gen}
	}
}

// maxAnswer is the most of an answer read: 64 MiB. A variable so that a
// test can check the bound without sending 64 MiB.
var maxAnswer = 64 << 20

// Write posts the batch and classifies the answer.
func (h *HTTP) Write(ctx context.Context, b *Batch) Outcome {
	h.mu.Lock()
	dec, gen := h.decimals[b.Object], h.decimalsGen
	h.mu.Unlock()
	var body []byte
	if p, ok := b.prepared.(*httpBody); ok && p.gen == gen {
		body = p.body
	} else {
		var err error
		if body, err = h.encodable(b, dec); err != nil {
			return h.writeEncodable(ctx, b, dec, err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return RejectBatch(h.scrub(err))
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range h.headers {
		req.Header.Set(k, v)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return Retry(h.scrub(fmt.Errorf("POST %s: %w", h.shown, errors.Unwrap(err))), 0)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(maxAnswer)+1))
	if err != nil {
		return Retry(h.scrub(fmt.Errorf("POST %s: reading the answer: %w", h.shown, err)), 0)
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		// 200 is the protocol's; another success (201, 202, 204) is no
		// refusal either, and gives results or leaves the records retryable.
		if len(data) > maxAnswer {
			return Retry(h.scrub(fmt.Errorf("POST %s: %s with an answer longer than %d MiB, which is not read", h.shown, resp.Status, maxAnswer>>20)), 0)
		}
		return h.results(b, resp.Status, data)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500:
		// 408: the server gave up waiting for the request, refusing nothing.
		return Retry(h.statusError(resp, data), retryAfter(resp.Header.Get("Retry-After"), time.Now()))
	case fatalStatus(resp.StatusCode):
		return Fatal(h.statusError(resp, data))
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return Fatal(h.redirectError(resp))
	default:
		return RejectBatch(h.statusError(resp, data))
	}
}

// writeEncodable writes a batch some of whose records JSON cannot carry (a
// NaN or infinite float, text not UTF-8): each of those is rejected on its own, naming the
// field, and the others are sent, as the file destination does. err is
// the batch's encoding error, returned when no record is to blame.
func (h *HTTP) writeEncodable(ctx context.Context, b *Batch, dec map[string]bool, err error) Outcome {
	results := make([]Result, len(b.Records))
	sendable := &Batch{Object: b.Object, KeyField: b.KeyField, Fields: b.Fields, ClearFields: b.ClearFields}
	var sent []int // index in b of each record of sendable
	for i := range b.Records {
		one := &Batch{Object: b.Object, KeyField: b.KeyField, Fields: b.Fields, ClearFields: b.ClearFields, Records: b.Records[i : i+1]}
		if _, rerr := h.encodable(one, dec); rerr != nil {
			results[i] = Result{Err: fmt.Errorf("encoding as JSON: %w", rerr)}
			continue
		}
		sendable.Records = append(sendable.Records, b.Records[i])
		sent = append(sent, i)
	}
	if len(sent) == len(b.Records) {
		return RejectBatch(fmt.Errorf("encoding the batch as JSON: %w", err))
	}
	if len(sent) == 0 {
		return Outcome{Results: results}
	}
	out := h.Write(ctx, sendable)
	if out.Err != nil {
		return out
	}
	for j, i := range sent {
		results[i] = out.Results[j]
	}
	return Outcome{Results: results}
}

func (h *HTTP) results(b *Batch, status string, data []byte) Outcome {
	var answer struct {
		Results []httpResult    `json:"results"`
		Error   json.RawMessage `json:"error"` // what went wrong, if the API says
	}
	if err := json.Unmarshal(data, &answer); err != nil {
		return Retry(h.scrub(fmt.Errorf("POST %s: %s with an answer that is not the results JSON: %v", h.shown, status, err)), 0)
	}
	if name, dup := repeatedMember(data); dup {
		// Go's decoder keeps the last of two members of one name:
		// {"ok": false, "ok": true} would read as written.
		return Retry(h.scrub(fmt.Errorf("POST %s: %s with an answer that gives member %q twice in one object: it says two things, so nothing of it is taken", h.shown, status, spec.Clip(name, 50))), 0)
	}
	var said, noResult string
	if json.Unmarshal(answer.Error, &said) == nil && strings.TrimSpace(said) != "" {
		noResult = ": it said " + strconv.Quote(spec.Clip(h.mask(strings.TrimSpace(said)), 300))
	}
	// Most APIs answer in the order of the request: the results are
	// looked up by key only if not.
	inOrder := len(answer.Results) == len(b.Records)
	for i := 0; inOrder && i < len(b.Records); i++ {
		inOrder = answer.Results[i].Key == b.Records[i].Key
	}
	var byKey map[string]httpResult
	var conflicting map[string]bool // keys given results that disagree on "ok"
	if !inOrder {
		byKey = make(map[string]httpResult, len(answer.Results))
		for _, r := range answer.Results {
			if prev, seen := byKey[r.Key]; !seen {
				byKey[r.Key] = r
			} else if okState(prev) != okState(r) {
				if conflicting == nil {
					conflicting = map[string]bool{}
				}
				conflicting[r.Key] = true
			}
		}
	}
	out := Outcome{Results: make([]Result, len(b.Records))}
	for i, r := range b.Records {
		var res httpResult
		ok := inOrder
		if ok {
			res = answer.Results[i]
		} else {
			res, ok = byKey[r.Key]
		}
		switch {
		case !ok:
			out.Results[i] = Result{Err: fmt.Errorf("the API gave no result for key %q%s", r.Key, noResult), Retryable: true}
		case conflicting[r.Key]:
			out.Results[i] = Result{Err: fmt.Errorf("the API gave conflicting results for key %q", r.Key), Retryable: true}
		case res.OK == nil:
			// Neither written nor refused, as far as the answer says.
			out.Results[i] = Result{Err: fmt.Errorf(`the API's result for key %q has no "ok"`, r.Key), Retryable: true}
		case !*res.OK:
			msg := res.Error
			if msg == "" {
				msg = "rejected without a reason"
			}
			out.Results[i] = Result{Err: errors.New(h.mask(msg))}
		}
	}
	return out
}

// repeatedMember reports whether an object of the JSON text data (valid:
// it decoded) names a member twice, and which; names are compared as Go's
// decoder matches them to fields, without regard to case. It reads the bytes itself,
// without allocating (an answer of 100 results in a few µs; json.Decoder's
// tokens took 139 µs and 2,800 allocations); a name with an escape in it
// sends the whole text to repeatedMemberSlow, which compares names
// unescaped.
func repeatedMember(data []byte) (string, bool) {
	var spans [][2]int // the member names of the objects open, as byte spans of data
	var open []int     // per container open: where its names start in spans, -1 for an array
	expectName := false
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '{':
			open = append(open, len(spans))
			expectName = true
		case '[':
			open = append(open, -1)
			expectName = false
		case '}', ']':
			if n := len(open); n > 0 {
				if from := open[n-1]; from >= 0 {
					spans = spans[:from]
				}
				open = open[:n-1]
			}
			expectName = false
		case ',':
			expectName = len(open) > 0 && open[len(open)-1] >= 0
		case '"':
			j := i + 1
			for ; j < len(data) && data[j] != '"'; j++ {
				if data[j] == '\\' {
					if expectName {
						return repeatedMemberSlow(data)
					}
					j++
				}
			}
			if expectName && len(open) > 0 {
				name := data[i+1 : min(j, len(data))]
				for _, sp := range spans[open[len(open)-1]:] {
					// Go's decoder matches a member to a field whatever
					// its case ("OK", "ſ" for "s"): so do we.
					if bytes.EqualFold(data[sp[0]:sp[1]], name) {
						return string(name), true
					}
				}
				spans = append(spans, [2]int{i + 1, i + 1 + len(name)})
				expectName = false
			}
			i = j
		}
	}
	return "", false
}

// repeatedMemberSlow is repeatedMember by json.Decoder's tokens.
func repeatedMemberSlow(data []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	// names[i] are the members seen so far of the i-th container open (nil
	// for an array); expectName[i], whether a member's name comes next.
	var names []map[string]bool
	var expectName []bool
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{':
				names, expectName = append(names, map[string]bool{}), append(expectName, true)
				continue
			case '[':
				names, expectName = append(names, nil), append(expectName, false)
				continue
			default:
				names, expectName = names[:len(names)-1], expectName[:len(expectName)-1]
			}
		} else if n := len(names); n > 0 && names[n-1] != nil && expectName[n-1] {
			name, _ := tok.(string)
			for seen := range names[n-1] {
				if strings.EqualFold(seen, name) {
					return name, true
				}
			}
			names[n-1][name] = true
			expectName[n-1] = false
			continue
		}
		// A value ended (a scalar, or a container closed): the object
		// holding it expects a name next.
		if n := len(names); n > 0 && names[n-1] != nil {
			expectName[n-1] = true
		}
	}
}

// okState is a result's "ok": 0 missing, 1 false, 2 true.
func okState(r httpResult) int {
	switch {
	case r.OK == nil:
		return 0
	case !*r.OK:
		return 1
	}
	return 2
}

// mask is s, the API's words, with the secrets masked: before it is cut,
// so that a cut does not leave the start of one.
func (h *HTTP) mask(s string) string {
	if h.scrub == nil {
		return s
	}
	return h.scrub(errors.New(s)).Error()
}

// statusError describes a non-200 answer with the API's own message when
// it gives one ({"error": "…"} or a short text body).
func (h *HTTP) statusError(resp *http.Response, data []byte) error {
	msg := strings.TrimSpace(string(data))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	msg = spec.Clip(h.mask(msg), 300)
	if msg == "" {
		return h.scrub(fmt.Errorf("POST %s: %s", h.shown, resp.Status))
	}
	return h.scrub(fmt.Errorf("POST %s: %s: %s", h.shown, resp.Status, msg))
}

// noRedirects keeps a redirect as the answer: following a 301, 302 or 303
// turns the POST into a GET whose answer says nothing of the records (a
// 200 there would count them written), and a 307 or 308 to another host
// takes the batch and the configured headers there.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// redirectError describes a redirect, naming where it points without its
// query string or credentials.
func (h *HTTP) redirectError(resp *http.Response) error {
	to := "no Location"
	if loc, err := resp.Location(); err == nil {
		shown := url.URL{Scheme: loc.Scheme, Host: loc.Host, Path: loc.Path}
		to = "to " + spec.Clip(shown.String(), 300) // a peer's header: bounded
	}
	return h.scrub(fmt.Errorf("POST %s: %s %s; redirects are not followed: set url to the address the API answers at", h.shown, resp.Status, to))
}

// fatalStatus reports the answers that say no request to this endpoint
// can succeed as configured: bad or missing credentials, no permission, no
// such endpoint (or not for POST), a proxy asking for credentials.
func fatalStatus(code int) bool {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed,
		http.StatusProxyAuthRequired, http.StatusGone:
		return true
	}
	return false
}

// maxRetryAfter is the longest wait retryAfter returns: a longer one (a
// date years ahead, a number of seconds that overflows a duration) is read
// as this. Callers cap the wait further with their own backoff limits.
const maxRetryAfter = 24 * time.Hour

// retryAfter reads a Retry-After header: a number of seconds (a decimal
// fraction is tolerated) or an HTTP date. Anything else, and a date in the
// past, is 0.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secondsForm.MatchString(v) {
		// Digits only, so an error can only be an overflow.
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || s >= maxRetryAfter.Seconds() {
			return maxRetryAfter
		}
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}

var secondsForm = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

// Close releases idle connections.
func (h *HTTP) Close() error {
	h.client.CloseIdleConnections()
	return nil
}
