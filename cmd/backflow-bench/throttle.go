package main

import (
	"io"
	"net"
	"time"
)

// throttle listens on loopback and forwards each connection to addr, the
// server-to-client direction limited to bytesPerSec: a warehouse behind a
// network slower than loopback. It returns the listening address and a
// function closing the listener.
func throttle(addr string, bytesPerSec float64) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(s, c); s.Close() }()
			go func() { slowCopy(c, s, bytesPerSec); c.Close() }()
		}
	}()
	return ln.Addr().String(), func() { ln.Close() }, nil
}

// slowCopy copies src to dst at most bytesPerSec, in bursts of at most
// 10ms worth of bytes.
func slowCopy(dst io.Writer, src io.Reader, bytesPerSec float64) {
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
				return
			}
			sent += float64(n)
			if ahead := time.Duration(sent/bytesPerSec*float64(time.Second)) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		if err != nil {
			return
		}
	}
}
