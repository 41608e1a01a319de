package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
)

// statementProxy forwards loopback connections to a database server and
// counts the statements clients send, read off the wire protocol, so a
// figure does not depend on how the client counts: PostgreSQL simple
// queries and extended-protocol executions, MySQL COM_QUERY and
// COM_STMT_EXECUTE. Transaction control (BEGIN, START TRANSACTION, SET
// TRANSACTION, COMMIT, ROLLBACK) is not counted.
type statementProxy struct {
	*forwarder
	stmts atomic.Int64
}

func newStatementProxy(upstream string, protocol string) (*statementProxy, error) {
	var count func(r *bufio.Reader, w io.Writer, n *atomic.Int64) error
	switch protocol {
	case "postgres":
		count = countPostgres
	case "mysql":
		count = countMySQL
	default:
		return nil, fmt.Errorf("no statement counter for %q", protocol)
	}
	p := &statementProxy{}
	f, err := newForwarder(upstream, func(dst io.Writer, src io.Reader) error {
		return count(bufio.NewReaderSize(src, 64<<10), dst, &p.stmts)
	}, nil)
	if err != nil {
		return nil, err
	}
	p.forwarder = f
	return p, nil
}

// control is transaction control, which the figures leave out.
func control(query string) bool {
	q := strings.ToUpper(strings.TrimSpace(query))
	for _, w := range []string{"BEGIN", "START TRANSACTION", "SET TRANSACTION", "COMMIT", "ROLLBACK"} {
		if strings.HasPrefix(q, w) {
			return true
		}
	}
	return false
}

// forward reads n bytes from r into buf, writes them to w, and returns them.
func forward(r io.Reader, w io.Writer, buf []byte) ([]byte, error) {
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	_, err := w.Write(buf)
	return buf, err
}

func cstring(b []byte) (string, []byte) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return string(b), nil
	}
	return string(b[:i]), b[i+1:]
}

// maxPgMessage bounds the length a PostgreSQL message may claim before it
// is read: the server's own limit, 1 GiB.
const maxPgMessage = 1 << 30

// countPostgres reads the client's side of a PostgreSQL connection: the
// untyped start-up messages, then typed messages (a type byte and a
// length that includes itself).
func countPostgres(r *bufio.Reader, w io.Writer, n *atomic.Int64) error {
	for {
		head, err := forward(r, w, make([]byte, 8))
		if err != nil {
			return err
		}
		size := int(binary.BigEndian.Uint32(head[:4]))
		if size < 8 || size > maxPgMessage {
			return errors.New("bad start-up message")
		}
		if _, err := forward(r, w, make([]byte, size-8)); err != nil {
			return err
		}
		// SSLRequest and GSSENCRequest are followed by another start-up
		// message; anything else (StartupMessage, CancelRequest) is the
		// last untyped one.
		if code := binary.BigEndian.Uint32(head[4:]); code != 80877103 && code != 80877104 {
			break
		}
	}
	statements := map[string]string{} // prepared statement name → text
	portals := map[string]string{}    // portal → statement text
	head := make([]byte, 5)
	for {
		if _, err := forward(r, w, head); err != nil {
			return err
		}
		size := int(binary.BigEndian.Uint32(head[1:]))
		if size < 4 || size > maxPgMessage {
			return errors.New("bad message length")
		}
		body, err := forward(r, w, make([]byte, size-4))
		if err != nil {
			return err
		}
		switch head[0] {
		case 'Q':
			if q, _ := cstring(body); !control(q) {
				n.Add(1)
			}
		case 'P':
			name, rest := cstring(body)
			q, _ := cstring(rest)
			statements[name] = q
		case 'B':
			portal, rest := cstring(body)
			stmt, _ := cstring(rest)
			portals[portal] = statements[stmt]
		case 'E':
			portal, _ := cstring(body)
			if !control(portals[portal]) {
				n.Add(1)
			}
		}
	}
}

// countMySQL reads the client's side of a MySQL connection: packets of a
// 3-byte length and a sequence number; a command is a packet with sequence
// number 0 (the handshake answers and continuations have others).
func countMySQL(r *bufio.Reader, w io.Writer, n *atomic.Int64) error {
	head := make([]byte, 4)
	for {
		if _, err := forward(r, w, head); err != nil {
			return err
		}
		size := int(head[0]) | int(head[1])<<8 | int(head[2])<<16
		body, err := forward(r, w, make([]byte, size))
		if err != nil {
			return err
		}
		if head[3] != 0 || len(body) == 0 {
			continue
		}
		switch body[0] {
		case 0x03: // COM_QUERY
			if !control(string(body[1:])) {
				n.Add(1)
			}
		case 0x17: // COM_STMT_EXECUTE
			n.Add(1)
		}
	}
}
