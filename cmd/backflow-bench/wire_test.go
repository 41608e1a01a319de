package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func pgMessage(typ byte, parts ...string) []byte {
	var body []byte
	for _, p := range parts {
		body = append(append(body, p...), 0)
	}
	out := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(len(body)+4))
	return append(out, body...)
}

func pgStartup(code uint32, rest []byte) []byte {
	out := make([]byte, 8, 8+len(rest))
	binary.BigEndian.PutUint32(out, uint32(8+len(rest)))
	binary.BigEndian.PutUint32(out[4:], code)
	return append(out, rest...)
}

// countOf runs a counter over a client's bytes and checks that they are
// forwarded unchanged.
func countOf(t *testing.T, count func(*bufio.Reader, io.Writer, *atomic.Int64) error, stream []byte) int64 {
	t.Helper()
	var out bytes.Buffer
	var n atomic.Int64
	if err := count(bufio.NewReader(bytes.NewReader(stream)), &out, &n); !errors.Is(err, io.EOF) {
		t.Fatalf("counter stopped with %v, want EOF at the end of the stream", err)
	}
	if !bytes.Equal(out.Bytes(), stream) {
		t.Fatalf("forwarded %d bytes that differ from the %d read", out.Len(), len(stream))
	}
	return n.Load()
}

func TestCountPostgres(t *testing.T) {
	var s []byte
	s = append(s, pgStartup(80877103, nil)...) // SSLRequest, then the real start-up
	s = append(s, pgStartup(196608, []byte("user\x00postgres\x00\x00"))...)
	s = append(s, pgMessage('Q', "begin")...)
	s = append(s, pgMessage('P', "stmt1", "INSERT INTO t VALUES ($1)")...)
	s = append(s, pgMessage('B', "", "stmt1")...)
	s = append(s, pgMessage('E', "")...)
	s = append(s, pgMessage('S')...)
	s = append(s, pgMessage('B', "", "stmt1")...) // executed again without a new Parse
	s = append(s, pgMessage('E', "")...)
	s = append(s, pgMessage('P', "", "COMMIT")...)
	s = append(s, pgMessage('B', "", "")...)
	s = append(s, pgMessage('E', "")...)
	s = append(s, pgMessage('Q', "SELECT 1")...)
	if n := countOf(t, countPostgres, s); n != 3 {
		t.Fatalf("counted %d statements, want 3 (two executions of the INSERT and SELECT 1)", n)
	}
}

func mysqlPacket(seq byte, payload []byte) []byte {
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, payload...)
}

func TestCountMySQL(t *testing.T) {
	var s []byte
	s = append(s, mysqlPacket(1, []byte("\x03 a handshake answer that starts like COM_QUERY"))...)
	s = append(s, mysqlPacket(0, []byte("\x03SET TRANSACTION ISOLATION LEVEL READ COMMITTED"))...)
	s = append(s, mysqlPacket(0, []byte("\x03START TRANSACTION"))...)
	s = append(s, mysqlPacket(0, []byte("\x16INSERT INTO t VALUES (?)"))...) // prepare: not a statement run
	s = append(s, mysqlPacket(0, []byte("\x17\x01\x00\x00\x00"))...)
	s = append(s, mysqlPacket(0, []byte("\x03SELECT 1"))...)
	s = append(s, mysqlPacket(0, []byte("\x03COMMIT"))...)
	if n := countOf(t, countMySQL, s); n != 2 {
		t.Fatalf("counted %d statements, want 2 (the execution and SELECT 1)", n)
	}
}

// upstream is a loopback server for one connection: serve runs on it, and
// what serve returns (what it received) arrives on got.
func upstream(t *testing.T, serve func(c net.Conn) []byte) (addr string, got <-chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- nil
			return
		}
		defer c.Close()
		ch <- serve(c)
	}()
	return ln.Addr().String(), ch
}

// dial connects to addr, closed at cleanup.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// within fails the test when f has not returned after a generous time: a
// hang is a failure, not a stuck test run.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return", what)
	}
}

