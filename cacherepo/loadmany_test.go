package cacherepo_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/polystore/polystore/cacherepo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// keyLoads is a batch loader that counts how often each key was loaded.
type keyLoads struct {
	mu    sync.Mutex
	n     map[string]int
	calls int
}

func (l *keyLoads) load(_ context.Context, missing []string) (map[string]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == nil {
		l.n = map[string]int{}
	}
	l.calls++
	out := make(map[string]string, len(missing))
	for _, k := range missing {
		l.n[k]++
		out[k] = "v" + k
	}
	time.Sleep(time.Millisecond) // a database round trip, so that the calls overlap
	return out, nil
}

func (l *keyLoads) assertEachLoadedOnce(t *testing.T, keys []string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		assert.Equal(t, 1, l.n[k], "loads of key %s", k)
	}
	assert.Len(t, l.n, len(keys))
	t.Logf("%d loader calls for %d keys", l.calls, len(keys))
}

func hundredKeys() []string {
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprint(i)
	}
	return keys
}

// getManyConcurrently runs calls concurrent GetManyOrLoad calls of keys,
// spread round-robin over caches, and checks that each got every value.
func getManyConcurrently(t *testing.T, caches []*cacherepo.Cache[string], calls int, keys []string, l *keyLoads) {
	t.Helper()
	ctx := context.Background()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range calls {
		c := caches[i%len(caches)]
		wg.Go(func() {
			<-start
			got, err := c.GetManyOrLoad(ctx, keys, l.load)
			if !assert.NoError(t, err) {
				return
			}
			assert.Len(t, got, len(keys))
			for _, k := range keys {
				assert.Equal(t, "v"+k, got[k])
			}
		})
	}
	close(start)
	wg.Wait()
}

func TestCache_GetManyOrLoad_ConcurrentCallsLoadEachKeyOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// caches returns the caches of one namespace the calls are spread
		// over: one process, or two with their own clients.
		caches func(t *testing.T) []*cacherepo.Cache[string]
	}{
		{"one process", func(t *testing.T) []*cacherepo.Cache[string] {
			c, _, _ := newCache[string](t, cacherepo.Options{})
			return []*cacherepo.Cache[string]{c}
		}},
		{"two processes with Lock", func(t *testing.T) []*cacherepo.Cache[string] {
			opts := cacherepo.Options{Lock: true, LockWait: 10 * time.Second}
			c1, _, prefix := newCache[string](t, opts)
			opts.Namespace = prefix
			c2, err := cacherepo.New[string](secondClient(t), opts)
			require.NoError(t, err)
			return []*cacherepo.Cache[string]{c1, c2}
		}},
		{"cluster, one process", func(t *testing.T) []*cacherepo.Cache[string] {
			c, _, _ := newClusterCache[string](t, cacherepo.Options{})
			return []*cacherepo.Cache[string]{c}
		}},
		{"cluster, two processes with Lock", func(t *testing.T) []*cacherepo.Cache[string] {
			opts := cacherepo.Options{Lock: true, LockWait: 10 * time.Second}
			c1, _, prefix := newClusterCache[string](t, opts)
			opts.Namespace = prefix
			c2, err := cacherepo.New[string](secondClusterClient(t), opts)
			require.NoError(t, err)
			return []*cacherepo.Cache[string]{c1, c2}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			caches := tt.caches(t)
			keys := hundredKeys()
			var l keyLoads
			getManyConcurrently(t, caches, 50, keys, &l)
			l.assertEachLoadedOnce(t, keys)
		})
	}
}

func TestCache_GetManyOrLoad_SharesLoadsWithGetOrLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _, _ := newCache[string](t, cacherepo.Options{})
	keys := hundredKeys()
	var l keyLoads
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			<-start
			_, err := c.GetManyOrLoad(ctx, keys, l.load)
			assert.NoError(t, err)
		})
		wg.Go(func() {
			<-start
			k := keys[i*5]
			v, err := c.GetOrLoad(ctx, k, func(ctx context.Context) (string, error) {
				m, err := l.load(ctx, []string{k})
				return m[k], err
			})
			assert.NoError(t, err)
			assert.Equal(t, "v"+k, v)
		})
	}
	close(start)
	wg.Wait()
	l.assertEachLoadedOnce(t, keys)
}

func TestCache_GetManyOrLoad_WaitersOfAFailedBatchGetItsError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _, _ := newCache[string](t, cacherepo.Options{})
	started, release := make(chan struct{}), make(chan struct{})
	boom := fmt.Errorf("database down")
	done := make(chan error)
	go func() {
		_, err := c.GetManyOrLoad(ctx, []string{"a", "b"}, func(context.Context, []string) (map[string]string, error) {
			close(started)
			<-release
			return nil, boom
		})
		done <- err
	}()
	<-started
	joined := make(chan error)
	go func() {
		_, err := c.GetOrLoad(ctx, "a", func(context.Context) (string, error) { return "not shared", nil })
		joined <- err
	}()
	// The GetOrLoad above is either waiting for the batch's flight of "a"
	// or, if it comes late, loads "a" itself; release the batch in any case.
	time.Sleep(20 * time.Millisecond)
	close(release)
	assert.ErrorIs(t, <-done, boom)
	if err := <-joined; err != nil {
		assert.ErrorIs(t, err, boom, "a caller that joined the batch's load of its key gets the batch's error")
	}
}
