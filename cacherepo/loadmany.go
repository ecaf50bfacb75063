package cacherepo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// GetManyOrLoad returns the values of keys: the cached ones from one MGET
// (a pipeline of GETs on Cluster and Ring), the others from one call of load
// with the missing keys only. The loaded values are cached in one pipelined
// write, each only if its key still holds what the read saw (with
// Options.Lock, the lease taken for it in one pipelined round trip before
// load runs), so an Invalidate during the load is honoured as in GetOrLoad:
// two round trips, three with Lock. Keys that load leaves out of its map do
// not exist: they get tombstones and are absent from the result, as are
// tombstoned keys. If load returns an error for which Options.IsNotFound is
// true, every missing key is treated as not found.
//
// Concurrent calls share loads key by key, with each other and with
// GetOrLoad: a call loads only the missing keys that no other call of the
// process is loading, and waits for the others (each caller gets its own
// decoded copy). With Options.Lock, it also waits for the keys other
// processes are loading, for up to LockWait, as GetOrLoad does. A key whose
// shared load failed gets that load's error. GetManyOrLoad does not refresh
// early.
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
// cached, the calls waiting for its keys get a *PanicError wrapping
// ErrLoaderPanic, EventLoaderPanic is reported (Key empty) and the panic
// goes on up the caller's stack with its original value.
func (c *Cache[T]) GetManyOrLoad(ctx context.Context, keys []string, load func(ctx context.Context, missing []string) (map[string]T, error)) (map[string]T, error) {
	if load == nil {
		return nil, invalid("nil loader")
	}
	if err := checkCall(ctx, keys...); err != nil {
		return nil, err
	}
	if !c.tel.tracing() {
		return c.getManyOrLoadAll(ctx, keys, load)
	}
	ctx, s := c.tel.start(ctx, opGetManyOrLoad)
	s.keys(len(keys))
	normal := false
	defer func() {
		if !normal { // the loader panicked: the panic goes on
			s.endPanicked()
		}
	}()
	out, err := c.getManyOrLoadAll(ctx, keys, load)
	normal = true
	s.end(err)
	return out, err
}

// getManyOrLoadAll is GetManyOrLoad, its arguments checked.
func (c *Cache[T]) getManyOrLoadAll(ctx context.Context, keys []string, load func(ctx context.Context, missing []string) (map[string]T, error)) (map[string]T, error) {
	var out map[string]T
	for attempt := 0; ; attempt++ {
		got, retry, err := c.getManyOrLoadOnce(ctx, keys, load)
		if err != nil {
			return nil, err
		}
		if out == nil {
			out = got
		} else {
			for k, v := range got {
				out[k] = v
			}
		}
		if len(retry) == 0 {
			return out, nil
		}
		if attempt == 3 {
			return nil, fmt.Errorf("cacherepo: the loads of %d keys were abandoned by the callers that held them, 3 times: %w", len(retry), context.Canceled)
		}
		// The calls that were loading these keys gave up (their context
		// ended): load them, or join newer loads.
		keys = retry
	}
}

// getManyOrLoadOnce is one pass of GetManyOrLoad; retry lists the keys whose
// shared load ended because its caller's context did, to be tried again.
func (c *Cache[T]) getManyOrLoadOnce(ctx context.Context, keys []string, load func(ctx context.Context, missing []string) (map[string]T, error)) (out map[string]T, retry []string, err error) {
	b := batch[T]{c: c}
	normal := false
	defer func() {
		if normal {
			return
		}
		p := recover()
		perr := panicked("", p)
		c.releaseMany(ctx, b.loadKeys, b.leases)
		func() {
			defer b.finishRest(nil, perr) // even if OnEvent panics
			c.event(ctx, EventLoaderPanic, "", perr, 0)
		}()
		if p != nil {
			panic(p) // the same value, from within the panic: the stack still shows the loader
		}
	}()
	out, err = c.getManyOrLoad(ctx, keys, load, &b)
	if err != nil {
		b.finishRest(nil, err)
	} else {
		b.finishRest(nil, errAbandoned)
		retry, err = b.wait(ctx, out)
	}
	normal = true
	return out, retry, err
}

