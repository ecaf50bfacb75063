package cacherepo

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// refreshFlight names the in-process flight of an early refresh, apart from
// the flight of a miss so that neither joins the other.
const refreshFlight = "\x00refresh"

// flight is the result of one load, shared by the callers that joined it.
type flight[T any] struct {
	v     T
	entry []byte // v as cached (a value entry), so that joiners decode a copy of their own
	// staleErr is the loader's error when v is a stale value served in its
	// place (Options.StaleIfError).
	staleErr error
}

// GetOrLoad returns the cached value of key; on a miss it calls load, caches
// its result and returns it.
//
// Concurrent misses of one key in one process call load once and each
// receive their own decoded copy. load runs on the goroutine of the caller
// that starts it, with that caller's context, and that caller returns when
// load does (load should honour its context); the callers that joined it
// stop waiting when their own context ends. With Options.Lock, misses in other
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
// encoded, and an error wrapping ErrInvalid, before any Redis I/O, for an
// empty key, a nil load or a nil context.
//
// The loader runs on the goroutine of the caller that starts the load. If
// it panics, that caller panics with the same value, its own recover() (or
// net/http's) can catch it, and the stack still shows the loader; the
// callers that joined the load get a *PanicError wrapping ErrLoaderPanic
// (with the value and the stack); the lease is released at once, so that
// other processes need not wait out LeaseTTL; nothing is cached; and
// EventLoaderPanic is reported. A loader that calls runtime.Goexit (as
// t.FailNow does) ends its caller's goroutine, and the joined callers get
// the same error. An early refresh (Options.EarlyRefresh) never panics: its
// loader's panic is recovered, reported as EventLoaderPanic, and the cached
// value, still valid, is served.
func (c *Cache[T]) GetOrLoad(ctx context.Context, key string, load func(context.Context) (T, error)) (T, error) {
	if ctx == nil || key == "" || load == nil {
		var zero T
		return zero, c.badLoad(ctx, key, load == nil)
	}
	if !c.tel.tracing() {
		return c.getOrLoad(ctx, key, load)
	}
	ctx, s := c.tel.start(ctx, opGetOrLoad)
	normal := false
	defer func() {
		if !normal { // the loader panicked: the panic goes on
			s.endPanicked()
		}
	}()
	v, err := c.getOrLoad(ctx, key, load)
	normal = true
	s.end(err)
	return v, err
}

// getOrLoad is GetOrLoad, its arguments checked.
func (c *Cache[T]) getOrLoad(ctx context.Context, key string, load func(context.Context) (T, error)) (T, error) {
	var zero T
	rk := c.key(key)
	if ne, ok := c.nearGet(rk); ok {
		if v, ok, err := c.nearHit(ctx, key, rk, ne, load); ok {
			return v, err
		}
	}
	m := miss{
		start:     time.Now(), // a load that ends more than LeaseTTL after this is not written
		epoch:     c.flights.epoch(rk),
		nearEpoch: c.nearEpoch(rk),
	}
	b, err := c.get(ctx, rk)
	switch {
	case errors.Is(err, redis.Nil):
		c.event(ctx, EventMiss, key, nil, 0)
		return c.loadShared(ctx, key, rk, m, load)
	case err != nil:
		if err := c.redisFailed(ctx, "GET", key, err); err != nil {
			return zero, err
		}
		m.noCache = true
		return c.loadShared(ctx, key, rk, m, load)
	}

	e, err := parseEntry(b)
	if err == nil {
		switch e.kind {
		case kindValue:
			if e.expiry != 0 && e.softExpired(time.Now()) {
				// Past its fresh TTL, kept for StaleIfError: a miss whose
				// load may fall back on it (and whose write replaces it).
				c.event(ctx, EventMiss, key, nil, 0)
				m.seen = b
				return c.loadShared(ctx, key, rk, m, load)
			}
			var v T
			if v, err = c.decode(key, e.payload); err == nil {
				if e.expiry != 0 && e.shouldRefresh(time.Now(), c.opts.EarlyRefresh) {
					return c.refresh(ctx, key, rk, b, v, load)
				}
				c.nearPut(rk, b, &v, m.nearEpoch)
				c.event(ctx, EventHit, key, nil, 0)
				return v, nil
			}
		case kindTombstone:
			c.nearPut(rk, b, nil, m.nearEpoch)
			c.event(ctx, EventTombstoneHit, key, nil, 0)
			return zero, tombstoneErr(key)
		case kindLease, kindMarker:
			c.event(ctx, EventMiss, key, nil, 0)
			m.seen = b
			return c.loadShared(ctx, key, rk, m, load)
		}
	} else {
		err = codecErr("decoding", key, err)
	}
	// An entry this Cache cannot read (another codec, a changed type):
	// load and replace it, rather than serve loads until it expires.
	c.event(ctx, EventCodecError, key, err, 0)
	m.seen, m.undecodable = b, true
	return c.loadShared(ctx, key, rk, m, load)
}

