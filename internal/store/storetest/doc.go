// Package storetest is the conformance suite every store.Store backend must pass.
//
// A backend's test calls Run with a constructor that returns a fresh, empty store and
// registers its Close with t.Cleanup:
//
//	func TestSQLite(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { ... })
//	}
//
// Run has one subtest per guarantee of the store contract, grouped by interface (clients/,
// tokens/, keys/, replay/, audit/, users/, consents/, ephemeral/, store/): not found,
// duplicate, atomic update with abort, exactly one winner among concurrent callers, expiry,
// bad input refused with nothing written, and a round trip of every field of every record.
//
// Times in the suite have microsecond precision: the contract lets backends keep no more.
// Replay and ephemeral expiry are judged by the backend's own clock, so the suite puts
// those expiries an hour away from the wall clock rather than sleeping.
package storetest
