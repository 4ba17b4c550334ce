// Package redis keeps the shared state of limits and abuse defences in Redis, so that many
// gateway replicas agree: rate limits and quotas (Limiter), the dynamic block list
// (BlockList) and the sliding windows of the abuse detectors (Windows).
//
// Every decision is one Lua script run (EVALSHA): read, decide and write happen atomically
// in Redis, so concurrent replicas never race a read-modify-write. The caller's clock is
// passed to the script (Redis's own clock is not used), which keeps the semantics identical
// to the in-memory backends and testable with a fake clock; replicas need synchronised
// clocks (NTP): a replica ahead by δ can let a burst through up to δ earlier, never more
// than the limit over time.
//
// All keys live under one prefix (Options.Prefix) and carry an expiry, so Redis never holds
// state that has stopped mattering. A request's keys are used together by one script, which
// needs a standalone Redis (or Sentinel): Redis Cluster would need every key of a request in
// one hash slot, which per-client and per-IP keys cannot share.
package redis
