package crash

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// row is one row of the model: the destination refuses a negative score
// (a CHECK constraint) and an exclude rule drops names starting with x.
type row struct {
	name  string
	score int
}

func (r row) valid() bool    { return r.score >= 0 }
func (r row) excluded() bool { return strings.HasPrefix(r.name, "x") }

// value is how rows, snapshot values and destination rows are compared.
func (r row) value() string { return fmt.Sprintf("%s|%d", r.name, r.score) }

// model is the fixture the embedded source serves, and every valid value
// each key has ever had (what a destination row may hold in insert mode,
// or while a rejected change of an earlier send is pending).
type model struct {
	rows    map[int]row
	next    int
	version int
	history map[string]map[string]bool // key → valid values it had
	// pad widens every name (wide rows: an answer's records fill more
	// than the state writer holds in memory, so journal frames spill).
	pad string
	// bulk makes each day's changes large: hundreds of rows added and a
	// third or more of them changed, and refused rows rare, so that most
	// batches of hundreds go whole.
	bulk bool
}

// modelShape is how a model's rows are made (see model).
type modelShape struct {
	pad  int
	bulk bool
}

// refusedEvery is, in a bulk model, how many times rarer refused rows are.
const refusedEvery = 1000

func newModel(n int, shape modelShape) *model {
	m := &model{rows: map[int]row{}, history: map[string]map[string]bool{}, pad: strings.Repeat("p", shape.pad), bulk: shape.bulk}
	for range n {
		m.put(m.newID(), m.fresh(nil))
	}
	return m
}

func (m *model) newID() int { m.next++; return m.next }

// fresh is a new row: one in nine refused by the destination (in a bulk
// model, one in 9 × refusedEvery, and none of the first rows), one in
// eleven excluded.
func (m *model) fresh(rng *rand.Rand) row {
	id := m.next
	r := row{name: fmt.Sprintf("n%d%s-v%d", id, m.pad, m.version), score: id}
	every := 9
	if m.bulk {
		every *= refusedEvery
	}
	pick := id
	if rng != nil {
		pick = rng.IntN(11 * every)
	}
	switch {
	case pick%every == 4 && (rng != nil || !m.bulk):
		r.score = -id
	case pick%11 == 6:
		r.name = "x" + r.name
	}
	return r
}

func (m *model) put(id int, r row) {
	m.rows[id] = r
	if r.valid() {
		k := fmt.Sprint(id)
		if m.history[k] == nil {
			m.history[k] = map[string]bool{}
		}
		m.history[k][r.value()] = true
	}
}

func (m *model) ids() []int {
	ids := make([]int, 0, len(m.rows))
	for id := range m.rows {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// mutate changes the model as a day of upstream changes would: rows
// removed, rows added, values changed (refused by the destination or no
// longer, excluded or no longer, renamed). It returns what it did.
func (m *model) mutate(rng *rand.Rand) string {
	m.version++
	var did []string
	ids := m.ids()
	if rng.IntN(3) > 0 && len(ids) > 20 {
		n := 1 + rng.IntN(len(ids)/8)
		for _, i := range rng.Perm(len(ids))[:n] {
			delete(m.rows, ids[i])
		}
		did = append(did, fmt.Sprintf("-%d", n))
	}
	if rng.IntN(3) > 0 {
		n := 1 + rng.IntN(20)
		if m.bulk {
			n = 500 + rng.IntN(700)
		}
		for range n {
			m.put(m.newID(), m.fresh(rng))
		}
		did = append(did, fmt.Sprintf("+%d", n))
	}
	ids = m.ids()
	n := rng.IntN(20)
	if m.bulk {
		n = len(ids)/3 + rng.IntN(len(ids)/3+1)
	}
	if n > 0 {
		for _, i := range rng.Perm(len(ids))[:min(n, len(ids))] {
			id := ids[i]
			r := m.rows[id]
			what := rng.IntN(5)
			if m.bulk && what == 0 && rng.IntN(refusedEvery) > 0 {
				what = 4 // refused rows stay rare
			}
			switch what {
			case 0: // refused from now on
				r.score = -1 - rng.IntN(100)
			case 1: // accepted from now on
				r.score = rng.IntN(1000)
			case 2: // excluded, or no longer
				if r.excluded() {
					r.name = r.name[1:]
				} else {
					r.name = "x" + r.name
				}
			default:
				r.name = fmt.Sprintf("%s-v%d", strings.SplitN(r.name, "-v", 2)[0], m.version)
				if rng.IntN(2) == 0 {
					r.score = rng.IntN(1000)
				}
			}
			m.put(id, r)
		}
		did = append(did, fmt.Sprintf("~%d", n))
	}
	if len(did) == 0 {
		return "unchanged"
	}
	return strings.Join(did, " ")
}

// write rewrites the fixture.
func (m *model) write(dir string) error {
	var b strings.Builder
	b.WriteString("id,name,score\n")
	for _, id := range m.ids() {
		r := m.rows[id]
		fmt.Fprintf(&b, "%d,%s,%d\n", id, r.name, r.score)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "data", "t.csv"), []byte(b.String()), 0o644)
}

// included is the model's rows the sync keeps (not excluded), by key.
func (m *model) included() map[string]row {
	out := map[string]row{}
	for id, r := range m.rows {
		if !r.excluded() {
			out[fmt.Sprint(id)] = r
		}
	}
	return out
}
