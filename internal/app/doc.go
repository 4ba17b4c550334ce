// Package app wires Portcullis together and runs it: config → store → keys → surfaces →
// listeners; reload on SIGHUP; graceful shutdown. It is the only package that imports every
// other and the only one that picks a store backend; it handles no requests itself. Main is
// the command line (cmd/portcullis only calls it).
package app
