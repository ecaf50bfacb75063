package cacherepo

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cache is a typed cache-aside of values of type T in Redis. It is safe for
// concurrent use. Without Options.Near and Options.Lock it holds no
// goroutines (but see Options.Timeout for the commands it stops waiting
// for) and Close is a no-op; with either, it runs one subscription
// goroutine on a pub/sub connection of its own until Close.
type Cache[T any] struct {
	client redis.UniversalClient
	opts   Options
	// mget: the client sends MGET and (no longer) multi-key commands to one server (a plain
	// or Sentinel client), not to shards (Cluster, Ring).
	mget bool
	// detach: Options.Timeout is set and the client does not apply context
	// deadlines to socket I/O, so each Redis call runs on a goroutine of its
	// own that the caller stops waiting for at the deadline.
	detach   bool
	flights  group[T]
	counters *counters // apart, so that the hub can count without holding the Cache
	// channel is the pub/sub channel of the namespace, on which every write
	// is announced as id+" "+Redis key.
	channel string
	id      string
	near    *nearTier // nil without Options.Near
	hub     *hub      // nil without Options.Near and Options.Lock
	closed  sync.Once
	tel     *telemetry
	breaker *breaker // nil without Options.Breaker
}

// New returns a Cache of T values over client: a *redis.Client (single node
// or Sentinel failover), *redis.ClusterClient or *redis.Ring, as built by
// the caller. It returns an error wrapping ErrInvalidOptions (and so
// ErrInvalid) when client is nil or an option is out of range.
//
// Options.Timeout bounds every Redis call whatever the client's settings:
// see Options.Timeout for how, and for the client options that make it
// cheapest.
func New[T any](client redis.UniversalClient, opts Options) (*Cache[T], error) {
	deadlines, ok := honoursDeadlines(client)
	if !ok {
		return nil, fmt.Errorf("%w: nil client", ErrInvalidOptions)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	_, single := client.(*redis.Client)
	c := &Cache[T]{client: client, opts: opts, mget: single, detach: opts.Timeout > 0 && !deadlines,
		counters: new(counters), channel: "cacherepo:" + opts.Namespace, id: newToken('s')[1:],
		tel: newTelemetry(opts.Namespace, opts.TracerProvider, opts.MeterProvider)}
	if opts.Breaker != nil {
		n, onEvent, tel := c.counters, opts.OnEvent, c.tel
		c.breaker = newBreaker(*opts.Breaker, func(s BreakerState) {
			kind := breakerEvents[s]
			n[kind].Add(1)
			tel.event(context.Background(), kind, nil, 0)
			if onEvent != nil {
				onEvent(context.Background(), Event{Kind: kind})
			}
		})
		c.tel.observeBreaker(c.breaker)
	}
	_, ring := client.(*redis.Ring)
	if opts.Near != nil && ring {
		// A Ring routes a PUBLISH sent from a script to the key's shard and
		// a subscription to the channel's: messages would go astray.
		return nil, fmt.Errorf("%w: Near needs a *redis.Client or *redis.ClusterClient, not a *redis.Ring", ErrInvalidOptions)
	}
	if opts.Near != nil {
		if c.near, err = newNearTier(*opts.Near); err != nil {
			return nil, fmt.Errorf("%w: Near: %v", ErrInvalidOptions, err)
		}
	}
	if opts.Near != nil || (opts.Lock && !ring) { // on a Ring, Lock waiters poll
		n, onEvent, tel := c.counters, opts.OnEvent, c.tel
		c.hub = newHub(client, c.channel, c.id, c.near, func() {
			n[EventSubscriptionLost].Add(1)
			tel.event(context.Background(), EventSubscriptionLost, nil, 0)
			if onEvent != nil {
				onEvent(context.Background(), Event{Kind: EventSubscriptionLost})
			}
		})
		// A Cache dropped without Close stops its subscription when it is
		// garbage collected (the hub holds no reference to it).
		runtime.AddCleanup(c, func(h *hub) { h.close() }, c.hub)
	}
	return c, nil
}

// Close stops the subscription of a Cache with Options.Near or
// Options.Lock: at once, the near tier is bypassed and Lock waiters poll;
// the goroutine closes its pub/sub connection and ends as soon as its
// current Redis call returns (it does not wait for it: a handshake with a
// server that does not answer can take the client's ReadTimeout). It does
// not close the client. With Options.Breaker it also stops reporting the
// breaker's state gauge (polystore.cache.breaker.state). It is safe to call
// more than once, and a no-op for other caches; it always returns nil.
func (c *Cache[T]) Close() error {
	c.closed.Do(func() {
		if c.hub != nil {
			c.hub.close()
		}
		c.tel.close()
	})
	return nil
}

// message announces a change of the Redis key rk on c.channel.
func (c *Cache[T]) message(rk string) string { return c.id + " " + rk }

// nearEpoch is the near tier's epoch of rk, read before reading it from
// Redis (0 without the tier).
func (c *Cache[T]) nearEpoch(rk string) uint64 {
	if c.near == nil {
		return 0
	}
	return c.near.epoch(rk)
}

// honoursDeadlines reports whether client applies context deadlines to
// socket reads and writes (go-redis does only with ContextTimeoutEnabled;
// it always honours them while dialling and waiting for a pooled
// connection). A client of another type is assumed not to. ok is false
// for a nil client, typed or not.
func honoursDeadlines(client redis.UniversalClient) (deadlines, ok bool) {
	switch cl := client.(type) {
	case nil:
		return false, false
	case *redis.Client:
		return cl != nil && cl.Options().ContextTimeoutEnabled, cl != nil
	case *redis.ClusterClient:
		return cl != nil && cl.Options().ContextTimeoutEnabled, cl != nil
	case *redis.Ring:
		return cl != nil && cl.Options().ContextTimeoutEnabled, cl != nil
	}
	return false, true
}

func (c *Cache[T]) key(key string) string { return c.opts.Namespace + key }

// get is the one round trip of a hit, kept free of closures and goroutines
// unless the Timeout must be enforced by detaching (see call).
func (c *Cache[T]) get(ctx context.Context, rk string) ([]byte, error) {
	if c.breaker != nil {
		return c.guardedGet(ctx, rk)
	}
	return c.rawGet(ctx, rk)
}

// guardedGet is get through the circuit breaker.
func (c *Cache[T]) guardedGet(ctx context.Context, rk string) ([]byte, error) {
	done, err := c.breaker.allow()
	if err != nil {
		return nil, err
	}
	b, err := c.rawGet(ctx, rk)
	finish(done, ctx, err)
	return b, err
}

// rawGet is get without the breaker.
func (c *Cache[T]) rawGet(ctx context.Context, rk string) ([]byte, error) {
	if c.opts.Timeout <= 0 {
		return c.client.Get(ctx, rk).Bytes()
	}
	if c.detach {
		return call(c, ctx, func(ctx context.Context) ([]byte, error) {
			return c.client.Get(ctx, rk).Bytes()
		})
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	b, err := c.client.Get(ctx, rk).Bytes()
	cancel()
	return b, err
}

// result of one detached Redis call.
type outcome[R any] struct {
	r   R
	err error
}

// call runs f, one Redis call, bounded by Options.Timeout. When the client
// applies context deadlines to its socket I/O, the deadline on f's context
// is enough. When it does not, f runs on a goroutine of its own and call
// returns context.DeadlineExceeded at the deadline while f finishes in the
// background; f must therefore keep its results to itself and return them.
// Such a goroutine lives at most as long as the client's own bound on the
// call (its ReadTimeout/WriteTimeout): the context it gets is cancelled
// when call returns, so it never waits for a pooled connection or dials
// after that, and at most the client's PoolSize of them can hold a
// connection at once.
func call[T, R any](c *Cache[T], ctx context.Context, f func(context.Context) (R, error)) (R, error) {
	if c.breaker == nil {
		return timed(c, ctx, f)
	}
	done, err := c.breaker.allow()
	if err != nil {
		var zero R
		return zero, err
	}
	r, err := timed(c, ctx, f)
	finish(done, ctx, err)
	return r, err
}

// timed is call without the breaker.
func timed[T, R any](c *Cache[T], ctx context.Context, f func(context.Context) (R, error)) (R, error) {
	if c.opts.Timeout <= 0 {
		return f(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	if !c.detach {
		return f(ctx)
	}
	done := make(chan outcome[R], 1)
	go func() {
		r, err := f(ctx)
		done <- outcome[R]{r, err}
	}()
	select {
	case o := <-done:
		return o.r, o.err
	case <-ctx.Done():
		select {
		case o := <-done: // finished at the same moment: take its answer
			return o.r, o.err
		default:
		}
		var zero R
		return zero, ctx.Err()
	}
}

// run is call for a Redis call without a result.
func (c *Cache[T]) run(ctx context.Context, f func(context.Context) error) error {
	_, err := call(c, ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, f(ctx) })
	return err
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
	return encodeValue(p, c.opts.EarlyRefresh > 0 || c.opts.StaleIfError > 0, time.Now().Add(ttl), load), nil
}

// hard is the Redis lifetime of a value entry whose fresh lifetime is ttl:
// with Options.StaleIfError the entry is kept that much longer, as a stale
// value.
func (c *Cache[T]) hard(ttl time.Duration) time.Duration { return ttl + c.opts.StaleIfError }

// fresh reports whether b is an entry to serve as it is: not a value past
// its soft expiry.
func fresh(b []byte) bool {
	e, err := parseEntry(b)
	return err != nil || e.kind != kindValue || !e.softExpired(time.Now())
}

// Get returns the cached value of key. It returns ErrMiss when none is
// cached, an error wrapping ErrNotFound when a tombstone is (see
// GetOrLoad), ErrRedis or ErrCodec errors when Redis or decoding fails, and
// an error wrapping ErrInvalid for an empty key or a nil context.
func (c *Cache[T]) Get(ctx context.Context, key string) (T, error) {
	if ctx == nil || !c.tel.tracing() {
		return c.getValue(ctx, key)
	}
	ctx, s := c.tel.start(ctx, opGet)
	v, err := c.getValue(ctx, key)
	s.end(err)
	return v, err
}

// getValue is Get.
func (c *Cache[T]) getValue(ctx context.Context, key string) (T, error) {
	var zero T
	if err := checkCall(ctx, key); err != nil {
		return zero, err
	}
	rk := c.key(key)
	ne, fromNear := c.nearGet(rk)
	if fromNear && ne.v != nil {
		c.mark(ctx, resultNearHit)
		return ne.v.(T), nil // NearOptions.Shared
	}
	b, epoch := ne.b, uint64(0)
	if !fromNear {
		epoch = c.nearEpoch(rk)
		var err error
		b, err = c.get(ctx, rk)
		switch {
		case errors.Is(err, redis.Nil):
			c.mark(ctx, resultMiss)
			return zero, ErrMiss
		case err != nil:
			return zero, redisErr("GET", key, err)
		}
	}
	e, err := parseEntry(b)
	if err != nil {
		return zero, codecErr("decoding", key, err)
	}
	switch e.kind {
	case kindTombstone:
		if !fromNear {
			c.nearPut(rk, b, nil, epoch)
		}
		c.mark(ctx, resultTombstone)
		return zero, tombstoneErr(key)
	case kindLease, kindMarker:
		c.mark(ctx, resultMiss)
		return zero, ErrMiss
	}
	if e.softExpired(time.Now()) { // kept only for StaleIfError
		c.mark(ctx, resultMiss)
		return zero, ErrMiss
	}
	v, err := c.decode(key, e.payload)
	switch {
	case err != nil:
	case fromNear:
		c.mark(ctx, resultNearHit)
	default:
		c.nearPut(rk, b, &v, epoch)
		c.mark(ctx, resultHit)
	}
	return v, err
}

// Set caches value under key for ttl (0 means Options.TTL), spread by
// Options.Jitter. It overwrites whatever the key held, including a loader's
// lease, whose write is then refused. It returns ErrCodec or ErrRedis errors
// (a SET that timed out may still be applied by Redis), and an error
// wrapping ErrInvalid, before any Redis I/O, for an empty key, a nil
// context or a ttl that is negative or under 1ms.
func (c *Cache[T]) Set(ctx context.Context, key string, value T, ttl time.Duration) error {
	if ctx == nil || !c.tel.tracing() {
		return c.set(ctx, key, value, ttl)
	}
	ctx, s := c.tel.start(ctx, opSet)
	err := c.set(ctx, key, value, ttl)
	s.end(err)
	return err
}

// set is Set.
func (c *Cache[T]) set(ctx context.Context, key string, value T, ttl time.Duration) error {
	if err := checkCall(ctx, key); err != nil {
		return err
	}
	if err := checkTTL(ttl); err != nil {
		return err
	}
	ttl = c.ttl(ttl)
	b, err := c.valueEntry(key, value, ttl, 0)
	if err != nil {
		return err
	}
	ttl = c.hard(ttl)
	rk := c.key(key)
	epoch := c.nearEpoch(rk)
	err = c.run(ctx, func(ctx context.Context) error {
		_, err := c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, rk, b, ttl)
			p.Publish(ctx, c.channel, c.message(rk))
			return nil
		})
		return err
	})
	if c.near != nil {
		ne := nearEntry{b: b}
		switch {
		case err != nil:
			ne.b = nil // it may or may not have been written
		case c.opts.Near.Shared:
			// A copy of its own: the caller may go on using value.
			if p, derr := parseEntry(b); derr == nil {
				if v, derr := c.decode(key, p.payload); derr == nil {
					ne.v = v
				}
			}
		}
		c.near.wrote(rk, ne, epoch)
	}
	if err != nil {
		return redisErr("SET", key, err)
	}
	return nil
}

