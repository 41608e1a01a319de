package destination

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/backflowhq/backflow/schema"
)

// TypeChecker is implemented by destinations that write each value as the
// type of its target: the SQL drivers convert to their columns' types, the
// http driver writes decimals as JSON numbers.
//
// CheckTypes is called once a sync's object is known (after Prepare, where
// the destination has one) with the model type of every mapped field, the
// key field included, by destination field name. It returns a
// TypeMismatches error naming each field whose values can never be written
// to its column (a timestamp into an integer column, bytes into a date…);
// a value that only may not fit (a string into an integer column, a
// fraction into an integer) is decided per record at write time instead. It
// also remembers the types for Write, which converts by them where a value
// alone is ambiguous: a bytes field arrives as its base64 text, a string
// field into a bytes column is written as its UTF-8 bytes, a string field
// into a JSON column is written as a JSON string. Without CheckTypes, Write
// converts by the column's type alone (a string into a bytes column is
// decoded when it is valid base64, a string into a JSON column is kept
// when it is valid JSON).
type TypeChecker interface {
	CheckTypes(ctx context.Context, object string, fields map[string]schema.Type) error
}

// TypeMismatch is a mapped field whose model values can never be written
// to its destination column.
type TypeMismatch struct {
	Field      string      // destination field name, as mapped
	Model      schema.Type // the model column's type
	Column     string      // the destination column, as the database names it
	ColumnType string      // the destination column's type, as the database spells it
}

func (m TypeMismatch) Error() string {
	return fmt.Sprintf("field %q: a %s value cannot be written to column %q of type %s", m.Field, m.Model, m.Column, m.ColumnType)
}

// TypeMismatches is the error CheckTypes returns, one entry per field, in
// field name order.
type TypeMismatches []TypeMismatch

func (ms TypeMismatches) Error() string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = m.Error()
	}
	return strings.Join(s, "; ")
}

// writable reports whether values of model type can be written to a column
// of kind k, some values at least. Text, JSON and unrecognised columns take
// anything with a text form.
func writable(model schema.Type, k colKind) bool {
	switch k {
	case kindInt:
		return model == schema.TypeInt || model == schema.TypeFloat || model == schema.TypeDecimal ||
			model == schema.TypeBool || model == schema.TypeString
	case kindFloat, kindDecimal:
		return model == schema.TypeInt || model == schema.TypeFloat || model == schema.TypeDecimal || model == schema.TypeString
	case kindBool:
		return model == schema.TypeBool || model == schema.TypeInt || model == schema.TypeString
	case kindBytes:
		return model == schema.TypeBytes || model == schema.TypeString
	case kindDate, kindTimestamp, kindTimestampTZ:
		return model == schema.TypeTimestamp || model == schema.TypeString
	case kindUUID:
		return model == schema.TypeString
	}
	return true
}

// CheckTypes implements TypeChecker for the SQL drivers.
func (w *sqlWriter) CheckTypes(ctx context.Context, object string, fields map[string]schema.Type) error {
	ctx, cancel := w.bound(ctx)
	defer cancel()
	t, err := w.table(ctx, object)
	if err != nil {
		return err
	}
	w.mu.Lock()
	if w.models == nil {
		w.models = map[string]map[string]schema.Type{}
	}
	w.models[object] = fields
	w.mu.Unlock()
	var out TypeMismatches
	for f, model := range fields {
		c := t.column(f)
		if c != nil && !writable(model, c.kind) {
			out = append(out, TypeMismatch{Field: f, Model: model, Column: c.name, ColumnType: c.dbType})
		}
	}
	if len(out) == 0 {
		return nil
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Field < out[j].Field })
	return out
}

// modelTypes returns what CheckTypes was told of object's fields (nil when
// nothing).
func (w *sqlWriter) modelTypes(object string) map[string]schema.Type {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.models[object]
}

// timeStyle is how a database takes dates and times.
type timeStyle int

