package cacherepo_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/polystore/polystore/cacherepo"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// defaultClients are clients built with go-redis's defaults only (no
// ContextTimeoutEnabled, 5 dial tries, 3 command retries) of a Redis that
// hangs and of one that refuses connections. Alone, such a client takes
// about 5s per call on the first and about 1.7s on the second.
func defaultClients(t *testing.T) map[string]redis.UniversalClient {
	t.Helper()
	hung := unresponsiveRedis(t)
	clients := map[string]redis.UniversalClient{
		"single node, unresponsive server": redis.NewClient(&redis.Options{Addr: hung}),
		"single node, closed port":         redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}),
		"cluster, unresponsive server":     redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{hung}}),
		"cluster, closed port":             redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}}),
	}
	for _, c := range clients {
		t.Cleanup(func() { _ = c.Close() })
	}
	return clients
}

// A bound far above Timeout (150ms) and far below what the client alone
// takes on a hung server (5s): no race with a busy machine either way.
const generousBound = 2500 * time.Millisecond

func TestCache_Timeout_BoundsEveryCallOfAClientWithDefaultOptions(t *testing.T) {
	t.Parallel()
	for name, client := range defaultClients(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			var evs events
			c, err := cacherepo.New[string](client, cacherepo.Options{Timeout: 150 * time.Millisecond, OnEvent: evs.record})
			require.NoError(t, err, "a client without ContextTimeoutEnabled is accepted")

			for i := range 2 {
				start := time.Now()
				v, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "from the loader", nil })
				took := time.Since(start)
				require.NoError(t, err, "fail open")
				assert.Equal(t, "from the loader", v)
				assert.Less(t, took, generousBound, "GetOrLoad %d returned within Timeout, not the client's own bounds", i)
			}
			redisErrs := evs.of(cacherepo.EventRedisError)
			require.Len(t, redisErrs, 2, "one failed GET per call, no write after it")

			calls := map[string]func() error{
				"Get":        func() error { _, err := c.Get(ctx, "k"); return err },
				"Set":        func() error { return c.Set(ctx, "k", "v", 0) },
				"Delete":     func() error { return c.Delete(ctx, "k", "l") },
				"GetMany":    func() error { _, err := c.GetMany(ctx, []string{"k", "l"}); return err },
				"SetMany":    func() error { return c.SetMany(ctx, map[string]string{"k": "v", "l": "w"}, 0) },
				"Invalidate": func() error { return c.Invalidate(ctx, "k") },
			}
			for op, f := range calls {
				start := time.Now()
				err := f()
				took := time.Since(start)
				assert.ErrorIs(t, err, cacherepo.ErrRedis, op)
				assert.Less(t, took, generousBound, op)
			}
		})
	}
}

func TestCache_Timeout_DetachedCallsDoNotPileUp(t *testing.T) {
	// Not parallel: it counts the process's goroutines.
	client := redis.NewClient(&redis.Options{Addr: unresponsiveRedis(t), PoolSize: 4})
	t.Cleanup(func() { _ = client.Close() })
	c, err := cacherepo.New[string](client, cacherepo.Options{Timeout: 20 * time.Millisecond})
	require.NoError(t, err)
	before := runtime.NumGoroutine()
	for range 40 {
		_, err := c.Get(context.Background(), "k")
		require.ErrorIs(t, err, cacherepo.ErrRedis)
		require.True(t, errors.Is(err, context.DeadlineExceeded), "the Timeout ended the wait: %v", err)
	}
	// Each call that timed out left its command to the client: at most
	// PoolSize of them hold a connection until the client's ReadTimeout;
	// the others gave up waiting for one when their context ended.
	assert.LessOrEqual(t, runtime.NumGoroutine()-before, 4+8,
		"goroutines left behind by 40 timed-out calls with PoolSize 4")
}

func TestCache_Timeout_HealthyClusterWithDefaultOptionsServesAsUsual(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _, _ := newClusterCache[int](t, cacherepo.Options{Timeout: 5 * time.Second})
	keys := []string{"a", "b", "c", "d", "e", "f"}
	load := func(_ context.Context, missing []string) (map[string]int, error) {
		out := map[string]int{}
		for _, k := range missing {
			out[k] = len(k)
		}
		return out, nil
	}
	for range 2 {
		got, err := c.GetManyOrLoad(ctx, keys, load)
		require.NoError(t, err)
		assert.Len(t, got, len(keys))
	}
	v, err := c.GetOrLoad(ctx, "g", func(context.Context) (int, error) { return 7, nil })
	require.NoError(t, err)
	assert.Equal(t, 7, v)
	assertNoRedisErrors(t, c.Stats())
	assert.Equal(t, uint64(len(keys)), c.Stats().Hits, "the second GetManyOrLoad was all hits")
}
