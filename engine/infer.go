package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/types"

	"github.com/backflowhq/backflow/schema"
)

// Candidate types a column's values are all compatible with.
const (
	canInt uint8 = 1 << iota
	canFloat
	canBool
	canTime
	canBytes
	canString
	canDecimal
	canAll = canInt | canFloat | canBool | canTime | canBytes | canString | canDecimal
)

// jsonText marks a nested JSON value (object or array) read from a JSONL
// fixture: its column becomes schema.TypeJSON.
type jsonText string

// jsonNumber is a JSONL number that is not an int64, as written: a float64
// may not hold it exactly, so its column's type decides how it is read.
type jsonNumber string

// columnInference accumulates, value by value, the narrowest type that
// fits every non-null value of a column: int, then float, bool, timestamp,
// bytes, else string; any nested JSON value makes the column JSON. Numbers
// are never rounded: a column of numbers one of which a float64 would not
// give back as written (an integer beyond int64, or more digits than a
// float64 keeps) is DECIMAL when one fits them all, else text. Columns
// with an override skip inference and track only what DECIMAL needs.
type columnInference struct {
	cand     uint8
	seen     bool
	nested   bool
	inexact  bool // a number a float64 would not give back as written
	override *schema.Type
	intDig   int // decimals: most integer digits seen
	scale    int // decimals: most fraction digits seen
}

func newInference(n int) []columnInference {
	c := make([]columnInference, n)
	for i := range c {
		c[i].cand = canAll
	}
	return c
}

// observeText records an untyped text value (a CSV cell, or a Go string
// given to AddTable).
func (c *columnInference) observeText(s string) {
	c.seen = true
	if c.override != nil {
		if *c.override == schema.TypeDecimal {
			c.observeDecimal(s)
		}
		return
	}
	m := c.cand &^ canBytes
	if m&(canInt|canFloat|canDecimal) != 0 {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			if !intExact(n) {
				c.inexact = true
			}
			if m&canDecimal != 0 && len(s) > c.intDig {
				c.observeDecimal(s) // (no shorter text has more digits)
			}
		} else {
			m &^= canInt
			m = c.observeNumber(s, m)
		}
	}
	if m&canBool != 0 && !strings.EqualFold(s, "true") && !strings.EqualFold(s, "false") {
		m &^= canBool
	}
	if m&canTime != 0 {
		if _, ok := parseTime(s); !ok {
			m &^= canTime
		}
	}
	c.cand = m
}

// observeNumber records a value that is not an int64 in a column that may
// still be float or decimal, and returns the candidates left of m.
func (c *columnInference) observeNumber(s string, m uint8) uint8 {
	if m&canFloat != 0 {
		if f, ok := parseFloatText(s); !ok {
			m &^= canFloat
		} else if !floatExact(s, f) || !strings.ContainsAny(s, ".eE") {
			// An integer beyond int64 is a decimal even when a float64
			// happens to hold it: its neighbours in a key would not be.
			c.inexact = true
		}
	}
	if m&canDecimal != 0 {
		if p, ok := plainDecimal(s); !ok {
			m &^= canDecimal
		} else if len(p) > min(c.intDig, c.scale) {
			c.observeDecimal(p)
		}
	}
	return m
}

// intExact reports whether a float64 gives back n as written.
func intExact(n int64) bool {
	if n >= -1<<53 && n <= 1<<53 {
		return true
	}
	return strconv.FormatFloat(float64(n), 'f', -1, 64) == strconv.FormatInt(n, 10)
}

// floatExact reports whether f, the float64 read from the decimal literal
// s, gives back s's value: whether the shortest text that reads as f is
// the number s is. Fifteen significant digits always come back (for
// normal floats); longer literals are compared digit by digit.
func floatExact(s string, f float64) bool {
	if a := math.Abs(f); a == 0 || a >= 0x1p-1022 {
		if n := mantissaDigits(s); n <= 15 {
			return true
		}
	}
	neg1, d1, e1, ok1 := decimalParts(s)
	neg2, d2, e2, ok2 := decimalParts(strconv.FormatFloat(f, 'e', -1, 64))
	if !ok1 || !ok2 {
		return false
	}
	if d1 == "" || d2 == "" {
		return d1 == d2 // zeros, whatever their sign
	}
	return neg1 == neg2 && d1 == d2 && e1 == e2
}

