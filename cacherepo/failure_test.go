package cacherepo_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/polystore/polystore/cacherepo"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// unresponsiveRedis returns the address of a TCP server that accepts
// connections and never answers: a Redis that hangs.
func unresponsiveRedis(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// brokenClients are clients of a Redis that fails in each way the Cache must
// survive.
func brokenClients(t *testing.T) map[string]*redis.Client {
	t.Helper()
	newClient := func(addr string) *redis.Client {
		c := redis.NewClient(&redis.Options{
			Addr: addr,
			// Without it go-redis ignores context deadlines on reads and waits
			// ReadTimeout (3s) for a hung server.
			ContextTimeoutEnabled: true,
			MaxRetries:            -1,
		})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	return map[string]*redis.Client{
		"closed port":         newClient("127.0.0.1:1"),
		"unresponsive server": newClient(unresponsiveRedis(t)),
	}
}

func TestCache_GetOrLoad_RedisDownServesFromLoader(t *testing.T) {
	t.Parallel()
	for name, client := range brokenClients(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var evs events
			c, err := cacherepo.New[user](client, cacherepo.Options{Timeout: 100 * time.Millisecond, OnEvent: evs.record})
			require.NoError(t, err)
			l := &counter[user]{value: user{ID: 1, Name: "Ada"}}

			got, err := c.GetOrLoad(context.Background(), "1", l.load)
			require.NoError(t, err, "fail open: the caller never sees the Redis error")
			assert.Equal(t, user{ID: 1, Name: "Ada"}, got)
			assert.Equal(t, int64(1), l.calls.Load())

			redisErrs := evs.of(cacherepo.EventRedisError)
			require.NotEmpty(t, redisErrs, "the Redis error goes to the hook")
			assert.Equal(t, "1", redisErrs[0].Key)
			assert.Error(t, redisErrs[0].Err)
			assert.Equal(t, uint64(len(redisErrs)), c.Stats().RedisErrors)
		})
	}
}

func TestCache_GetOrLoad_RedisDownReturnsLoaderErrors(t *testing.T) {
	t.Parallel()
	for name, client := range brokenClients(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := cacherepo.New[user](client, cacherepo.Options{Timeout: 100 * time.Millisecond})
			require.NoError(t, err)
			_, err = c.GetOrLoad(context.Background(), "1", (&counter[user]{err: cacherepo.ErrNotFound}).load)
			assert.ErrorIs(t, err, cacherepo.ErrNotFound)
			boom := errors.New("database down too")
			_, err = c.GetOrLoad(context.Background(), "1", (&counter[user]{err: boom}).load)
			assert.ErrorIs(t, err, boom)
		})
	}
}

func TestCache_GetManyOrLoad_RedisDownServesFromLoader(t *testing.T) {
	t.Parallel()
	for name, client := range brokenClients(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := cacherepo.New[int](client, cacherepo.Options{Timeout: 100 * time.Millisecond})
			require.NoError(t, err)
			got, err := c.GetManyOrLoad(context.Background(), []string{"a", "bb"}, func(_ context.Context, missing []string) (map[string]int, error) {
				out := map[string]int{}
				for _, k := range missing {
					out[k] = len(k)
				}
				return out, nil
			})
			require.NoError(t, err)
			assert.Equal(t, map[string]int{"a": 1, "bb": 2}, got)
			assert.NotZero(t, c.Stats().RedisErrors)
		})
	}
}

func TestCache_Strict_RedisDownReturnsErrRedis(t *testing.T) {
	t.Parallel()
	for name, client := range brokenClients(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c, err := cacherepo.New[user](client, cacherepo.Options{Timeout: 100 * time.Millisecond, Strict: true})
			require.NoError(t, err)
			l := &counter[user]{value: user{ID: 1}}

			_, err = c.GetOrLoad(ctx, "1", l.load)
			assert.ErrorIs(t, err, cacherepo.ErrRedis)
			_, err = c.GetManyOrLoad(ctx, []string{"1"}, func(context.Context, []string) (map[string]user, error) {
				return map[string]user{"1": {ID: 1}}, nil
			})
			assert.ErrorIs(t, err, cacherepo.ErrRedis)
			assert.Zero(t, l.calls.Load())
		})
	}
}

func TestCache_PlainOperations_RedisDownReturnErrRedis(t *testing.T) {
	t.Parallel()
	for name, client := range brokenClients(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c, err := cacherepo.New[int](client, cacherepo.Options{Timeout: 100 * time.Millisecond})
			require.NoError(t, err)
			_, err = c.Get(ctx, "k")
			assert.ErrorIs(t, err, cacherepo.ErrRedis)
			assert.ErrorIs(t, c.Set(ctx, "k", 1, 0), cacherepo.ErrRedis)
			assert.ErrorIs(t, c.Delete(ctx, "k"), cacherepo.ErrRedis)
			assert.ErrorIs(t, c.Invalidate(ctx, "k"), cacherepo.ErrRedis)
			_, err = c.GetMany(ctx, []string{"k"})
			assert.ErrorIs(t, err, cacherepo.ErrRedis)
			assert.ErrorIs(t, c.SetMany(ctx, map[string]int{"k": 1}, 0), cacherepo.ErrRedis)
		})
	}
}

func TestCache_Timeout_ErrorKeepsDriverErrorReachable(t *testing.T) {
	t.Parallel()
	client := brokenClients(t)["unresponsive server"]
	c, err := cacherepo.New[int](client, cacherepo.Options{Timeout: 50 * time.Millisecond})
	require.NoError(t, err)
	_, err = c.Get(context.Background(), "k")
	assert.ErrorIs(t, err, cacherepo.ErrRedis)
	var netErr net.Error
	require.ErrorAs(t, err, &netErr, "the deadline reaches the socket read")
	assert.True(t, netErr.Timeout())
}
