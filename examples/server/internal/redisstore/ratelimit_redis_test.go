package redisstore_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/examples/server/internal/redisstore"
	"github.com/polystore/polystore/internal/servicetest"
)

func TestRateLimiter_Allow_RefusesAfterBurstAndKeepsKeysUnderPrefix(t *testing.T) {
	client, prefix := servicetest.Redis(t)
	ctx := context.Background()
	l := redisstore.NewRateLimiter(client, prefix, 1, 3)
	clientA := "client-" + prefix // unique to this test, even across runs

	for i := range 3 {
		ok, _, err := l.Allow(ctx, clientA)
		require.NoError(t, err)
		assert.True(t, ok, "request %d is within the burst", i+1)
	}
	ok, retryAfter, err := l.Allow(ctx, clientA)
	require.NoError(t, err)
	assert.False(t, ok, "the request after the burst is refused")
	assert.Positive(t, retryAfter)

	ok, _, err = l.Allow(ctx, clientA+"-b")
	require.NoError(t, err)
	assert.True(t, ok, "another client has its own budget")

	// SCAN the whole server for the two clients' keys: none may have
	// escaped the prefix (redis_rate alone would write "rate:<client>").
	var keys []string
	iter := client.Scan(ctx, 0, "*"+clientA+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	require.NoError(t, iter.Err())
	require.Len(t, keys, 2)
	for _, k := range keys {
		assert.Equal(t, prefix+"ratelimit:", k[:len(prefix)+len("ratelimit:")], "key %q is under the prefix", k)
	}
}