// mantissaDigits counts the digits of a literal's mantissa after its
// leading zeros: at least its number of significant digits.
func mantissaDigits(s string) int {
	n, lead := 0, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 'e' || c == 'E' {
			break
		}
		if c < '0' || c > '9' || (lead && c == '0') {
			continue
		}
		lead = false
		n++
	}
	return n
}

// decimalParts reads a decimal literal ([+-]digits[.digits][e[+-]digits])
// as its sign and digits × 10^exp, digits without leading or trailing
// zeros ("" for zero).
func decimalParts(s string) (neg bool, digits string, exp int, ok bool) {
	mant, e := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		var err error
		if e, err = strconv.Atoi(s[i+1:]); err != nil {
			return false, "", 0, false
		}
		mant = s[:i]
	}
	if mant != "" && (mant[0] == '+' || mant[0] == '-') {
		neg = mant[0] == '-'
		mant = mant[1:]
	}
	if !plainShape(mant) {
		return false, "", 0, false
	}
	whole, frac, _ := strings.Cut(mant, ".")
	all := strings.TrimLeft(whole+frac, "0")
	exp = e - len(frac)
	trimmed := strings.TrimRight(all, "0")
	exp += len(all) - len(trimmed)
	return neg, trimmed, exp, true
}

// plainShape reports whether s is digits with at most one decimal point
// and at least one digit, without sign or exponent.
func plainShape(s string) bool {
	digits, points := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			points++
		default:
			return false
		}
	}
	return digits > 0 && points <= 1
}

// maxPlain bounds the text plainDecimal writes for a literal with an
// exponent: far more than DECIMAL(65,30) needs.
const maxPlain = 256

// plainDecimal writes a decimal literal ([+-]digits[.digits], optionally
// with an exponent) without an exponent, exactly: 1.5e3 is 1500. ok is
// false for other text, and for an exponent whose plain form would be
// longer than maxPlain characters.
func plainDecimal(s string) (string, bool) {
	i := strings.IndexAny(s, "eE")
	sign, mant := "", s
	if i >= 0 {
		mant = s[:i]
	}
	if mant != "" && (mant[0] == '+' || mant[0] == '-') {
		sign, mant = mant[:1], mant[1:]
	}
	if !plainShape(mant) {
		return "", false
	}
	if i < 0 {
		return s, true
	}
	e, err := strconv.Atoi(s[i+1:])
	if err != nil || len(mant) > maxPlain || e > maxPlain || e < -maxPlain {
		return "", false
	}
	if sign == "+" {
		sign = ""
	}
	whole, frac, _ := strings.Cut(mant, ".")
	digits := whole + frac
	point := len(whole) + e // digits before the decimal point
	switch {
	case point <= 0:
		return sign + "0." + strings.Repeat("0", -point) + digits, true
	case point >= len(digits):
		return sign + digits + strings.Repeat("0", point-len(digits)), true
	}
	return sign + digits[:point] + "." + digits[point:], true
}

// parseFloatText parses a finite decimal float literal.
func parseFloatText(s string) (float64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || strings.ContainsAny(s, "xXnN_") {
		return 0, false
	}
	return f, true
}

// observe records a typed value (JSONL, AddTable): typed values keep their
// kind, except that ints widen to float and mixed kinds become string.
func (c *columnInference) observe(v any) {
	switch x := v.(type) {
	case nil:
		return
	case string:
		c.observeText(x)
		return
	case jsonText:
		c.nested = true
	case jsonNumber:
		c.seen = true
		if c.override != nil {
			if *c.override == schema.TypeDecimal {
				c.observeDecimal(string(x))
			}
			return
		}
		c.cand = c.observeNumber(string(x), c.cand&(canFloat|canDecimal|canString))
		return
	case int64:
		c.cand &= canInt | canFloat | canDecimal | canString
		if !intExact(x) {
			c.inexact = true
		}
		if c.override == nil && c.cand&canDecimal != 0 {
			c.observeDecimal(strconv.FormatInt(x, 10))
		}
	case float64:
		c.cand &= canFloat | canDecimal | canString
		if math.IsInf(x, 0) || math.IsNaN(x) {
			c.cand &^= canDecimal
		} else if c.override == nil && c.cand&canDecimal != 0 {
			c.observeDecimal(strconv.FormatFloat(x, 'f', -1, 64))
		}
	case bool:
		c.cand &= canBool | canString
	case time.Time:
		c.cand &= canTime | canString
	case []byte:
		c.cand &= canBytes
	}
	c.seen = true
	if c.override != nil && *c.override == schema.TypeDecimal {
		c.observeDecimal(fmt.Sprint(v))
	}
}

