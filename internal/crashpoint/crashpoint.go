// Package crashpoint kills the process at named points of its work, for
// the crash harness (./crash): the harness sets BACKFLOW_CRASH=name:N and
// the process SIGKILLs itself the Nth time it passes the point called
// name, as a power cut or an OOM kill would stop it there, with no
// deferred function, no flush and no exit handler run.
//
// Points are placed at the moments where a crash is riskiest: between a
// durable record and the action it announces, between the renames of a
// commit, inside a database transaction. Without BACKFLOW_CRASH (read once,
// at start-up) Hit is a load and a branch.
//
// The points, by where they are:
//
//	apply.inflight   a batch announced in flight (fsynced), not sent yet
//	apply.sent       the destination answered, the outcome not recorded
//	apply.committed  the sync's state committed, the run not yet recorded
//	journal.torn     half of a journal write made durable (a torn tail)
//	commit.snapshot  the new snapshot in place, the old failure index
//	commit.failures  both replaced, the journal not yet moved
//	commit.journal   the journal moved, the serial not yet bumped
//	file.replace     a state file written, not yet renamed into place
//	sql.batch        a batch of a state checkpoint written into its open
//	                 transaction, the checkpoint not committed
//	sql.open         a state transaction written, not committed
//	sql.committed    a state transaction committed, not yet acknowledged
//	reset.begun      reset-cdc has recorded the new snapshot (or reset the
//	                 warehouse CDC table), the state not committed
//	reset.committed  reset-cdc committed, the run not yet recorded
//
// The package must not be used for anything else: it is not a fault
// injection framework, and no product behaviour may depend on it.
package crashpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// EnvVar names the environment variable read at start-up: "name:N" (or
// several, comma-separated) kills the process on the Nth hit of the
// point called name.
const EnvVar = "BACKFLOW_CRASH"

// armed is set when EnvVar names at least one point.
var armed bool

// points are the armed points by name.
var points map[string]*point

type point struct {
	at   int64 // the hit that kills
	hits atomic.Int64
}

func init() {
	var err error
	points, err = parse(os.Getenv(EnvVar))
	if err != nil {
		// A harness mistake, not a user's: say so and run unarmed.
		fmt.Fprintf(os.Stderr, "%s: %v; no crash point armed\n", EnvVar, err)
		points = nil
	}
	armed = len(points) > 0
}

func parse(spec string) (map[string]*point, error) {
	if spec == "" {
		return nil, nil
	}
	out := map[string]*point{}
	for _, item := range strings.Split(spec, ",") {
		name, n, ok := strings.Cut(strings.TrimSpace(item), ":")
		at, err := strconv.ParseInt(n, 10, 64)
		if !ok || name == "" || err != nil || at < 1 {
			return nil, fmt.Errorf("%q is not name:N with N ≥ 1", item)
		}
		out[name] = &point{at: at}
	}
	return out, nil
}

// Armed reports whether any point is armed: callers that must prepare a
// crash (a write torn in two) do so only then.
func Armed() bool { return armed }

// Hit marks a pass through the point called name, killing the process if
// this is the pass BACKFLOW_CRASH names.
func Hit(name string) {
	if !armed {
		return
	}
	p := points[name]
	if p == nil {
		return
	}
	if p.hits.Add(1) == p.at {
		fmt.Fprintf(os.Stderr, "crashpoint: killed at %s:%d\n", name, p.at)
		kill()
	}
}
