package state

import (
	"encoding/json"
	"unicode/utf8"
)

// A key is any bytes (a model's text key may hold bytes that are not
// UTF-8), but encoding/json writes a string's invalid bytes as U+FFFD: the
// failure index and the row logs of the local state would hold another
// key, whose retry sends a removal of a record never synced ("k\xff"
// failed, "k\uFFFD" deleted). Such a key is written as {"bytes": base64}
// in their JSON; a UTF-8 key stays a string, as before.
type jsonKey string

type keyBytes struct {
	Bytes []byte `json:"bytes"`
}

func (k jsonKey) MarshalJSON() ([]byte, error) {
	if utf8.ValidString(string(k)) {
		return json.Marshal(string(k))
	}
	return json.Marshal(keyBytes{Bytes: []byte(k)})
}

func (k *jsonKey) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '{' {
		var b keyBytes
		if err := strictUnmarshal(data, &b); err != nil {
			return err
		}
		*k = jsonKey(b.Bytes)
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	*k = jsonKey(s)
	return nil
}

// failureJSON is a Failure as the local state writes it.
type failureJSON struct {
	Key jsonKey `json:"key"`
	failureFields
}

type failureFields Failure

func (f Failure) MarshalJSON() ([]byte, error) {
	return json.Marshal(failureJSON{Key: jsonKey(f.Key), failureFields: failureFields(f)})
}

func (f *Failure) UnmarshalJSON(data []byte) error {
	var v failureJSON
	if err := strictUnmarshal(data, &v); err != nil {
		return err
	}
	*f = Failure(v.failureFields)
	f.Key = string(v.Key)
	return nil
}

// rowLogJSON is a RowLog as the local state writes it.
type rowLogJSON struct {
	Key jsonKey `json:"key"`
	rowLogFields
}

type rowLogFields RowLog

func (r RowLog) MarshalJSON() ([]byte, error) {
	return json.Marshal(rowLogJSON{Key: jsonKey(r.Key), rowLogFields: rowLogFields(r)})
}

func (r *RowLog) UnmarshalJSON(data []byte) error {
	var v rowLogJSON
	if err := strictUnmarshal(data, &v); err != nil {
		return err
	}
	*r = RowLog(v.rowLogFields)
	r.Key = string(v.Key)
	return nil
}