// observeDecimal records the size of a decimal literal (one with an
// exponent as plainDecimal writes it).
func (c *columnInference) observeDecimal(s string) {
	s = strings.TrimSpace(s)
	if p, ok := plainDecimal(s); ok {
		s = p
	}
	s = strings.TrimLeft(s, "+-")
	whole, frac, _ := strings.Cut(s, ".")
	whole = strings.TrimLeft(whole, "0")
	c.intDig = max(c.intDig, len(whole))
	c.scale = max(c.scale, len(frac))
}

// The largest DECIMAL the engine has (MySQL's).
const (
	maxDecimalPrecision = 65
	maxDecimalScale     = 30
)

// result is the column's type (and DECIMAL size).
func (c *columnInference) result() (schema.Type, decimalSpec) {
	if c.override != nil {
		if *c.override != schema.TypeDecimal {
			return *c.override, decimalSpec{}
		}
		scale := min(c.scale, maxDecimalScale)
		prec := min(max(c.intDig+scale, 1), maxDecimalPrecision)
		return schema.TypeDecimal, decimalSpec{precision: uint8(prec), scale: uint8(scale)}
	}
	switch {
	case c.nested:
		return schema.TypeJSON, decimalSpec{}
	case !c.seen:
		return schema.TypeString, decimalSpec{}
	case c.cand&canInt != 0:
		return schema.TypeInt, decimalSpec{}
	case c.cand&canFloat != 0 && !c.inexact:
		return schema.TypeFloat, decimalSpec{}
	case c.cand&canDecimal != 0 && c.scale <= maxDecimalScale && c.intDig+c.scale <= maxDecimalPrecision:
		return schema.TypeDecimal, decimalSpec{precision: uint8(max(c.intDig+c.scale, 1)), scale: uint8(c.scale)}
	case c.cand&(canFloat|canDecimal) != 0:
		// Numbers neither a float64 nor a DECIMAL holds as written: text.
		return schema.TypeString, decimalSpec{}
	case c.cand&canBool != 0:
		return schema.TypeBool, decimalSpec{}
	case c.cand&canTime != 0:
		return schema.TypeTimestamp, decimalSpec{}
	case c.cand&canBytes != 0:
		return schema.TypeBytes, decimalSpec{}
	}
	return schema.TypeString, decimalSpec{}
}

// parseTime reads a fixture timestamp; times without a zone are UTC. The
// layout is picked from the separator after the date, so each value is
// parsed once.
func parseTime(s string) (time.Time, bool) {
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return time.Time{}, false
	}
	if t, ok, done := parsePlainTime(s); done {
		return t, ok
	}
	layout := "2006-01-02"
	switch {
	case len(s) == 10:
	case s[10] == ' ':
		layout = "2006-01-02 15:04:05.999999999"
	case s[10] == 'T' && (strings.HasSuffix(s, "Z") || strings.LastIndexAny(s, "+-") > 10):
		layout = time.RFC3339Nano
	case s[10] == 'T':
		layout = "2006-01-02T15:04:05.999999999"
	default:
		return time.Time{}, false
	}
	t, err := time.Parse(layout, s)
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