// mark records on the span of the call that ctx belongs to, if traced,
// what it served.
func (c *Cache[T]) mark(ctx context.Context, r callResult) {
	if !c.tel.tracing() {
		return
	}
	if s := spanOf(ctx); s != nil {
		s.mark(r)
	}
}

// nearGet returns rk's entry from the near tier, if there is one and it
// holds it.
func (c *Cache[T]) nearGet(rk string) (nearEntry, bool) {
	if c.near == nil {
		return nearEntry{}, false
	}
	return c.near.get(rk)
}

// nearPut stores entry b of rk, read from Redis after epoch was read, in
// the near tier: values and tombstones only. v is b decoded (nil for a
// tombstone), kept with NearOptions.Shared.
func (c *Cache[T]) nearPut(rk string, b []byte, v *T, epoch uint64) {
	if c.near == nil || len(b) == 0 {
		return
	}
	switch b[0] {
	case kindValue, kindRefresh, kindTombstone:
		c.near.put(rk, c.nearEntry(b, v), epoch)
	}
}

// nearEntry is what the near tier keeps of entry b decoded as v.
func (c *Cache[T]) nearEntry(b []byte, v *T) nearEntry {
	ne := nearEntry{b: b}
	if v != nil && c.opts.Near.Shared {
		ne.v = *v
	}
	return ne
}

