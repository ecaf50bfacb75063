package redisrepo_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/polystore/polystore/redisrepo"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newLocker(t *testing.T, client redis.UniversalClient, prefix string) *redisrepo.Locker {
	t.Helper()
	l, err := redisrepo.NewLocker(client, redisrepo.LockOptions{Prefix: prefix + "lock:"})
	require.NoError(t, err)
	return l
}

func TestLocker_Lock_FiftyContendersExcludeEachOther(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		l := newLocker(t, client, prefix)
		// The shared state lives in Redis, in the lock's slot, and is
		// updated by a non-atomic read-modify-write: only the lock keeps
		// two holders from losing an update.
		counter, lastFence := prefix+"lock:{job}:counter", prefix+"lock:{job}:last-fence"
		const contenders = 50
		var wg sync.WaitGroup
		for range contenders {
			wg.Go(func() {
				lk, err := l.Lock(ctx, "job", 30*time.Second)
				if !assert.NoError(t, err) {
					return
				}
				n, _ := client.Get(ctx, counter).Int64()
				last, _ := client.Get(ctx, lastFence).Int64()
				assert.Greater(t, lk.Fence, last, "fencing tokens increase with each acquisition")
				time.Sleep(time.Millisecond) // widen the window a second holder would need
				assert.NoError(t, client.Set(ctx, counter, n+1, 0).Err())
				assert.NoError(t, client.Set(ctx, lastFence, lk.Fence, 0).Err())
				assert.NoError(t, lk.Release(ctx))
			})
		}
		wg.Wait()
		n, err := client.Get(ctx, counter).Int64()
		require.NoError(t, err)
		assert.Equal(t, int64(contenders), n, "no update lost")
	})
}

func TestLocker_TryLock_HeldLockReturnsErrLocked(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		l := newLocker(t, client, prefix)
		a, err := l.TryLock(ctx, "report", time.Minute)
		require.NoError(t, err)
		_, err = l.TryLock(ctx, "report", time.Minute)
		assert.ErrorIs(t, err, redisrepo.ErrLocked)
		other, err := l.TryLock(ctx, "other", time.Minute)
		require.NoError(t, err, "locks of other names are independent")
		require.NoError(t, other.Release(ctx))

		require.NoError(t, a.Release(ctx))
		b, err := l.TryLock(ctx, "report", time.Minute)
		require.NoError(t, err, "free again after Release")
		assert.Greater(t, b.Fence, a.Fence)
		assert.NotEqual(t, a.Token, b.Token)
	})
}

func TestLocker_ExpiredLock_IsTakenOverAndTheOldHolderIsRefused(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		l := newLocker(t, client, prefix)
		a, err := l.TryLock(ctx, "job", 300*time.Millisecond)
		require.NoError(t, err)

		var b *redisrepo.Lock
		require.Eventually(t, func() bool {
			b, err = l.TryLock(ctx, "job", time.Minute)
			if err != nil {
				assert.ErrorIs(t, err, redisrepo.ErrLocked)
			}
			return err == nil
		}, 5*time.Second, 20*time.Millisecond, "the lock is free once its TTL ran out")
		assert.Greater(t, b.Fence, a.Fence, "the new holder's fencing token is larger: a store can refuse a's writes")

		assert.ErrorIs(t, a.Renew(ctx, time.Minute), redisrepo.ErrNotHeld, "renew by the former holder")
		assert.ErrorIs(t, a.Release(ctx), redisrepo.ErrNotHeld, "release by the former holder")
		holder, err := client.Get(ctx, prefix+"lock:{job}").Result()
		require.NoError(t, err)
		assert.Equal(t, b.Token, holder, "b still holds the lock")

		require.NoError(t, b.Renew(ctx, 2*time.Minute))
		assert.Greater(t, pttl(t, client, prefix+"lock:{job}"), time.Minute.Milliseconds(), "Renew by the holder sets the TTL")
		require.NoError(t, b.Release(ctx))
		assert.ErrorIs(t, b.Release(ctx), redisrepo.ErrNotHeld, "a second Release")
		assert.ErrorIs(t, b.Renew(ctx, time.Minute), redisrepo.ErrNotHeld, "Renew after Release")
	})
}