// parsePlainTime reads the most common timestamps without time.Parse's
// layout interpretation: 2006-01-02, 2006-01-02 15:04:05,
// 2006-01-02T15:04:05 and 2006-01-02T15:04:05Z, accepting and refusing
// exactly what parseTime's layouts do. done is false for any other shape.
func parsePlainTime(s string) (t time.Time, ok, done bool) {
	switch {
	case len(s) == 10:
	case len(s) == 19 && (s[10] == ' ' || s[10] == 'T'):
	case len(s) == 20 && s[10] == 'T' && s[19] == 'Z':
	default:
		return time.Time{}, false, false
	}
	num := func(from, to int) (int, bool) {
		n := 0
		for i := from; i < to; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(0, 4)
	month, ok2 := num(5, 7)
	day, ok3 := num(8, 10)
	hour, minute, sec := 0, 0, 0
	ok4, ok5, ok6 := true, true, true
	if len(s) > 10 {
		if s[13] != ':' || s[16] != ':' {
			return time.Time{}, false, false
		}
		hour, ok4 = num(11, 13)
		minute, ok5 = num(14, 16)
		sec, ok6 = num(17, 19)
	}
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return time.Time{}, false, false
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn(time.Month(month), year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false, true
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC), true, true
}

// daysIn is the number of days of a month of a (proleptic Gregorian) year.
func daysIn(m time.Month, year int) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// tableSpec is a fixture table's shape once its column types are known.
type tableSpec struct {
	name     string
	columns  []string
	types    []schema.Type
	decimals []decimalSpec
}

// newSpec resolves the types of an inferred table.
func newSpec(name string, columns []string, inf []columnInference) *tableSpec {
	s := &tableSpec{name: name, columns: columns, types: make([]schema.Type, len(columns)), decimals: make([]decimalSpec, len(columns))}
	for i := range inf {
		s.types[i], s.decimals[i] = inf[i].result()
	}
	return s
}

// convertText converts a non-empty text value to the storage value of a
// column of type t.
func (s *tableSpec) convertText(i int, v string) (any, error) {
	switch s.types[i] {
	case schema.TypeString:
		return v, nil
	case schema.TypeInt:
		return textInt(v)
	case schema.TypeFloat:
		return textFloat(v)
	case schema.TypeBool:
		return textBool(v)
	case schema.TypeTimestamp:
		return textTime(v)
	case schema.TypeBytes:
		return []byte(v), nil
	case schema.TypeDecimal:
		p, ok := plainDecimal(strings.TrimSpace(v))
		if !ok {
			return nil, fmt.Errorf("%q is not a decimal number", v)
		}
		d, _, err := gmsType(schema.TypeDecimal, s.decimals[i]).Convert(context.Background(), p)
		if err != nil {
			return nil, fmt.Errorf("%q does not fit DECIMAL(%d,%d): %v", v, s.decimals[i].precision, s.decimals[i].scale, err)
		}
		return d, nil
	case schema.TypeJSON:
		var x any
		if err := json.Unmarshal([]byte(v), &x); err != nil {
			return nil, fmt.Errorf("%q is not valid JSON", v)
		}
		return types.JSONDocument{Val: x}, nil
	}
	return nil, fmt.Errorf("unsupported column type %s", s.types[i])
}

// The text conversions of the scalar types, shared by convertText and the
// column builder (which stores them unboxed).

func textInt(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("%s is beyond the range of an int column (%d to %d); type decimal holds it exactly", v, math.MinInt64, math.MaxInt64)
	}
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", v)
	}
	return n, nil
}

// textFloat reads a float; a number a float64 would not give back as
// written (an integer beyond 2^53, more than 15 to 17 digits) is refused,
// never rounded.
func textFloat(v string) (float64, error) {
	f, ok := parseFloatText(v)
	if !ok {
		return 0, fmt.Errorf("%q is not a number", v)
	}
	if !floatExact(v, f) {
		return 0, inexactFloat(v, f)
	}
	return f, nil
}

func inexactFloat(v string, f float64) error {
	return fmt.Errorf("%s does not fit a float column exactly (a float64 would read it as %s); type decimal holds it exactly", v, strconv.FormatFloat(f, 'g', -1, 64))
}

// textBool is a boolean as go-mysql-server stores BOOLEAN: TINYINT 1 or 0.
func textBool(v string) (int8, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a boolean (true or false)", v)
	}
	if b {
		return 1, nil
	}
	return 0, nil
}

func textTime(v string) (time.Time, error) {
	t, ok := parseTime(v)
	if !ok {
		return time.Time{}, fmt.Errorf("%q is not a timestamp (RFC 3339, 2006-01-02 or 2006-01-02 15:04:05)", v)
	}
	return t, nil
}

