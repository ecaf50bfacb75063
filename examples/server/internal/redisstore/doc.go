// Package redisstore holds the example server's Redis adapters: the profile
// cache (on cacherepo) and the per-client rate limit (on
// github.com/go-redis/redis_rate). Every key they write starts with the
// prefix they are given, so several services, or tests, share one server.
package redisstore
