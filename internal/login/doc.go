// Package login is what the issuer needs to sign people in, without any HTTP: checking a
// user's password (argon2id, bounded concurrency, the same cost for unknown users) and TOTP
// code (RFC 6238, the secret sealed under the master key, each time step accepted once),
// throttling guesses per client address and per account, and keeping sign-in sessions
// server-side where every replica finds them.
//
// The flow of one sign-in, as the issuer's pages drive it:
//
//	th.Admit(ctx, ip, username, now)          // per-address rate and blocks, account lock
//	u, err := users.CheckPassword(ctx, username, password)
//	if err != nil { th.Failure(ctx, ip, username, now); … same answer for every cause }
//	users.CheckTOTP(ctx, u, code, now)        // when u has a second factor
//	sessions.Create(ctx, Session{UserID: u.ID, AMR: …})  // opaque id for the cookie
package login