// errAbandoned ends a flight its batch never resolved (a bug, or a codec
// error of the whole batch); those who joined it get it.
var errAbandoned = errors.New("cacherepo: the batch load that held this key ended without a result for it")

// batch is the state of one GetManyOrLoad pass: the flights it leads (the
// keys it loads for every caller of the process), the flights of other
// callers it waits for, and the leases it holds while its loader runs
// (what to release if the loader panics).
type batch[T any] struct {
	c        *Cache[T]
	led      map[string]*flightCall[T] // by cache key
	joined   map[string]*flightCall[T]
	loadKeys []string
	leases   map[string]lease
	noRedis  bool // Redis failed (or the breaker refused it): loads count against MaxConcurrentLoads
}

// finish hands the outcome of key to the callers that joined its flight.
func (b *batch[T]) finish(key string, f *flight[T], err error) {
	if fc, ok := b.led[key]; ok {
		delete(b.led, key)
		b.c.flights.finish(b.c.key(key), fc, f, err)
	}
}

// finishRest ends every flight not finished yet with err.
func (b *batch[T]) finishRest(f *flight[T], err error) {
	for k := range b.led {
		b.finish(k, f, err)
	}
}

// wait collects the keys other callers were loading into out. A key whose
// record does not exist is left out; a key whose load failed fails the
// call, except when its caller gave up: then it is returned in retry.
func (b *batch[T]) wait(ctx context.Context, out map[string]T) (retry []string, err error) {
	for k, fc := range b.joined {
		select {
		case <-fc.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		switch {
		case fc.err == nil:
			out[k] = b.c.joined(k, fc.f)
		case errors.Is(fc.err, ErrNotFound):
		case errors.Is(fc.err, context.Canceled) || errors.Is(fc.err, context.DeadlineExceeded):
			retry = append(retry, k)
		default:
			return nil, fc.err
		}
	}
	return retry, nil
}

func (c *Cache[T]) getManyOrLoad(ctx context.Context, keys []string, load func(ctx context.Context, missing []string) (map[string]T, error), b *batch[T]) (map[string]T, error) {
	out := make(map[string]T, len(keys))
	readAt := time.Now() // loads that end more than LeaseTTL after this are not written
	epochs := make([]uint32, len(keys))
	for i, k := range keys {
		epochs[i] = c.flights.epoch(c.key(k))
	}
	entries, err := c.getMany(ctx, keys)
	redisDown := err != nil
	if redisDown {
		if err := c.redisFailed(ctx, "MGET", first(keys), err); err != nil {
			return nil, err
		}
		b.noRedis = true
		entries = make([][]byte, len(keys))
	}

	var missing []string
	var replace map[string][]byte              // undecodable entries, to overwrite
	seen := make(map[string][]byte, len(keys)) // what the read saw of each key
	epoch := make(map[string]uint32, len(keys))
	for i, k := range keys {
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = entries[i]
		epoch[k] = epochs[i]
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
	// Share the loads of the process key by key: lead the keys nobody is
	// loading, join the others.
	led := missing[:0:0]
	for _, k := range missing {
		fc, leader := c.flights.join(c.key(k))
		if !leader {
			if b.joined == nil {
				b.joined = map[string]*flightCall[T]{}
			}
			b.joined[k] = fc
			continue
		}
		if b.led == nil {
			b.led = map[string]*flightCall[T]{}
		}
		b.led[k] = fc
		led = append(led, k)
	}
	missing = led
	if len(missing) == 0 {
		return out, nil
	}
	if !redisDown && !c.opts.Lock {
		// Keys whose flights may have written since the read (see
		// group.ended) are read again rather than loaded twice. (With Lock
		// the acquire script reads them again anyway.)
		var again []string
		for _, k := range missing {
			if c.flights.epoch(c.key(k)) != epoch[k] {
				again = append(again, k)
			}
		}
		if len(again) > 0 {
			entries, err := c.getMany(ctx, again)
			if err != nil {
				if err := c.redisFailed(ctx, "MGET", again[0], err); err != nil {
					return nil, err
				}
				redisDown = true
			}
			filled := map[string]bool{}
			for i, k := range again {
				if redisDown || entries[i] == nil {
					seen[k] = nil
					continue
				}
				if f, err := c.fromBatchEntry(ctx, k, entries[i], out); err == nil && (f != nil || isTombstone(entries[i])) {
					b.finish(k, f, tombstoneIfNil(f, k))
					filled[k] = true
					continue
				}
				seen[k] = entries[i]
			}
			if len(filled) > 0 {
				missing = slices.DeleteFunc(missing, func(k string) bool { return filled[k] })
			}
			if len(missing) == 0 {
				return out, nil
			}
		}
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
			b.noRedis = true
			// No leases: the values are loaded but not cached.
		}
	}
	// With Lock, the keys another process is loading are waited for while
	// this call loads its own (waiting first could make two processes wait
	// for each other's keys); those the wait does not resolve are loaded
	// after.
	var others []string
	toLoad := missing[:0:0]
	for _, k := range missing {
		l, leased := leases[k]
		switch {
		case l.cached != nil:
			// Filled by another loader since the MGET.
			if f, err := c.fromBatchEntry(ctx, k, l.cached, out); err == nil {
				b.finish(k, f, tombstoneIfNil(f, k))
				continue
			}
		case c.opts.Lock && leased && !l.own:
			others = append(others, k)
			continue
		}
		toLoad = append(toLoad, k)
	}
	var waited map[string]lease
	var wg sync.WaitGroup
	if len(others) > 0 {
		wg.Go(func() { waited = c.waitForLoads(ctx, others, leases) })
	}
	if len(toLoad) > 0 {
		if err := c.loadBatch(ctx, toLoad, leases, readAt, load, out, b); err != nil {
			wg.Wait()
			return nil, err
		}
	}
	wg.Wait()
	toLoad = toLoad[:0]
	for _, k := range others {
		l := waited[k]
		if l.cached != nil {
			if f, err := c.fromBatchEntry(ctx, k, l.cached, out); err == nil {
				b.finish(k, f, tombstoneIfNil(f, k))
				continue
			}
		}
		leases[k] = l
		toLoad = append(toLoad, k)
	}
	if len(toLoad) == 0 {
		return out, nil
	}
	return out, c.loadBatch(ctx, toLoad, leases, readAt, load, out, b)
}

// loadBatch calls load for toLoad, caches what it returns under leases (the
// entries each write must find) and hands each key's outcome to the callers
// that wait for it.
func (c *Cache[T]) loadBatch(ctx context.Context, toLoad []string, leases map[string]lease, readAt time.Time, load func(ctx context.Context, missing []string) (map[string]T, error), out map[string]T, b *batch[T]) error {
	b.loadKeys, b.leases = toLoad, leases
	if b.noRedis {
		release, err := c.acquireLoad(toLoad[0])
		if err != nil {
			c.event(ctx, EventOverloaded, "", err, 0)
			c.releaseMany(ctx, toLoad, leases)
			b.finishRest(nil, err)
			return err
		}
		defer release() // also when the loader panics
	}
	start := time.Now()
	var loaded map[string]T
	var err error
	if c.tel.tracing() && spanOf(ctx) != nil {
		loaded, err = runLoad(c.tel, ctx, len(toLoad), c.opts.IsNotFound, func(ctx context.Context) (map[string]T, error) { return load(ctx, toLoad) })
	} else {
		loaded, err = load(ctx, toLoad)
	}
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
		b.finishRest(nil, err)
		return err
	}

	// An invalidation marker set after the read may be gone: write nothing.
	tooLate := !c.opts.Lock && time.Since(readAt) >= c.opts.LeaseTTL
	writes := make([]casWrite, 0, len(toLoad))
	results := make([]result[T], 0, len(toLoad))
	var encErr error
	var unencodable []string
	for _, k := range toLoad {
		v, ok := loaded[k]
		w := casWrite{rk: c.key(k), key: k}
		if ok {
			out[k] = v
			w.ttl = c.ttl(0)
			var err error
			if w.entry, err = c.valueEntry(k, v, w.ttl, d); err != nil {
				encErr = errors.Join(encErr, err)
				unencodable = append(unencodable, k)
				results = append(results, result[T]{k, nil, err})
				continue
			}
			w.ttl = c.hard(w.ttl)
			results = append(results, result[T]{k, &flight[T]{v: v, entry: w.entry}, nil})
		} else {
			w.entry, w.ttl = tombstoneEntry, jitter(c.opts.NotFoundTTL, c.opts.Jitter)
			results = append(results, result[T]{k, nil, notFoundErr(k, ErrNotFound)})
		}
		l, leased := leases[k]
		switch {
		case !leased || l.cached != nil:
		case tooLate:
			c.event(ctx, EventStaleWriteRefused, k, nil, 0)
		default:
			w.expect = l.token
			writes = append(writes, w)
		}
	}
	c.writeMany(ctx, writes)
	// After the writes, so that a caller that finds no flight to join
	// finds the value in Redis.
	for _, r := range results {
		b.finish(r.key, r.f, r.err)
	}
	if encErr != nil {
		// As GetOrLoad does: let waiting processes load at once instead of
		// waiting out LockWait.
		c.releaseMany(ctx, unencodable, leases)
		return encErr
	}
	return nil
}