// The statement proxy forwards both directions unchanged, counts what the
// client sent, and its close ends a connection the client keeps open.
func TestStatementProxyForwards(t *testing.T) {
	var s []byte
	s = append(s, pgStartup(196608, []byte("user\x00postgres\x00\x00"))...)
	s = append(s, pgMessage('Q', "INSERT INTO t VALUES (1)")...)
	s = append(s, pgMessage('Q', "COMMIT")...)
	s = append(s, pgMessage('Q', "SELECT 1")...)
	addr, got := upstream(t, func(c net.Conn) []byte {
		b := make([]byte, len(s))
		if _, err := io.ReadFull(c, b); err == nil {
			c.Write([]byte("reply"))
			io.Copy(io.Discard, c) // until the proxy closes
		}
		return b
	})
	p, err := newStatementProxy(addr, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	if host, _, _ := net.SplitHostPort(p.addr()); host != "127.0.0.1" {
		t.Fatalf("the proxy listens on %s, want loopback only", p.addr())
	}
	c := dial(t, p.addr())
	if _, err := c.Write(s); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 5)
	if _, err := io.ReadFull(c, reply); err != nil || string(reply) != "reply" {
		t.Fatalf("the client read %q, %v; want the server's reply", reply, err)
	}
	within(t, "close with a client connected", p.close)
	if b := <-got; !bytes.Equal(b, s) {
		t.Fatalf("the server received %q, want the client's bytes %q", b, s)
	}
	if n := p.stmts.Load(); n != 2 {
		t.Fatalf("counted %d statements, want 2 (the INSERT and SELECT 1)", n)
	}
	if n, err := c.Read(reply); err == nil {
		t.Fatalf("the client read %d bytes after close, want its connection ended", n)
	}
}

// A message longer than PostgreSQL allows ends the connection instead of
// being read.
func TestStatementProxyRefusesHugeMessage(t *testing.T) {
	addr, got := upstream(t, func(c net.Conn) []byte { b, _ := io.ReadAll(c); return b })
	p, err := newStatementProxy(addr, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	c := dial(t, p.addr())
	s := append(pgStartup(196608, []byte("user\x00postgres\x00\x00")), 'Q', 0x7f, 0xff, 0xff, 0xff)
	if _, err := c.Write(s); err != nil {
		t.Fatal(err)
	}
	within(t, "the client's read", func() {
		if n, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("the client read %d bytes, want its connection ended", n)
		}
	})
	if b := <-got; len(b) != len(s) {
		t.Fatalf("the server received %d bytes, want the %d forwarded before the refusal", len(b), len(s))
	}
}

// The throttle forwards both directions unchanged, the server's side no
// faster than its rate.
func TestThrottle(t *testing.T) {
	const size, rate = 50_000, 250_000.0 // 200ms of sending
	data := bytes.Repeat([]byte("0123456789"), size/10)
	addr, got := upstream(t, func(c net.Conn) []byte {
		b := make([]byte, 5)
		if _, err := io.ReadFull(c, b); err == nil {
			c.Write(data) // then close: the client reads to EOF
		}
		return b
	})
	link, err := throttle(addr, rate)
	if err != nil {
		t.Fatal(err)
	}
	defer link.close()
	c := dial(t, link.addr())
	start := time.Now()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	elapsed := time.Since(start)
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("the client read %d bytes, %v; want the server's %d", len(b), err, len(data))
	}
	if sent := <-got; string(sent) != "hello" {
		t.Fatalf("the server received %q, want hello", sent)
	}
	// Less one 10ms burst of credit.
	if least := time.Duration((size/rate)*float64(time.Second)) - 10*time.Millisecond; elapsed < least {
		t.Fatalf("%d bytes at %.0f B/s took %s, want at least %s", size, rate, elapsed, least)
	}
}

// A client of a server that refuses the connection is closed, not left
// hanging.
func TestForwarderUpstreamRefuses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	f, err := newForwarder(addr, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	c := dial(t, f.addr())
	within(t, "the client's read", func() {
		if n, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("the client read %d bytes, want its connection closed", n)
		}
	})
}
