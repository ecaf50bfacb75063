// Package redisstore holds the example server's Redis adapters: the profile
// cache (on cacherepo), the per-client rate limit (on
// github.com/go-redis/redis_rate, failing open behind its own breaker), and on redisrepo the sessions (kept
// under the SHA-256 of their token), the failed-login counters and the
// weekly XP leaderboard. Every key they write starts with the
// prefix they are given, so several services, or tests, share one server.
package redisstore