// nearHit serves entry b of the near tier; ok is false when it cannot (the
// entry does not decode: it is dropped and Redis is read).
func (c *Cache[T]) nearHit(ctx context.Context, key, rk string, ne nearEntry, load func(context.Context) (T, error)) (v T, ok bool, err error) {
	b := ne.b
	e, err := parseEntry(b)
	if err == nil {
		switch e.kind {
		case kindTombstone:
			c.event(ctx, EventTombstoneHit, key, nil, 0)
			return v, true, tombstoneErr(key)
		case kindValue:
			if e.softExpired(time.Now()) {
				break // to Redis, which knows whether it is still stale
			}
			if ne.v != nil {
				v = ne.v.(T) // NearOptions.Shared: no decode
			} else {
				v, err = c.decode(key, e.payload)
			}
			if err == nil {
				if e.expiry != 0 && e.shouldRefresh(time.Now(), c.opts.EarlyRefresh) {
					v, err = c.refresh(ctx, key, rk, b, v, load)
					return v, true, err
				}
				c.event(ctx, EventNearHit, key, nil, 0)
				return v, true, nil
			}
		}
	}
	c.near.drop(rk)
	return v, false, nil
}

// miss is what a GetOrLoad that missed saw.
type miss struct {
	seen        []byte    // the entry its GET returned, nil for none: what the load's write must find
	start       time.Time // before the GET
	epoch       uint32    // c.flights.epoch before the GET
	nearEpoch   uint64    // c.nearEpoch before the GET
	undecodable bool      // seen is an entry this Cache could not decode, to replace
	noCache     bool      // Redis failed: load only, cache nothing
}

// badLoad is the error of a GetOrLoad call with a bad argument.
func (c *Cache[T]) badLoad(ctx context.Context, key string, nilLoad bool) error {
	if nilLoad {
		return invalid("nil loader for key %q", key)
	}
	return checkCall(ctx, key)
}

// loadShared runs fill once for all the callers of this process that miss
// key at the same time, on the goroutine of the caller that starts it and
// with its context; the callers that join it stop waiting when their own
// context is done.
func (c *Cache[T]) loadShared(ctx context.Context, key, rk string, m miss, load func(context.Context) (T, error)) (T, error) {
	var zero T
	for attempt := 0; ; attempt++ {
		fc, leader := c.flights.join(rk)
		if leader {
			f, err := c.lead(ctx, key, rk, fc, m, load)
			if err != nil {
				return zero, err
			}
			if f.staleErr != nil {
				c.event(ctx, EventStaleServed, key, f.staleErr, 0)
			}
			return f.v, nil
		}
		select {
		case <-fc.done:
		case <-ctx.Done():
			return zero, ctx.Err()
		}
		if fc.err != nil {
			// The caller that started the load gave up, and its context
			// ended the load: those who joined it try again, once leading.
			if ctx.Err() == nil && attempt < 3 &&
				(errors.Is(fc.err, context.Canceled) || errors.Is(fc.err, context.DeadlineExceeded)) {
				continue
			}
			return zero, fc.err
		}
		if fc.f.staleErr != nil {
			c.event(ctx, EventStaleServed, key, fc.f.staleErr, 0)
		}
		return c.joined(key, fc.f), nil
	}
}

