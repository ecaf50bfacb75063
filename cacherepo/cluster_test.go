package cacherepo_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polystore/polystore/cacherepo"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests run the Cache on a real Redis Cluster (REDIS_CLUSTER_URL, which
// make services provides), with keys chosen to hash to different slots on
// different masters: the multi-key operations must split by node, and every
// script must touch one key only.

// newClusterCache returns a Cache on the test's Redis Cluster, namespaced
// under the test's key prefix, and the raw client and prefix for checks.
func newClusterCache[T any](t *testing.T, opts cacherepo.Options) (*cacherepo.Cache[T], *redis.ClusterClient, string) {
	t.Helper()
	client, prefix := servicetest.RedisCluster(t)
	opts.Namespace = prefix + opts.Namespace
	c, err := cacherepo.New[T](client, opts)
	require.NoError(t, err)
	t.Cleanup(func() { assertNoRedisErrors(t, c.Stats()) })
	return c, client, prefix
}

// assertNoRedisErrors checks that the cluster refused nothing: the reads of
// GetOrLoad and GetManyOrLoad fail open, so an error (CROSSSLOT, MOVED left
// unfollowed) would otherwise be served from the loader and go unseen.
func assertNoRedisErrors(t *testing.T, s cacherepo.Stats) {
	t.Helper()
	assert.Zero(t, s.RedisErrors, "Redis errors reported to Stats")
}

// secondClusterClient returns another client of the test's cluster, as a
// second process would have.
func secondClusterClient(t *testing.T) *redis.ClusterClient {
	t.Helper()
	opts, err := redis.ParseClusterURL(servicetest.RedisClusterURL(t))
	require.NoError(t, err)
	c := redis.NewClusterClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// spreadKeys returns perMaster cache keys for each master of the cluster,
// all in different slots, so that a test using them touches every master.
func spreadKeys(t *testing.T, client *redis.ClusterClient, namespace string, perMaster int) []string {
	t.Helper()
	ctx := context.Background()
	var masters atomic.Int64
	require.NoError(t, client.ForEachMaster(ctx, func(context.Context, *redis.Client) error {
		masters.Add(1)
		return nil
	}))
	require.GreaterOrEqual(t, masters.Load(), int64(2), "a cluster of one master cannot show cross-node behaviour")

	byMaster := map[string]int{}
	slots := map[int64]bool{}
	var keys []string
	for i := 0; len(keys) < int(masters.Load())*perMaster; i++ {
		require.Less(t, i, 10000, "could not spread keys over every master: %v", byMaster)
		k := fmt.Sprintf("k%d", i)
		slot, err := client.ClusterKeySlot(ctx, namespace+k).Result()
		require.NoError(t, err)
		m, err := client.MasterForKey(ctx, namespace+k)
		require.NoError(t, err)
		addr := m.Options().Addr
		if slots[slot] || byMaster[addr] == perMaster {
			continue
		}
		slots[slot] = true
		byMaster[addr]++
		keys = append(keys, k)
	}
	require.Len(t, byMaster, int(masters.Load()), "keys on every master")
	return keys
}

func TestCluster_SetGetDelete_KeysOnEveryMaster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, client, prefix := newClusterCache[user](t, cacherepo.Options{})
	keys := spreadKeys(t, client, prefix, 1)

	for i, k := range keys {
		require.NoError(t, c.Set(ctx, k, user{i, k}, 0))
	}
	for i, k := range keys {
		got, err := c.Get(ctx, k)
		require.NoError(t, err, k)
		assert.Equal(t, user{i, k}, got)
	}

	require.NoError(t, c.Delete(ctx, keys...), "one Delete of keys in different slots")
	for _, k := range keys {
		_, err := c.Get(ctx, k)
		assert.ErrorIs(t, err, cacherepo.ErrMiss, k)
		raw, err := client.Get(ctx, prefix+k).Bytes()
		require.NoError(t, err)
		assert.Equal(t, byte('i'), raw[0], "key %s holds only an invalidation marker on its master", k)
		pttl, err := client.PTTL(ctx, prefix+k).Result()
		require.NoError(t, err)
		assert.LessOrEqual(t, pttl, 2*10*time.Second, "the marker lives 2×LeaseTTL")
	}
}

func TestCluster_SetManyGetMany_AcrossSlots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, client, prefix := newClusterCache[int](t, cacherepo.Options{})
	keys := spreadKeys(t, client, prefix, 2)

	items := map[string]int{}
	for i, k := range keys {
		items[k] = i
	}
	require.NoError(t, c.SetMany(ctx, items, 0))

	got, err := c.GetMany(ctx, append([]string{"never set"}, keys...))
	require.NoError(t, err)
	assert.Equal(t, items, got, "every value, and nothing for the key never set")
}

