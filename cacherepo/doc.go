// Package cacherepo provides a typed cache-aside on Redis (go-redis/v9) that
// guards against the four classic failures of hand-written cache-aside:
// penetration (negative caching), stampedes (one load per key), avalanches
// (TTL jitter and early refresh) and stale sets (a value loaded before an
// invalidation is never written after it).
package cacherepo
