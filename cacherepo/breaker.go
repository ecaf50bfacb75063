package cacherepo

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// BreakerOptions configures the circuit breaker in front of Redis
// (Options.Breaker). Every zero field means the default named in its
// comment.
type BreakerOptions struct {
	// Failures is the number of consecutive failed Redis calls (errors and
	// Options.Timeout expiries; not redis.Nil, not an error reply of the
	// server, not a call whose caller's context ended) that opens the
	// breaker. Default: 5.
	Failures uint32

	// CoolDown is how long the breaker stays open, calling Redis not at
	// all, before it lets probes through (half-open). Default: 5 seconds;
	// negative or under 1ms is invalid.
	CoolDown time.Duration

	// Probes is the number of Redis calls let through while half-open; the
	// breaker closes when that many have succeeded and opens again, for
	// another CoolDown, at the first that fails. Calls beyond it are
	// refused as while open. Default: 1.
	Probes uint32

	// MaxConcurrentLoads bounds the loads that GetOrLoad and
	// GetManyOrLoad run without Redis (the breaker open or half-open, or a
	// Redis read that failed) across the whole Cache; a load beyond it
	// fails at once with an error wrapping ErrOverloaded (nothing loaded,
	// nothing cached) rather than wait, so that an outage of Redis cannot
	// queue the whole traffic on the database. Within the bound, misses of
	// one key still share one load. Default: 64; negative is invalid.
	MaxConcurrentLoads int
}

const (
	defaultBreakerFailures = 5
	defaultBreakerCoolDown = 5 * time.Second
	defaultMaxLoads        = 64
)

// BreakerState is the state of a Cache's circuit breaker (Cache.BreakerState).
type BreakerState int32

// The states of the circuit breaker.
const (
	// BreakerOff: the Cache has no breaker (Options.Breaker is nil).
	BreakerOff BreakerState = iota
	// BreakerClosed: Redis is called as usual.
	BreakerClosed
	// BreakerHalfOpen: the cool-down is over; BreakerOptions.Probes calls
	// go to Redis to tell whether it is back.
	BreakerHalfOpen
	// BreakerOpen: Redis is not called; reads are served from the loader
	// (bounded by MaxConcurrentLoads), writes fail with ErrRedis and
	// ErrBreakerOpen.
	BreakerOpen
)

var breakerStateNames = [...]string{BreakerOff: "off", BreakerClosed: "closed", BreakerHalfOpen: "half_open", BreakerOpen: "open"}

// String returns "off", "closed", "half_open" or "open".
func (s BreakerState) String() string {
	if s >= 0 && int(s) < len(breakerStateNames) {
		return breakerStateNames[s]
	}
	return "unknown"
}

// breaker is a Cache's circuit breaker: sony/gobreaker's two-step breaker,
// with the state mirrored in an atomic so that BreakerState (and OnEvent
// handlers calling it) never wait for gobreaker's lock, under which state
// changes are reported.
type breaker struct {
	cb    *gobreaker.TwoStepCircuitBreaker[struct{}]
	state atomic.Int32
	slots chan struct{} // MaxConcurrentLoads tokens
}

// errExcluded marks a call whose caller gave up: it says nothing of Redis.
var errExcluded = errors.New("caller gave up")

func newBreaker(o BreakerOptions, report func(BreakerState)) *breaker {
	b := &breaker{slots: make(chan struct{}, o.MaxConcurrentLoads)}
	b.state.Store(int32(BreakerClosed))
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "cacherepo",
		MaxRequests: o.Probes,
		Timeout:     o.CoolDown,
		ReadyToTrip: func(n gobreaker.Counts) bool { return n.ConsecutiveFailures >= o.Failures },
		IsSuccessful: func(err error) bool {
			var reply redis.Error // the server answered: it is up
			return err == nil || errors.Is(err, redis.Nil) || errors.As(err, &reply)
		},
		IsExcluded: func(err error) bool { return err == errExcluded },
		OnStateChange: func(_ string, _, to gobreaker.State) {
			s := BreakerClosed
			switch to {
			case gobreaker.StateOpen:
				s = BreakerOpen
			case gobreaker.StateHalfOpen:
				s = BreakerHalfOpen
			}
			b.state.Store(int32(s))
			report(s)
		},
	})
	return b
}

// allow asks the breaker for one Redis call; done reports its outcome.
func (b *breaker) allow() (done func(error), err error) {
	done, err = b.cb.Allow()
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrBreakerOpen, err)
	}
	return done, nil
}

// finish reports the outcome err of a call the caller made with context ctx.
// A call that failed when or after the caller's own deadline passed says
// nothing about Redis: the socket's deadline (the same instant) can fire
// before the context reports it, hence the clock check as well.
func finish(done func(error), ctx context.Context, err error) {
	if err != nil && callerGaveUp(ctx) {
		err = errExcluded
	}
	done(err)
}

func callerGaveUp(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// acquireLoad takes one of the MaxConcurrentLoads slots for a load served
// without Redis; release gives it back. Without a breaker it is free.
func (c *Cache[T]) acquireLoad(key string) (release func(), err error) {
	if c.breaker == nil {
		return func() {}, nil
	}
	select {
	case c.breaker.slots <- struct{}{}:
		return func() { <-c.breaker.slots }, nil
	default:
		return nil, fmt.Errorf("%w: %d loads without Redis already in flight; %q not loaded", ErrOverloaded, cap(c.breaker.slots), key)
	}
}

// BreakerState returns the state of the circuit breaker (BreakerOff
// without Options.Breaker), e.g. for a health check. It is the state as of
// the last Redis call: an open breaker turns half-open at the first call
// after its CoolDown. It takes no lock and may be called from OnEvent.
func (c *Cache[T]) BreakerState() BreakerState {
	if c.breaker == nil {
		return BreakerOff
	}
	return BreakerState(c.breaker.state.Load())
}
