package cacherepo_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polystore/polystore/cacherepo"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCache_Breaker_OpensAfterConsecutiveFailuresAndStopsCallingRedis(t *testing.T) {
	t.Parallel()
	for name, client := range brokenClients(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var evs events
			c, err := cacherepo.New[user](client, cacherepo.Options{
				Timeout: 100 * time.Millisecond, OnEvent: evs.record,
				Breaker: &cacherepo.BreakerOptions{Failures: 3, CoolDown: time.Hour},
			})
			require.NoError(t, err)
			require.Equal(t, cacherepo.BreakerClosed, c.BreakerState())
			l := &counter[user]{value: user{ID: 1, Name: "Ada"}}
			ctx := context.Background()

			for i := range 3 {
				u, err := c.GetOrLoad(ctx, "u1", l.load)
				require.NoError(t, err, "call %d is served from the loader (fail open)", i)
				assert.Equal(t, l.value, u)
			}
			assert.Equal(t, cacherepo.BreakerOpen, c.BreakerState(), "opens after Failures consecutive failures")
			assert.Len(t, evs.of(cacherepo.EventBreakerOpen), 1)
			redisErrors := c.Stats().RedisErrors
			require.Positive(t, redisErrors)

			for range 20 {
				u, err := c.GetOrLoad(ctx, "u1", l.load)
				require.NoError(t, err)
				assert.Equal(t, l.value, u)
			}
			assert.Equal(t, redisErrors, c.Stats().RedisErrors, "open: Redis is not called, so no new Redis error")
			assert.EqualValues(t, 23, l.calls.Load(), "every call is served from the loader")
			assert.EqualValues(t, 1, c.Stats().BreakerOpens)

			_, err = c.Get(ctx, "u1")
			assert.ErrorIs(t, err, cacherepo.ErrRedis)
			assert.ErrorIs(t, err, cacherepo.ErrBreakerOpen)
			err = c.Invalidate(ctx, "u1")
			assert.ErrorIs(t, err, cacherepo.ErrBreakerOpen, "a write while open is refused at once, not applied")

			strict, err := cacherepo.New[user](client, cacherepo.Options{
				Timeout: 100 * time.Millisecond, Strict: true, Breaker: &cacherepo.BreakerOptions{Failures: 1, CoolDown: time.Hour},
			})
			require.NoError(t, err)
			_, err = strict.GetOrLoad(ctx, "u1", l.load)
			require.ErrorIs(t, err, cacherepo.ErrRedis)
			_, err = strict.GetOrLoad(ctx, "u1", l.load)
			assert.ErrorIs(t, err, cacherepo.ErrBreakerOpen, "Strict returns the breaker's refusal")
		})
	}
}

