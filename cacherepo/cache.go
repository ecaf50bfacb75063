package cacherepo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// Cache is a typed cache-aside of values of type T in Redis. It is safe for
// concurrent use and holds no goroutines: there is nothing to close.
type Cache[T any] struct {
	client redis.UniversalClient
	opts   Options
	// mget: the client sends MGET and multi-key DEL to one server (a plain
	// or Sentinel client), not to shards (Cluster, Ring).
	mget     bool
	flights  singleflight.Group
	counters counters
}

// New returns a Cache of T values over client: a *redis.Client (single node
// or Sentinel failover), *redis.ClusterClient or *redis.Ring, as built by
// the caller. It returns an error wrapping ErrInvalidOptions when client is
// nil or an option is out of range.
func New[T any](client redis.UniversalClient, opts Options) (*Cache[T], error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil client", ErrInvalidOptions)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	_, single := client.(*redis.Client)
	return &Cache[T]{client: client, opts: opts, mget: single}, nil
}

func noCancel() {}

// callCtx bounds one Redis call by Options.Timeout.
func (c *Cache[T]) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.opts.Timeout <= 0 {
		return ctx, noCancel
	}
	return context.WithTimeout(ctx, c.opts.Timeout)
}

func (c *Cache[T]) key(key string) string { return c.opts.Namespace + key }

func (c *Cache[T]) get(ctx context.Context, rk string) ([]byte, error) {
	ctx, cancel := c.callCtx(ctx)
	b, err := c.client.Get(ctx, rk).Bytes()
	cancel()
	return b, err
}

func (c *Cache[T]) decode(key string, payload []byte) (T, error) {
	var v T
	if err := c.opts.Codec.Unmarshal(payload, &v); err != nil {
		return v, codecErr("decoding", key, err)
	}
	return v, nil
}

func (c *Cache[T]) encode(key string, v T) ([]byte, error) {
	b, err := c.opts.Codec.Marshal(v)
	if err != nil {
		return nil, codecErr("encoding", key, err)
	}
	return b, nil
}

// valueEntry encodes v as a cache entry for a fresh ttl; load is how long
// its load took (for early refresh), 0 for plain Set.
func (c *Cache[T]) valueEntry(key string, v T, ttl, load time.Duration) ([]byte, error) {
	p, err := c.encode(key, v)
	if err != nil {
		return nil, err
	}
	return encodeValue(p, c.opts.EarlyRefresh > 0, time.Now().Add(ttl), load), nil
}

// Get returns the cached value of key. It returns ErrMiss when none is
// cached, an error wrapping ErrNotFound when a tombstone is (see
// GetOrLoad), ErrRedis or ErrCodec errors when Redis or decoding fails.
func (c *Cache[T]) Get(ctx context.Context, key string) (T, error) {
	var zero T
	b, err := c.get(ctx, c.key(key))
	switch {
	case errors.Is(err, redis.Nil):
		return zero, ErrMiss
	case err != nil:
		return zero, redisErr("GET", key, err)
	}
	e, err := parseEntry(b)
	if err != nil {
		return zero, codecErr("decoding", key, err)
	}
	switch e.kind {
	case kindTombstone:
		return zero, tombstoneErr(key)
	case kindLease:
		return zero, ErrMiss
	}
	return c.decode(key, e.payload)
}

// Set caches value under key for ttl (0 means Options.TTL), spread by
// Options.Jitter. It overwrites whatever the key held, including a loader's
// lease, whose write is then refused. It returns ErrCodec or ErrRedis errors.
func (c *Cache[T]) Set(ctx context.Context, key string, value T, ttl time.Duration) error {
	ttl = c.ttl(ttl)
	b, err := c.valueEntry(key, value, ttl, 0)
	if err != nil {
		return err
	}
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	if err := c.client.Set(ctx, c.key(key), b, ttl).Err(); err != nil {
		return redisErr("SET", key, err)
	}
	return nil
}

func (c *Cache[T]) ttl(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		ttl = c.opts.TTL
	}
	return jitter(ttl, c.opts.Jitter)
}

