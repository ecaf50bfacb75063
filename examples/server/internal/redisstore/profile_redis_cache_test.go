package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/cacherepo"
	"github.com/polystore/polystore/examples/server/internal/chat"
	"github.com/polystore/polystore/examples/server/internal/redisstore"
	"github.com/polystore/polystore/internal/servicetest"
)

// countingLoader returns a loader of u (or of not found when u is nil) and
// a pointer to the number of times it ran.
func countingLoader(u *chat.User) (func(context.Context) (*chat.User, error), *int) {
	var calls int
	return func(context.Context) (*chat.User, error) {
		calls++
		if u == nil {
			return nil, chat.Errorf(chat.CodeNotFound, "user not found")
		}
		c := *u
		return &c, nil
	}, &calls
}

func TestProfileCache_Profile_LoadsOnceThenHits(t *testing.T) {
	client, prefix := servicetest.Redis(t)
	cache, err := redisstore.NewProfileCache(client, prefix, redisstore.ProfileCacheOptions{})
	require.NoError(t, err)
	ctx := context.Background()
	u := &chat.User{ID: uuid.New(), Username: "ada", PasswordHash: "secret-hash", Version: 1}
	load, calls := countingLoader(u)

	for range 3 {
		got, err := cache.Profile(ctx, u.ID, load)
		require.NoError(t, err)
		assert.Equal(t, "ada", got.Username)
	}
	assert.Equal(t, 1, *calls)

	raw, err := client.Get(ctx, prefix+"profile:"+u.ID.String()).Bytes()
	require.NoError(t, err, "the profile is under the prefix")
	assert.NotContains(t, string(raw), "secret-hash", "no password hash in Redis")

	require.NoError(t, cache.Invalidate(ctx, u.ID))
	_, err = cache.Profile(ctx, u.ID, load)
	require.NoError(t, err)
	assert.Equal(t, 2, *calls, "reloaded after Invalidate")
}

func TestProfileCache_Profile_UnknownUserIsCachedNotFound(t *testing.T) {
	client, prefix := servicetest.Redis(t)
	cache, err := redisstore.NewProfileCache(client, prefix, redisstore.ProfileCacheOptions{})
	require.NoError(t, err)
	load, calls := countingLoader(nil)
	id := uuid.New()

	for range 3 {
		_, err := cache.Profile(context.Background(), id, load)
		assert.Equal(t, chat.CodeNotFound, chat.ErrorCode(err))
	}
	assert.Equal(t, 1, *calls, "the tombstone answers the repeats")
}

func TestProfileCache_Profile_RedisDownServesFromLoader(t *testing.T) {
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = down.Close() })
	cache, err := redisstore.NewProfileCache(down, "polystore:test:down:", redisstore.ProfileCacheOptions{})
	require.NoError(t, err)
	u := &chat.User{ID: uuid.New(), Username: "ada"}
	load, calls := countingLoader(u)

	got, err := cache.Profile(context.Background(), u.ID, load)
	require.NoError(t, err)
	assert.Equal(t, "ada", got.Username)
	assert.Equal(t, 1, *calls)
}

func TestProfileCache_Profile_ContextEndingDuringTheReadIsUnavailable(t *testing.T) {
	client, prefix := servicetest.Redis(t)
	cache, err := redisstore.NewProfileCache(client, prefix, redisstore.ProfileCacheOptions{})
	require.NoError(t, err)
	tests := []struct {
		name string
		err  error
	}{
		{"the request's deadline", context.DeadlineExceeded},
		{"the client gone", context.Canceled},
		{"wrapped by the loader", fmt.Errorf("reading the row: %w", context.DeadlineExceeded)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cache.Profile(context.Background(), uuid.New(), func(context.Context) (*chat.User, error) { return nil, tt.err })
			assert.Equal(t, chat.CodeUnavailable, chat.ErrorCode(err))
			assert.ErrorIs(t, err, tt.err)
		})
	}

	_, err = cache.Profile(context.Background(), uuid.New(), func(context.Context) (*chat.User, error) { return nil, errors.New("boom") })
	assert.Equal(t, chat.CodeInternal, chat.ErrorCode(err), "any other unclassified error stays internal")
}

func TestProfileCache_Breaker_OpensOnRedisDownAndShedsLoadsBeyondTheBoundAsUnavailable(t *testing.T) {
	// Nothing listens on port 1. The breaker opens at the first failure,
	// and lets one load run without Redis at a time.
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = client.Close() })
	c, err := redisstore.NewProfileCache(client, "test:", redisstore.ProfileCacheOptions{
		Breaker: &cacherepo.BreakerOptions{Failures: 1, MaxConcurrentLoads: 1},
	})
	require.NoError(t, err)
	assert.Equal(t, "closed", c.BreakerState())

	started, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, err := c.Profile(context.Background(), uuid.New(), func(context.Context) (*chat.User, error) {
			close(started)
			<-release
			return &chat.User{Username: "ada"}, nil
		})
		first <- err
	}()
	<-started // the first load holds the only slot
	assert.Equal(t, "open", c.BreakerState())

	load, calls := countingLoader(&chat.User{Username: "bob"})
	_, err = c.Profile(context.Background(), uuid.New(), load)
	require.Error(t, err)
	assert.Equal(t, chat.CodeUnavailable, chat.ErrorCode(err), "shed: %v", err)
	assert.ErrorIs(t, err, cacherepo.ErrOverloaded)
	assert.Zero(t, *calls, "a shed load does not run")

	close(release)
	require.NoError(t, <-first)
	u, err := c.Profile(context.Background(), uuid.New(), load)
	require.NoError(t, err, "the slot is free again")
	assert.Equal(t, "bob", u.Username)
}
