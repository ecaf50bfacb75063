package cacherepo_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polystore/polystore/cacherepo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// db is a one-row "database" whose reads the tests can hold.
type db struct {
	mu  sync.Mutex
	row string
}

func (d *db) read() string   { d.mu.Lock(); defer d.mu.Unlock(); return d.row }
func (d *db) write(s string) { d.mu.Lock(); defer d.mu.Unlock(); d.row = s }

func TestCache_Invalidate_LoadStartedBeforeNeverWritesItsOldValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// between runs after the database write and its Invalidate, while
		// the old load is still held.
		between func(t *testing.T, ctx context.Context, other *cacherepo.Cache[string], d *db)
	}{
		{"nobody reloads meanwhile", func(*testing.T, context.Context, *cacherepo.Cache[string], *db) {}},
		{"another process reloads the new value meanwhile", func(t *testing.T, ctx context.Context, other *cacherepo.Cache[string], d *db) {
			v, err := other.GetOrLoad(ctx, "row", func(context.Context) (string, error) { return d.read(), nil })
			require.NoError(t, err)
			require.Equal(t, "new", v)
		}},
		{"a writer Sets the new value meanwhile", func(t *testing.T, ctx context.Context, other *cacherepo.Cache[string], d *db) {
			require.NoError(t, other.Set(ctx, "row", d.read(), 0))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c, _, prefix := newCache[string](t, cacherepo.Options{})
			other, err := cacherepo.New[string](secondClient(t), cacherepo.Options{Namespace: prefix})
			require.NoError(t, err)
			d := &db{row: "old"}

			read, release := make(chan struct{}), make(chan struct{})
			staleLoad := func(context.Context) (string, error) {
				v := d.read()
				close(read)
				<-release // held after reading "old" until the write and Invalidate are done
				return v, nil
			}
			done := make(chan string)
			go func() {
				v, err := c.GetOrLoad(ctx, "row", staleLoad)
				assert.NoError(t, err)
				done <- v
			}()
			<-read
			d.write("new")
			require.NoError(t, c.Invalidate(ctx, "row"))
			tt.between(t, ctx, other, d)
			close(release)
			assert.Equal(t, "old", <-done, "the caller gets what its own load read")

			assert.Equal(t, uint64(1), c.Stats().StaleWritesRefused)
			v, err := c.GetOrLoad(ctx, "row", func(context.Context) (string, error) { return d.read(), nil })
			require.NoError(t, err)
			assert.Equal(t, "new", v, "the cache never holds the old value after the Invalidate")
		})
	}
}

func TestCache_GetOrLoad_LockMakesOtherProcessWaitForTheLoad(t *testing.T) {
	t.Parallel()
	var waits events
	opts := cacherepo.Options{Lock: true, LockWait: time.Minute}
	c1, _, prefix := newCache[string](t, opts)
	opts.Namespace, opts.OnEvent = prefix, waits.record
	c2, err := cacherepo.New[string](secondClient(t), opts)
	require.NoError(t, err)

	assertOneLoadAcrossTwoCaches(t, c1, c2, &waits)
}

func TestCache_GetOrLoad_LockWaiterLoadsItselfAfterLockWait(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	opts := cacherepo.Options{Lock: true, LockWait: 50 * time.Millisecond}
	c1, _, prefix := newCache[string](t, opts)
	opts.Namespace = prefix
	c2, err := cacherepo.New[string](secondClient(t), opts)
	require.NoError(t, err)

	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	go func() {
		_, _ = c1.GetOrLoad(ctx, "k", func(context.Context) (string, error) {
			close(started)
			<-release // the first process hangs
			return "first", nil
		})
	}()
	<-started
	v, err := c2.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "second", nil })
	require.NoError(t, err, "a stuck lock holder does not fail the others")
	assert.Equal(t, "second", v)
	got, err := c2.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "second", got, "written under the shared lease")
}

func TestCache_GetOrLoad_WithoutLockOtherProcessLoadsToo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c1, _, prefix := newCache[string](t, cacherepo.Options{})
	c2, err := cacherepo.New[string](secondClient(t), cacherepo.Options{Namespace: prefix})
	require.NoError(t, err)

	started, release := make(chan struct{}), make(chan struct{})
	first := make(chan string)
	go func() {
		v, _ := c1.GetOrLoad(ctx, "k", func(context.Context) (string, error) {
			close(started)
			<-release
			return "first", nil
		})
		first <- v
	}()
	<-started
	v, err := c2.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "second", nil })
	require.NoError(t, err)
	assert.Equal(t, "second", v)
	close(release)
	assert.Equal(t, "first", <-first)
	got, err := c1.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "second", got, "the first write under the lease wins; the later one is refused")
}

func TestCache_GetOrLoad_EarlyRefreshReloadsHitBeforeExpiry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name        string
		beta        float64
		wantLoads   int64
		wantRefresh uint64
	}{
		// β so large that XFetch always fires: a deterministic check that a
		// hit is refreshed; the probabilities in between are XFetch's.
		{"huge beta refreshes every hit", 1e12, 4, 3},
		{"off never refreshes", 0, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, client, prefix := newCache[int](t, cacherepo.Options{EarlyRefresh: tt.beta})
			var n atomic.Int64
			load := func(context.Context) (int, error) { return int(n.Add(1)), nil }
			for range 4 {
				_, err := c.GetOrLoad(ctx, "k", load)
				require.NoError(t, err)
			}
			assert.Equal(t, tt.wantLoads, n.Load())
			assert.Equal(t, tt.wantRefresh, c.Stats().EarlyRefreshes)
			got, err := c.Get(ctx, "k")
			require.NoError(t, err)
			assert.Equal(t, int(tt.wantLoads), got, "the refreshed value replaced the old one")
			pttl, err := client.PTTL(ctx, prefix+"k").Result()
			require.NoError(t, err)
			assert.Greater(t, pttl, 50*time.Minute, "with a fresh TTL")
		})
	}
}

func TestCache_GetOrLoad_EarlyRefreshFailureServesCachedValue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _, _ := newCache[string](t, cacherepo.Options{EarlyRefresh: 1e12})
	require.NoError(t, c.Set(ctx, "k", "cached", 0))
	v, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "", assert.AnError })
	require.NoError(t, err)
	assert.Equal(t, "cached", v)
	assert.Equal(t, uint64(1), c.Stats().LoadErrors)
}

func TestCache_GetOrLoad_UndecodableEntryIsReplaced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, client, prefix := newCache[user](t, cacherepo.Options{})
	// As left by an older version of the service with another type.
	require.NoError(t, client.Set(ctx, prefix+"1", `v["not","a","user"]`, time.Hour).Err())
	l := &counter[user]{value: user{ID: 1, Name: "Ada"}}

	got, err := c.GetOrLoad(ctx, "1", l.load)
	require.NoError(t, err)
	assert.Equal(t, user{ID: 1, Name: "Ada"}, got)
	got, err = c.GetOrLoad(ctx, "1", l.load)
	require.NoError(t, err)
	assert.Equal(t, user{ID: 1, Name: "Ada"}, got)
	assert.Equal(t, int64(1), l.calls.Load(), "replaced once, then served from the cache")
	assert.Equal(t, uint64(1), c.Stats().CodecErrors)
}
