// Package e2e holds black-box tests of the whole product: TestMain builds the portcullis
// binary once, and the tests run it as a user would (portcullis demo, the CLI, signals),
// talking to it over HTTPS under the demo's local CA. It has no code of its own.
package e2e
