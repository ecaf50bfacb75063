package cacherepo_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polystore/polystore/cacherepo"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// commandCounter is a go-redis hook that counts the commands a client
// sends, to check that a refused call did no Redis I/O.
type commandCounter struct{ n atomic.Int64 }

func (h *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

func TestCache_InvalidArgumentsReturnErrInvalidBeforeAnyRedisIO(t *testing.T) {
	t.Parallel()
	c, client, prefix := newCache[string](t, cacherepo.Options{})
	var sent commandCounter
	client.AddHook(&sent)
	ctx := context.Background()
	var nilCtx context.Context // as a caller's unset field would be
	load := func(context.Context) (string, error) { return "v", nil }
	loadMany := func(_ context.Context, missing []string) (map[string]string, error) {
		return map[string]string{"k": "v"}, nil
	}

	tests := []struct {
		name string
		call func() error
	}{
		{"Set with a negative TTL", func() error { return c.Set(ctx, "k", "v", -time.Second) }},
		{"Set with a TTL under 1ms", func() error { return c.Set(ctx, "k", "v", time.Microsecond) }},
		{"Set with an empty key", func() error { return c.Set(ctx, "", "v", 0) }},
		{"Set with a nil context", func() error { return c.Set(nilCtx, "k", "v", 0) }},
		{"SetMany with a negative TTL", func() error { return c.SetMany(ctx, map[string]string{"k": "v"}, -1) }},
		{"SetMany with a TTL under 1ms", func() error { return c.SetMany(ctx, map[string]string{"k": "v"}, time.Nanosecond) }},
		{"SetMany with an empty key", func() error { return c.SetMany(ctx, map[string]string{"k": "v", "": "w"}, 0) }},
		{"SetMany with a nil context", func() error { return c.SetMany(nilCtx, map[string]string{"k": "v"}, 0) }},
		{"Get with an empty key", func() error { _, err := c.Get(ctx, ""); return err }},
		{"Get with a nil context", func() error { _, err := c.Get(nilCtx, "k"); return err }},
		{"GetMany with an empty key", func() error { _, err := c.GetMany(ctx, []string{"k", ""}); return err }},
		{"GetMany with a nil context", func() error { _, err := c.GetMany(nilCtx, []string{"k"}); return err }},
		{"Delete with an empty key", func() error { return c.Delete(ctx, "k", "") }},
		{"Delete with a nil context", func() error { return c.Delete(nilCtx, "k") }},
		{"Invalidate with an empty key", func() error { return c.Invalidate(ctx, "") }},
		{"Invalidate with a nil context", func() error { return c.Invalidate(nilCtx, "k") }},
		{"GetOrLoad with an empty key", func() error { _, err := c.GetOrLoad(ctx, "", load); return err }},
		{"GetOrLoad with a nil loader", func() error { _, err := c.GetOrLoad(ctx, "k", nil); return err }},
		{"GetOrLoad with a nil context", func() error { _, err := c.GetOrLoad(nilCtx, "k", load); return err }},
		{"GetManyOrLoad with an empty key", func() error { _, err := c.GetManyOrLoad(ctx, []string{"k", ""}, loadMany); return err }},
		{"GetManyOrLoad with a nil loader", func() error { _, err := c.GetManyOrLoad(ctx, []string{"k"}, nil); return err }},
		{"GetManyOrLoad with a nil context", func() error { _, err := c.GetManyOrLoad(nilCtx, []string{"k"}, loadMany); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := sent.n.Load()
			var err error
			require.NotPanics(t, func() { err = tt.call() })
			assert.ErrorIs(t, err, cacherepo.ErrInvalid)
			assert.NotErrorIs(t, err, cacherepo.ErrRedis)
			assert.Equal(t, before, sent.n.Load(), "no command sent to Redis")
		})
	}
	n, err := client.Exists(ctx, prefix+"k", prefix).Result()
	require.NoError(t, err)
	assert.Zero(t, n, "nothing was written")
	assert.Equal(t, cacherepo.Stats{}, c.Stats(), "nothing was counted")
}

func TestCache_ZeroTTLMeansOptionsTTLAndEmptyBatchesAreNoOps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, client, prefix := newCache[string](t, cacherepo.Options{TTL: time.Minute, Jitter: -1})
	require.NoError(t, c.Set(ctx, "k", "v", 0))
	require.NoError(t, c.SetMany(ctx, map[string]string{"m": "w"}, 0))
	for _, k := range []string{"k", "m"} {
		pttl, err := client.PTTL(ctx, prefix+k).Result()
		require.NoError(t, err)
		assert.InDelta(t, float64(time.Minute), float64(pttl), float64(5*time.Second), k)
	}
	assert.NoError(t, c.Delete(ctx))
	assert.NoError(t, c.SetMany(ctx, nil, 0))
	got, err := c.GetMany(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, got)
	got, err = c.GetManyOrLoad(ctx, nil, func(context.Context, []string) (map[string]string, error) {
		t.Error("no keys: nothing to load")
		return nil, nil
	})
	require.NoError(t, err)
	assert.Empty(t, got)
}
