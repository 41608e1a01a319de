// Package suggest finds the likely intended name behind a typo, for the
// "Did you mean" hints of diagnostics.
package suggest

import (
	"fmt"
	"sort"
	"strings"
)

// Closest returns the candidate nearest to name by case-insensitive edit
// distance when it is close enough to be a likely typo (at most two edits,
// or a third of the name for long names, and fewer edits than the
// candidate has letters); "" otherwise. Of equally close candidates the
// first in sorted order wins.
func Closest(name string, candidates []string) string {
	limit := max(2, len([]rune(name))/3)
	best, bestD := "", limit+1
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	for _, c := range sorted {
		if d := Distance(strings.ToLower(name), strings.ToLower(c)); d < bestD && d < len([]rune(c)) {
			best, bestD = c, d
		}
	}
	return best
}

// DidYouMean returns ` Did you mean "x"?` for the closest candidate, or "".
func DidYouMean(name string, candidates []string) string {
	if s := Closest(name, candidates); s != "" {
		return fmt.Sprintf(" Did you mean %q?", s)
	}
	return ""
}

// Distance is the Levenshtein distance between a and b, counted in runes.
func Distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
