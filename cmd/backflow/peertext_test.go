package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestPeerErrorsAreShownOnOneLine checks that the error text a destination
// sends back, kept in the failure index and the run's row log, cannot
// reach the terminal as escapes or break the tables of state failures and
// logs into forged lines.
func TestPeerErrorsAreShownOnOneLine(t *testing.T) {
	forged := regexp.MustCompile(`^\s*1\s+upsert\s+accepted`)
	const hostile = "bad\x1b[2J\x1b]0;owned\a\n1\tupsert\taccepted\u202e"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Records []struct{ Key string } `json:"records"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		type result struct {
			Key   string `json:"key"`
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		}
		var res struct {
			Results []result `json:"results"`
		}
		for _, rec := range req.Records {
			res.Results = append(res.Results, result{Key: rec.Key, Error: hostile})
		}
		json.NewEncoder(w).Encode(res)
	}))
	defer srv.Close()

	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"data/users.csv": "id,email\n1,a@example.com\n",
		"main.hcl": usersModelHCL + `
destination "api" {
  type = "http"
  url  = "` + srv.URL + `"
}
sync "to_api" {
  model             = model.m
  destination       = destination.api
  object            = "contacts"
  key               = "id"
  mapping           = { email = "email" }
  failure_threshold = "100%"
}
`})
	// The destination takes nothing: apply fails, and records the errors.
	_, applyOut, applyErr := backflow("-C", dir, "apply", "--auto-approve")
	for _, cmd := range [][]string{{"apply"}, {"state", "failures", "to_api"}, {"logs", "to_api"}, {"plan"}} {
		text := applyOut + applyErr
		if cmd[0] != "apply" {
			_, out, errOut := backflow(append([]string{"-C", dir}, cmd...)...)
			text = out + errOut
		}
		if !strings.Contains(text, `bad\x1b[2J`) {
			t.Errorf("%s does not show the destination's error, escaped:\n%s", cmd, text)
		}
		if strings.ContainsAny(text, "\x1b\a\u202e") {
			t.Errorf("%s writes the destination's control characters:\n%q", cmd, text)
		}
		for _, line := range strings.Split(text, "\n") {
			if forged.MatchString(line) {
				t.Errorf("%s has a line forged by the destination's error: %q", cmd, line)
			}
		}
	}
}
