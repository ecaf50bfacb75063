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
