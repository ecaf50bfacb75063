package cacherepo_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/polystore/polystore/cacherepo"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var errDatabaseDown = errors.New("database down")

// failing is a loader that fails as a database that is down would.
func failing(context.Context) (user, error) { return user{}, errDatabaseDown }

// softExpired waits until key's value is past its fresh TTL: Get no longer
// serves it.
func softExpired(t *testing.T, c *cacherepo.Cache[user], key string) {
	t.Helper()
	eventually(t, "the soft expiry of "+key, func() bool {
		_, err := c.Get(context.Background(), key)
		return errors.Is(err, cacherepo.ErrMiss)
	})
}

func TestCache_StaleIfError_ServesStaleValueWhenLoaderFailsAfterSoftExpiry(t *testing.T) {
	t.Parallel()
	var evs events
	c, client, prefix := newCache[user](t, cacherepo.Options{TTL: 50 * time.Millisecond, Jitter: -1, StaleIfError: time.Hour, OnEvent: evs.record})
	ctx := context.Background()
	v1 := user{ID: 1, Name: "Ada"}
	_, err := c.GetOrLoad(ctx, "u1", (&counter[user]{value: v1}).load)
	require.NoError(t, err)
	softExpired(t, c, "u1")
	require.Greater(t, client.PTTL(ctx, prefix+"u1").Val(), time.Minute, "the value is kept in Redis past its fresh TTL")
	gm, err := c.GetMany(ctx, []string{"u1"})
	require.NoError(t, err)
	assert.Empty(t, gm, "GetMany does not serve a value past its fresh TTL")

	u, err := c.GetOrLoad(ctx, "u1", failing)
	require.NoError(t, err, "the stale value is served instead of the loader's error")
	assert.Equal(t, v1, u)
	served := evs.of(cacherepo.EventStaleServed)
	require.Len(t, served, 1)
	assert.Equal(t, "u1", served[0].Key)
	assert.ErrorIs(t, served[0].Err, errDatabaseDown, "the event carries the loader's error")
	assert.EqualValues(t, 1, c.Stats().StaleServed)
	assert.EqualValues(t, 1, c.Stats().LoadErrors)

	// A load that succeeds replaces it, and is fresh again (a hit).
	v2 := user{ID: 1, Name: "Ada Lovelace"}
	l := &counter[user]{value: v2}
	u, err = c.GetOrLoad(ctx, "u1", l.load)
	require.NoError(t, err)
	assert.Equal(t, v2, u)
	u, err = c.GetOrLoad(ctx, "u1", l.load)
	require.NoError(t, err)
	assert.Equal(t, v2, u)
	assert.EqualValues(t, 1, l.calls.Load(), "the fresh value is a hit")
	assert.Len(t, evs.of(cacherepo.EventStaleServed), 1)
}

func TestCache_StaleIfError_NotServedAfterHardExpiry(t *testing.T) {
	t.Parallel()
	var evs events
	c, client, prefix := newCache[user](t, cacherepo.Options{TTL: 50 * time.Millisecond, Jitter: -1, StaleIfError: 50 * time.Millisecond, OnEvent: evs.record})
	ctx := context.Background()
	_, err := c.GetOrLoad(ctx, "u1", (&counter[user]{value: user{ID: 1}}).load)
	require.NoError(t, err)
	eventually(t, "the hard expiry", func() bool { return client.Exists(ctx, prefix+"u1").Val() == 0 })

	_, err = c.GetOrLoad(ctx, "u1", failing)
	assert.ErrorIs(t, err, errDatabaseDown, "past the maximum staleness the loader's error is returned")
	assert.Empty(t, evs.of(cacherepo.EventStaleServed))
}

func TestCache_StaleIfError_InvalidateRemovesTheStaleValue(t *testing.T) {
	t.Parallel()
	var evs events
	c, _, _ := newCache[user](t, cacherepo.Options{TTL: 50 * time.Millisecond, Jitter: -1, StaleIfError: time.Hour, OnEvent: evs.record})
	ctx := context.Background()
	_, err := c.GetOrLoad(ctx, "u1", (&counter[user]{value: user{ID: 1}}).load)
	require.NoError(t, err)
	softExpired(t, c, "u1")
	require.NoError(t, c.Invalidate(ctx, "u1"))

	_, err = c.GetOrLoad(ctx, "u1", failing)
	assert.ErrorIs(t, err, errDatabaseDown, "no stale value after Invalidate")
	assert.Empty(t, evs.of(cacherepo.EventStaleServed))
}

