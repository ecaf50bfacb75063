package coord

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

func TestRetryPolicy_WaitDoublesWithJitterUpToMaxBackoff(t *testing.T) {
	p := RetryPolicy{Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}.withDefaults()
	tests := []struct {
		attempt int
		full    time.Duration
	}{
		{1, 10 * time.Millisecond},
		{2, 20 * time.Millisecond},
		{3, 40 * time.Millisecond},
		{4, 50 * time.Millisecond},
		{30, 50 * time.Millisecond},
	}
	for _, tt := range tests {
		for range 100 {
			w := p.wait(tt.attempt)
			assert.GreaterOrEqual(t, w, tt.full/2, "attempt %d", tt.attempt)
			assert.LessOrEqual(t, w, tt.full, "attempt %d", tt.attempt)
		}
	}
}

func TestRetryPolicy_ZeroValueMeansDefaults(t *testing.T) {
	p := RetryPolicy{}.withDefaults()
	assert.Equal(t, 3, p.Attempts)
	assert.Equal(t, 100*time.Millisecond, p.Backoff)
	assert.Equal(t, 10*time.Second, p.MaxBackoff)
	assert.True(t, p.retryable(assert.AnError))
	assert.False(t, p.retryable(ErrInvalid), "bad input is never retried")
}

func TestOptions_ZeroValueMeansDefaults(t *testing.T) {
	o := Options{}.withDefaults()
	assert.NotEmpty(t, o.Owner)
	assert.Equal(t, 30*time.Second, o.LeaseDuration)
	assert.Equal(t, 10*time.Second, o.RecoverEvery)
	assert.Equal(t, 2*time.Second, o.SettleTimeout)
	assert.Equal(t, 10, o.DeadLetterAfter)
	assert.Equal(t, 4, o.RecoveryWorkers)
}

