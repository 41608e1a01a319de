//go:build !unix

package engine

// maxRSS is not measured on this platform.
func maxRSS() int64 { return 0 }
