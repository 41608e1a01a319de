package state

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRunsAndRowLogs(t *testing.T) {
	s := newStore(t)
	started := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 5 {
		r, err := s.AppendRun(Run{Sync: "users", Status: "succeeded", Started: started, Counts: Counts{Added: i}},
			[]RowLog{{Key: "k", Operation: "upsert", Status: "accepted", Attempts: 1}, {Key: "j", Status: "rejected", Error: "bad"}}, 2)
		must(t, err)
		if r.Run != i+1 {
			t.Fatalf("run %d numbered %d", i, r.Run)
		}
		if i == 1 {
			r, err := s.AppendRun(Run{Sync: "orders", Status: "failed", Error: "boom"}, nil, 0)
			must(t, err)
			if r.Run != 1 {
				t.Errorf("orders run numbered %d", r.Run)
			}
		}
	}
	all, err := s.Runs("")
	must(t, err)
	if len(all) != 6 || all[2].Sync != "orders" || all[2].Error != "boom" {
		t.Errorf("Runs(\"\") = %+v", all)
	}
	users, err := s.Runs("users")
	must(t, err)
	if len(users) != 5 || users[4].Run != 5 || users[4].Counts.Added != 4 || !users[4].Started.Equal(started) {
		t.Errorf("Runs(users) = %+v", users)
	}
	rows, err := s.RowLogs("users", 0)
	must(t, err)
	want := []RowLog{{Run: 5, Key: "k", Operation: "upsert", Status: "accepted", Attempts: 1}, {Run: 5, Key: "j", Status: "rejected", Error: "bad"}}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("RowLogs(users, 0) = %+v", rows)
	}
	rows, err = s.RowLogs("users", 4)
	if err != nil || len(rows) != 2 || rows[0].Run != 4 {
		t.Errorf("RowLogs(users, 4) = %+v, %v", rows, err)
	}
	if _, err := s.RowLogs("users", 3); !errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), "file does not exist") || !strings.Contains(err.Error(), "--log-retention") {
		t.Errorf("RowLogs of an aged-out run = %v, want an os.ErrNotExist saying how to keep more, without the Go text", err)
	}
	entries, err := os.ReadDir(filepath.Join(s.Dir(), "logs", "users"))
	must(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !reflect.DeepEqual(names, []string{"4.jsonl", "5.jsonl"}) {
		t.Errorf("row log files = %v", names)
	}
	rows, err = s.RowLogs("orders", 0)
	if err != nil || len(rows) != 0 || rows == nil {
		t.Errorf("RowLogs(orders, 0) = %#v, %v; want an empty list", rows, err)
	}
	if _, err := s.RowLogs("nobody", 0); err != nil {
		t.Errorf("RowLogs of a sync without runs: %v", err)
	}
}

// TestARunKilledMidWayStaysIncomplete records a run's start and, for one
// of two runs, its end: the other stays in the history as incomplete, and
// the finished one replaces its start record under the same number.
func TestARunKilledMidWayStaysIncomplete(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.AppendRun(Run{Sync: "a", Status: RunIncomplete}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The process dies here: no outcome for run 1. The next run starts.
	second, err := s.AppendRun(Run{Sync: "a", Status: RunIncomplete}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	second.Status = RunSucceeded
	second.Counts.Accepted = 3
	if _, err := s.AppendRun(second, []RowLog{{Key: "1", Status: RowAccepted}}, 0); err != nil {
		t.Fatal(err)
	}
	runs, err := s.Runs("a")
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].Run != first.Run || runs[0].Status != RunIncomplete ||
		runs[1].Run != 2 || runs[1].Status != RunSucceeded || runs[1].Counts.Accepted != 3 {
		t.Fatalf("runs %+v", runs)
	}
	logs, err := s.RowLogs("a", 2)
	if err != nil || len(logs) != 1 || logs[0].Run != 2 {
		t.Fatalf("row logs of run 2: %+v, %v", logs, err)
	}
}
