package redisstore

import (
	"context"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// RateLimiter allows each client Rate requests per second with bursts of
// up to Burst, counted in Redis (GCRA, one script call per request) so that
// every instance of the service shares the budget.
type RateLimiter struct {
	limiter *redis_rate.Limiter
	limit   redis_rate.Limit
	prefix  string
	timeout time.Duration
}

// rateLimitTimeout bounds one limiter call: the API fails open when Redis
// is down, so a slow Redis must not add more than this to every request.
const rateLimitTimeout = 100 * time.Millisecond

// NewRateLimiter returns a limiter of rate requests per second and bursts
// of burst (rate when burst is 0) whose keys are prefix + "ratelimit:" +
// client.
func NewRateLimiter(client redis.UniversalClient, prefix string, rate, burst int) *RateLimiter {
	if burst <= 0 {
		burst = rate
	}
	return &RateLimiter{
		limiter: redis_rate.NewLimiter(prefixedClient{client, prefix}),
		limit:   redis_rate.Limit{Rate: rate, Burst: burst, Period: time.Second},
		prefix:  prefix,
		timeout: rateLimitTimeout,
	}
}

// Allow takes one request from client's budget. It reports false and the
// wait until the next allowed request once the budget is spent, and the
// Redis error when Redis cannot answer within 100ms.
func (l *RateLimiter) Allow(ctx context.Context, client string) (bool, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	res, err := l.limiter.Allow(ctx, "ratelimit:"+client, l.limit)
	if err != nil {
		return false, 0, err
	}
	return res.Allowed > 0, res.RetryAfter, nil
}

// redisRatePrefix is the prefix redis_rate puts before every key, which it
// does not let callers change.
const redisRatePrefix = "rate:"

// prefixedClient puts the service's key prefix in place of redis_rate's
// fixed "rate:" prefix, so that its keys live in the service's namespace
// (and a test's keys under the test's prefix, which servicetest cleans).
type prefixedClient struct {
	redis.UniversalClient
	prefix string
}

func (c prefixedClient) keys(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = c.prefix + strings.TrimPrefix(k, redisRatePrefix)
	}
	return out
}

// Eval runs script on the re-prefixed keys.
func (c prefixedClient) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return c.UniversalClient.Eval(ctx, script, c.keys(keys), args...)
}

// EvalSha runs a loaded script on the re-prefixed keys.
func (c prefixedClient) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return c.UniversalClient.EvalSha(ctx, sha1, c.keys(keys), args...)
}

// EvalRO runs a read-only script on the re-prefixed keys.
func (c prefixedClient) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return c.UniversalClient.EvalRO(ctx, script, c.keys(keys), args...)
}

// EvalShaRO runs a loaded read-only script on the re-prefixed keys.
func (c prefixedClient) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return c.UniversalClient.EvalShaRO(ctx, sha1, c.keys(keys), args...)
}

// Del deletes the re-prefixed keys.
func (c prefixedClient) Del(ctx context.Context, keys ...string) *redis.IntCmd {
	return c.UniversalClient.Del(ctx, c.keys(keys)...)
}
