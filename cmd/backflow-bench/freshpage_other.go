//go:build !unix

package main

import "time"

// freshPageCost is not measured here.
func freshPageCost() (time.Duration, bool) { return 0, false }
