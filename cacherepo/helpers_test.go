package cacherepo_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polystore/polystore/cacherepo"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type user struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// newCache returns a Cache on the test's Redis, namespaced under the test's
// key prefix, and the raw client and prefix for checks.
func newCache[T any](t *testing.T, opts cacherepo.Options) (*cacherepo.Cache[T], *redis.Client, string) {
	t.Helper()
	client, prefix := servicetest.Redis(t)
	opts.Namespace = prefix + opts.Namespace
	c, err := cacherepo.New[T](client, opts)
	require.NoError(t, err)
	return c, client, prefix
}

// secondClient returns another client of the test's Redis server, as a
// second process would have.
func secondClient(t *testing.T) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(servicetest.RedisURL(t))
	require.NoError(t, err)
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// counter is a loader that counts its calls and returns value, or err.
type counter[T any] struct {
	calls atomic.Int64
	value T
	err   error
}

func (l *counter[T]) load(context.Context) (T, error) {
	l.calls.Add(1)
	return l.value, l.err
}

// events records the events a Cache reports.
type events struct {
	mu  sync.Mutex
	all []cacherepo.Event
}

func (e *events) record(_ context.Context, ev cacherepo.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

func (e *events) of(kind cacherepo.EventKind) []cacherepo.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []cacherepo.Event
	for _, ev := range e.all {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// eventually polls cond every few milliseconds until it holds or the
// deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// assertOneLoadAcrossTwoCaches checks the cross-process lock: c1 and c2 are
// two processes' caches of one namespace, with Lock set and c2's events
// recorded in waits. While c1's load is held, c2 misses the same key, waits
// for c1's value instead of loading, and both get it from one loader call.
func assertOneLoadAcrossTwoCaches(t *testing.T, c1, c2 *cacherepo.Cache[string], waits *events) {
	t.Helper()
	ctx := context.Background()
	var calls atomic.Int64
	started, release := make(chan struct{}), make(chan struct{})
	load := func(context.Context) (string, error) {
		if calls.Add(1) == 1 {
			close(started)
			<-release
		}
		return "v", nil
	}
	results := make(chan string, 2)
	go func() {
		v, err := c1.GetOrLoad(ctx, "k", load)
		assert.NoError(t, err)
		results <- v
	}()
	<-started
	go func() {
		v, err := c2.GetOrLoad(ctx, "k", load)
		assert.NoError(t, err)
		results <- v
	}()
	eventually(t, "the second process to wait", func() bool { return len(waits.of(cacherepo.EventLockWait)) == 1 })
	close(release)

	assert.Equal(t, "v", <-results)
	assert.Equal(t, "v", <-results)
	assert.Equal(t, int64(1), calls.Load(), "loader calls across both processes")
	assert.Equal(t, uint64(1), c2.Stats().LockWaits)
}
