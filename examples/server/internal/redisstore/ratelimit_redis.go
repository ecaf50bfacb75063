package redisstore

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// RateLimiter allows each client Rate requests per second with bursts of
// up to Burst, counted in Redis (GCRA, one script call per request) so that
// every instance of the service shares the budget.
//
// It fails open behind a small circuit breaker: once a call to Redis fails
// (refused, timed out), the limiter stops calling Redis for a cool-down and
// allows every request without a Redis round trip, so that while Redis is
// down no request is refused by the limiter nor pays the dial or the
// timeout. After the cool-down one request probes Redis (the others keep
// passing unlimited); its success closes the breaker, its failure opens it
// for another cool-down. A hand-written two-state switch rather than a
// breaker library: there is nothing to count (one failure is enough to stop
// limiting, which costs nothing but the limit) and no load to shed.
type RateLimiter struct {
	limiter  *redis_rate.Limiter
	limit    redis_rate.Limit
	prefix   string
	timeout  time.Duration
	cooldown time.Duration
	onChange func(from, to BreakerState, err error)

	mu        sync.Mutex
	state     BreakerState
	openUntil time.Time
}

// BreakerState is the state of the rate limiter's circuit breaker, as
// /health reports it.
type BreakerState string

const (
	// BreakerClosed: Redis answers; every request is counted.
	BreakerClosed BreakerState = "closed"
	// BreakerOpen: Redis failed; requests are allowed uncounted, without
	// calling Redis, until the cool-down ends.
	BreakerOpen BreakerState = "open"
	// BreakerHalfOpen: the cool-down has ended and one request is probing
	// Redis; the others are allowed uncounted.
	BreakerHalfOpen BreakerState = "half_open"
)

// rateLimitTimeout bounds one limiter call: the API fails open when Redis
// is down, so a slow Redis must not add more than this to every request.
const rateLimitTimeout = 100 * time.Millisecond

// RateLimiterOptions tunes NewRateLimiterWithOptions. Rate is required;
// the zero value of every other field means its default.
type RateLimiterOptions struct {
	// Rate is each client's requests per second.
	Rate int
	// Burst is each client's burst. Default (0): Rate.
	Burst int
	// Timeout bounds one call to Redis. Default: 100ms.
	Timeout time.Duration
	// Cooldown is how long the breaker stays open after a failure before
	// one request probes Redis again. Default: 2s.
	Cooldown time.Duration
	// OnStateChange, when set, is called on each change of the breaker's
	// state, with the Redis error that opened it (nil otherwise). It runs
	// in the request that caused the change and must not block.
	OnStateChange func(from, to BreakerState, err error)
}

// NewRateLimiter returns a limiter of rate requests per second and bursts
// of burst (rate when burst is 0) whose keys are prefix + "ratelimit:" +
// client, with the default timeout and cool-down.
func NewRateLimiter(client redis.UniversalClient, prefix string, rate, burst int) *RateLimiter {
	return NewRateLimiterWithOptions(client, prefix, RateLimiterOptions{Rate: rate, Burst: burst})
}

// NewRateLimiterWithOptions is NewRateLimiter with every setting.
func NewRateLimiterWithOptions(client redis.UniversalClient, prefix string, opts RateLimiterOptions) *RateLimiter {
	if opts.Burst <= 0 {
		opts.Burst = opts.Rate
	}
	if opts.Timeout <= 0 {
		opts.Timeout = rateLimitTimeout
	}
	if opts.Cooldown <= 0 {
		opts.Cooldown = 2 * time.Second
	}
	return &RateLimiter{
		limiter:  redis_rate.NewLimiter(prefixedClient{client, prefix}),
		limit:    redis_rate.Limit{Rate: opts.Rate, Burst: opts.Burst, Period: time.Second},
		prefix:   prefix,
		timeout:  opts.Timeout,
		cooldown: opts.Cooldown,
		onChange: opts.OnStateChange,
		state:    BreakerClosed,
	}
}

// State returns the breaker's state now: open until the cool-down has
// ended, even when no request has come since to probe.
func (l *RateLimiter) State() BreakerState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// Allow takes one request from client's budget. It reports false and the
// wait until the next allowed request once the budget is spent. When Redis
// cannot answer within the timeout it returns the Redis error (the caller
// lets the request through) and opens the breaker; while the breaker is
// open it allows every request at once, with no error and no Redis call.
func (l *RateLimiter) Allow(ctx context.Context, client string) (bool, time.Duration, error) {
	l.mu.Lock()
	switch {
	case l.state == BreakerHalfOpen, l.state == BreakerOpen && time.Now().Before(l.openUntil):
		l.mu.Unlock()
		return true, 0, nil
	case l.state == BreakerOpen:
		l.setState(BreakerHalfOpen, nil)
	}
	l.mu.Unlock()

	callCtx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	res, err := l.limiter.Allow(callCtx, "ratelimit:"+client, l.limit)

	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			// The request itself ended (the client went away): that says
			// nothing about Redis. A probe gives its turn back.
			if l.state == BreakerHalfOpen {
				l.setState(BreakerOpen, nil)
			}
			return false, 0, err
		}
		l.openUntil = time.Now().Add(l.cooldown)
		if l.state != BreakerOpen {
			l.setState(BreakerOpen, err)
		}
		return false, 0, err
	}
	if l.state != BreakerClosed {
		l.setState(BreakerClosed, nil)
	}
	return res.Allowed > 0, res.RetryAfter, nil
}

// setState records a change of state; l.mu is held.
func (l *RateLimiter) setState(to BreakerState, err error) {
	from := l.state
	l.state = to
	if l.onChange != nil && from != to {
		l.onChange(from, to, err)
	}
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
