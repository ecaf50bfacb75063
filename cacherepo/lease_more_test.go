package cacherepo_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/polystore/polystore/cacherepo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCache_GetManyOrLoad_InvalidateDuringLoadRefusesOnlyThatKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _, _ := newCache[string](t, cacherepo.Options{})
	read, release := make(chan struct{}), make(chan struct{})
	done := make(chan map[string]string)
	go func() {
		got, err := c.GetManyOrLoad(ctx, []string{"a", "b"}, func(context.Context, []string) (map[string]string, error) {
			close(read)
			<-release
			return map[string]string{"a": "old a", "b": "b"}, nil
		})
		assert.NoError(t, err)
		done <- got
	}()
	<-read
	require.NoError(t, c.Invalidate(ctx, "a")) // "a" changed in the database
	close(release)
	assert.Equal(t, map[string]string{"a": "old a", "b": "b"}, <-done)

	_, err := c.Get(ctx, "a")
	assert.ErrorIs(t, err, cacherepo.ErrMiss, "the old value of a was not written")
	b, err := c.Get(ctx, "b")
	require.NoError(t, err)
	assert.Equal(t, "b", b)
	assert.Equal(t, uint64(1), c.Stats().StaleWritesRefused)
}

func TestCache_EarlyRefresh_InvalidateDuringRefreshRefusesItsWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _, _ := newCache[string](t, cacherepo.Options{EarlyRefresh: 1e12})
	require.NoError(t, c.Set(ctx, "k", "v1", 0))
	read, release := make(chan struct{}), make(chan struct{})
	done := make(chan string)
	go func() {
		v, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) {
			close(read)
			<-release
			return "v2 read before the write", nil
		})
		assert.NoError(t, err)
		done <- v
	}()
	<-read
	require.NoError(t, c.Invalidate(ctx, "k"))
	close(release)
	<-done
	_, err := c.Get(ctx, "k")
	assert.ErrorIs(t, err, cacherepo.ErrMiss)
	assert.Equal(t, uint64(1), c.Stats().StaleWritesRefused)
}

func TestCache_Get_KeyUnderLoadIsAMiss(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _, _ := newCache[string](t, cacherepo.Options{})
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = c.GetOrLoad(ctx, "k", func(context.Context) (string, error) {
			close(started)
			<-release
			return "v", nil
		})
	}()
	<-started
	_, err := c.Get(ctx, "k")
	assert.ErrorIs(t, err, cacherepo.ErrMiss, "a lease is not a value")
	got, err := c.GetMany(ctx, []string{"k"})
	require.NoError(t, err)
	assert.Empty(t, got)
	close(release)
	<-done
}

func TestCache_Lock_FailedLoadReleasesWaitersAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var waits events
	opts := cacherepo.Options{Lock: true, LockWait: time.Hour}
	c1, _, prefix := newCache[string](t, opts)
	opts.Namespace, opts.OnEvent = prefix, waits.record
	c2, err := cacherepo.New[string](secondClient(t), opts)
	require.NoError(t, err)

	started, release := make(chan struct{}), make(chan struct{})
	boom := errors.New("database down")
	firstErr := make(chan error)
	go func() {
		_, err := c1.GetOrLoad(ctx, "k", func(context.Context) (string, error) {
			close(started)
			<-release
			return "", boom
		})
		firstErr <- err
	}()
	<-started
	second := make(chan string)
	go func() {
		v, err := c2.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "second", nil })
		assert.NoError(t, err)
		second <- v
	}()
	eventually(t, "the second process to wait", func() bool { return len(waits.of(cacherepo.EventLockWait)) == 1 })
	close(release)
	assert.ErrorIs(t, <-firstErr, boom)
	select {
	case v := <-second:
		assert.Equal(t, "second", v)
	case <-time.After(30 * time.Second): // LockWait is an hour: only a release ends the wait
		t.Fatal("the waiter did not notice the released lease")
	}
}

func TestCache_Lock_WaiterHonoursItsContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := cacherepo.Options{Lock: true, LockWait: time.Hour}
	c1, _, prefix := newCache[string](t, opts)
	opts.Namespace = prefix
	// The waiter's caller gives up as soon as it starts waiting.
	opts.OnEvent = func(_ context.Context, e cacherepo.Event) {
		if e.Kind == cacherepo.EventLockWait {
			cancel()
		}
	}
	c2, err := cacherepo.New[string](secondClient(t), opts)
	require.NoError(t, err)

	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	go func() {
		_, _ = c1.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) {
			close(started)
			<-release
			return "v", nil
		})
	}()
	<-started
	l := &counter[string]{value: "mine"}
	_, err = c2.GetOrLoad(ctx, "k", l.load)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, uint64(1), c2.Stats().LockWaits)
	assert.Zero(t, l.calls.Load())
}