func TestCache_Breaker_OpenBoundsConcurrentLoads(t *testing.T) {
	t.Parallel()
	client := brokenClients(t)["closed port"]
	var evs events
	c, err := cacherepo.New[user](client, cacherepo.Options{
		OnEvent: evs.record,
		Breaker: &cacherepo.BreakerOptions{Failures: 1, CoolDown: time.Hour, MaxConcurrentLoads: 2},
	})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = c.GetOrLoad(ctx, "trip", (&counter[user]{}).load)
	require.NoError(t, err)
	require.Equal(t, cacherepo.BreakerOpen, c.BreakerState())

	var inFlight, maxInFlight atomic.Int64
	perKey := map[string]*atomic.Int64{"a": {}, "b": {}}
	var keyOverlap atomic.Bool
	release := make(chan struct{})
	blocking := func(key string, id int) func(context.Context) (user, error) {
		return func(context.Context) (user, error) {
			if perKey[key].Add(1) > 1 {
				keyOverlap.Store(true)
			}
			n := inFlight.Add(1)
			for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
			}
			<-release
			inFlight.Add(-1)
			perKey[key].Add(-1)
			return user{ID: id}, nil
		}
	}
	var wg sync.WaitGroup
	results := make([]error, 4)
	for i, key := range []string{"a", "a", "b", "b"} { // two keys, two callers each
		wg.Go(func() {
			u, err := c.GetOrLoad(ctx, key, blocking(key, i))
			results[i] = err
			if err == nil {
				assert.NotZero(t, u.ID+1)
			}
		})
	}
	eventually(t, "two loads in flight", func() bool { return inFlight.Load() == 2 })

	l := &counter[user]{value: user{ID: 9}}
	_, err = c.GetOrLoad(ctx, "c", l.load)
	require.ErrorIs(t, err, cacherepo.ErrOverloaded, "a third key beyond MaxConcurrentLoads fails fast")
	assert.Zero(t, l.calls.Load(), "its loader is not called")
	assert.Len(t, evs.of(cacherepo.EventOverloaded), 1)
	assert.EqualValues(t, 1, c.Stats().Overloaded)

	close(release)
	wg.Wait()
	for i, err := range results {
		assert.NoError(t, err, "caller %d", i)
	}
	assert.False(t, keyOverlap.Load(), "never two loads of one key at once: callers of one key share it")
	assert.EqualValues(t, 2, maxInFlight.Load())

	u, err := c.GetOrLoad(ctx, "c", l.load)
	require.NoError(t, err, "a slot is free again")
	assert.Equal(t, 9, u.ID)
}

// breakableProxy is a TCP proxy to addr that the test can break (every
// connection is closed, new ones are closed at once) and heal.
type breakableProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	broken bool
	conns  map[net.Conn]struct{}
}

func newBreakableProxy(t *testing.T, target string) *breakableProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &breakableProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			p.serve(conn)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		p.setBroken(true)
	})
	return p
}

func (p *breakableProxy) serve(conn net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.broken {
		_ = conn.Close()
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = conn.Close()
		return
	}
	p.conns[conn], p.conns[up] = struct{}{}, struct{}{}
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
	}
	go pipe(up, conn)
	go pipe(conn, up)
}

func (p *breakableProxy) setBroken(broken bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.broken = broken
	if broken {
		for c := range p.conns {
			_ = c.Close()
		}
		clear(p.conns)
	}
}

func TestCache_Breaker_ProbesAndClosesWhenRedisReturns(t *testing.T) {
	t.Parallel()
	_, prefix := servicetest.Redis(t)
	opts, err := redis.ParseURL(servicetest.RedisURL(t))
	require.NoError(t, err)
	proxy := newBreakableProxy(t, opts.Addr)
	opts.Addr = proxy.ln.Addr().String()
	opts.MaxRetries = -1
	opts.ContextTimeoutEnabled = true
	client := redis.NewClient(opts)
	t.Cleanup(func() { _ = client.Close() })

	var evs events
	c, err := cacherepo.New[user](client, cacherepo.Options{
		Namespace: prefix, Timeout: time.Second, OnEvent: evs.record,
		Breaker: &cacherepo.BreakerOptions{Failures: 2, CoolDown: 50 * time.Millisecond},
	})
	require.NoError(t, err)
	ctx := context.Background()
	l := &counter[user]{value: user{ID: 1, Name: "Ada"}}
	_, err = c.GetOrLoad(ctx, "u1", l.load)
	require.NoError(t, err)
	require.Equal(t, cacherepo.BreakerClosed, c.BreakerState())

	proxy.setBroken(true)
	for i := 0; c.BreakerState() != cacherepo.BreakerOpen; i++ {
		require.Less(t, i, 10, "the breaker opens within a few failures")
		_, err := c.GetOrLoad(ctx, fmt.Sprint("k", i), l.load)
		require.NoError(t, err, "served from the loader")
	}
	require.Len(t, evs.of(cacherepo.EventBreakerOpen), 1)

	proxy.setBroken(false)
	eventually(t, "the breaker closes once Redis answers the probe", func() bool {
		_, err := c.GetOrLoad(ctx, "u1", l.load)
		require.NoError(t, err)
		return c.BreakerState() == cacherepo.BreakerClosed
	})
	assert.NotEmpty(t, evs.of(cacherepo.EventBreakerHalfOpen), "the cool-down ends in half-open")
	assert.Len(t, evs.of(cacherepo.EventBreakerClosed), 1)
	s := c.Stats()
	assert.EqualValues(t, 1, s.BreakerCloses)
	assert.Equal(t, s.BreakerHalfOpens, s.BreakerOpens, "every half-open came after an open")

	// Closed again: the cache caches and hits again.
	loads := l.calls.Load()
	_, err = c.GetOrLoad(ctx, "fresh", l.load)
	require.NoError(t, err)
	_, err = c.GetOrLoad(ctx, "fresh", l.load)
	require.NoError(t, err)
	assert.Equal(t, loads+1, l.calls.Load(), "the second call is a hit")
	assert.False(t, errors.Is(nil, cacherepo.ErrBreakerOpen))
}