const (
	// timeNative: a time.Time (pgx encodes date, timestamp and timestamptz
	// from it).
	timeNative timeStyle = iota
	// timeText: text in UTC, `YYYY-MM-DD` for dates and
	// `YYYY-MM-DD HH:MM:SS.ffffff` for the others, which MySQL/MariaDB
	// accept in strict mode (they reject RFC 3339) and SQLite's date
	// functions read.
	timeText
)

// converter turns record values into what one database takes for one
// column.
type converter struct {
	col   *column // nil: a field the table lacks; values pass unchanged
	model schema.Type
	known bool // model is what CheckTypes said
	style timeStyle
	// otherAsText: values of unrecognised column types are sent as text,
	// which the server parses (PostgreSQL: pgx cannot encode an int64 into
	// an enum, interval or inet parameter, the server reads '42' into any).
	otherAsText bool
	// specialDecimals: decimal columns take 'NaN', 'Infinity' and
	// '-Infinity' (PostgreSQL's numeric).
	specialDecimals bool
	// fracDigits is the sub-second precision of timeText timestamps.
	fracDigits int
}

// valueError is a value that cannot be written to its column; the record
// it belongs to is rejected alone, before anything is sent.
type valueError struct {
	field string
	col   *column
	err   error
}

func (e *valueError) Error() string {
	return fmt.Sprintf("field %q: %v (column %s is %s)", e.field, e.err, e.col.name, e.col.dbType)
}

// convert returns v as the column's type wants it. nil stays nil (NULL).
func (c *converter) convert(v any) (any, error) {
	v = plain(v)
	if v == nil || c.col == nil {
		return v, nil
	}
	switch c.col.kind {
	case kindText, kindUUID:
		if _, ok := v.(string); ok {
			return v, nil // as it is: no new box
		}
		return asText(v), nil
	case kindInt:
		return c.toInt(v)
	case kindFloat:
		return c.toFloat(v)
	case kindDecimal:
		return c.toDecimal(v)
	case kindBool:
		return c.toBool(v)
	case kindBytes:
		return c.toBytes(v)
	case kindDate, kindTimestamp, kindTimestampTZ:
		return c.toTime(v)
	case kindJSON:
		return c.toJSON(v)
	}
	if t, ok := v.(time.Time); ok {
		return c.timeValue(kindTimestampTZ, t), nil
	}
	if s, ok := v.(string); ok && c.known && c.model == schema.TypeBytes {
		// Bytes, as a plan carries them (base64), for a column of a type
		// the driver does not know (MySQL BIT takes a binary string of its
		// bytes: the text would be too long for it).
		if b, err := base64.StdEncoding.DecodeString(s); err == nil {
			return b, nil
		}
	}
	if _, ok := v.([]byte); c.otherAsText && !ok {
		return asText(v), nil
	}
	return v, nil
}

// plain reduces the types a value may come as (from an engine, a driver,
// or a saved plan's JSON) to nil, string, int64, float64, bool, []byte and
// time.Time. Decimals of any representation become their decimal string.
func plain(v any) any {
	switch x := v.(type) {
	case nil, string, int64, float64, bool, []byte, time.Time:
		return x
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		return string(x)
	case json.RawMessage:
		return string(x)
	case int:
		return int64(x)
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint:
		return plain(uint64(x))
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
		return strconv.FormatUint(x, 10)
	case float32:
		return float64(x)
	case *big.Int:
		return x.String()
	case *big.Rat:
		return x.FloatString(20)
	case fmt.Stringer: // decimal types
		return x.String()
	}
	return v
}

// asText is the text form of a plain value: bytes as base64 (as plans show
// them), times in RFC 3339.
func asText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v)
}

var errNotInteger = errors.New("not an integer")

func (c *converter) toInt(v any) (any, error) {
	i, err := c.toInt64(v)
	if n, ok := i.(int64); ok && c.col.bits > 0 && (n >= 1<<(c.col.bits-1) || n < -(1<<(c.col.bits-1))) {
		return nil, fmt.Errorf("%d is out of range", n)
	}
	return i, err
}

