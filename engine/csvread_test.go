package engine

import (
	"encoding/csv"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// csvResult is what a reader made of an input: records, their lines, and
// how it ended.
type csvResult struct {
	Records [][]string
	Lines   []int
	End     error
}

func readAllStd(in string) csvResult {
	r := csv.NewReader(strings.NewReader(in))
	r.FieldsPerRecord = -1
	var res csvResult
	for {
		rec, err := r.Read()
		if err != nil {
			res.End = err
			return res
		}
		line, _ := r.FieldPos(0)
		res.Records = append(res.Records, rec)
		res.Lines = append(res.Lines, line)
	}
}

func readAllFast(in string, size int) csvResult {
	r := newCSVReader(strings.NewReader(in))
	r.size = size
	var res csvResult
	for {
		rec, err := r.Read()
		if err != nil {
			res.End = err
			return res
		}
		res.Records = append(res.Records, append([]string(nil), rec...))
		res.Lines = append(res.Lines, r.Line())
	}
}

// sameEnd compares how two reads ended: both at EOF, or the same parse
// error at the same place.
func sameEnd(a, b error) bool {
	var pa, pb *csv.ParseError
	if errors.As(a, &pa) && errors.As(b, &pb) {
		return *pa == *pb
	}
	return errors.Is(a, io.EOF) && errors.Is(b, io.EOF)
}

func checkCSVSame(t *testing.T, in string) {
	t.Helper()
	want := readAllStd(in)
	for _, size := range []int{1, 3, 16, csvChunk} {
		got := readAllFast(in, size)
		if !reflect.DeepEqual(got.Records, want.Records) || !reflect.DeepEqual(got.Lines, want.Lines) || !sameEnd(got.End, want.End) {
			t.Fatalf("input %q, chunk %d:\n got %q lines %v end %v\nwant %q lines %v end %v",
				in, size, got.Records, got.Lines, got.End, want.Records, want.Lines, want.End)
		}
	}
}

var csvSeeds = []string{
	"a,b\n1,2\n",
	"a,b\r\n1,2\r\n",
	"a,b\n1,2",
	"a,b\n1,2\r",
	"\n\na\n\n\nb\n",
	"\r\n\r\na\r\n",
	"a\r\r\nb\r",
	"a,\"b,c\"\nd,e\n",
	"x\ny\n\"multi\nline\",z\nlast,1\n",
	"a\n\"x\n",
	"a\nb\"c\n",
	"a\n\"x\"y\n",
	"a,b\n1,2,3\n4\n",
	",,\n,\n",
	"\"\"\n",
	"a\rb,c\n",
	"\"a\"\"b\",c\r\n1,2\n",
	"",
	"\r",
	"\n",
}

func TestCSVReaderMatchesEncodingCSV(t *testing.T) {
	for _, in := range csvSeeds {
		checkCSVSame(t, in)
	}
}

// FuzzCSVReader checks the fast reader against encoding/csv on any input:
// the same records, lines and errors, whatever the chunk size.
func FuzzCSVReader(f *testing.F) {
	for _, in := range csvSeeds {
		f.Add(in)
	}
	f.Fuzz(checkCSVSame)
}