// Delete removes keys from the cache: values, tombstones and loaders'
// leases alike, so it is also Invalidate. It returns ErrRedis errors.
func (c *Cache[T]) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	rks := make([]string, len(keys))
	for i, k := range keys {
		rks[i] = c.key(k)
		// A caller of this process that misses after the delete must not
		// join a load that began before it.
		c.flights.Forget(rks[i])
		c.flights.Forget(rks[i] + refreshFlight)
	}
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	var err error
	if c.mget {
		err = c.client.Del(ctx, rks...).Err()
	} else {
		// Cluster and Ring refuse multi-key commands across slots; a
		// pipeline is split per node and is still one round trip each.
		_, err = c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, rk := range rks {
				p.Del(ctx, rk)
			}
			return nil
		})
	}
	if err != nil {
		return redisErr("DEL", keys[0], err)
	}
	return nil
}

// Invalidate removes keys from the cache after the records they cache
// changed in the database (call it after the database write commits). It
// guarantees that a load of any of these keys that began before Invalidate
// never writes its value to the cache after it: see the package
// documentation for the exact guarantee and its limits. It returns ErrRedis
// errors, in which case the guarantee does not hold and the caller should
// retry.
func (c *Cache[T]) Invalidate(ctx context.Context, keys ...string) error {
	return c.Delete(ctx, keys...)
}

// GetMany returns the cached values of keys in one round trip (MGET, or a
// pipeline of GETs on Cluster and Ring). Keys without a value (missing,
// tombstoned or leased) are absent from the map. It returns ErrRedis or
// ErrCodec errors.
func (c *Cache[T]) GetMany(ctx context.Context, keys []string) (map[string]T, error) {
	entries, err := c.getMany(ctx, keys)
	if err != nil {
		return nil, redisErr("MGET", first(keys), err)
	}
	out := make(map[string]T, len(keys))
	for i, b := range entries {
		if b == nil {
			continue
		}
		e, err := parseEntry(b)
		if err != nil {
			return nil, codecErr("decoding", keys[i], err)
		}
		if e.kind != kindValue {
			continue
		}
		v, err := c.decode(keys[i], e.payload)
		if err != nil {
			return nil, err
		}
		out[keys[i]] = v
	}
	return out, nil
}

func first(keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	return keys[0]
}

// getMany returns the raw entries of keys, nil for a missing key.
func (c *Cache[T]) getMany(ctx context.Context, keys []string) ([][]byte, error) {
	out := make([][]byte, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	rks := make([]string, len(keys))
	for i, k := range keys {
		rks[i] = c.key(k)
	}
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	if c.mget {
		vals, err := c.client.MGet(ctx, rks...).Result()
		if err != nil {
			return nil, err
		}
		for i, v := range vals {
			if s, ok := v.(string); ok {
				out[i] = []byte(s)
			}
		}
		return out, nil
	}
	cmds := make([]*redis.StringCmd, len(rks))
	_, err := c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, rk := range rks {
			cmds[i] = p.Get(ctx, rk)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	for i, cmd := range cmds {
		b, err := cmd.Bytes()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return nil, err
		default:
			out[i] = b
		}
	}
	return out, nil
}

// SetMany caches every value of items for ttl (0 means Options.TTL), each
// TTL spread by Options.Jitter, in one pipelined round trip. It returns
// ErrCodec errors (before writing anything) or ErrRedis errors.
func (c *Cache[T]) SetMany(ctx context.Context, items map[string]T, ttl time.Duration) error {
	type write struct {
		rk    string
		entry []byte
		ttl   time.Duration
	}
	writes := make([]write, 0, len(items))
	var anyKey string
	for k, v := range items {
		t := c.ttl(ttl)
		b, err := c.valueEntry(k, v, t, 0)
		if err != nil {
			return err
		}
		writes = append(writes, write{c.key(k), b, t})
		anyKey = k
	}
	if len(writes) == 0 {
		return nil
	}
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	_, err := c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, w := range writes {
			p.Set(ctx, w.rk, w.entry, w.ttl)
		}
		return nil
	})
	if err != nil {
		return redisErr("SET", anyKey, err)
	}
	return nil
}
