// Package redisbus is the events.Bus that replicas share, over Redis pub/sub.
//
//	Publish ─► local subscribers (at once, Redis or not)
//	        └► PUBLISH {prefix}events ─► every other bus ─► its local subscribers
//
//	run: SUBSCRIBE ─► confirmed ─► Resync to local subscribers ─► Live
//	       ▲            │ EOF, error, or no reply to a heartbeat PING
//	       └─ backoff ◄─┘ (not Live)
//
// Why pub/sub and not a stream: every event is a hint to drop something cached, never the
// only record of a fact (revocations and keys live in SQL). So nothing needs replaying: a
// bus that may have missed events says so with a Resync (its caches drop every cached
// decision and ask the issuer again), which is cheaper than keeping, trimming and reading
// back a log, and is correct however long the gap was. A stream would also need a
// reader position per replica and a Resync anyway once the gap outgrew the stream's length.
//
// A bus ignores the echo of its own messages (each carries the sending bus's random origin),
// so a local subscriber sees every event once. When a Publish to Redis fails, the bus
// remembers it and, as soon as Redis answers again, publishes a Resync for the other
// replicas, which missed that event.
//
// Messages are small JSON objects, decoded strictly and size-capped. Anyone able to publish
// on the channel can only make caches forget (TokenRevoked, Resync) or keys reload from SQL
// (KeysChanged): no event grants anything, so the channel needs no signature.
package redisbus
