package coord

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
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
}
