package destination

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/backflowhq/backflow/schema"
)

// marshalBatch is the body as encoding/json writes it: the reference the
// appending encoder must match byte for byte.
func marshalBatch(h *HTTP, b *Batch, dec map[string]bool) ([]byte, error) {
	type record struct {
		Key       string         `json:"key"`
		Operation Operation      `json:"operation"`
		Fields    map[string]any `json:"fields,omitempty"`
	}
	recs := make([]record, len(b.Records))
	for i, r := range b.Records {
		fields := r.Fields
		if r.Op != OpDelete {
			fields = make(map[string]any, len(r.Fields)+1)
			for k, v := range r.Fields {
				fields[k] = h.jsonValue(dec[k], v)
			}
			fields[b.KeyField] = h.jsonValue(dec[b.KeyField], r.KeyValue)
		}
		recs[i] = record{Key: r.Key, Operation: r.Op, Fields: fields}
	}
	return json.Marshal(map[string]any{"object": b.Object, "records": recs})
}

// randomString mixes what JSON escapes: quotes, backslashes, control and
// HTML characters, U+2028/9, multi-byte runes and bytes that are not UTF-8.
func randomString(r *rand.Rand) string {
	pieces := []string{"a", "Z", "0", " ", `"`, `\`, "/", "<", ">", "&", "\n", "\r", "\t", "\b", "\f", "\x00", "\x01", "\x1f", "\x7f",
		"é", "日本", "\u2028", "\u2029", "😀", "\xff", "\xc3", "\xe2\x80", "\ufffd", "${x}", "'"}
	var sb strings.Builder
	for range r.IntN(12) {
		sb.WriteString(pieces[r.IntN(len(pieces))])
	}
	return sb.String()
}

func randomFloat(r *rand.Rand) float64 {
	specials := []float64{0, math.Copysign(0, -1), 1e-6, 9.99e-7, 1e-7, 1e20, 1e21, 1.5e21, -1e-7, 0.1, 1.0 / 3,
		math.MaxFloat64, math.SmallestNonzeroFloat64, 123456789.125, -2.5, 1e-300, 5e-324}
	if r.IntN(3) == 0 {
		return specials[r.IntN(len(specials))]
	}
	return math.Float64frombits(r.Uint64())
}

func randomValue(r *rand.Rand) any {
	switch r.IntN(10) {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return int64(r.Uint64())
	case 3:
		f := randomFloat(r)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return 1.25
		}
		return f
	case 4:
		return []string{"12.50", "-0.5", "1e3", "012", "1.", ".5", "-", "NaN", " 1", "1 ", "0", "-0.0e+1"}[r.IntN(12)]
	case 5:
		return json.Number([]string{"12.50", "7", "-1e-9"}[r.IntN(3)])
	case 6:
		return []any{int64(1), "x"} // not a canonical value: encoding/json's way
	default:
		return randomString(r)
	}
}

func TestEncodeBatchIsWhatEncodingJSONWrites(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	names := []string{"email", "name", "<b>", "é", "id", "amount", "a\"b", "z", ""}
	for _, asStrings := range []bool{false, true} {
		h := &HTTP{decimalsAsStrings: asStrings}
		for range 400 {
			dec := map[string]bool{}
			for _, n := range names {
				if r.IntN(3) == 0 {
					dec[n] = true
				}
			}
			b := &Batch{Object: randomString(r), KeyField: names[r.IntN(len(names))]}
			// Mostly records of the same fields, some with fewer or more,
			// some holding the key field themselves.
			common := names[:1+r.IntN(len(names)-1)]
			for range 1 + r.IntN(20) {
				rec := Record{Key: randomString(r), KeyValue: randomValue(r), Op: []Operation{OpUpsert, OpUpdate, OpInsert, OpDelete, OpClear}[r.IntN(5)]}
				fields := common
				if r.IntN(5) == 0 {
					fields = names[:r.IntN(len(names))]
				}
				if rec.Op != OpDelete || r.IntN(4) == 0 {
					rec.Fields = map[string]any{}
					for _, f := range fields {
						rec.Fields[f] = randomValue(r)
					}
				}
				b.Records = append(b.Records, rec)
			}
			want, werr := marshalBatch(h, b, dec)
			got, gerr := h.encodeBatch(b, dec)
			if (werr != nil) != (gerr != nil) {
				t.Fatalf("encoding/json error %v, encodeBatch error %v", werr, gerr)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("decimalsAsStrings=%v:\n got %s\nwant %s", asStrings, got, want)
			}
		}
	}
}

func TestJSONFloatsAndStringsAsEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	for range 20000 {
		f := randomFloat(r)
		want, werr := json.Marshal(f)
		got, gerr := appendJSONFloat(nil, f)
		if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("%v (%x): got %s (%v), want %s (%v)", f, math.Float64bits(f), got, gerr, want, werr)
		}
		s := randomString(r)
		want, _ = json.Marshal(s)
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, err := appendJSONFloat(nil, f); err == nil {
			t.Errorf("%v: no error", f)
		}
	}
}

func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "a\"b\\c", "<script>&", "\u2028\u2029", "\xff\xfe", "\x00\x1f\x7f", "日本語😀"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	})
}

func TestIsJSONNumber(t *testing.T) {
	for s, want := range map[string]bool{
		"0": true, "-0": true, "12.50": true, "1e3": true, "1E+3": true, "-0.5e-7": true, "12345678901234567890.0123456789": true,
		"": false, "-": false, "012": false, "1.": false, ".5": false, "+1": false, "1e": false, "1e+": false,
		" 1": false, "1 ": false, "NaN": false, "Infinity": false, "0x10": false, "1_000": false, "1.2.3": false,
	} {
		if got := isJSONNumber(s); got != want {
			t.Errorf("isJSONNumber(%q) = %v, want %v", s, got, want)
		}
		// What it accepts, JSON reads as one number.
		if want {
			var n json.Number
			if err := json.Unmarshal([]byte(s), &n); err != nil || string(n) != s {
				t.Errorf("%q: encoding/json reads %q, %v", s, n, err)
			}
		}
	}
}

// A body prepared before the object's decimal fields changed is encoded
// again; one prepared after them is sent as prepared.
func TestHTTPPreparedBodyFollowsTheDecimalFields(t *testing.T) {
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(raw))
		json.NewEncoder(w).Encode(map[string]any{"results": []map[string]any{{"key": "1", "ok": true}}})
	}))
	defer srv.Close()
	cfg, err := Default().Config("http", "api", "", map[string]any{"url": srv.URL, "timeout": 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d, err := OpenHTTP(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := d.(*HTTP)
	batch := func() *Batch {
		return &Batch{Object: "deals", KeyField: "id", Fields: []string{"amount"}, Records: []Record{
			{Key: "1", KeyValue: int64(1), Op: OpUpsert, Fields: map[string]any{"amount": "12.50"}},
		}}
	}
	b := batch()
	h.PrepareBatch(b)
	if b.prepared == nil {
		t.Fatal("nothing prepared")
	}
	if err := h.CheckTypes(context.Background(), "deals", map[string]schema.Type{"id": schema.TypeInt, "amount": schema.TypeDecimal}); err != nil {
		t.Fatal(err)
	}
	if out := h.Write(context.Background(), b); out.Err != nil {
		t.Fatal(out.Err)
	}
	// Prepared now, with the decimal known: a body to tell apart from a
	// fresh encoding.
	b2 := batch()
	h.PrepareBatch(b2)
	b2.prepared.(*httpBody).body = []byte(strings.Replace(string(b2.prepared.(*httpBody).body), `"deals"`, `"prepared"`, 1))
	if out := h.Write(context.Background(), b2); out.Err != nil {
		t.Fatal(out.Err)
	}
	if len(bodies) != 2 || !strings.Contains(bodies[0], `"amount":12.50`) || !strings.Contains(bodies[1], `"object":"prepared"`) {
		t.Fatalf("bodies %q: want the first encoded again with amount a number, the second as prepared", bodies)
	}
}

// A record JSON cannot carry (NaN, an infinity) is rejected on its own,
// naming its field; the rest of its batch is sent.
func TestHTTPUnencodableValueRejectsItsRecordNamingTheField(t *testing.T) {
	var sent []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Records []struct {
				Key string `json:"key"`
			} `json:"records"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		var res []string
		for _, rec := range body.Records {
			sent = append(sent, rec.Key)
			res = append(res, `{"key":"`+rec.Key+`","ok":true}`)
		}
		io.WriteString(w, `{"results":[`+strings.Join(res, ",")+`]}`)
	}))
	defer srv.Close()
	h := &HTTP{url: srv.URL, shown: srv.URL, client: srv.Client()}
	b := &Batch{Object: "o", KeyField: "id", Records: []Record{
		{Key: "8", KeyValue: int64(8), Op: OpUpsert, Fields: map[string]any{"score": 1.5}},
		{Key: "9", KeyValue: int64(9), Op: OpUpsert, Fields: map[string]any{"score": math.NaN()}},
		{Key: "10", KeyValue: int64(10), Op: OpUpsert, Fields: map[string]any{"score": math.Inf(-1)}},
	}}
	h.PrepareBatch(b)
	out := h.Write(context.Background(), b)
	if out.Err != nil || len(out.Results) != 3 || out.Results[0].Err != nil ||
		out.Results[1].Err == nil || !strings.Contains(out.Results[1].Err.Error(), `field "score" of key "9": NaN is not a JSON number`) ||
		out.Results[2].Err == nil || !strings.Contains(out.Results[2].Err.Error(), `field "score" of key "10": -Inf is not a JSON number`) {
		t.Fatalf("outcome %+v: want 8 accepted, 9 and 10 rejected naming the field and key", out)
	}
	if !slices.Equal(sent, []string{"8"}) {
		t.Errorf("sent %v, want only 8", sent)
	}

	// A batch of such records alone sends nothing.
	sent = nil
	out = h.Write(context.Background(), &Batch{Object: "o", KeyField: "id", Records: b.Records[1:]})
	if out.Err != nil || len(out.Results) != 2 || out.Results[0].Err == nil || out.Results[1].Err == nil || len(sent) != 0 {
		t.Fatalf("outcome %+v, sent %v: want both rejected, nothing sent", out, sent)
	}
}