func (c *converter) toInt64(v any) (any, error) {
	switch x := v.(type) {
	case int64:
		return v, nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<63 {
			return int64(x), nil
		}
		return nil, fmt.Errorf("%v is %w", x, errNotInteger)
	case bool:
		if x {
			return int64(1), nil
		}
		return int64(0), nil
	case string:
		s := strings.TrimSpace(x)
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i, nil
		}
		if _, err := strconv.ParseUint(s, 10, 64); err == nil {
			return s, nil // beyond int64: an unsigned column may take it
		}
		if r, ok := new(big.Rat).SetString(s); ok && r.IsInt() && r.Num().IsInt64() {
			return r.Num().Int64(), nil // "12.000"
		}
		return nil, fmt.Errorf("%q is %w", x, errNotInteger)
	}
	return nil, fmt.Errorf("a %s is %w", kindOf(v), errNotInteger)
}

func (c *converter) toFloat(v any) (any, error) {
	switch x := v.(type) {
	case float64:
		return v, nil
	case int64:
		return float64(x), nil
	case string:
		if f, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil {
			return f, nil
		}
		return nil, fmt.Errorf("%q is not a number", x)
	}
	return nil, fmt.Errorf("a %s is not a number", kindOf(v))
}

// toDecimal keeps decimals exact: they travel as their decimal string, which
// every database parses into its exact type, and never through float64.
func (c *converter) toDecimal(v any) (any, error) {
	switch x := v.(type) {
	case string:
		s := strings.TrimSpace(x)
		if c.specialDecimals && (s == "NaN" || s == "Infinity" || s == "-Infinity") {
			return s, nil
		}
		if _, ok := new(big.Rat).SetString(s); !ok {
			return nil, fmt.Errorf("%q is not a decimal number", x)
		}
		return s, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return nil, fmt.Errorf("%v is not a decimal number", x)
		}
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	}
	return nil, fmt.Errorf("a %s is not a decimal number", kindOf(v))
}

func (c *converter) toBool(v any) (any, error) {
	// A boolean stored in a TINYINT (MySQL's BOOLEAN, bits 8) holds the
	// integers of a byte: another TINYINT(1) may have sent 2 or -1.
	byteInt := c.col.bits == 8
	lo, hi := int64(math.MinInt8), int64(math.MaxInt8)
	if c.col.unsigned {
		lo, hi = 0, math.MaxUint8
	}
	switch x := v.(type) {
	case bool:
		return x, nil
	case int64:
		if byteInt && x >= lo && x <= hi {
			return x, nil
		}
		if x == 0 || x == 1 {
			return x == 1, nil
		}
	case float64:
		if byteInt && x == math.Trunc(x) && x >= float64(lo) && x <= float64(hi) {
			return int64(x), nil
		}
		if x == 0 || x == 1 {
			return x == 1, nil
		}
	case string:
		if b, err := strconv.ParseBool(strings.TrimSpace(x)); err == nil {
			return b, nil
		}
		return nil, fmt.Errorf("%q is not a boolean", x)
	default:
		return nil, fmt.Errorf("a %s is not a boolean", kindOf(v))
	}
	if byteInt {
		return nil, fmt.Errorf("%v is neither a boolean nor an integer of %d to %d", v, lo, hi)
	}
	return nil, fmt.Errorf("%v is not a boolean (0 or 1)", v)
}

// toBytes writes raw bytes. A string is the base64 text bytes travel as in
// backflow (plans, snapshots), unless the model says it is text.
func (c *converter) toBytes(v any) (any, error) {
	switch x := v.(type) {
	case []byte:
		return x, nil
	case string:
		if c.known && c.model != schema.TypeBytes {
			return []byte(x), nil
		}
		b, err := base64.StdEncoding.DecodeString(x)
		if err == nil {
			return b, nil
		}
		if c.known {
			return nil, fmt.Errorf("bytes that are not base64: %v", err)
		}
		return []byte(x), nil
	}
	return nil, fmt.Errorf("a %s is not bytes", kindOf(v))
}

// timeLayouts are the forms a time may arrive in as text, tried in order;
// those without a zone are UTC.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02",
}