// TestInvalidValuesReturnErrInvalid checks every option and argument that
// has an impossible value: each is refused with ErrInvalid, never replaced
// by a default, and nothing takes effect.
func TestInvalidValuesReturnErrInvalid(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, h := f.coordinator(t, Options{})
	act := func(context.Context, *regState) error { return nil }
	register := func(st Step[regState]) error {
		_, err := Register(c, Define("invalid-"+t.Name()+st.Name, st))
		return err
	}
	step := withStep(ctx, "s1/a", opAction)
	tests := []struct {
		name string
		call func() error
	}{
		{"Options.LeaseDuration negative", func() error { _, err := New(ctx, f.pool, Options{LeaseDuration: -time.Second}); return err }},
		{"Options.LeaseDuration under 1ms", func() error { _, err := New(ctx, f.pool, Options{LeaseDuration: 500 * time.Microsecond}); return err }},
		{"Options.Retention.After negative", func() error { _, err := New(ctx, f.pool, Options{Retention: Retention{After: -1}}); return err }},
		{"Options.Retention.Batch negative", func() error { _, err := New(ctx, f.pool, Options{Retention: Retention{Batch: -1}}); return err }},
		{"Options.Retention.MongoBarriers nil", func() error {
			_, err := New(ctx, f.pool, Options{Retention: Retention{MongoBarriers: []*mongo.Database{nil}}})
			return err
		}},
		{"Options.SettleTimeout negative", func() error { _, err := New(ctx, f.pool, Options{SettleTimeout: -1}); return err }},
		{"Options.RecoverEvery negative", func() error { _, err := New(ctx, f.pool, Options{RecoverEvery: -1}); return err }},
		{"Options.DeadLetterAfter negative", func() error { _, err := New(ctx, f.pool, Options{DeadLetterAfter: -1}); return err }},
		{"Options.RecoveryWorkers negative", func() error { _, err := New(ctx, f.pool, Options{RecoveryWorkers: -1}); return err }},
		{"Options.Owner not UTF-8", func() error { _, err := New(ctx, f.pool, Options{Owner: "\xff"}); return err }},
		{"Options.Owner with NUL", func() error { _, err := New(ctx, f.pool, Options{Owner: "a\x00b"}); return err }},
		{"nil pool", func() error { _, err := New(ctx, nil, Options{}); return err }},
		{"RetryPolicy.Attempts negative", func() error {
			return register(Step[regState]{Name: "a1", Action: act, Retry: RetryPolicy{Attempts: -1}})
		}},
		{"RetryPolicy.Backoff negative", func() error {
			return register(Step[regState]{Name: "a2", Action: act, Retry: RetryPolicy{Backoff: -time.Millisecond}})
		}},
		{"RetryPolicy.MaxBackoff negative", func() error {
			return register(Step[regState]{Name: "a3", Action: act, Retry: RetryPolicy{MaxBackoff: -time.Millisecond}})
		}},
		{"RetryPolicy.MaxBackoff under Backoff", func() error {
			return register(Step[regState]{Name: "a4", Action: act, Retry: RetryPolicy{Backoff: time.Second, MaxBackoff: time.Millisecond}})
		}},
		{"Step.Timeout negative", func() error { return register(Step[regState]{Name: "a5", Action: act, Timeout: -time.Second}) }},
		{"step name not UTF-8", func() error { return register(Step[regState]{Name: "a\xff", Action: act}) }},
		{"step name with NUL", func() error { return register(Step[regState]{Name: "a\x00", Action: act}) }},
		{"saga name with NUL", func() error {
			_, err := Register(c, Define("x\x00", Step[regState]{Name: "a", Action: act}))
			return err
		}},
		{"nil coordinator", func() error { _, err := Register(nil, Define("x", Step[regState]{Name: "a", Action: act})); return err }},
		{"Run: empty id", func() error { _, err := h.Run(ctx, "", &regState{}); return err }},
		{"Run: id not UTF-8", func() error { _, err := h.Run(ctx, "\xff", &regState{}); return err }},
		{"Run: id with NUL", func() error { _, err := h.Run(ctx, "u\x00", &regState{}); return err }},
		{"Run: nil state", func() error { _, err := h.Run(ctx, "u1", nil); return err }},
		{"Run: nil handle", func() error { _, err := (*Handle[regState])(nil).Run(ctx, "u1", &regState{}); return err }},
		{"Get: empty id", func() error { _, err := c.Get(ctx, ""); return err }},
		{"Get: id with NUL", func() error { _, err := c.Get(ctx, "u\x00"); return err }},
		{"RedisSet: negative ttl", func() error { _, err := RedisSet(step, f.rdb, f.prefix+"k", "v", -time.Second); return err }},
		{"RedisSet: ttl under 1ms", func() error { _, err := RedisSet(step, f.rdb, f.prefix+"k", "v", time.Microsecond); return err }},
		{"RedisSet: empty key", func() error { _, err := RedisSet(step, f.rdb, "", "v", 0); return err }},
		{"RedisSet: nil client", func() error { _, err := RedisSet(step, (*redis.Client)(nil), f.prefix+"k", "v", 0); return err }},
		{"RedisDel: empty key", func() error { _, err := RedisDel(step, f.rdb, ""); return err }},
		{"RedisDel: nil client", func() error { _, err := RedisDel(step, nil, f.prefix+"k"); return err }},
		{"MongoInsert: nil collection", func() error { _, err := MongoInsert(step, nil, bson.D{{Key: "_id", Value: "x"}}); return err }},
		{"MongoInsert: nil document", func() error { _, err := MongoInsert(step, f.convs, nil); return err }},
		{"MongoDelete: nil collection", func() error { _, err := MongoDelete(step, nil, "x"); return err }},
		{"MongoDelete: nil id", func() error { _, err := MongoDelete(step, f.convs, nil); return err }},
		{"PgBarrier: nil tx", func() error { _, err := PgBarrier(step, nil); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorIs(t, tt.call(), ErrInvalid)
		})
	}

	// Nothing took effect.
	var n int
	require.NoError(t, f.pool.QueryRow(ctx, `select count(*) from coord_saga`).Scan(&n))
	assert.Zero(t, n, "no saga logged")
	keys, err := f.rdb.Keys(ctx, f.prefix+"*").Result()
	require.NoError(t, err)
	assert.Empty(t, keys)
	docs, err := f.convs.CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	assert.Zero(t, docs)

	// Zero means the default where documented.
	_, err = New(ctx, f.pool, Options{})
	require.NoError(t, err)
	require.NoError(t, register(Step[regState]{Name: "zero", Action: act, Retry: RetryPolicy{}, Timeout: 0}))
	require.NoError(t, register(Step[regState]{Name: "long-backoff", Action: act, Retry: RetryPolicy{Backoff: time.Minute}}),
		"a zero MaxBackoff under a long Backoff is the documented default")
}