// lead runs the flight fc as its leader and hands its outcome to the
// callers that joined it, also when the loader panics or calls
// runtime.Goexit: then they get a *PanicError, the lease is released, and
// the panic goes on up the leader's stack with its original value.
func (c *Cache[T]) lead(ctx context.Context, key, rk string, fc *flightCall[T], m miss, load func(context.Context) (T, error)) (*flight[T], error) {
	var held lease // the lease fill owns while the loader runs
	normal := false
	defer func() {
		if normal {
			return
		}
		p := recover()
		perr := panicked(key, p)
		if held.own {
			if err := c.release(context.WithoutCancel(ctx), rk, held.token); err != nil {
				c.event(ctx, EventRedisError, key, err, 0)
			}
		}
		func() {
			defer c.flights.finish(rk, fc, nil, perr) // even if OnEvent panics
			c.event(ctx, EventLoaderPanic, key, perr, 0)
		}()
		if p != nil {
			panic(p) // the same value, from within the panic: the stack still shows the loader
		}
	}()
	f, err := c.fill(ctx, key, rk, m, load, &held)
	normal = true
	c.flights.finish(rk, fc, f, err)
	return f, err
}

// joined returns f's value to a caller that joined the flight: a decoded
// copy of its own, so that callers never share a pointer, map or slice.
func (c *Cache[T]) joined(key string, f *flight[T]) T {
	if f.entry != nil {
		if e, err := parseEntry(f.entry); err == nil {
			if v, err := c.decode(key, e.payload); err == nil {
				return v
			}
		}
	}
	return f.v
}

// fill loads key and caches the result, or, with m.noCache (Redis
// failed), only loads it. Without Lock the write expects the entry the GET
// saw (two round trips in all); with Lock the load runs under a lease
// taken first. It sets *held to the lease it owns before it calls the
// loader, for lead to release if the loader panics.
func (c *Cache[T]) fill(ctx context.Context, key, rk string, m miss, load func(context.Context) (T, error), held *lease) (*flight[T], error) {
	if m.noCache {
		return c.loadOnly(ctx, key, load)
	}
	if !c.opts.Lock {
		return c.fillAfterGet(ctx, key, rk, m, load)
	}
	var replace []byte
	if m.undecodable || (m.seen != nil && !fresh(m.seen)) {
		// Undecodable, or a value past its soft expiry that another
		// instance kept for StaleIfError: the lease may overwrite it.
		replace = m.seen
	}
	l, err := c.acquire(ctx, rk, replace)
	if err != nil {
		if err := c.redisFailed(ctx, "EVALSHA acquire", key, err); err != nil {
			return nil, err
		}
		return c.loadOnly(ctx, key, load)
	}
	if l.cached == nil && !l.own {
		if l, err = c.waitForLoad(ctx, key, rk, l); err != nil {
			return nil, err
		}
	}
	if l.cached != nil {
		// Filled (or tombstoned) by another loader since our GET.
		return c.fromEntry(ctx, key, l.cached)
	}

	*held = l
	v, d, notFound, err := c.runLoader(ctx, key, load)
	entry, ttl, err := c.loaded(key, v, d, notFound, err)
	if entry == nil {
		if l.own {
			// Let waiting processes load at once instead of waiting out LockWait.
			if rerr := c.release(context.WithoutCancel(ctx), rk, l.token); rerr != nil {
				c.event(ctx, EventRedisError, key, rerr, 0)
			}
		}
		return nil, err
	}
	if c.write(ctx, key, rk, l.token, entry, ttl) && c.near != nil {
		c.near.wrote(rk, c.nearEntry(entry, valueOf(&v, notFound)), m.nearEpoch)
	}
	if err != nil {
		return nil, err // not found, now cached as a tombstone
	}
	return &flight[T]{v: v, entry: entry}, nil
}

