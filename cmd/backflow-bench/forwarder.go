package main

import (
	"io"
	"net"
	"sync"
)

// relay moves one direction of a forwarded connection: it copies src to
// dst until either fails, src's EOF included.
type relay func(dst io.Writer, src io.Reader) error

// plainRelay copies bytes unchanged.
func plainRelay(dst io.Writer, src io.Reader) error {
	_, err := io.Copy(dst, src)
	return err
}

// forwarder listens on loopback and forwards each connection to upstream,
// client to server through up and server to client through down. A
// direction that ends closes the connection it wrote to, which ends the
// other. close stops listening, closes the connections still open and
// returns once every goroutine of the forwarder is done.
type forwarder struct {
	ln       net.Listener
	upstream string
	up, down relay
	wg       sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

// newForwarder starts a forwarder to upstream (host:port); a nil relay
// copies plainly.
func newForwarder(upstream string, up, down relay) (*forwarder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &forwarder{ln: ln, upstream: upstream, up: up, down: down, conns: map[net.Conn]struct{}{}}
	if f.up == nil {
		f.up = plainRelay
	}
	if f.down == nil {
		f.down = plainRelay
	}
	f.wg.Add(1)
	go f.serve()
	return f, nil
}

// addr is the loopback host:port clients connect to.
func (f *forwarder) addr() string { return f.ln.Addr().String() }

func (f *forwarder) close() {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.ln.Close()
	f.wg.Wait()
}

func (f *forwarder) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go f.pipe(c)
	}
}

// pipe forwards one client connection.
func (f *forwarder) pipe(c net.Conn) {
	defer f.wg.Done()
	u, err := net.Dial("tcp", f.upstream)
	if err != nil {
		c.Close()
		return
	}
	if !f.track(c, u) {
		c.Close()
		u.Close()
		return
	}
	defer f.untrack(c, u)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.down(c, u)
		c.Close()
	}()
	f.up(u, c)
	u.Close()
	<-done
}

// track records open connections for close; false once closed.
func (f *forwarder) track(conns ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	for _, c := range conns {
		f.conns[c] = struct{}{}
	}
	return true
}

func (f *forwarder) untrack(conns ...net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range conns {
		delete(f.conns, c)
	}
}
