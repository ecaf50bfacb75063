package redisstore

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/polystore/polystore/cacherepo"
	"github.com/polystore/polystore/examples/server/internal/chat"
)

// ProfileCache is the chat.ProfileCache on a cacherepo cache: one JSON
// value per user under prefix + "profile:" + id. A password hash never
// reaches Redis (chat.User does not serialise it).
type ProfileCache struct {
	cache *cacherepo.Cache[chat.User]
}

var _ chat.ProfileCache = (*ProfileCache)(nil)

// ProfileCacheOptions tunes a ProfileCache. The zero value means defaults.
type ProfileCacheOptions struct {
	// TTL of a cached profile. Default: 10 minutes.
	TTL time.Duration
	// NotFoundTTL of a cached "no such user". Default: 30 seconds.
	NotFoundTTL time.Duration
	// Timeout bounds each Redis call; past it the profile is served from
	// PostgreSQL. Default: 200ms.
	Timeout time.Duration
	// Breaker, when set, puts cacherepo's circuit breaker in front of
	// Redis: after consecutive failures the cache stops calling Redis for
	// a cool-down and loads profiles straight from PostgreSQL, at most
	// Breaker.MaxConcurrentLoads at once (beyond, Profile answers
	// CodeUnavailable). Default: nil, no breaker.
	Breaker *cacherepo.BreakerOptions
	// OnEvent receives the cache's events (metrics, logs). Default: nil.
	OnEvent func(context.Context, cacherepo.Event)
	// TracerProvider and MeterProvider are cacherepo's (its spans
	// cacherepo.<Method> <namespace> and its metrics). Default (nil): the
	// global ones.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
}

// NewProfileCache returns a profile cache on client whose keys start with
// prefix. It fails open: when Redis is down, profiles load from the store.
func NewProfileCache(client redis.UniversalClient, prefix string, opts ProfileCacheOptions) (*ProfileCache, error) {
	if opts.TTL == 0 {
		opts.TTL = 10 * time.Minute
	}
	if opts.NotFoundTTL == 0 {
		opts.NotFoundTTL = 30 * time.Second
	}
	if opts.Timeout == 0 {
		opts.Timeout = 200 * time.Millisecond
	}
	cache, err := cacherepo.New[chat.User](client, cacherepo.Options{
		Namespace:   prefix + "profile:",
		TTL:         opts.TTL,
		NotFoundTTL: opts.NotFoundTTL,
		Timeout:     opts.Timeout,
		IsNotFound:  func(err error) bool { return chat.ErrorCode(err) == chat.CodeNotFound },
		OnEvent:     opts.OnEvent,
		Breaker:     opts.Breaker,

		TracerProvider: opts.TracerProvider,
		MeterProvider:  opts.MeterProvider,
	})
	if err != nil {
		return nil, err
	}
	return &ProfileCache{cache: cache}, nil
}

// Profile returns the cached profile of id or loads and caches it. A user
// that does not exist is cached as such for NotFoundTTL: CodeNotFound. The
// loader's classified errors are returned as they are; the cache's own
// failures, and ctx ending during the wait, are CodeUnavailable.
func (c *ProfileCache) Profile(ctx context.Context, id uuid.UUID, load func(context.Context) (*chat.User, error)) (*chat.User, error) {
	u, err := c.cache.GetOrLoad(ctx, id.String(), func(ctx context.Context) (chat.User, error) {
		u, err := load(ctx)
		if err != nil {
			return chat.User{}, err
		}
		return *u, nil
	})
	switch {
	case err == nil:
		return &u, nil
	case chat.ErrorCode(err) != chat.CodeInternal:
		return nil, err // the loader's own error, already classified
	case errors.Is(err, cacherepo.ErrNotFound):
		return nil, chat.Wrap(chat.CodeNotFound, err, "user not found") // a cached tombstone
	case errors.Is(err, cacherepo.ErrOverloaded):
		// The breaker is open and too many profiles are being loaded
		// without Redis already: shed this one rather than queue it on
		// PostgreSQL.
		return nil, chat.Wrap(chat.CodeUnavailable, err, "too many profile reads while Redis is down")
	case errors.Is(err, cacherepo.ErrRedis):
		return nil, chat.Wrap(chat.CodeUnavailable, err, "Redis is unavailable")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// The read's context ended while it waited (on Redis, or on
		// another request's load of the same profile): a store too slow
		// for the request's deadline, or a client gone, not a bug.
		return nil, chat.Wrap(chat.CodeUnavailable, err, "the profile was not read in time")
	}
	return nil, err
}

// Invalidate drops the cached profile of id (and any tombstone), so that
// a load that began before it cannot write an older profile back.
func (c *ProfileCache) Invalidate(ctx context.Context, id uuid.UUID) error {
	return c.cache.Invalidate(ctx, id.String())
}

// BreakerState returns the state of the cache's circuit breaker: "off"
// (none), "closed", "half_open" or "open".
func (c *ProfileCache) BreakerState() string { return c.cache.BreakerState().String() }

// Stats returns the cache's counters.
func (c *ProfileCache) Stats() cacherepo.Stats { return c.cache.Stats() }