// fillAfterGet loads key and writes the result only if the key still holds
// what the GET saw (m.seen) and the load ended within LeaseTTL of that GET,
// so that the invalidation marker of any Delete or Invalidate after the GET
// is still there to refuse it.
func (c *Cache[T]) fillAfterGet(ctx context.Context, key, rk string, m miss, load func(context.Context) (T, error)) (*flight[T], error) {
	if c.flights.epoch(rk) != m.epoch {
		// A flight of this key may have written since the GET (the
		// caller missed it by a hair): read again rather than load twice.
		b, err := c.get(ctx, rk)
		switch {
		case errors.Is(err, redis.Nil):
			m.seen = nil
		case err != nil:
			if err := c.redisFailed(ctx, "GET", key, err); err != nil {
				return nil, err
			}
			return c.loadOnly(ctx, key, load)
		default:
			if len(b) > 0 && (b[0] == kindValue || b[0] == kindRefresh || b[0] == kindTombstone) && fresh(b) {
				if f, err := c.fromEntry(ctx, key, b); err == nil || errors.Is(err, ErrNotFound) {
					return f, err
				}
			}
			m.seen = b // a marker, a lease, or an entry to replace
		}
	}
	v, d, notFound, err := c.runLoader(ctx, key, load)
	entry, ttl, err := c.loaded(key, v, d, notFound, err)
	if entry == nil {
		if f := c.staleFor(key, m.seen, err); f != nil {
			return f, nil
		}
		return nil, err
	}
	if time.Since(m.start) >= c.opts.LeaseTTL {
		c.event(ctx, EventStaleWriteRefused, key, nil, 0)
	} else if c.writeAfterGet(ctx, key, rk, m.seen, entry, ttl) && c.near != nil {
		c.near.wrote(rk, c.nearEntry(entry, valueOf(&v, notFound)), m.nearEpoch)
	}
	if err != nil {
		return nil, err // not found, now cached as a tombstone
	}
	return &flight[T]{v: v, entry: entry}, nil
}

// valueOf is v, or nil for a tombstone.
func valueOf[T any](v *T, notFound bool) *T {
	if notFound {
		return nil
	}
	return v
}

// loaded turns a loader's outcome into the entry to cache and its TTL: a
// value, a tombstone (err is then the not-found error), or nil with the
// error to return when nothing is to be cached.
func (c *Cache[T]) loaded(key string, v T, d time.Duration, notFound bool, err error) ([]byte, time.Duration, error) {
	switch {
	case notFound:
		return tombstoneEntry, jitter(c.opts.NotFoundTTL, c.opts.Jitter), err
	case err != nil:
		return nil, 0, err
	}
	ttl := c.ttl(0)
	entry, err := c.valueEntry(key, v, ttl, d)
	if err != nil {
		return nil, 0, err
	}
	return entry, c.hard(ttl), nil
}

// staleFor returns the stale value to serve in place of a failed load
// (loadErr, neither a not-found nor a panic) when Options.StaleIfError is
// set and seen, the entry the miss read, is a value past its soft expiry
// by at most StaleIfError; nil otherwise.
func (c *Cache[T]) staleFor(key string, seen []byte, loadErr error) *flight[T] {
	if c.opts.StaleIfError <= 0 || seen == nil || loadErr == nil {
		return nil
	}
	e, err := parseEntry(seen)
	if err != nil || e.kind != kindValue || e.expiry == 0 ||
		time.Now().UnixMilli()-e.expiry > c.opts.StaleIfError.Milliseconds() {
		return nil
	}
	v, err := c.decode(key, e.payload)
	if err != nil {
		return nil
	}
	return &flight[T]{v: v, entry: seen, staleErr: loadErr}
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
	c.tel.failedOpen(ctx, err)
	return nil
}

// write stores entry if rk still holds expect, counting a refusal, and
// reports whether it wrote. The value is loaded by then: it is written even
// if the caller has gone.
func (c *Cache[T]) write(ctx context.Context, key, rk, expect string, entry []byte, ttl time.Duration) bool {
	ok, err := c.cas(context.WithoutCancel(ctx), rk, expect, entry, ttl)
	switch {
	case err != nil:
		c.event(ctx, EventRedisError, key, err, 0)
	case !ok:
		c.event(ctx, EventStaleWriteRefused, key, nil, 0)
	}
	if err != nil && c.near != nil {
		// Maybe replaced: the old entry must not be served from here.
		c.near.drop(rk)
	}
	return ok && err == nil
}

