package cacherepo

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// GetManyOrLoad returns the values of keys: the cached ones from one MGET
// (a pipeline of GETs on Cluster and Ring), the others from one call of load
// with the missing keys only. The loaded values are cached in one pipelined
// write, each only if its key still holds what the read saw (with
// Options.Lock, the lease taken for it in one pipelined round trip before
// load runs), so an Invalidate during the load is honoured as in GetOrLoad:
// two round trips, three with Lock. Keys that load leaves out of its map do not exist: they get
// tombstones and are absent from the result, as are tombstoned keys. If
// load returns an error for which Options.IsNotFound is true, every missing
// key is treated as not found.
//
// Unlike GetOrLoad, concurrent calls are not collapsed, do not wait for
// each other's loads (Options.Lock) and do not refresh early: each loads its
// own misses.
//
// Redis errors are handled as in GetOrLoad (fail open unless
// Options.Strict, then ErrRedis). A load error is returned as it is, with a
// nil map; nothing is cached then. A loaded value that cannot be encoded
// gives an error wrapping ErrCodec, with a nil map; the other values are
// cached. An empty key, a nil load or a nil context give an error wrapping
// ErrInvalid before any Redis I/O.
//
// The loader runs on the caller's goroutine. If it panics (or calls
// runtime.Goexit), the leases of the batch are released at once, nothing is
// cached, EventLoaderPanic is reported (Key empty) and the panic goes on up
// the caller's stack with its original value.
func (c *Cache[T]) GetManyOrLoad(ctx context.Context, keys []string, load func(ctx context.Context, missing []string) (map[string]T, error)) (map[string]T, error) {
	if load == nil {
		return nil, invalid("nil loader")
	}
	if err := checkCall(ctx, keys...); err != nil {
		return nil, err
	}
	var held batchLeases
	normal := false
	defer func() {
		if normal {
			return
		}
		p := recover()
		c.releaseMany(ctx, held.keys, held.leases)
		c.event(ctx, EventLoaderPanic, "", panicked("", p), 0)
		if p != nil {
			panic(p) // the same value, from within the panic: the stack still shows the loader
		}
	}()
	out, err := c.getManyOrLoad(ctx, keys, load, &held)
	normal = true
	return out, err
}

// batchLeases are the leases a GetManyOrLoad call holds while its loader
// runs: what to release if the loader panics.
type batchLeases struct {
	keys   []string
	leases map[string]lease
}

