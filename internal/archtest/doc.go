// Package archtest holds tests of the repository's shape: imports point down the layers of
// STYLE.md and every package says what it is for. It has no code of its own.
package archtest
