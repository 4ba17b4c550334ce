package store

import "errors"

// ErrInvalid reports that a write was refused because its input cannot be stored: an empty or
// over-long key, a required field left zero, text a backend cannot hold (invalid UTF-8, NUL).
// Nothing was written. A read whose key could not have been stored returns ErrNotFound instead,
// so that a lookup with attacker-chosen input never looks like a technical failure.
var ErrInvalid = errors.New("store: invalid input")
