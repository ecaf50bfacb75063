package redisrepo_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/polystore/polystore/redisrepo"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newCounters(t *testing.T, client redis.UniversalClient, prefix string, opts redisrepo.CounterOptions) *redisrepo.Counters {
	t.Helper()
	opts.Prefix = prefix + "cnt:"
	c, err := redisrepo.NewCounters(client, opts)
	require.NoError(t, err)
	return c
}

func TestCounters_Incr_ThousandConcurrentIncrementsEndExact(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts redisrepo.CounterOptions
	}{
		{"no window", redisrepo.CounterOptions{}},
		{"per minute", redisrepo.CounterOptions{Window: redisrepo.Minutely}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
				ctx := context.Background()
				c := newCounters(t, client, prefix, tt.opts).At(time.Now()) // one window even if a minute ends meanwhile
				const n = 1000
				var wg sync.WaitGroup
				results := make([]int64, n)
				for i := range n {
					wg.Go(func() {
						v, err := c.Incr(ctx, "hits", 1)
						assert.NoError(t, err)
						results[i] = v
					})
				}
				wg.Wait()
				got, err := c.Get(ctx, "hits")
				require.NoError(t, err)
				assert.Equal(t, int64(n), got)
				seen := map[int64]bool{}
				for _, v := range results {
					seen[v] = true
				}
				assert.Len(t, seen, n, "every increment got its own count, 1 to 1000")
			})
		})
	}
}

func TestCounters_GetMany_ReadsCountersAcrossSlotsInOrder(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		c := newCounters(t, client, prefix, redisrepo.CounterOptions{})
		var names []string
		var want []int64
		for i := range 40 { // 40 keys without hash tags: every master of the Cluster
			name := fmt.Sprintf("page-%d", i)
			names = append(names, name)
			want = append(want, int64(i*3-7))
			_, err := c.Incr(ctx, name, int64(i*3-7))
			require.NoError(t, err)
		}
		names = append(names, "never")
		want = append(want, 0)

		got, err := c.GetMany(ctx, names...)
		require.NoError(t, err)
		assert.Equal(t, want, got)

		got, err = c.GetMany(ctx)
		require.NoError(t, err)
		assert.Empty(t, got)
		v, err := c.Get(ctx, "never")
		require.NoError(t, err)
		assert.Zero(t, v, "a counter never incremented is 0")
	})
}

func TestCounters_Window_CountsPerWindowWithExpiry(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		c := newCounters(t, client, prefix, redisrepo.CounterOptions{Window: redisrepo.Daily})
		now := time.Now()
		today, yesterday := c.At(now), c.At(now.Add(-24*time.Hour))

		_, err := today.Incr(ctx, "logins", 2)
		require.NoError(t, err)
		_, err = yesterday.Incr(ctx, "logins", 5)
		require.NoError(t, err)
		got, err := today.GetMany(ctx, "logins")
		require.NoError(t, err)
		assert.Equal(t, []int64{2}, got)
		v, err := yesterday.Get(ctx, "logins")
		require.NoError(t, err)
		assert.Equal(t, int64(5), v, "yesterday's count is kept for Retain")

		left := pttl(t, client, today.Key("logins"))
		assert.Greater(t, left, (24 * time.Hour).Milliseconds(), "kept a day after today ends")
		assert.LessOrEqual(t, left, (48 * time.Hour).Milliseconds())
		assert.Equal(t, prefix+"cnt:logins:"+now.UTC().Format("20060102")+"T000000Z", today.Key("logins"), "days start at midnight UTC")

		old := c.At(now.Add(-72 * time.Hour))
		_, err = old.Incr(ctx, "logins", 1)
		require.NoError(t, err)
		v, err = old.Get(ctx, "logins")
		require.NoError(t, err)
		assert.Zero(t, v, "a window past its retention stores nothing")
	})
}

func TestCounters_Window_KeyGoneAfterWindowAndRetention(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		c := newCounters(t, client, prefix, redisrepo.CounterOptions{Window: time.Second, Retain: time.Millisecond}).At(time.Now())
		_, err := c.Incr(ctx, "n", 1)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			v, err := c.Get(ctx, "n")
			return err == nil && v == 0
		}, 5*time.Second, 20*time.Millisecond)
	})
}

func TestCounters_BadArgumentsAndForeignValues(t *testing.T) {
	client, prefix := servicetestRedis(t)
	ctx := context.Background()
	_, err := redisrepo.NewCounters(nil, redisrepo.CounterOptions{})
	assert.ErrorIs(t, err, redisrepo.ErrInvalid, "nil client")
	_, err = redisrepo.NewCounters(client, redisrepo.CounterOptions{Window: -time.Minute})
	assert.ErrorIs(t, err, redisrepo.ErrInvalid, "negative window")
	_, err = redisrepo.NewCounters(client, redisrepo.CounterOptions{Window: 1500 * time.Millisecond})
	assert.ErrorIs(t, err, redisrepo.ErrInvalid, "window not in whole seconds")

	c := newCounters(t, client, prefix, redisrepo.CounterOptions{})
	_, err = c.Incr(ctx, "", 1)
	assert.ErrorIs(t, err, redisrepo.ErrInvalid)
	_, err = c.Get(ctx, "")
	assert.ErrorIs(t, err, redisrepo.ErrInvalid)
	_, err = c.GetMany(ctx, "a", "")
	assert.ErrorIs(t, err, redisrepo.ErrInvalid)

	require.NoError(t, client.Set(ctx, c.Key("text"), "hello", 0).Err())
	_, err = c.Get(ctx, "text")
	assert.ErrorIs(t, err, redisrepo.ErrCodec)
	_, err = c.GetMany(ctx, "text")
	assert.ErrorIs(t, err, redisrepo.ErrCodec)
	_, err = c.Incr(ctx, "text", 1)
	assert.ErrorIs(t, err, redisrepo.ErrRedis, "Redis refuses INCRBY of a string")
	var rerr redis.Error
	assert.ErrorAs(t, err, &rerr, "the go-redis error is reachable")
}