func (c *Cache[T]) getManyOrLoad(ctx context.Context, keys []string, load func(ctx context.Context, missing []string) (map[string]T, error), held *batchLeases) (map[string]T, error) {
	out := make(map[string]T, len(keys))
	readAt := time.Now() // loads that end more than LeaseTTL after this are not written
	entries, err := c.getMany(ctx, keys)
	redisDown := err != nil
	if redisDown {
		if err := c.redisFailed(ctx, "MGET", first(keys), err); err != nil {
			return nil, err
		}
		entries = make([][]byte, len(keys))
	}

	var missing []string
	var replace map[string][]byte              // undecodable entries, to overwrite
	seen := make(map[string][]byte, len(keys)) // what the read saw of each key
	for i, k := range keys {
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = entries[i]
		switch hit, err := c.take(ctx, k, entries[i], out); {
		case err != nil:
			c.event(ctx, EventCodecError, k, err, 0)
			if replace == nil {
				replace = map[string][]byte{}
			}
			replace[k] = entries[i]
			missing = append(missing, k)
		case !hit:
			if !redisDown {
				c.event(ctx, EventMiss, k, nil, 0)
			}
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}

	var leases map[string]lease
	switch {
	case !redisDown && !c.opts.Lock:
		// The writes expect what the read saw: no round trip before the load.
		leases = make(map[string]lease, len(missing))
		for _, k := range missing {
			leases[k] = lease{token: string(seen[k])}
		}
	case !redisDown:
		leases, err = c.acquireMany(ctx, missing, replace)
		if err != nil {
			if err := c.redisFailed(ctx, "EVALSHA acquire", missing[0], err); err != nil {
				return nil, err
			}
			// No leases: the values are loaded but not cached.
		}
	}
	toLoad := missing[:0:0]
	for _, k := range missing {
		if l := leases[k]; l.cached != nil {
			// Filled by another loader since the MGET.
			if _, err := c.take(ctx, k, l.cached, out); err == nil {
				continue
			}
		}
		toLoad = append(toLoad, k)
	}
	if len(toLoad) == 0 {
		return out, nil
	}

	held.keys, held.leases = toLoad, leases
	start := time.Now()
	loaded, err := load(ctx, toLoad)
	d := time.Since(start)
	switch {
	case err == nil:
		c.event(ctx, EventLoad, "", nil, d)
	case c.opts.IsNotFound(err):
		c.event(ctx, EventLoad, "", err, d)
		loaded = nil
	default:
		c.event(ctx, EventLoadError, "", err, d)
		c.releaseMany(ctx, toLoad, leases)
		return nil, err
	}

	if !c.opts.Lock && time.Since(readAt) >= c.opts.LeaseTTL {
		// An invalidation marker set after the read may be gone: write nothing.
		for _, k := range toLoad {
			if v, ok := loaded[k]; ok {
				out[k] = v
			}
			if _, leased := leases[k]; leased {
				c.event(ctx, EventStaleWriteRefused, k, nil, 0)
			}
		}
		return out, nil
	}
	writes := make([]casWrite, 0, len(toLoad))
	var encErr error
	var unencodable []string
	for _, k := range toLoad {
		v, ok := loaded[k]
		if ok {
			out[k] = v
		}
		l, leased := leases[k]
		if !leased || l.cached != nil {
			continue
		}
		w := casWrite{rk: c.key(k), expect: l.token, key: k}
		if ok {
			w.ttl = c.ttl(0)
			if w.entry, err = c.valueEntry(k, v, w.ttl, d); err != nil {
				encErr = errors.Join(encErr, err)
				unencodable = append(unencodable, k)
				continue
			}
		} else {
			w.entry, w.ttl = tombstoneEntry, jitter(c.opts.NotFoundTTL, c.opts.Jitter)
		}
		writes = append(writes, w)
	}
	c.writeMany(ctx, writes)
	if encErr != nil {
		// As GetOrLoad does: let waiting processes load at once instead of
		// waiting out LockWait.
		c.releaseMany(ctx, unencodable, leases)
		return nil, encErr
	}
	return out, nil
}

// take decodes entry b of key into out; hit is false for a missing entry, a
// tombstone or a lease.
func (c *Cache[T]) take(ctx context.Context, key string, b []byte, out map[string]T) (hit bool, err error) {
	if b == nil {
		return false, nil
	}
	e, err := parseEntry(b)
	if err != nil {
		return false, codecErr("decoding", key, err)
	}
	switch e.kind {
	case kindTombstone:
		c.event(ctx, EventTombstoneHit, key, nil, 0)
		return true, nil
	case kindLease, kindMarker:
		return false, nil
	}
	v, err := c.decode(key, e.payload)
	if err != nil {
		return false, err
	}
	c.event(ctx, EventHit, key, nil, 0)
	out[key] = v
	return true, nil
}

// acquireMany takes the leases of keys in one pipelined round trip.
func (c *Cache[T]) acquireMany(ctx context.Context, keys []string, replace map[string][]byte) (map[string]lease, error) {
	calls := make([]scriptCall, len(keys))
	for i, k := range keys {
		tok := newLease()
		calls[i] = scriptCall{key: c.key(k), args: []any{tok, c.opts.LeaseTTL.Milliseconds(), replace[k]}}
	}
	cmds, err := c.runScripts(ctx, acquireScript, calls)
	if err != nil {
		return nil, err
	}
	out := make(map[string]lease, len(keys))
	for i, k := range keys {
		b, err := cmds[i].Text()
		if out[k], err = acquired(calls[i].args[0].(string), b, err); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type casWrite struct {
	key, rk, expect string
	entry           []byte
	ttl             time.Duration
}

// writeMany runs the compare-and-set writes in one pipelined round trip.
func (c *Cache[T]) writeMany(ctx context.Context, writes []casWrite) {
	if len(writes) == 0 {
		return
	}
	calls := make([]scriptCall, len(writes))
	for i, w := range writes {
		calls[i] = scriptCall{key: w.rk, args: []any{w.expect, w.entry, w.ttl.Milliseconds()}}
	}
	// The values are loaded: write them even if the caller has gone.
	cmds, err := c.runScripts(context.WithoutCancel(ctx), casScript, calls)
	if err != nil {
		c.event(ctx, EventRedisError, writes[0].key, err, 0)
		return
	}
	for i, cmd := range cmds {
		n, err := cmd.Int()
		switch {
		case err != nil:
			c.event(ctx, EventRedisError, writes[i].key, err, 0)
		case n != 1:
			c.event(ctx, EventStaleWriteRefused, writes[i].key, nil, 0)
		}
	}
}

// releaseMany releases the leases this call owns after a failed load.
func (c *Cache[T]) releaseMany(ctx context.Context, keys []string, leases map[string]lease) {
	var calls []scriptCall
	for _, k := range keys {
		if l := leases[k]; l.own {
			calls = append(calls, scriptCall{key: c.key(k), args: []any{l.token}})
		}
	}
	if len(calls) == 0 {
		return
	}
	if _, err := c.runScripts(context.WithoutCancel(ctx), releaseScript, calls); err != nil {
		c.event(ctx, EventRedisError, keys[0], err, 0)
	}
}

type scriptCall struct {
	key  string
	args []any
}

// runScripts runs script once per call in one pipeline by its SHA, and again
// by its body for the calls a server did not have it cached for (NOSCRIPT:
// the script did not run, so running it again is safe). The returned
// error is the pipeline's; per-call errors stay in the commands.
func (c *Cache[T]) runScripts(ctx context.Context, s *redis.Script, calls []scriptCall) ([]*redis.Cmd, error) {
	return call(c, ctx, func(ctx context.Context) ([]*redis.Cmd, error) { return c.pipeScripts(ctx, s, calls) })
}

// pipeScripts is runScripts within one Timeout.
func (c *Cache[T]) pipeScripts(ctx context.Context, s *redis.Script, calls []scriptCall) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(calls))
	_, err := c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, call := range calls {
			cmds[i] = s.EvalSha(ctx, p, []string{call.key}, call.args...)
		}
		return nil
	})
	var again []int
	for i, cmd := range cmds {
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		_, err = c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, i := range again {
				cmds[i] = s.Eval(ctx, p, []string{calls[i].key}, calls[i].args...)
			}
			return nil
		})
	}
	if err != nil && !errors.Is(err, redis.Nil) && !isReplyError(err) {
		return nil, err
	}
	return cmds, nil
}

// isReplyError reports whether err is an error reply of the server (which
// fails one command) rather than a connection error (which fails them all).
func isReplyError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}
