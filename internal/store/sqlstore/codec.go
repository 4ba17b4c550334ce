package sqlstore

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// Times are BIGINT Unix microseconds, UTC; the zero time is NULL. Stored values therefore
// come back truncated to the microsecond and in UTC, and the zero time comes back zero.

func micros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromMicros(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.UnixMicro(n.Int64).UTC()
}

// norm is what a time looks like after a round trip through the store.
func norm(t time.Time) time.Time {
	return fromMicros(micros(t))
}

// encJSON stores slices and maps as JSON text: nil is "null", empty is "[]" or "{}", so both
// come back as they went in. Values of map[string]any come back as encoding/json decodes
// them (numbers as float64, objects as map[string]any).
func encJSON(field string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", invalid("%s: %v", field, err)
	}
	return string(b), nil
}

func decJSON(field string, b []byte, v any) error {
	if len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("sqlstore: stored %s is not valid JSON: %w", field, err)
	}
	return nil
}

// blob keeps NOT NULL byte columns non-NULL for an empty value; bytesOrNil undoes it, so an
// empty slice comes back nil.
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func bytesOrNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// scanner is *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}
