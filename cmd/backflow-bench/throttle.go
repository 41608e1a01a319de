package main

import (
	"io"
	"time"
)

// throttle forwards loopback connections to addr, the server-to-client
// direction limited to bytesPerSec: a warehouse behind a network slower
// than loopback.
func throttle(addr string, bytesPerSec float64) (*forwarder, error) {
	return newForwarder(addr, nil, func(dst io.Writer, src io.Reader) error {
		return slowCopy(dst, src, bytesPerSec)
	})
}

// slowCopy copies src to dst at most bytesPerSec, in bursts of at most
// 10ms worth of bytes, until either fails; src's EOF is no error.
func slowCopy(dst io.Writer, src io.Reader, bytesPerSec float64) error {
	buf := make([]byte, 32<<10)
	start, sent := time.Now(), 0.0
	for {
		n, err := src.Read(buf)
		if idle := time.Since(start) - time.Duration(sent/bytesPerSec*float64(time.Second)); idle > 10*time.Millisecond {
			// No credit for time the link was idle: a burst is 10ms long.
			start, sent = time.Now(), 0
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
			sent += float64(n)
			if ahead := time.Duration(sent/bytesPerSec*float64(time.Second)) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