// ttl returns the jittered lifetime of a value: ttl, or Options.TTL for 0.
func (c *Cache[T]) ttl(ttl time.Duration) time.Duration {
	if ttl == 0 {
		ttl = c.opts.TTL
	}
	return jitter(ttl, c.opts.Jitter)
}

// checkTTL refuses the TTL argument of Set and SetMany when Redis cannot
// store it: negative, or under its 1ms resolution (0 means Options.TTL).
func checkTTL(ttl time.Duration) error {
	if ttl < 0 || (ttl > 0 && ttl < time.Millisecond) {
		return invalid("TTL %s is negative or under Redis's 1ms resolution (0 means Options.TTL)", ttl)
	}
	return nil
}

// checkCall refuses a nil context and an empty key: an empty key is almost
// always an unset id, and caching under it would serve one record for all.
func checkCall(ctx context.Context, keys ...string) error {
	if ctx == nil {
		return invalid("nil context")
	}
	for _, k := range keys {
		if k == "" {
			return invalid("empty key")
		}
	}
	return nil
}

// Delete removes keys from the cache: values, tombstones and loaders'
// leases alike, so it is also Invalidate. Each key is left holding an
// invalidation marker for 2×Options.LeaseTTL, which every read treats as a
// miss and which makes the write of any load that saw the key before the
// Delete fail (see the package documentation). It returns ErrRedis errors,
// and an error wrapping ErrInvalid, deleting nothing, when a key is empty or
// the context nil. No keys is a no-op.
func (c *Cache[T]) Delete(ctx context.Context, keys ...string) error {
	return c.delete(ctx, opDelete, keys)
}

