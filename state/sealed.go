package state

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"strconv"
)

// A sealed file (failures.json, runs.jsonl and the row logs, from format
// version 2 on) is JSON lines, readable by any JSON-lines tool:
//
//	{"backflow":"runs","version":2}            header: kind and format version
//	{...}                                      one value per line
//	{"crc32c":"1a2b3c4d","size":1234,"lines":1} trailer
//
// The trailer holds the CRC-32C (Castagnoli) and the size of every byte
// before it, and the number of value lines, so that a flipped bit, a lost
// line or a cut anywhere is detected. Files are written whole and renamed
// into place; a file without its trailer is damaged, never "short".
//
// Version 1 files had neither header nor trailer; they are read as they
// are (with unknown fields refused, so that a damaged header is not taken
// for a version 1 file) and rewritten sealed on the next write.

// sealHeader is the first line of a sealed file.
type sealHeader struct {
	Kind    string `json:"backflow"`
	Version int    `json:"version"`
	// Snapshot is, in a failure index, the generation of the snapshot it
	// was committed with (see Snapshot.Gen), in hex.
	Snapshot string `json:"snapshot,omitempty"`
}

type sealTrailer struct {
	CRC32C string `json:"crc32c"`
	Size   int64  `json:"size"`
	Lines  int    `json:"lines"`
}

var sealPrefix = []byte(`{"backflow":`)

// sealWriter writes a sealed file.
type sealWriter struct {
	w     *bufio.Writer
	crc   uint32
	size  int64
	lines int
	buf   bytes.Buffer
	enc   *json.Encoder
}

func newSealWriter(w *bufio.Writer, h sealHeader) (*sealWriter, error) {
	s := &sealWriter{w: w}
	s.enc = json.NewEncoder(&s.buf)
	s.enc.SetEscapeHTML(false)
	h.Version = FormatVersion
	if err := s.put(h); err != nil {
		return nil, err
	}
	s.lines = 0
	return s, nil
}

func (s *sealWriter) put(v any) error {
	s.buf.Reset()
	if err := s.enc.Encode(v); err != nil { // one line, newline included
		return err
	}
	b := s.buf.Bytes()
	s.crc = crc32.Update(s.crc, castagnoli, b)
	s.size += int64(len(b))
	s.lines++
	_, err := s.w.Write(b)
	return err
}

func (s *sealWriter) close() error {
	s.buf.Reset()
	if err := s.enc.Encode(sealTrailer{CRC32C: fmt.Sprintf("%08x", s.crc), Size: s.size, Lines: s.lines}); err != nil {
		return err
	}
	_, err := s.w.Write(s.buf.Bytes())
	return err
}

// sealed is a sealed file as read.
type sealed struct {
	header sealHeader
	lines  [][]byte // the value lines, without their newlines
	legacy bool     // version 1: no header, no trailer
}

// openSealed checks data, the content of the sealed file at path of the
// given kind. Version 1 content (no header) comes back with legacy set and
// its lines unchecked.
func openSealed(path, kind string, data []byte) (*sealed, error) {
	if !bytes.HasPrefix(data, sealPrefix) {
		out := &sealed{legacy: true}
		for line := range bytes.SplitSeq(data, []byte("\n")) {
			if len(bytes.TrimSpace(line)) > 0 {
				out.lines = append(out.lines, line)
			}
		}
		return out, nil
	}
	first, rest, ok := bytes.Cut(data, []byte("\n"))
	if !ok {
		return nil, corrupt(path, "cut short after its header (no checksum trailer)")
	}
	out := &sealed{}
	if err := strictUnmarshal(first, &out.header); err != nil {
		return nil, corrupt(path, "unreadable header: %v", err)
	}
	if out.header.Kind != kind {
		return nil, corrupt(path, "holds %q data, not %s", out.header.Kind, kind)
	}
	if out.header.Version > FormatVersion {
		return nil, &VersionError{Path: path, Version: out.header.Version}
	}
	if out.header.Version < 2 {
		return nil, corrupt(path, "header names format version %d, which had no header", out.header.Version)
	}
	if len(rest) == 0 || rest[len(rest)-1] != '\n' {
		return nil, corrupt(path, "cut short (no checksum trailer)")
	}
	body := rest[:len(rest)-1]
	var trailerLine []byte
	if i := bytes.LastIndexByte(body, '\n'); i >= 0 {
		trailerLine, body = body[i+1:], body[:i+1]
	} else {
		trailerLine, body = body, nil
	}
	var t sealTrailer
	if err := strictUnmarshal(trailerLine, &t); err != nil || t.CRC32C == "" {
		return nil, corrupt(path, "cut short or damaged at its end (no valid checksum trailer)")
	}
	covered := len(first) + 1 + len(body)
	if t.Size != int64(covered) {
		return nil, corrupt(path, "holds %d bytes before its trailer, the trailer says %d (cut short or grown)", covered, t.Size)
	}
	want, err := strconv.ParseUint(t.CRC32C, 16, 32)
	if err != nil {
		return nil, corrupt(path, "unreadable checksum %q", t.CRC32C)
	}
	if got := crc32.Checksum(data[:covered], castagnoli); uint64(got) != want {
		return nil, corrupt(path, "checksum mismatch (CRC-32C %08x, expected %08x)", got, want)
	}
	for len(body) > 0 {
		line, next, _ := bytes.Cut(body, []byte("\n"))
		out.lines = append(out.lines, line)
		body = next
	}
	if len(out.lines) != t.Lines {
		return nil, corrupt(path, "holds %d lines, the trailer says %d", len(out.lines), t.Lines)
	}
	return out, nil
}

// strictUnmarshal decodes one JSON value, refusing unknown fields and
// anything after the value.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("unexpected data after the value")
	}
	return nil
}