// writeAfterGet stores entry if rk still holds seen (nil: nothing), as
// write does. When the GET saw nothing, SET NX is that same check without
// a script (an invalidation marker makes the key exist), sent with the
// PUBLISH that announces it in one pipeline: cheaper for Redis than the
// script, still one round trip.
func (c *Cache[T]) writeAfterGet(ctx context.Context, key, rk string, seen, entry []byte, ttl time.Duration) bool {
	if seen != nil {
		return c.write(ctx, key, rk, string(seen), entry, ttl)
	}
	ok, err := call(c, context.WithoutCancel(ctx), func(ctx context.Context) (bool, error) {
		var set *redis.StatusCmd
		_, err := c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			set = p.SetArgs(ctx, rk, entry, redis.SetArgs{Mode: "NX", TTL: ttl})
			p.Publish(ctx, c.channel, c.message(rk))
			return nil
		})
		if errors.Is(err, redis.Nil) { // NX: the key exists
			return false, nil
		}
		return err == nil && set.Val() == "OK", err
	})
	switch {
	case err != nil:
		c.event(ctx, EventRedisError, key, err, 0)
		if c.near != nil {
			c.near.drop(rk)
		}
	case !ok:
		c.event(ctx, EventStaleWriteRefused, key, nil, 0)
	}
	return ok && err == nil
}

// loadOnly serves from load without Redis.
func (c *Cache[T]) loadOnly(ctx context.Context, key string, load func(context.Context) (T, error)) (*flight[T], error) {
	release, err := c.acquireLoad(key)
	if err != nil {
		c.event(ctx, EventOverloaded, key, err, 0)
		return nil, err
	}
	defer release() // also when the loader panics
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
	v, err = runLoad(c.tel, ctx, 0, c.opts.IsNotFound, load)
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
// an Invalidate during the load wins. If the load fails or panics, the old
// value, still valid, is returned: a refresh never fails a hit.
func (c *Cache[T]) refresh(ctx context.Context, key, rk string, old []byte, oldV T, load func(context.Context) (T, error)) (T, error) {
	c.event(ctx, EventEarlyRefresh, key, nil, 0)
	fk := rk + refreshFlight
	fc, leader := c.flights.join(fk)
	if leader {
		// On a goroutine of its own, so that a caller whose context ends
		// gets the still valid value at once, as a joined caller does.
		go func() { _, _ = c.leadRefresh(ctx, key, rk, fk, fc, old, load) }()
	}
	select {
	case <-fc.done:
	case <-ctx.Done():
		return oldV, nil // still valid; only this caller stops waiting
	}
	var nf notFoundResult
	switch err := fc.err; {
	case errors.As(err, &nf):
		var zero T
		return zero, nf.err
	case err != nil:
		return oldV, nil
	}
	return c.joined(key, fc.f), nil
}

// leadRefresh runs the refresh flight fc, on a goroutine of its own. A
// panic of the loader is recovered here and reported (EventLoaderPanic),
// never passed on: nothing could recover it on this goroutine, and the
// refresh's callers have a valid value. runtime.Goexit ends only this
// goroutine; its callers get the cached value.
func (c *Cache[T]) leadRefresh(ctx context.Context, key, rk, fk string, fc *flightCall[T], old []byte, load func(context.Context) (T, error)) (f *flight[T], err error) {
	normal := false
	defer func() {
		if normal {
			return
		}
		perr := panicked(key, recover())
		f, err = nil, perr
		defer c.flights.finish(fk, fc, nil, perr)
		// Nothing could recover a panic of OnEvent on this goroutine
		// either: it would end the process, so it is dropped.
		defer func() { _ = recover() }()
		c.event(ctx, EventLoaderPanic, key, perr, 0)
	}()
	f, err = c.reload(ctx, key, rk, old, load)
	normal = true
	c.flights.finish(fk, fc, f, err)
	return f, err
}

// reload is the work of an early refresh: load, then write over old.
func (c *Cache[T]) reload(ctx context.Context, key, rk string, old []byte, load func(context.Context) (T, error)) (*flight[T], error) {
	v, d, notFound, err := c.runLoader(ctx, key, load)
	if notFound {
		if c.write(ctx, key, rk, string(old), tombstoneEntry, jitter(c.opts.NotFoundTTL, c.opts.Jitter)) && c.near != nil {
			c.near.drop(rk)
		}
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
	if c.write(ctx, key, rk, string(old), entry, c.hard(ttl)) && c.near != nil {
		c.near.drop(rk) // the next read stores the new entry
	}
	return &flight[T]{v: v, entry: entry}, nil
}