// delete is Delete and Invalidate, o.
func (c *Cache[T]) delete(ctx context.Context, o op, keys []string) error {
	if ctx == nil || !c.tel.tracing() {
		return c.del(ctx, keys)
	}
	ctx, s := c.tel.start(ctx, o)
	s.keys(len(keys))
	err := c.del(ctx, keys)
	s.end(err)
	return err
}

// del is Delete.
func (c *Cache[T]) del(ctx context.Context, keys []string) error {
	if err := checkCall(ctx, keys...); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	rks := make([]string, len(keys))
	for i, k := range keys {
		rks[i] = c.key(k)
		// A caller of this process that misses after the delete must not
		// join a load that began before it.
		c.flights.forget(rks[i])
		c.flights.forget(rks[i] + refreshFlight)
	}
	ttl := c.markerTTL()
	err := c.run(ctx, func(ctx context.Context) error {
		// One pipeline (one round trip per node on Cluster and Ring): SET
		// takes one key, so no slot rules.
		_, err := c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, rk := range rks {
				p.Set(ctx, rk, newMarker(), ttl)
				p.Publish(ctx, c.channel, c.message(rk))
			}
			return nil
		})
		return err
	})
	if c.near != nil {
		for _, rk := range rks {
			c.near.drop(rk) // before Delete returns: the caller's next read must not see it
		}
	}
	if err != nil {
		return redisErr("SET marker", keys[0], err)
	}
	return nil
}