// result is the outcome of one key of a batch load.
type result[T any] struct {
	key string
	f   *flight[T]
	err error
}

// fromBatchEntry takes an entry another loader cached into out and returns
// it as a flight for the callers of this process that wait for the key (nil
// for a tombstone).
func (c *Cache[T]) fromBatchEntry(ctx context.Context, key string, entry []byte, out map[string]T) (*flight[T], error) {
	if _, err := c.take(ctx, key, entry, out); err != nil {
		return nil, err
	}
	v, ok := out[key]
	if !ok {
		return nil, nil // a tombstone
	}
	return &flight[T]{v: v, entry: entry}, nil
}

func isTombstone(entry []byte) bool { return len(entry) > 0 && entry[0] == kindTombstone }

func tombstoneIfNil[T any](f *flight[T], key string) error {
	if f == nil {
		return tombstoneErr(key)
	}
	return nil
}

// waitForLoads waits, with Lock, for the keys whose lease (in leases)
// another process holds, all at once, each for up to LockWait (see
// waitForLoad), and returns what each wait ended with.
func (c *Cache[T]) waitForLoads(ctx context.Context, keys []string, leases map[string]lease) map[string]lease {
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := make(map[string]lease, len(keys))
	for _, k := range keys {
		l := leases[k]
		wg.Go(func() {
			nl, err := c.waitForLoad(ctx, k, c.key(k), l)
			if err != nil {
				nl = l // the caller's context ended: it loads under l
			}
			mu.Lock()
			out[k] = nl
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
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
	if e.softExpired(time.Now()) { // kept only for StaleIfError: a miss here
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
		calls[i] = scriptCall{key: w.rk, args: []any{w.expect, w.entry, w.ttl.Milliseconds(), c.channel, c.message(w.rk)}}
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
		if c.near != nil {
			// The other instances drop it on the script's message; this
			// one reads it again (GetManyOrLoad does not use the tier).
			c.near.drop(writes[i].rk)
		}
	}
}

// releaseMany releases the leases this call owns after a failed load.
func (c *Cache[T]) releaseMany(ctx context.Context, keys []string, leases map[string]lease) {
	var calls []scriptCall
	for _, k := range keys {
		if l := leases[k]; l.own {
			calls = append(calls, scriptCall{key: c.key(k), args: []any{l.token, c.channel, c.message(c.key(k))}})
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