func TestCluster_GetOrLoad_MissLoadsOnceAndNotFoundIsTombstoned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, client, prefix := newClusterCache[user](t, cacherepo.Options{})
	keys := spreadKeys(t, client, prefix, 1)
	found, gone := keys[0], keys[1]

	l := &counter[user]{value: user{1, "Ada"}}
	for range 3 {
		got, err := c.GetOrLoad(ctx, found, l.load)
		require.NoError(t, err)
		assert.Equal(t, user{1, "Ada"}, got)
	}
	assert.Equal(t, int64(1), l.calls.Load(), "loader calls for a found record")

	missing := &counter[user]{err: cacherepo.ErrNotFound}
	for range 3 {
		_, err := c.GetOrLoad(ctx, gone, missing.load)
		assert.ErrorIs(t, err, cacherepo.ErrNotFound)
	}
	assert.Equal(t, int64(1), missing.calls.Load(), "loader calls for a missing record")
	_, err := c.Get(ctx, gone)
	assert.ErrorIs(t, err, cacherepo.ErrNotFound, "a tombstone is cached")
	assert.Equal(t, uint64(2), c.Stats().TombstoneHits)
}

func TestCluster_GetManyOrLoad_LoadsMissesAcrossSlotsOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, client, prefix := newClusterCache[int](t, cacherepo.Options{})
	keys := spreadKeys(t, client, prefix, 2)
	cached, absent := keys[0], keys[len(keys)-1]
	require.NoError(t, c.Set(ctx, cached, -1, 0))

	var batches [][]string
	load := func(_ context.Context, missing []string) (map[string]int, error) {
		batches = append(batches, missing)
		out := map[string]int{}
		for _, k := range missing {
			if k != absent {
				out[k] = len(k)
			}
		}
		return out, nil
	}
	want := map[string]int{cached: -1}
	for _, k := range keys[1 : len(keys)-1] {
		want[k] = len(k)
	}

	got, err := c.GetManyOrLoad(ctx, keys, load)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	require.Len(t, batches, 1, "one batch-loader call")
	assert.ElementsMatch(t, keys[1:], batches[0], "the misses only")

	got, err = c.GetManyOrLoad(ctx, keys, load)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.Len(t, batches, 1, "everything, the tombstone included, came from the cache")
	_, err = c.Get(ctx, absent)
	assert.ErrorIs(t, err, cacherepo.ErrNotFound)
}

func TestCluster_Invalidate_LoadStartedBeforeNeverWritesItsOldValue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _, _ := newClusterCache[string](t, cacherepo.Options{})
	d := &db{row: "old"}

	read, release := make(chan struct{}), make(chan struct{})
	done := make(chan string)
	go func() {
		v, err := c.GetOrLoad(ctx, "row", func(context.Context) (string, error) {
			v := d.read()
			close(read)
			<-release // held after reading "old" until the write and Invalidate are done
			return v, nil
		})
		assert.NoError(t, err)
		done <- v
	}()
	<-read
	d.write("new")
	require.NoError(t, c.Invalidate(ctx, "row"))
	close(release)
	assert.Equal(t, "old", <-done, "the caller gets what its own load read")

	assert.Equal(t, uint64(1), c.Stats().StaleWritesRefused)
	v, err := c.GetOrLoad(ctx, "row", func(context.Context) (string, error) { return d.read(), nil })
	require.NoError(t, err)
	assert.Equal(t, "new", v, "the cache never holds the old value after the Invalidate")
}

func TestCluster_GetManyOrLoad_InvalidateDuringLoadRefusesOnlyThatKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, client, prefix := newClusterCache[string](t, cacherepo.Options{})
	keys := spreadKeys(t, client, prefix, 1)
	changed, kept := keys[0], keys[1]

	read, release := make(chan struct{}), make(chan struct{})
	done := make(chan map[string]string)
	go func() {
		got, err := c.GetManyOrLoad(ctx, []string{changed, kept}, func(context.Context, []string) (map[string]string, error) {
			close(read)
			<-release
			return map[string]string{changed: "old", kept: "kept"}, nil
		})
		assert.NoError(t, err)
		done <- got
	}()
	<-read
	require.NoError(t, c.Invalidate(ctx, changed))
	close(release)
	assert.Equal(t, map[string]string{changed: "old", kept: "kept"}, <-done)

	_, err := c.Get(ctx, changed)
	assert.ErrorIs(t, err, cacherepo.ErrMiss, "the old value was not written")
	v, err := c.Get(ctx, kept)
	require.NoError(t, err)
	assert.Equal(t, "kept", v)
	assert.Equal(t, uint64(1), c.Stats().StaleWritesRefused)
}

func TestCluster_Lock_TwoClientsCallTheLoaderOnce(t *testing.T) {
	t.Parallel()
	var waits events
	opts := cacherepo.Options{Lock: true, LockWait: time.Minute}
	c1, _, prefix := newClusterCache[string](t, opts)
	opts.Namespace, opts.OnEvent = prefix, waits.record
	c2, err := cacherepo.New[string](secondClusterClient(t), opts)
	require.NoError(t, err)

	assertOneLoadAcrossTwoCaches(t, c1, c2, &waits)
	assertNoRedisErrors(t, c2.Stats())
}