// markerTTL is the lifetime of an invalidation marker: a load that saw the
// key before the marker was set writes within LeaseTTL of its GET or not
// at all, so twice that leaves a LeaseTTL of margin for the write to reach
// Redis.
func (c *Cache[T]) markerTTL() time.Duration { return 2 * c.opts.LeaseTTL }

// Invalidate removes keys from the cache after the records they cache
// changed in the database (call it after the database write commits). It
// guarantees that a load of any of these keys that began before Invalidate
// never writes its value to the cache after it: see the package
// documentation for the exact guarantee and its limits. It returns ErrRedis
// errors, in which case the guarantee does not hold and the caller should
// retry, and an error wrapping ErrInvalid, invalidating nothing, when a key
// is empty or the context nil.
func (c *Cache[T]) Invalidate(ctx context.Context, keys ...string) error {
	return c.delete(ctx, opInvalidate, keys)
}

// GetMany returns the cached values of keys in one round trip (MGET, or a
// pipeline of GETs on Cluster and Ring). Keys without a value (missing,
// tombstoned or leased) are absent from the map. It returns ErrRedis or
// ErrCodec errors, and an error wrapping ErrInvalid for an empty key or a
// nil context.
func (c *Cache[T]) GetMany(ctx context.Context, keys []string) (map[string]T, error) {
	if ctx == nil || !c.tel.tracing() {
		return c.getManyValues(ctx, keys)
	}
	ctx, s := c.tel.start(ctx, opGetMany)
	s.keys(len(keys))
	out, err := c.getManyValues(ctx, keys)
	if err == nil {
		s.counts[resultHit].Add(int32(len(out)))
		s.counts[resultMiss].Add(int32(len(keys) - len(out)))
	}
	s.end(err)
	return out, err
}

// getManyValues is GetMany.
func (c *Cache[T]) getManyValues(ctx context.Context, keys []string) (map[string]T, error) {
	if err := checkCall(ctx, keys...); err != nil {
		return nil, err
	}
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
		if e.kind != kindValue || e.softExpired(time.Now()) {
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
	if len(keys) == 0 {
		return [][]byte{}, nil
	}
	rks := make([]string, len(keys))
	for i, k := range keys {
		rks[i] = c.key(k)
	}
	return call(c, ctx, func(ctx context.Context) ([][]byte, error) { return c.fetch(ctx, rks) })
}

// fetch reads the entries of the Redis keys rks in one round trip.
func (c *Cache[T]) fetch(ctx context.Context, rks []string) ([][]byte, error) {
	out := make([][]byte, len(rks))
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
// ErrCodec errors (before writing anything) or ErrRedis errors, and an
// error wrapping ErrInvalid, writing nothing, for an empty key, a nil
// context or a ttl that is negative or under 1ms.
func (c *Cache[T]) SetMany(ctx context.Context, items map[string]T, ttl time.Duration) error {
	if ctx == nil || !c.tel.tracing() {
		return c.setMany(ctx, items, ttl)
	}
	ctx, s := c.tel.start(ctx, opSetMany)
	s.keys(len(items))
	err := c.setMany(ctx, items, ttl)
	s.end(err)
	return err
}

// setMany is SetMany.
func (c *Cache[T]) setMany(ctx context.Context, items map[string]T, ttl time.Duration) error {
	if err := checkCall(ctx); err != nil {
		return err
	}
	if err := checkTTL(ttl); err != nil {
		return err
	}
	for k := range items {
		if k == "" {
			return invalid("empty key")
		}
	}
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
		t = c.hard(t)
		writes = append(writes, write{c.key(k), b, t})
		anyKey = k
	}
	if len(writes) == 0 {
		return nil
	}
	err := c.run(ctx, func(ctx context.Context) error {
		_, err := c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, w := range writes {
				p.Set(ctx, w.rk, w.entry, w.ttl)
				p.Publish(ctx, c.channel, c.message(w.rk))
			}
			return nil
		})
		return err
	})
	if c.near != nil {
		for _, w := range writes {
			c.near.drop(w.rk)
		}
	}
	if err != nil {
		return redisErr("SET", anyKey, err)
	}
	return nil
}
