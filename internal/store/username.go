package store

import (
	"fmt"

	"golang.org/x/text/secure/precis"
)

// MaxUsernameKey bounds a username's comparison key (its bytes after mapping).
const MaxUsernameKey = 1024

// UsernameKey returns the form in which usernames are unique and compared: the PRECIS
// UsernameCaseMapped profile (RFC 8265), which maps width and case and normalises, so
// "Alice", "ALICE" and "Ａｌｉｃｅ" are one user; it refuses spaces, controls and other
// characters that make look-alike names. Every backend looks users up by it, and whatever
// counts per user by name (the sign-in lock) must use it too, or a variant of the name that
// signs in as the same user would be counted apart. An error wraps ErrInvalid: no user can
// have that name.
func UsernameKey(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("store: %w: empty username", ErrInvalid)
	}
	k, err := precis.UsernameCaseMapped.CompareKey(name)
	if err != nil {
		return "", fmt.Errorf("store: %w: username: %v", ErrInvalid, err)
	}
	if len(k) > MaxUsernameKey {
		return "", fmt.Errorf("store: %w: username longer than %d bytes", ErrInvalid, MaxUsernameKey)
	}
	return k, nil
}