func TestCache_GetManyOrLoad_TombstonesUseNotFoundTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, client, prefix := newCache[string](t, cacherepo.Options{NotFoundTTL: 30 * time.Second, Jitter: -1})
	_, err := c.GetManyOrLoad(ctx, []string{"gone"}, func(context.Context, []string) (map[string]string, error) {
		return nil, nil
	})
	require.NoError(t, err)
	pttl, err := client.PTTL(ctx, prefix+"gone").Result()
	require.NoError(t, err)
	assert.Greater(t, pttl, 25*time.Second)
	assert.LessOrEqual(t, pttl, 30*time.Second)
}

func TestCache_Lock_WaiterGetsTheOtherProcessNotFound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var waits events
	opts := cacherepo.Options{Lock: true, LockWait: time.Hour}
	c1, _, prefix := newCache[string](t, opts)
	opts.Namespace, opts.OnEvent = prefix, waits.record
	c2, err := cacherepo.New[string](secondClient(t), opts)
	require.NoError(t, err)

	started, release := make(chan struct{}), make(chan struct{})
	go func() {
		_, _ = c1.GetOrLoad(ctx, "gone", func(context.Context) (string, error) {
			close(started)
			<-release
			return "", cacherepo.ErrNotFound
		})
	}()
	<-started
	l := &counter[string]{value: "should not load"}
	second := make(chan error)
	go func() {
		_, err := c2.GetOrLoad(ctx, "gone", l.load)
		second <- err
	}()
	eventually(t, "the second process to wait", func() bool { return len(waits.of(cacherepo.EventLockWait)) == 1 })
	close(release)
	assert.ErrorIs(t, <-second, cacherepo.ErrNotFound)
	assert.Zero(t, l.calls.Load(), "the tombstone answered the waiter")
}

func TestCache_AllKeysStayUnderNamespace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, client, prefix := newCache[string](t, cacherepo.Options{Namespace: "ns:", EarlyRefresh: 1})
	_, err := c.GetOrLoad(ctx, "a", func(context.Context) (string, error) { return "A", nil })
	require.NoError(t, err)
	_, err = c.GetOrLoad(ctx, "b", func(context.Context) (string, error) { return "", cacherepo.ErrNotFound })
	require.ErrorIs(t, err, cacherepo.ErrNotFound)
	_, err = c.GetManyOrLoad(ctx, []string{"c", "d"}, func(context.Context, []string) (map[string]string, error) {
		return map[string]string{"c": "C"}, nil
	})
	require.NoError(t, err)
	require.NoError(t, c.Set(ctx, "e", "E", 0))

	var keys []string // SCAN, not KEYS: the server is shared
	iter := client.Scan(ctx, 0, prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	require.NoError(t, iter.Err())
	assert.ElementsMatch(t, []string{prefix + "ns:a", prefix + "ns:b", prefix + "ns:c", prefix + "ns:d", prefix + "ns:e"}, keys,
		"one Redis key per cache key: no companion keys")
}

func TestCache_Invalidate_LoadOutlivingTheMarkerIsStillRefused(t *testing.T) {
	t.Parallel()
	for _, lock := range []bool{false, true} {
		t.Run(fmt.Sprintf("Lock=%v", lock), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			const leaseTTL = 50 * time.Millisecond
			c, client, prefix := newCache[string](t, cacherepo.Options{Lock: lock, LeaseTTL: leaseTTL})
			read, release := make(chan struct{}), make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) {
					close(read)
					<-release
					return "old", nil
				})
				assert.NoError(t, err)
			}()
			<-read
			require.NoError(t, c.Invalidate(ctx, "k"))
			eventually(t, "the invalidation marker to expire", func() bool {
				n, err := client.Exists(ctx, prefix+"k").Result()
				require.NoError(t, err)
				return n == 0
			})
			close(release)
			<-done

			_, err := c.Get(ctx, "k")
			assert.ErrorIs(t, err, cacherepo.ErrMiss, "the old value is not written once the marker is gone")
			assert.Equal(t, uint64(1), c.Stats().StaleWritesRefused)
		})
	}
}
