// Package redis keeps the shared state of limits and abuse defences in Redis, so that many
// gateway replicas agree: rate limits and quotas (Limiter), the dynamic block list
// (BlockList) and the sliding windows of the abuse detectors (Windows).
//
// Every decision is one Lua script run (EVALSHA): read, decide and write happen atomically
// in Redis, so concurrent replicas never race a read-modify-write. The Limiter decides rate
// limits at Redis's clock, which every replica shares, so clock skew and queueing between a
// replica and Redis change nothing; quotas take their calendar period, and the abuse stores
// their time, from the caller's now (replicas need NTP-synchronised clocks, to the second).
// The arithmetic is the in-memory backends', so both agree exactly (Options.CallerClock lets
// the conformance suite run against Redis on a fake clock).
//
// All keys live under one prefix (Options.Prefix) and carry an expiry, so Redis never holds
// state that has stopped mattering. A request's keys are used together by one script, which
// needs a standalone Redis (or Sentinel): Redis Cluster would need every key of a request in
// one hash slot, which per-client and per-IP keys cannot share.
package redis