func TestCache_StaleIfError_KeepsTombstonesAndTheStaleSetGuarantee(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("a not-found load after the soft expiry caches a tombstone", func(t *testing.T) {
		t.Parallel()
		c, _, _ := newCache[user](t, cacherepo.Options{TTL: 50 * time.Millisecond, Jitter: -1, StaleIfError: time.Hour})
		_, err := c.GetOrLoad(ctx, "u1", (&counter[user]{value: user{ID: 1}}).load)
		require.NoError(t, err)
		softExpired(t, c, "u1")
		_, err = c.GetOrLoad(ctx, "u1", (&counter[user]{err: cacherepo.ErrNotFound}).load)
		require.ErrorIs(t, err, cacherepo.ErrNotFound, "deleted in the database: not found, not stale")
		_, err = c.GetOrLoad(ctx, "u1", failing)
		assert.ErrorIs(t, err, cacherepo.ErrNotFound, "the tombstone is served, never the old value")
		assert.Zero(t, c.Stats().StaleServed)
	})

	t.Run("an Invalidate during the reload refuses its write", func(t *testing.T) {
		t.Parallel()
		c, _, _ := newCache[user](t, cacherepo.Options{TTL: 50 * time.Millisecond, Jitter: -1, StaleIfError: time.Hour})
		_, err := c.GetOrLoad(ctx, "u1", (&counter[user]{value: user{ID: 1}}).load)
		require.NoError(t, err)
		softExpired(t, c, "u1")
		u, err := c.GetOrLoad(ctx, "u1", func(ctx context.Context) (user, error) {
			require.NoError(t, c.Invalidate(ctx, "u1"))
			return user{ID: 1, Name: "loaded before the invalidation"}, nil
		})
		require.NoError(t, err)
		assert.Equal(t, "loaded before the invalidation", u.Name)
		assert.EqualValues(t, 1, c.Stats().StaleWritesRefused)
		_, err = c.Get(ctx, "u1")
		assert.ErrorIs(t, err, cacherepo.ErrMiss, "neither the stale value nor the refused load is cached")
	})
}

func TestNew_StaleIfErrorOutOfRangeOrWithLockIsInvalid(t *testing.T) {
	t.Parallel()
	client, _ := servicetest.Redis(t)
	for name, o := range map[string]cacherepo.Options{
		"negative":  {StaleIfError: -time.Second},
		"under 1ms": {StaleIfError: time.Microsecond},
		"with Lock": {StaleIfError: time.Minute, Lock: true},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := cacherepo.New[user](client, o)
			assert.ErrorIs(t, err, cacherepo.ErrInvalidOptions)
		})
	}
}

func TestCache_StaleIfError_ServedToEveryCallerOfALoadThatTimesOut(t *testing.T) {
	t.Parallel()
	c, _, _ := newCache[user](t, cacherepo.Options{TTL: 50 * time.Millisecond, Jitter: -1, StaleIfError: time.Hour})
	ctx := context.Background()
	v1 := user{ID: 1, Name: "Ada"}
	_, err := c.GetOrLoad(ctx, "u1", (&counter[user]{value: v1}).load)
	require.NoError(t, err)
	softExpired(t, c, "u1")

	release := make(chan struct{})
	timingOut := func(context.Context) (user, error) {
		<-release
		return user{}, context.DeadlineExceeded // as a database query past its deadline
	}
	const callers = 5
	var wg sync.WaitGroup
	got := make([]user, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() { got[i], errs[i] = c.GetOrLoad(ctx, "u1", timingOut) })
	}
	close(release)
	wg.Wait()
	for i := range callers {
		assert.NoError(t, errs[i], "caller %d", i)
		assert.Equal(t, v1, got[i], "caller %d", i)
	}
	assert.EqualValues(t, callers, c.Stats().StaleServed, "one event per caller served stale")
}
