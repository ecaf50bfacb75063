package cacherepo

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// EventKind says what happened in an Event.
type EventKind int

// The events a Cache counts in Stats and reports to Options.OnEvent.
const (
	// EventHit: a value was served from Redis.
	EventHit EventKind = iota + 1
	// EventMiss: Redis held no value (nor tombstone) for the key.
	EventMiss
	// EventLoad: a loader returned a value or a not-found error; Duration
	// is the time it took.
	EventLoad
	// EventLoadError: a loader returned any other error (Err).
	EventLoadError
	// EventTombstoneHit: a cached not-found answer was served.
	EventTombstoneHit
	// EventLockWait: the process waited for another process's load (Lock).
	EventLockWait
	// EventStaleWriteRefused: a loaded value was not written because the
	// key was invalidated or rewritten while it loaded (or its lease
	// expired).
	EventStaleWriteRefused
	// EventRedisError: a Redis call failed (Err); under fail-open the
	// caller was served from the loader anyway.
	EventRedisError
	// EventCodecError: a cached entry could not be decoded (Err); it was
	// treated as a miss and is replaced by the next load.
	EventCodecError
	// EventEarlyRefresh: a hit was reloaded before its expiry
	// (Options.EarlyRefresh).
	EventEarlyRefresh
	// EventLoaderPanic: a loader panicked or called runtime.Goexit (Err is
	// a *PanicError wrapping ErrLoaderPanic, with the panic value and the
	// stack). Nothing was cached and the lease was released. In GetOrLoad
	// and GetManyOrLoad the panic then went on up the caller's stack; in an
	// early refresh it was recovered and the cached value served.
	EventLoaderPanic
	// EventNearHit: a value (or tombstone) was served from the near tier
	// (Options.Near), without Redis. Counted apart from EventHit.
	EventNearHit
	// EventSubscriptionLost: the pub/sub subscription that keeps the near
	// tier coherent (and wakes Lock waiters) dropped or stopped answering;
	// the near tier was flushed and is bypassed until it is back.
	EventSubscriptionLost
	// EventBreakerOpen: the circuit breaker (Options.Breaker) opened: Redis
	// is not called for BreakerOptions.CoolDown. Empty Key; reported with a
	// background context, on the goroutine of the call that tripped it.
	EventBreakerOpen
	// EventBreakerHalfOpen: the cool-down is over; probes go to Redis.
	EventBreakerHalfOpen
	// EventBreakerClosed: the probes succeeded; Redis is called as usual.
	EventBreakerClosed
	// EventOverloaded: a load without Redis was refused with ErrOverloaded
	// (BreakerOptions.MaxConcurrentLoads loads already in flight).
	EventOverloaded
	// EventStaleServed: GetOrLoad served a value past its fresh TTL
	// because the loader failed (Options.StaleIfError); Err is the
	// loader's error, which the caller did not get.
	EventStaleServed
)

// breakerEvents is the event of each state the breaker enters.
var breakerEvents = [...]EventKind{BreakerClosed: EventBreakerClosed, BreakerHalfOpen: EventBreakerHalfOpen, BreakerOpen: EventBreakerOpen}

var eventNames = [...]string{
	EventHit: "hit", EventMiss: "miss", EventLoad: "load", EventLoadError: "load_error",
	EventTombstoneHit: "tombstone_hit", EventLockWait: "lock_wait",
	EventStaleWriteRefused: "stale_write_refused", EventRedisError: "redis_error",
	EventCodecError: "codec_error", EventEarlyRefresh: "early_refresh",
	EventLoaderPanic: "loader_panic", EventNearHit: "near_hit", EventSubscriptionLost: "subscription_lost",
	EventBreakerOpen: "breaker_open", EventBreakerHalfOpen: "breaker_half_open", EventBreakerClosed: "breaker_closed",
	EventOverloaded: "overloaded", EventStaleServed: "stale_served",
}

// String returns the event's snake_case name ("hit", "stale_write_refused"),
// suitable as a metric label.
func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "unknown"
}

// Event is what Options.OnEvent receives.
type Event struct {
	Kind EventKind
	// Key is the caller's key, without the namespace; empty for the
	// EventLoad, EventLoadError and EventLoaderPanic of a GetManyOrLoad
	// batch.
	Key string
	// Err is the error of EventLoadError, EventRedisError, EventCodecError
	// and EventLoaderPanic (a *PanicError), and the loader's not-found error for an EventLoad
	// that cached a tombstone.
	Err error
	// Duration is the loader's run time for EventLoad and EventLoadError.
	Duration time.Duration
}

// Stats are counters since the Cache was created, one per EventKind.
type Stats struct {
	Hits               uint64
	Misses             uint64
	Loads              uint64
	LoadErrors         uint64
	TombstoneHits      uint64
	LockWaits          uint64
	StaleWritesRefused uint64
	RedisErrors        uint64
	CodecErrors        uint64
	EarlyRefreshes     uint64
	LoaderPanics       uint64
	NearHits           uint64
	SubscriptionLosses uint64
	BreakerOpens       uint64 // EventBreakerOpen
	BreakerHalfOpens   uint64 // EventBreakerHalfOpen
	BreakerCloses      uint64 // EventBreakerClosed
	Overloaded         uint64 // EventOverloaded
	StaleServed        uint64 // EventStaleServed
}

// Stats returns a snapshot of the Cache's counters. Each counter is read
// atomically; the snapshot as a whole is not.
func (c *Cache[T]) Stats() Stats {
	n := c.counters
	return Stats{
		Hits:               n[EventHit].Load(),
		Misses:             n[EventMiss].Load(),
		Loads:              n[EventLoad].Load(),
		LoadErrors:         n[EventLoadError].Load(),
		TombstoneHits:      n[EventTombstoneHit].Load(),
		LockWaits:          n[EventLockWait].Load(),
		StaleWritesRefused: n[EventStaleWriteRefused].Load(),
		RedisErrors:        n[EventRedisError].Load(),
		CodecErrors:        n[EventCodecError].Load(),
		EarlyRefreshes:     n[EventEarlyRefresh].Load(),
		LoaderPanics:       n[EventLoaderPanic].Load(),
		NearHits:           n[EventNearHit].Load(),
		SubscriptionLosses: n[EventSubscriptionLost].Load(),
		BreakerOpens:       n[EventBreakerOpen].Load(),
		BreakerHalfOpens:   n[EventBreakerHalfOpen].Load(),
		BreakerCloses:      n[EventBreakerClosed].Load(),
		Overloaded:         n[EventOverloaded].Load(),
		StaleServed:        n[EventStaleServed].Load(),
	}
}

// counters holds one atomic counter per EventKind, indexed by it.
type counters [len(eventNames)]atomic.Uint64

func (c *Cache[T]) event(ctx context.Context, kind EventKind, key string, err error, d time.Duration) {
	if kind == EventRedisError && errors.Is(err, ErrBreakerOpen) {
		return // Redis was not called: not a Redis error (the breaker's events tell)
	}
	c.counters[kind].Add(1)
	c.tel.event(ctx, kind, err, d)
	if c.opts.OnEvent != nil {
		c.opts.OnEvent(ctx, Event{Kind: kind, Key: key, Err: err, Duration: d})
	}
}
