package engine

import (
	"encoding/csv"
	"errors"
	"io"
	"strings"
)

// csvReader reads CSV records exactly as encoding/csv does with its
// defaults (comma-separated, quotes per RFC 4180, empty lines skipped,
// \r\n read as \n, any number of fields per record), faster for the common
// case: a record on one line without quotes is split in place, its fields
// substrings of a chunk of the file, with no allocation per record. From
// the first line holding a quote on, the rest of the input is read by
// encoding/csv itself. A record's fields are valid until the next Read.
type csvReader struct {
	src   io.Reader
	size  int    // bytes read at once
	buf   []byte // of size, reused
	chunk string // unread input starts at chunk[pos]
	pos   int
	eof   bool // src is exhausted: chunk holds all that is left
	line  int  // lines consumed before chunk[pos]
	rec   []string
	recAt int // line of the last record

	slow     *csv.Reader // after the first quote
	slowBase int         // lines consumed before the slow reader's input
	err      error
}

// csvChunk is how much input is read at once.
const csvChunk = 64 << 10

func newCSVReader(r io.Reader) *csvReader { return &csvReader{src: r, size: csvChunk} }

// Read returns the next record, io.EOF at the end, or a *csv.ParseError
// whose lines count from the start of the input.
func (r *csvReader) Read() ([]string, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.slow != nil {
		return r.readSlow()
	}
	for {
		nl := strings.IndexByte(r.chunk[r.pos:], '\n')
		if nl < 0 && !r.eof {
			if err := r.fill(); err != nil {
				r.err = err
				return nil, err
			}
			continue
		}
		end := len(r.chunk)
		if nl >= 0 {
			end = r.pos + nl
		}
		line := r.chunk[r.pos:end]
		if nl < 0 && line == "" {
			r.err = io.EOF
			return nil, io.EOF
		}
		if strings.IndexByte(line, '"') >= 0 {
			// Quotes (possibly spanning lines): encoding/csv from here on.
			rest := io.MultiReader(strings.NewReader(r.chunk[r.pos:]), r.src)
			r.slow = csv.NewReader(rest)
			r.slow.FieldsPerRecord = -1
			r.slow.ReuseRecord = true
			r.slowBase = r.line
			r.chunk, r.pos = "", 0
			return r.readSlow()
		}
		r.line++
		r.pos = end
		if nl >= 0 {
			r.pos++
		}
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue // an empty line is no record
		}
		r.recAt = r.line
		r.rec = r.rec[:0]
		for {
			i := strings.IndexByte(line, ',')
			if i < 0 {
				r.rec = append(r.rec, line)
				return r.rec, nil
			}
			r.rec = append(r.rec, line[:i])
			line = line[i+1:]
		}
	}
}

// fill appends the next chunk of input to what is left unread.
func (r *csvReader) fill() error {
	if r.buf == nil {
		r.buf = make([]byte, r.size)
	}
	n, err := io.ReadFull(r.src, r.buf)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		r.eof = true
	} else if err != nil {
		return err
	}
	var b strings.Builder
	rest := r.chunk[r.pos:]
	b.Grow(len(rest) + n)
	b.WriteString(rest)
	b.Write(r.buf[:n])
	r.chunk, r.pos = b.String(), 0
	return nil
}

func (r *csvReader) readSlow() ([]string, error) {
	rec, err := r.slow.Read()
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		shifted := *pe
		shifted.StartLine += r.slowBase
		shifted.Line += r.slowBase
		r.err = &shifted
		return nil, r.err
	}
	if err != nil {
		r.err = err
		return nil, err
	}
	line, _ := r.slow.FieldPos(0)
	r.recAt = r.slowBase + line
	return rec, nil
}

// Line is the line the last record read starts on.
func (r *csvReader) Line() int { return r.recAt }
