// Package abuse detects and sanctions abusive traffic that rate limits alone do not stop:
// bursts of authentication failures (brute force, credential stuffing) and enumeration of
// object ids (many distinct ids, or many 404s/403s on one route, in a short window).
//
// The flow, for the gateway or the issuer:
//
//	st, _ := det.Status(ctx, subject, now)        // before the request: blocked? throttled?
//	… serve the request …
//	v, _ := det.Observe(ctx, rule, scope, subject, member, now)  // after: count what it was
//	if v.Fired { audit v; count v }                 // the block or throttle is already stored
//
// A Window counts events per key in a sliding window (in memory here, or in Redis through
// ratelimit/redis with the same semantics); a BlockList holds sanctions with an expiry. A
// Detector ties them: when a rule's threshold is reached it blocks or throttles the subject
// for the rule's duration and returns a Verdict the caller audits and counts. Subjects are
// strings such as IPSubject(addr) or ClientSubject(id); what a throttle means (a stricter
// rate limit) is the caller's to apply.
//
// Choose subjects an attacker cannot aim at someone else: key authentication failures by
// the source address (IPSubject), never by the client id or user name a request merely
// claims, or anyone could lock a victim out by failing on its behalf.
package abuse
