package destination_test

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Loopback servers that misbehave the way networks do: one that accepts and
// never answers, and a proxy to a real server that can stop forwarding or
// reset every connection.

// guard is how long a test waits for a call that must end on its own before
// calling it hung. It is not a timing assertion: the calls under test end
// within their (much shorter) timeouts, and guard only turns a hang into a
// failure.
const guard = 60 * time.Second

// within runs fn and fails the test if it has not returned within guard.
func within[T any](t testing.TB, what string, fn func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- fn() }()
	select {
	case v := <-done:
		return v
	case <-time.After(guard):
		t.Fatalf("%s: still running after %v; it should have ended on its own timeout", what, guard)
		panic("unreachable")
	}
}

// faultProxy forwards loopback connections to a target server. stall makes
// it hold every byte in both directions (connections stay open: a link that
// went silent), resume lets them through again, reset closes every open
// connection with a TCP reset, and resetAfter does so once the client has
// sent n more bytes, in the middle of whatever it was sending.
type faultProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   []*net.TCPConn // client sides
	gate    chan struct{}  // closed while forwarding; replaced by stall
	stalled bool
	closed  bool
	sent    int64 // bytes forwarded from clients to the server
	resetAt int64 // reset when sent would pass it; 0: not armed
}

func newFaultProxy(t testing.TB, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, gate: make(chan struct{})}
	close(p.gate)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) addr() string { return p.ln.Addr().String() }

func (p *faultProxy) serve() {
	acceptDialing(p.ln, p.target, func(c, up net.Conn) {
		p.mu.Lock()
		p.conns = append(p.conns, c.(*net.TCPConn))
		p.mu.Unlock()
		go p.pipe(c, up, true)
		go p.pipe(up, c, false)
	})
}

// acceptDialing accepts connections on ln until it is closed, dials target
// for each and hands both to link; a connection whose dial fails is
// closed.
func acceptDialing(ln net.Listener, target string, link func(client, up net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			continue
		}
		link(c, up)
	}
}

// pipe copies from src to dst, waiting at the gate before each write; when
// either side fails both are closed. fromClient counts the bytes towards
// resetAfter.
func (p *faultProxy) pipe(src, dst net.Conn, fromClient bool) {
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate := p.gate
			trip := false
			if fromClient {
				if p.resetAt > 0 && p.sent+int64(n) > p.resetAt {
					// Forward what fits, then cut the link.
					keep := p.resetAt - p.sent
					p.resetAt = 0
					n, trip = int(keep), true
				}
				p.sent += int64(n)
			}
			p.mu.Unlock()
			<-gate
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if trip {
				p.reset()
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// resetAfter arms a reset once clients have sent n more bytes (n > 0).
func (p *faultProxy) resetAfter(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resetAt = p.sent + n
}

// forwarded is how many bytes clients have sent through the proxy.
func (p *faultProxy) forwarded() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent
}

func (p *faultProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stalled {
		p.stalled = true
		p.gate = make(chan struct{})
	}
}

func (p *faultProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled {
		p.stalled = false
		close(p.gate)
	}
}

// reset closes every connection open through the proxy with a TCP reset
// (SO_LINGER 0), as a dropped link or a restarted middlebox does.
func (p *faultProxy) reset() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.SetLinger(0)
		c.Close()
	}
}

func (p *faultProxy) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.resume()
	p.ln.Close()
	p.reset()
}
