package sqlstore

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/portcullis/portcullis/internal/store"
)

// wrap gives a driver error its store meaning: errors.Is finds the sentinel, and the cause
// stays in the chain for the log. Errors that already carry a store sentinel (raised by this
// package or by a caller's update function) pass through unchanged.
func (db *DB) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if db.closed.Load() {
		return fmt.Errorf("sqlstore: %s: store closed: %w", op, store.ErrUnavailable)
	}
	if isSentinel(err) {
		return err
	}
	if s := db.d.classify(err); s != nil {
		return fmt.Errorf("sqlstore: %s: %w: %w", op, s, err)
	}
	return fmt.Errorf("sqlstore: %s: %w", op, err)
}

func isSentinel(err error) bool {
	for _, s := range []error{store.ErrNotFound, store.ErrDuplicate, store.ErrConflict,
		store.ErrLimit, store.ErrUnavailable, store.ErrInvalid} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// maxKey bounds every key the store indexes. PostgreSQL refuses B-tree entries beyond about
// 2.7 kB; two keys of this size still fit in one composite index entry.
const maxKey = 1024

func invalid(format string, args ...any) error {
	return fmt.Errorf("sqlstore: %w: %s", store.ErrInvalid, fmt.Sprintf(format, args...))
}

func notFound(what string) error {
	return fmt.Errorf("sqlstore: %s: %w", what, store.ErrNotFound)
}

// checkKey accepts a non-empty, bounded key that both backends can store and compare
// byte for byte.
func checkKey(field, s string) error {
	switch {
	case s == "":
		return invalid("%s is empty", field)
	case len(s) > maxKey:
		return invalid("%s is longer than %d bytes", field, maxKey)
	}
	return checkText(field, s)
}

// checkText accepts text PostgreSQL can hold: valid UTF-8 without NUL. SQLite would take
// anything, but the backends must agree on what is storable.
func checkText(field, s string) error {
	if !utf8.ValidString(s) {
		return invalid("%s is not valid UTF-8", field)
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return invalid("%s contains NUL", field)
		}
	}
	return nil
}

func checkTexts(field string, ss []string) error {
	for _, s := range ss {
		if err := checkText(field, s); err != nil {
			return err
		}
	}
	return nil
}

// validKey reports whether a lookup key could have been stored; a key that could not is
// simply not found.
func validKey(s string) bool {
	return checkKey("", s) == nil
}
