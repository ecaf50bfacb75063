package cacherepo

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// refreshFlight names the in-process flight of an early refresh, apart from
// the flight of a miss so that neither joins the other.
const refreshFlight = "\x00refresh"

// flight is the result of one load, shared by the callers that joined it.
type flight[T any] struct {
	v     T
	entry []byte // v as cached (a value entry), so that joiners decode a copy of their own
}

// GetOrLoad returns the cached value of key; on a miss it calls load, caches
// its result and returns it.
//
// Concurrent misses of one key in one process call load once and each
// receive their own decoded copy. With Options.Lock, misses in other
// processes wait for that load too. When load reports that the record does
// not exist (Options.IsNotFound), a tombstone is cached for NotFoundTTL and
// the error, made to wrap ErrNotFound, is returned; until the tombstone
// expires GetOrLoad returns an error wrapping ErrNotFound without calling
// load. Any other load error is returned as it is and nothing is cached.
//
// When Redis fails or exceeds Options.Timeout, GetOrLoad reports the error
// to Options.OnEvent and serves from load without caching, unless
// Options.Strict is set: then it returns an error wrapping ErrRedis. It
// returns an error wrapping ErrCodec when the loaded value cannot be
// encoded.
func (c *Cache[T]) GetOrLoad(ctx context.Context, key string, load func(context.Context) (T, error)) (T, error) {
	var zero T
	rk := c.key(key)
	b, err := c.get(ctx, rk)
	switch {
	case errors.Is(err, redis.Nil):
		c.event(ctx, EventMiss, key, nil, 0)
		return c.loadShared(ctx, key, rk, nil, false, load)
	case err != nil:
		if err := c.redisFailed(ctx, "GET", key, err); err != nil {
			return zero, err
		}
		return c.loadShared(ctx, key, rk, nil, true, load)
	}

	e, err := parseEntry(b)
	if err == nil {
		switch e.kind {
		case kindValue:
			var v T
			if v, err = c.decode(key, e.payload); err == nil {
				if e.expiry != 0 && e.shouldRefresh(time.Now(), c.opts.EarlyRefresh) {
					return c.refresh(ctx, key, rk, b, v, load)
				}
				c.event(ctx, EventHit, key, nil, 0)
				return v, nil
			}
		case kindTombstone:
			c.event(ctx, EventTombstoneHit, key, nil, 0)
			return zero, tombstoneErr(key)
		case kindLease:
			c.event(ctx, EventMiss, key, nil, 0)
			return c.loadShared(ctx, key, rk, nil, false, load)
		}
	} else {
		err = codecErr("decoding", key, err)
	}
	// An entry this Cache cannot read (another codec, a changed type):
	// load and replace it, rather than serve loads until it expires.
	c.event(ctx, EventCodecError, key, err, 0)
	return c.loadShared(ctx, key, rk, b, false, load)
}

// loadShared runs fill once for all the callers of this process that miss
// key at the same time. The load runs with the context of the caller that
// started it; every caller stops waiting when its own context is done.
func (c *Cache[T]) loadShared(ctx context.Context, key, rk string, replace []byte, noCache bool, load func(context.Context) (T, error)) (T, error) {
	var zero T
	for attempt := 0; ; attempt++ {
		ch := c.flights.DoChan(rk, func() (any, error) {
			return c.fill(ctx, key, rk, replace, noCache, load)
		})
		var r singleflight.Result
		select {
		case r = <-ch:
		case <-ctx.Done():
			return zero, ctx.Err()
		}
		if r.Err != nil {
			// The caller that started the load gave up, and its context
			// ended the load: those who joined it try again, once leading.
			if r.Shared && ctx.Err() == nil && attempt < 3 &&
				(errors.Is(r.Err, context.Canceled) || errors.Is(r.Err, context.DeadlineExceeded)) {
				continue
			}
			return zero, r.Err
		}
		return c.result(key, r.Val.(*flight[T]), r.Shared), nil
	}
}

// result returns f's value to one caller: a decoded copy of its own when the
// flight was shared, so that callers never share a pointer, map or slice.
func (c *Cache[T]) result(key string, f *flight[T], shared bool) T {
	if shared && f.entry != nil {
		if e, err := parseEntry(f.entry); err == nil {
			if v, err := c.decode(key, e.payload); err == nil {
				return v
			}
		}
	}
	return f.v
}

// fill loads key under a lease and caches the result, or, with noCache
// (Redis failed), only loads it.
func (c *Cache[T]) fill(ctx context.Context, key, rk string, replace []byte, noCache bool, load func(context.Context) (T, error)) (*flight[T], error) {
	if noCache {
		return c.loadOnly(ctx, key, load)
	}
	l, err := c.acquire(ctx, rk, replace)
	if err != nil {
		if err := c.redisFailed(ctx, "EVALSHA acquire", key, err); err != nil {
			return nil, err
		}
		return c.loadOnly(ctx, key, load)
	}
	if l.cached == nil && !l.own && c.opts.Lock {
		if l, err = c.waitForLoad(ctx, key, rk, l); err != nil {
			return nil, err
		}
	}
	if l.cached != nil {
		// Filled (or tombstoned) by another loader since our GET.
		return c.fromEntry(ctx, key, l.cached)
	}

	v, d, notFound, err := c.runLoader(ctx, key, load)
	var entry []byte
	var ttl time.Duration
	switch {
	case notFound:
		entry, ttl = tombstoneEntry, jitter(c.opts.NotFoundTTL, c.opts.Jitter)
	case err == nil:
		ttl = c.ttl(0)
		entry, err = c.valueEntry(key, v, ttl, d)
	}
	if err != nil && entry == nil {
		if l.own {
			// Let waiting processes load at once instead of waiting out LockWait.
			if rerr := c.release(context.WithoutCancel(ctx), rk, l.token); rerr != nil {
				c.event(ctx, EventRedisError, key, rerr, 0)
			}
		}
		return nil, err
	}
	c.write(ctx, key, rk, l.token, entry, ttl)
	if err != nil {
		return nil, err // not found, now cached as a tombstone
	}
	return &flight[T]{v: v, entry: entry}, nil
}

