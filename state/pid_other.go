//go:build !unix

package state

// pidAlive cannot tell on this platform: every holder counts as alive.
func pidAlive(int) bool { return true }
