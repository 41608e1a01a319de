//go:build !unix

package crashpoint

import "os"

// kill stops the process as abruptly as this platform allows.
func kill() {
	p, err := os.FindProcess(os.Getpid())
	if err == nil {
		_ = p.Kill()
	}
	os.Exit(137)
}
