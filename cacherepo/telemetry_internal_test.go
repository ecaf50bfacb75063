package cacherepo

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestTelemetry_WithoutAProviderAllocatesNothing: on the global providers
// as they are before the application installs any (this package's tests
// never install one), what a call does for its telemetry (the tracing
// check, every event's metrics, a fail-open, the loader's wrapper)
// allocates nothing and starts no span.
func TestTelemetry_WithoutAProviderAllocatesNothing(t *testing.T) {
	tel := newTelemetry("users:", nil, nil)
	ctx := context.Background()
	redisErr := redisErr("GET", "k", context.DeadlineExceeded)
	tel.event(ctx, EventRedisError, redisErr, 0) // built at the first measurement
	tel.failedOpen(ctx, redisErr)
	load := func(context.Context) (int, error) { return 1, nil }
	allocs := testing.AllocsPerRun(100, func() {
		if tel.tracing() {
			panic("tracing without a provider")
		}
		for kind := EventHit; kind <= EventSubscriptionLost; kind++ {
			tel.event(ctx, kind, nil, time.Millisecond)
		}
		tel.event(ctx, EventRedisError, redisErr, 0)
		tel.failedOpen(ctx, redisErr)
		if _, err := runLoad(tel, ctx, 0, DefaultIsNotFound, load); err != nil {
			panic(err)
		}
	})
	assert.Zero(t, allocs)
}

func TestClassify_NamesTheErrorTypes(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{tombstoneErr("k"), "not_found"},
		{ErrMiss, "miss"},
		{invalid("empty key"), "invalid"},
		{codecErr("decoding", "k", errors.New("bad")), "codec"},
		{&PanicError{Key: "k", Value: "boom"}, "loader_panic"},
		{redisErr("GET", "k", context.DeadlineExceeded), "deadline_exceeded"},
		{redisErr("GET", "k", context.Canceled), "canceled"},
		{redisErr("GET", "k", errors.New("weird")), "redis"},
		{errors.New("the loader's own"), "_OTHER"},
	} {
		assert.Equal(t, tt.want, classNames[classify(tt.err)], "%v", tt.err)
	}
}