// The results are matched by key whatever their order.
func TestHTTPResultsInAnyOrder(t *testing.T) {
	h := &HTTP{}
	b := &Batch{Records: []Record{{Key: "a"}, {Key: "b"}, {Key: "c"}}}
	for _, answer := range []string{
		`{"results":[{"key":"a","ok":true},{"key":"b","ok":false,"error":"no"},{"key":"c","ok":true}]}`,
		`{"results":[{"key":"c","ok":true},{"key":"a","ok":true},{"key":"b","ok":false,"error":"no"}]}`,
		`{"results":[{"key":"b","ok":false,"error":"no"},{"key":"a","ok":true},{"key":"c","ok":true},{"key":"zz","ok":true}]}`,
	} {
		out := h.results(b, "200 OK", []byte(answer))
		if out.Err != nil || out.Results[0].Err != nil || out.Results[1].Err == nil || out.Results[2].Err != nil {
			t.Errorf("%s: %+v", answer, out)
		}
	}
	out := h.results(b, "200 OK", []byte(`{"results":[{"key":"a","ok":true},{"key":"x","ok":true},{"key":"c","ok":true}]}`))
	if out.Results[1].Err == nil || !out.Results[1].Retryable || out.Results[0].Err != nil || out.Results[2].Err != nil {
		t.Errorf("b without a result: %+v", out.Results)
	}
}