func TestNew_BreakerOptionsOutOfRangeAreInvalid(t *testing.T) {
	t.Parallel()
	client, _ := servicetest.Redis(t)
	for name, b := range map[string]*cacherepo.BreakerOptions{
		"negative CoolDown":           {CoolDown: -time.Second},
		"CoolDown under 1ms":          {CoolDown: time.Microsecond},
		"negative MaxConcurrentLoads": {MaxConcurrentLoads: -1},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := cacherepo.New[user](client, cacherepo.Options{Breaker: b})
			assert.ErrorIs(t, err, cacherepo.ErrInvalidOptions)
		})
	}
}

func TestCache_Breaker_CallersGivingUpDoNotOpenIt(t *testing.T) {
	t.Parallel()
	client := brokenClients(t)["unresponsive server"]
	c, err := cacherepo.New[user](client, cacherepo.Options{
		Timeout: 10 * time.Second, Breaker: &cacherepo.BreakerOptions{Failures: 1, CoolDown: time.Hour},
	})
	require.NoError(t, err)
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, _ = c.GetOrLoad(ctx, "u1", (&counter[user]{}).load) // ended by the caller's own deadline
		cancel()
	}
	assert.Equal(t, cacherepo.BreakerClosed, c.BreakerState(), "a caller's deadline says nothing about Redis")
}

func TestCache_Breaker_OpenGetManyOrLoadServesFromTheLoaderAndTakesOneSlot(t *testing.T) {
	t.Parallel()
	client := brokenClients(t)["closed port"]
	c, err := cacherepo.New[user](client, cacherepo.Options{
		Breaker: &cacherepo.BreakerOptions{Failures: 1, CoolDown: time.Hour, MaxConcurrentLoads: 1},
	})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = c.GetOrLoad(ctx, "trip", (&counter[user]{}).load)
	require.NoError(t, err)
	require.Equal(t, cacherepo.BreakerOpen, c.BreakerState())

	batch := func(_ context.Context, missing []string) (map[string]user, error) {
		out := map[string]user{}
		for i, k := range missing {
			out[k] = user{ID: i + 1}
		}
		return out, nil
	}
	got, err := c.GetManyOrLoad(ctx, []string{"a", "b"}, batch)
	require.NoError(t, err, "served from the loader while open")
	assert.Len(t, got, 2)

	release, started, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(ctx, "slow", func(context.Context) (user, error) {
			close(started)
			<-release
			return user{}, nil
		})
		done <- err
	}()
	<-started
	_, err = c.GetManyOrLoad(ctx, []string{"c", "d"}, batch)
	assert.ErrorIs(t, err, cacherepo.ErrOverloaded, "the only slot is taken")
	close(release)
	require.NoError(t, <-done)
	got, err = c.GetManyOrLoad(ctx, []string{"c", "d"}, batch)
	require.NoError(t, err, "the slot is free again")
	assert.Len(t, got, 2)
}
