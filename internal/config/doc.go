// Package config turns portcullis.yaml into a typed, defaulted, validated Config.
//
// The flow is decode → Default → Validate. Decoding expands ${ENV} references inside scalar
// values only, refuses unknown and duplicate keys, and remembers the line of every path;
// Validate reports every problem at once with its path, and Load adds the line. The package
// opens no sockets and no databases; it only checks that files it names exist.
package config
