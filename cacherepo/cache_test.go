package cacherepo_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/polystore/polystore/cacherepo"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNew_InvalidOptionsReturnErrInvalidOptions(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = client.Close() })
	tests := []struct {
		name   string
		client redis.UniversalClient
		opts   cacherepo.Options
	}{
		{"nil client", nil, cacherepo.Options{}},
		{"typed nil *redis.Client", (*redis.Client)(nil), cacherepo.Options{}},
		{"typed nil *redis.ClusterClient", (*redis.ClusterClient)(nil), cacherepo.Options{}},
		{"typed nil *redis.Ring", (*redis.Ring)(nil), cacherepo.Options{}},
		{"negative TTL", client, cacherepo.Options{TTL: -time.Second}},
		{"TTL under 1ms", client, cacherepo.Options{TTL: time.Microsecond}},
		{"negative NotFoundTTL", client, cacherepo.Options{NotFoundTTL: -1}},
		{"NotFoundTTL under 1ms", client, cacherepo.Options{NotFoundTTL: 999 * time.Microsecond}},
		{"negative Timeout", client, cacherepo.Options{Timeout: -1}},
		{"negative LockWait", client, cacherepo.Options{LockWait: -1}},
		{"negative LeaseTTL", client, cacherepo.Options{LeaseTTL: -1}},
		{"LeaseTTL under 1ms", client, cacherepo.Options{LeaseTTL: time.Microsecond}},
		{"Jitter above 0.9", client, cacherepo.Options{Jitter: 1}},
		{"Jitter NaN", client, cacherepo.Options{Jitter: math.NaN()}},
		{"Jitter -Inf", client, cacherepo.Options{Jitter: math.Inf(-1)}},
		{"negative EarlyRefresh", client, cacherepo.Options{EarlyRefresh: -1}},
		{"EarlyRefresh NaN", client, cacherepo.Options{EarlyRefresh: math.NaN()}},
		{"EarlyRefresh +Inf", client, cacherepo.Options{EarlyRefresh: math.Inf(1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := cacherepo.New[string](tt.client, tt.opts)
			assert.ErrorIs(t, err, cacherepo.ErrInvalidOptions)
			assert.ErrorIs(t, err, cacherepo.ErrInvalid)
			assert.Nil(t, c)
		})
	}
}

func TestNew_ZeroAndDocumentedValuesAreAccepted(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = client.Close() })
	for name, opts := range map[string]cacherepo.Options{
		"zero value (every default)":  {},
		"negative Jitter disables it": {Jitter: -1},
		"Jitter at its 0.9 maximum":   {Jitter: 0.9},
		"every lifetime at 1ms":       {TTL: time.Millisecond, NotFoundTTL: time.Millisecond, LeaseTTL: time.Millisecond},
		"any namespace":               {Namespace: "{tag}:\x00 é"},
	} {
		_, err := cacherepo.New[string](client, opts)
		assert.NoError(t, err, name)
	}
}

func TestCache_Get_MissingKeyReturnsErrMiss(t *testing.T) {
	t.Parallel()
	c, _, _ := newCache[user](t, cacherepo.Options{})
	_, err := c.Get(context.Background(), "nobody")
	assert.ErrorIs(t, err, cacherepo.ErrMiss)
}

func TestCache_SetGetDelete_RoundTripUnderNamespace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, client, prefix := newCache[user](t, cacherepo.Options{Namespace: "users:"})

	require.NoError(t, c.Set(ctx, "1", user{ID: 1, Name: "Ada"}, 0))
	got, err := c.Get(ctx, "1")
	require.NoError(t, err)
	assert.Equal(t, user{ID: 1, Name: "Ada"}, got)

	n, err := client.Exists(ctx, prefix+"users:1").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "the Redis key is Namespace+key")

	require.NoError(t, c.Delete(ctx, "1"))
	_, err = c.Get(ctx, "1")
	assert.ErrorIs(t, err, cacherepo.ErrMiss)
}

func TestCache_Set_ExplicitTTLIsUsed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, client, prefix := newCache[string](t, cacherepo.Options{Jitter: -1})
	require.NoError(t, c.Set(ctx, "k", "v", 5*time.Minute))
	pttl, err := client.PTTL(ctx, prefix+"k").Result()
	require.NoError(t, err)
	assert.InDelta(t, float64(5*time.Minute), float64(pttl), float64(time.Second))
}

