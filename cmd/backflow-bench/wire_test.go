package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync/atomic"
	"testing"
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