func (c *converter) toTime(v any) (any, error) {
	switch x := v.(type) {
	case time.Time:
		return c.timeValue(c.col.kind, x), nil
	case string:
		if t, ok := parseTime(strings.TrimSpace(x)); ok {
			return c.timeValue(c.col.kind, t), nil
		}
		if c.style == timeNative && (x == "infinity" || x == "-infinity") {
			// PostgreSQL's dates and times past every other, planned as
			// their text (a PostgreSQL source's 'infinity').
			return x, nil
		}
		if c.style == timeText && schema.DateShaped(x) {
			// A zero or invalid date a MySQL source keeps
			// ('0000-00-00', '2024-02-30'), planned as its text: a
			// database taking dates as text gets it as it is, and takes
			// it or refuses it by its own rules (MySQL's SQL mode).
			return x, nil
		}
		return nil, fmt.Errorf("%q is not a date or time (RFC 3339 or YYYY-MM-DD[ HH:MM:SS])", x)
	}
	return nil, fmt.Errorf("a %s is not a date or time", kindOf(v))
}

// parseTime parses s in one of timeLayouts. The year may also have a sign
// or more than four digits, as Go writes years outside 0–9999 (a
// PostgreSQL date of 4713 BC is planned as "-4712-01-01T00:00:00Z", year
// 10000 as "10000-01-01T…"), which time.Parse refuses: the rest is parsed
// with a year of the same leap-ness in its place.
func parseTime(s string) (time.Time, bool) {
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	digits := strings.TrimPrefix(s, "-")
	end := strings.IndexByte(digits, '-')
	if end < 4 || end > 9 || (end == 4 && len(digits) == len(s)) {
		return time.Time{}, false
	}
	year := 0
	for _, r := range digits[:end] {
		if r < '0' || r > '9' {
			return time.Time{}, false
		}
		year = year*10 + int(r-'0')
	}
	if len(digits) < len(s) {
		year = -year
	}
	stand := "2001"
	if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
		stand = "2000"
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, stand+digits[end:]); err == nil {
			return time.Date(year, t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location()), true
		}
	}
	return time.Time{}, false
}

// timeValue is t, in UTC, as the database takes a value of kind k.
func (c *converter) timeValue(k colKind, t time.Time) any {
	t = t.UTC()
	if c.style == timeNative {
		return t
	}
	if k == kindDate {
		return t.Format("2006-01-02")
	}
	layout := "2006-01-02 15:04:05"
	if c.fracDigits > 0 {
		layout += "." + strings.Repeat("9", c.fracDigits)
	}
	return t.Format(layout)
}

// toJSON writes JSON text. A string is taken as JSON text (what a JSON model
// column arrives as) unless the model says it is text, or it is not valid
// JSON; then it is written as a JSON string.
func (c *converter) toJSON(v any) (any, error) {
	if s, ok := v.(string); ok {
		if (!c.known || c.model == schema.TypeJSON) && json.Valid([]byte(s)) {
			return s, nil
		}
		if c.known && c.model == schema.TypeJSON {
			return nil, errors.New("not valid JSON")
		}
	}
	if t, ok := v.(time.Time); ok {
		v = t.UTC().Format(time.RFC3339Nano)
	}
	if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
		return nil, notJSONNumber(f)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// kindOf names a plain value's type for messages.
func kindOf(v any) string {
	switch v.(type) {
	case []byte:
		return "bytes value"
	case time.Time:
		return "timestamp"
	case bool:
		return "boolean"
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	}
	return fmt.Sprintf("%T", v)
}

// ClearChecker is implemented by destinations that can tell, before
// anything is sent, which fields a clear could not set to null.
type ClearChecker interface {
	// NotNullFields returns those of fields whose destination column is
	// NOT NULL, in the order given.
	NotNullFields(ctx context.Context, object string, fields []string) ([]string, error)
}

// NotNullFields implements ClearChecker.
func (w *sqlWriter) NotNullFields(ctx context.Context, object string, fields []string) ([]string, error) {
	ctx, cancel := w.bound(ctx)
	defer cancel()
	t, err := w.table(ctx, object)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range fields {
		if c := t.column(f); c != nil && c.notNull {
			out = append(out, f)
		}
	}
	return out, nil
}