func TestCache_Set_JitteredTTLsSpreadOverConfiguredRange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ttl, jitter, n = 100 * time.Second, 0.2, 200
	c, client, prefix := newCache[int](t, cacherepo.Options{TTL: ttl, Jitter: jitter})
	items := make(map[string]int, n)
	for i := range n {
		items[fmt.Sprint(i)] = i
	}
	require.NoError(t, c.SetMany(ctx, items, 0))

	lo, hi := time.Duration(float64(ttl)*(1-jitter)), time.Duration(float64(ttl)*(1+jitter))
	minTTL, maxTTL := hi, lo
	for i := range n {
		pttl, err := client.PTTL(ctx, prefix+fmt.Sprint(i)).Result()
		require.NoError(t, err)
		assert.GreaterOrEqual(t, pttl, lo-time.Second, "key %d", i)
		assert.LessOrEqual(t, pttl, hi, "key %d", i)
		minTTL, maxTTL = min(minTTL, pttl), max(maxTTL, pttl)
	}
	// 200 uniform draws: each outer quarter of the range is hit with
	// probability 1 − 0.75^200 (about 1 − 1e-25).
	assert.Less(t, minTTL, ttl-time.Duration(float64(ttl)*jitter/2), "smallest TTL")
	assert.Greater(t, maxTTL, ttl+time.Duration(float64(ttl)*jitter/2), "largest TTL")
}

func TestCache_Set_NegativeJitterDisablesIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, client, prefix := newCache[int](t, cacherepo.Options{TTL: 100 * time.Second, Jitter: -1})
	for i := range 20 {
		require.NoError(t, c.Set(ctx, fmt.Sprint(i), i, 0))
		pttl, err := client.PTTL(ctx, prefix+fmt.Sprint(i)).Result()
		require.NoError(t, err)
		assert.InDelta(t, float64(100*time.Second), float64(pttl), float64(time.Second))
	}
}

func TestCache_GetMany_ReturnsCachedValuesOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		client func(t *testing.T) redis.UniversalClient
	}{
		{"client MGET", func(t *testing.T) redis.UniversalClient { c, _ := servicetest.Redis(t); return c }},
		{"ring pipeline", ringClient},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, prefix := servicetest.Redis(t) // for its namespace and cleanup
			c, err := cacherepo.New[user](tt.client(t), cacherepo.Options{Namespace: prefix})
			require.NoError(t, err)
			require.NoError(t, c.SetMany(ctx, map[string]user{"1": {1, "Ada"}, "2": {2, "Alan"}}, 0))

			got, err := c.GetMany(ctx, []string{"1", "2", "3"})
			require.NoError(t, err)
			assert.Equal(t, map[string]user{"1": {1, "Ada"}, "2": {2, "Alan"}}, got)

			require.NoError(t, c.Delete(ctx, "1", "2"))
			got, err = c.GetMany(ctx, []string{"1", "2"})
			require.NoError(t, err)
			assert.Empty(t, got)
		})
	}
}

// ringClient returns a one-shard Ring: a sharding client, so the Cache must
// use pipelines rather than multi-key commands, as on Cluster.
func ringClient(t *testing.T) redis.UniversalClient {
	opts, err := redis.ParseURL(servicetest.RedisURL(t))
	require.NoError(t, err)
	r := redis.NewRing(&redis.RingOptions{
		Addrs:    map[string]string{"one": opts.Addr},
		Username: opts.Username, Password: opts.Password, DB: opts.DB,
	})
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// reverseCodec is a Codec that is not JSON: it stores strings reversed.
type reverseCodec struct{}

func (reverseCodec) Marshal(v any) ([]byte, error) {
	s, ok := v.(string)
	if !ok {
		return nil, errors.New("reverseCodec: not a string")
	}
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return b, nil
}

func (reverseCodec) Unmarshal(data []byte, v any) error {
	p, ok := v.(*string)
	if !ok {
		return errors.New("reverseCodec: not a *string")
	}
	b := []byte(string(data))
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	*p = string(b)
	return nil
}

func TestCache_Codec_IsPluggable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, client, prefix := newCache[string](t, cacherepo.Options{Codec: reverseCodec{}})
	require.NoError(t, c.Set(ctx, "k", "abc", 0))
	raw, err := client.Get(ctx, prefix+"k").Result()
	require.NoError(t, err)
	assert.Equal(t, "vcba", raw, "one header byte, then the codec's bytes")
	got, err := c.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "abc", got)
}

func TestCache_Set_UnencodableValueReturnsErrCodec(t *testing.T) {
	t.Parallel()
	c, _, _ := newCache[func()](t, cacherepo.Options{})
	err := c.Set(context.Background(), "k", func() {}, 0)
	assert.ErrorIs(t, err, cacherepo.ErrCodec)
	var jsonErr *json.UnsupportedTypeError
	assert.ErrorAs(t, err, &jsonErr, "the codec's error stays reachable")
}

func TestCache_Get_ForeignValueReturnsErrCodec(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, client, prefix := newCache[user](t, cacherepo.Options{})
	require.NoError(t, client.Set(ctx, prefix+"k", `{"id":1}`, time.Minute).Err())
	_, err := c.Get(ctx, "k")
	assert.ErrorIs(t, err, cacherepo.ErrCodec)
}
