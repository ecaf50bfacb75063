package cacherepo_test

import (
	"context"
	"testing"
	"time"

	"github.com/polystore/polystore/cacherepo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// gauge returns the value of the int64 gauge name, and whether it was
// reported.
func (r *telemetryRecorder) gauge(t *testing.T, name string) (int64, bool) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.reader.Collect(context.Background(), &rm))
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != cacherepo.ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == name && len(g.DataPoints) == 1 {
				return g.DataPoints[0].Value, true
			}
		}
	}
	return 0, false
}

func TestCache_Telemetry_BreakerStateChangesAndOverloadAreMetrics(t *testing.T) {
	ctx := context.Background()
	r := newTelemetryRecorder(t)
	c, err := cacherepo.New[user](downClient(t), r.options(cacherepo.Options{
		Namespace: "breaker:", Breaker: &cacherepo.BreakerOptions{Failures: 1, CoolDown: time.Hour, MaxConcurrentLoads: 1},
	}))
	require.NoError(t, err)
	state, ok := r.gauge(t, "polystore.cache.breaker.state")
	require.True(t, ok, "the gauge is reported with a breaker")
	assert.Zero(t, state, "closed")

	_, err = c.GetOrLoad(ctx, "1", (&counter[user]{}).load)
	require.NoError(t, err)
	require.Equal(t, cacherepo.BreakerOpen, c.BreakerState())
	assert.Equal(t, "open", c.BreakerState().String())
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.breaker.state_changes", attribute.String("polystore.cache.breaker.state", "open")))
	state, _ = r.gauge(t, "polystore.cache.breaker.state")
	assert.Equal(t, int64(2), state, "open")

	// Refused calls fail open without counting as Redis errors.
	_, err = c.GetOrLoad(ctx, "1", (&counter[user]{}).load)
	require.NoError(t, err)
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.redis.errors"), "only the call that tripped it")
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.fail_open", attribute.String("error.type", "breaker_open")))

	// Overload: one load in flight, a second key is refused.
	release := make(chan struct{})
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(ctx, "slow", func(context.Context) (user, error) {
			close(started)
			<-release
			return user{}, nil
		})
		done <- err
	}()
	<-started
	_, err = c.GetOrLoad(ctx, "2", (&counter[user]{}).load)
	require.ErrorIs(t, err, cacherepo.ErrOverloaded)
	close(release)
	require.NoError(t, <-done)
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.overloaded"))

	require.NoError(t, c.Close())
	_, ok = r.gauge(t, "polystore.cache.breaker.state")
	assert.False(t, ok, "Close stops reporting the gauge")
}

func TestCache_Telemetry_StaleServedIsAMetric(t *testing.T) {
	ctx := context.Background()
	r := newTelemetryRecorder(t)
	c, _, _ := newCache[user](t, r.options(cacherepo.Options{TTL: 50 * time.Millisecond, Jitter: -1, StaleIfError: time.Hour}))
	_, err := c.GetOrLoad(ctx, "1", (&counter[user]{value: user{ID: 1}}).load)
	require.NoError(t, err)
	softExpired(t, c, "1")
	u, err := c.GetOrLoad(ctx, "1", failing)
	require.NoError(t, err)
	assert.Equal(t, 1, u.ID)
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.stale_served"))
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.loads", attribute.String("polystore.cache.load.result", "error")))
}

func TestCache_BreakerState_IsOffWithoutABreaker(t *testing.T) {
	c, _, _ := newCache[user](t, cacherepo.Options{})
	assert.Equal(t, cacherepo.BreakerOff, c.BreakerState())
	assert.Equal(t, "off", c.BreakerState().String())
}