// redisFailed handles a Redis read of GetOrLoad or GetManyOrLoad that
// failed: it returns the error for the caller, or nil when the caller is to
// be served from the loader (fail open).
func (c *Cache[T]) redisFailed(ctx context.Context, op, key string, err error) error {
	if ctx.Err() != nil { // the caller gave up: not a Redis failure
		return redisErr(op, key, err)
	}
	c.event(ctx, EventRedisError, key, err, 0)
	if c.opts.Strict {
		return redisErr(op, key, err)
	}
	return nil
}

// write stores entry if rk still holds expect, counting a refusal. The
// value is loaded by then: it is written even if the caller has gone.
func (c *Cache[T]) write(ctx context.Context, key, rk, expect string, entry []byte, ttl time.Duration) {
	ok, err := c.cas(context.WithoutCancel(ctx), rk, expect, entry, ttl)
	switch {
	case err != nil:
		c.event(ctx, EventRedisError, key, err, 0)
	case !ok:
		c.event(ctx, EventStaleWriteRefused, key, nil, 0)
	}
}

// loadOnly serves from load without Redis.
func (c *Cache[T]) loadOnly(ctx context.Context, key string, load func(context.Context) (T, error)) (*flight[T], error) {
	v, _, _, err := c.runLoader(ctx, key, load)
	if err != nil {
		return nil, err
	}
	f := &flight[T]{v: v}
	if p, err := c.encode(key, v); err == nil {
		f.entry = encodeValue(p, false, time.Time{}, 0)
	}
	return f, nil
}

// fromEntry turns an entry another loader cached into a result.
func (c *Cache[T]) fromEntry(ctx context.Context, key string, b []byte) (*flight[T], error) {
	e, err := parseEntry(b)
	if err != nil {
		return nil, codecErr("decoding", key, err)
	}
	if e.kind == kindTombstone {
		c.event(ctx, EventTombstoneHit, key, nil, 0)
		return nil, tombstoneErr(key)
	}
	v, err := c.decode(key, e.payload)
	if err != nil {
		return nil, err
	}
	c.event(ctx, EventHit, key, nil, 0)
	return &flight[T]{v: v, entry: b}, nil
}

// runLoader calls load and classifies its outcome: a not-found error comes
// back wrapping ErrNotFound, with notFound set.
func (c *Cache[T]) runLoader(ctx context.Context, key string, load func(context.Context) (T, error)) (v T, d time.Duration, notFound bool, err error) {
	start := time.Now()
	v, err = load(ctx)
	d = time.Since(start)
	switch {
	case err == nil:
		c.event(ctx, EventLoad, key, nil, d)
		return v, d, false, nil
	case c.opts.IsNotFound(err):
		c.event(ctx, EventLoad, key, err, d)
		var zero T
		return zero, d, true, notFoundErr(key, err)
	}
	c.event(ctx, EventLoadError, key, err, d)
	return v, d, false, err
}

// notFoundResult marks a refresh's not-found error, to tell it from a
// failed load whatever IsNotFound says about the error.
type notFoundResult struct{ err error }

func (r notFoundResult) Error() string { return r.err.Error() }

// refresh reloads a hit that XFetch chose to refresh before it expires. The
// new value replaces the old only if the key still holds the old entry, so
// an Invalidate during the load wins. If the load fails, the old value,
// still valid, is returned.
func (c *Cache[T]) refresh(ctx context.Context, key, rk string, old []byte, oldV T, load func(context.Context) (T, error)) (T, error) {
	c.event(ctx, EventEarlyRefresh, key, nil, 0)
	ch := c.flights.DoChan(rk+refreshFlight, func() (any, error) {
		v, d, notFound, err := c.runLoader(ctx, key, load)
		if notFound {
			c.write(ctx, key, rk, string(old), tombstoneEntry, jitter(c.opts.NotFoundTTL, c.opts.Jitter))
			return nil, notFoundResult{err}
		}
		if err != nil {
			return nil, err
		}
		ttl := c.ttl(0)
		entry, err := c.valueEntry(key, v, ttl, d)
		if err != nil {
			return nil, err
		}
		c.write(ctx, key, rk, string(old), entry, ttl)
		return &flight[T]{v: v, entry: entry}, nil
	})
	var r singleflight.Result
	select {
	case r = <-ch:
	case <-ctx.Done():
		return oldV, nil // still valid; only this caller stops waiting
	}
	var nf notFoundResult
	switch err := r.Err; {
	case errors.As(err, &nf):
		var zero T
		return zero, nf.err
	case err != nil:
		return oldV, nil
	}
	return c.result(key, r.Val.(*flight[T]), r.Shared), nil
}