func TestLocker_FencingTokens_StrictlyIncreasePerName(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		l := newLocker(t, client, prefix)
		var last int64
		for i := range 20 {
			name := "a"
			if i%2 == 1 {
				name = "b" // another lock's acquisitions do not disturb a's sequence
			}
			lk, err := l.TryLock(ctx, name, time.Minute)
			require.NoError(t, err)
			if name == "a" {
				assert.Greater(t, lk.Fence, last)
				last = lk.Fence
			}
			require.NoError(t, lk.Release(ctx))
		}
	})
}

func TestLocker_Lock_WaitsForTheHolderAndGivesUpWithTheContext(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		ctx := context.Background()
		l := newLocker(t, client, prefix)
		a, err := l.TryLock(ctx, "job", time.Minute)
		require.NoError(t, err)

		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_, err = l.Lock(short, "job", time.Minute)
		cancel()
		assert.ErrorIs(t, err, redisrepo.ErrLocked)
		assert.ErrorIs(t, err, context.DeadlineExceeded)

		got := make(chan *redisrepo.Lock)
		go func() {
			lk, err := l.Lock(ctx, "job", time.Minute)
			assert.NoError(t, err)
			got <- lk
		}()
		require.NoError(t, a.Release(ctx))
		b := <-got
		require.NotNil(t, b)
		assert.Greater(t, b.Fence, a.Fence)
		require.NoError(t, b.Release(ctx))
	})
}

func TestLocker_BadArguments_ReturnErrInvalid(t *testing.T) {
	client, prefix := servicetestRedis(t)
	ctx := context.Background()
	l := newLocker(t, client, prefix)
	for name, err := range map[string]error{
		"nil client": func() error { _, err := redisrepo.NewLocker(nil, redisrepo.LockOptions{}); return err }(),
		"negative RetryMin": func() error {
			_, err := redisrepo.NewLocker(client, redisrepo.LockOptions{RetryMin: -time.Second})
			return err
		}(),
		"RetryMax under RetryMin": func() error {
			_, err := redisrepo.NewLocker(client, redisrepo.LockOptions{RetryMin: time.Second, RetryMax: time.Millisecond})
			return err
		}(),
		"TryLock of an empty name":            func() error { _, err := l.TryLock(ctx, "", time.Second); return err }(),
		"Lock of an empty name":               func() error { _, err := l.Lock(ctx, "", time.Second); return err }(),
		"zero TTL":                            func() error { _, err := l.Lock(ctx, "x", 0); return err }(),
		"TTL under 1ms":                       func() error { _, err := l.TryLock(ctx, "x", time.Microsecond); return err }(),
		"Release of a Lock not from a Locker": (&redisrepo.Lock{Name: "x", Token: "t"}).Release(ctx),
		"Renew of a nil Lock":                 (*redisrepo.Lock)(nil).Renew(ctx, time.Second),
		"Renew with a zero TTL": func() error {
			lk, err := l.TryLock(ctx, "y", time.Second)
			require.NoError(t, err)
			return lk.Renew(ctx, 0)
		}(),
	} {
		assert.ErrorIs(t, err, redisrepo.ErrInvalid, name)
	}
}

func TestLocker_Lock_ContextEndingDuringAnAttemptIsErrLocked(t *testing.T) {
	eachRedis(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		l := newLocker(t, client, prefix)
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // ends before the first attempt's reply can arrive
		_, err := l.Lock(ctx, "job", time.Minute)
		assert.ErrorIs(t, err, redisrepo.ErrLocked)
		assert.ErrorIs(t, err, context.Canceled)
	})
}