// convert converts a typed value (JSONL, AddTable) to the storage value of
// column i.
func (s *tableSpec) convert(i int, v any) (any, error) {
	t := s.types[i]
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		if t == schema.TypeJSON {
			b, _ := json.Marshal(x)
			return s.convertText(i, string(b))
		}
		return s.convertText(i, x)
	case jsonText:
		if t == schema.TypeString {
			return string(x), nil
		}
		return s.convertText(i, string(x))
	case jsonNumber:
		switch t {
		case schema.TypeInt:
			// 3.0 and 3e2 are integers; nothing is rounded to make one.
			p, ok := plainDecimal(string(x))
			if whole, frac, _ := strings.Cut(p, "."); ok && strings.Trim(frac, "0") == "" && whole != "" && whole != "-" {
				return textInt(whole)
			}
			return nil, fmt.Errorf("%s is not an integer", x)
		case schema.TypeString:
			return string(x), nil
		}
		return s.convertText(i, string(x))
	case int64:
		switch t {
		case schema.TypeInt:
			return x, nil
		case schema.TypeFloat:
			if !intExact(x) {
				return nil, inexactFloat(strconv.FormatInt(x, 10), float64(x))
			}
			return float64(x), nil
		}
		return s.convertText(i, strconv.FormatInt(x, 10))
	case float64:
		if t == schema.TypeFloat {
			return x, nil
		}
		if t == schema.TypeInt && x == math.Trunc(x) && math.Abs(x) < 1<<63 {
			return int64(x), nil
		}
		return s.convertText(i, strconv.FormatFloat(x, 'f', -1, 64))
	case bool:
		if t == schema.TypeInt {
			if x {
				return int64(1), nil
			}
			return int64(0), nil
		}
		return s.convertText(i, strconv.FormatBool(x))
	case time.Time:
		switch t {
		case schema.TypeTimestamp:
			return x.UTC(), nil
		case schema.TypeString:
			return x.UTC().Format(time.RFC3339Nano), nil
		}
		return nil, fmt.Errorf("a timestamp does not fit a %s column", t)
	case []byte:
		switch t {
		case schema.TypeBytes:
			return x, nil
		case schema.TypeString:
			return string(x), nil
		}
		return nil, fmt.Errorf("bytes do not fit a %s column", t)
	}
	return nil, fmt.Errorf("unsupported Go value of type %T", v)
}

// typedValue normalises a Go value given to AddTable to the kinds
// inference knows.
func typedValue(v any) (any, error) {
	switch x := v.(type) {
	case nil, string, int64, float64, bool, []byte:
		return v, nil
	case int:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case float32:
		return float64(x), nil
	case json.Number: // a number as written, which a float64 would round (a test's rows)
		return jsonNumber(x), nil
	case time.Time:
		return x.UTC(), nil
	}
	return nil, fmt.Errorf("unsupported Go value of type %T", v)
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validIdentifier reports whether name can be a table name without quoting.
func validIdentifier(name string) bool { return identifier.MatchString(name) }

// tableBuilder accumulates a fixture table's values column by column.
type tableBuilder struct {
	spec *tableSpec
	cols []column
}

// newTableBuilder prepares columns for capacity rows.
func newTableBuilder(spec *tableSpec, capacity int) *tableBuilder {
	b := &tableBuilder{spec: spec, cols: make([]column, len(spec.columns))}
	for i, t := range spec.types {
		b.cols[i] = newColumn(t, capacity)
	}
	return b
}

// appendText appends a CSV cell to column i: "" is NULL, anything else
// is converted to the column's type.
func (b *tableBuilder) appendText(i int, v string) error {
	c := &b.cols[i]
	if v == "" {
		c.appendNull()
		return nil
	}
	switch c.kind {
	case schema.TypeString:
		c.appendString(v)
	case schema.TypeInt:
		n, err := textInt(v)
		if err != nil {
			return err
		}
		c.appendInt(n)
	case schema.TypeFloat:
		f, err := textFloat(v)
		if err != nil {
			return err
		}
		c.appendFloat(f)
	case schema.TypeBool:
		x, err := textBool(v)
		if err != nil {
			return err
		}
		c.appendBool(x)
	case schema.TypeTimestamp:
		t, err := textTime(v)
		if err != nil {
			return err
		}
		c.appendTime(t)
	default:
		x, err := b.spec.convertText(i, v)
		if err != nil {
			return err
		}
		c.appendOther(x)
	}
	return nil
}

// appendValue appends a typed value (JSONL, AddTable) to column i.
func (b *tableBuilder) appendValue(i int, v any) error {
	x, err := b.spec.convert(i, v)
	if err != nil {
		return err
	}
	b.cols[i].appendStored(x)
	return nil
}

// table returns the table of the values appended, n rows.
func (b *tableBuilder) table(n int) *fixtureTable {
	sch := make(sql.Schema, len(b.spec.columns))
	for i, c := range b.spec.columns {
		sch[i] = &sql.Column{Name: c, Type: gmsType(b.spec.types[i], b.spec.decimals[i]), Nullable: true, Source: b.spec.name}
	}
	return &fixtureTable{name: b.spec.name, schema: sch, cols: b.cols, rows: n}
}
