package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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

// switchableRedis is a client of the test's Redis whose new connections are
// refused while down is set, and which counts the commands it is asked to
// send, whether they reach Redis or not.
func switchableRedis(t *testing.T) (client *redis.Client, prefix string, down *atomic.Bool, commands *atomic.Int64) {
	t.Helper()
	base, prefix := servicetest.Redis(t)
	down, commands = &atomic.Bool{}, &atomic.Int64{}
	opts := *base.Options()
	opts.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if down.Load() {
			return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused (test)")}
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	opts.MaxRetries = -1
	opts.DialerRetries = 1
	client = redis.NewClient(&opts)
	client.AddHook(countingHook{commands})
	t.Cleanup(func() { _ = client.Close() })
	return client, prefix, down, commands
}

type countingHook struct{ n *atomic.Int64 }

func (h countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func TestRateLimiter_RedisDown_OpensItsBreakerAndAllowsWithoutCallingRedisUntilItAnswers(t *testing.T) {
	client, prefix, down, commands := switchableRedis(t)
	var mu sync.Mutex
	var changes []string
	l := redisstore.NewRateLimiterWithOptions(client, prefix, redisstore.RateLimiterOptions{
		Rate: 1, Burst: 3, Cooldown: 50 * time.Millisecond,
		OnStateChange: func(from, to redisstore.BreakerState, err error) {
			mu.Lock()
			defer mu.Unlock()
			changes = append(changes, fmt.Sprintf("%s->%s error=%t", from, to, err != nil))
		},
	})
	ctx := context.Background()
	clientA := "client-" + prefix
	assert.Equal(t, redisstore.BreakerClosed, l.State())

	down.Store(true)
	_, _, err := l.Allow(ctx, clientA)
	require.Error(t, err, "the first call finds Redis down")
	assert.Equal(t, redisstore.BreakerOpen, l.State())
	sent := commands.Load()
	for i := range 20 {
		ok, _, err := l.Allow(ctx, clientA)
		require.NoError(t, err, "request %d", i+1)
		assert.True(t, ok, "request %d is let through, beyond the burst", i+1)
	}
	assert.Equal(t, sent, commands.Load(), "no command is sent while the breaker is open")

	// After the cool-down one request probes; Redis still down, it opens
	// again.
	time.Sleep(100 * time.Millisecond) // past the cool-down; nothing timed is asserted
	_, _, err = l.Allow(ctx, clientA)
	require.Error(t, err, "the probe finds Redis still down")
	assert.Equal(t, sent+1, commands.Load(), "one probe")
	assert.Equal(t, redisstore.BreakerOpen, l.State())

	// Redis answers again: the next probe closes the breaker and the
	// limit holds once more.
	down.Store(false)
	time.Sleep(100 * time.Millisecond)
	for i := range 3 {
		ok, _, err := l.Allow(ctx, clientA)
		require.NoError(t, err)
		assert.True(t, ok, "request %d is within the burst", i+1)
	}
	assert.Equal(t, redisstore.BreakerClosed, l.State())
	ok, _, err := l.Allow(ctx, clientA)
	require.NoError(t, err)
	assert.False(t, ok, "counted again: the request after the burst is refused")

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{
		"closed->open error=true",
		"open->half_open error=false",
		"half_open->open error=true",
		"open->half_open error=false",
		"half_open->closed error=false",
	}, changes)
}

func TestRateLimiter_CanceledRequest_DoesNotOpenTheBreaker(t *testing.T) {
	client, prefix, down, _ := switchableRedis(t)
	down.Store(true)
	l := redisstore.NewRateLimiter(client, prefix, 1, 3)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := l.Allow(ctx, "client-"+prefix)
	require.Error(t, err)
	assert.Equal(t, redisstore.BreakerClosed, l.State(), "a request that ended says nothing about Redis")
}
