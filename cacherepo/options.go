package cacherepo

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Options configures a Cache. The zero value is ready to use: every zero
// field means the default named in its comment.
type Options struct {
	// Namespace is prepended to every key (Namespace+key is the Redis key).
	// Any string is valid (Redis keys are binary-safe). Default: "" (keys are
	// used as given). cacherepo never needs two keys
	// in one Cluster slot, so any namespace works on Cluster; put a hash tag
	// in it ("{users}:") only to keep all of one cache's keys on one node.
	Namespace string

	// TTL is the lifetime of a cached value. Default: 1 hour; negative or
	// under 1ms (Redis's resolution) is invalid.
	TTL time.Duration

	// NotFoundTTL is the lifetime of a tombstone, the entry cached when the
	// loader reports that a record does not exist. Default: 1 minute;
	// negative or under 1ms is invalid.
	NotFoundTTL time.Duration

	// Jitter spreads every TTL uniformly over [TTL×(1−Jitter), TTL×(1+Jitter)]
	// so that keys written together do not expire together. Default: 0.1
	// (±10%); a negative value disables it; at most 0.9; NaN and infinities
	// are invalid.
	Jitter float64

	// Codec encodes values. Default: JSON (encoding/json).
	Codec Codec

	// IsNotFound reports whether a loader's error means that the record
	// does not exist (and a tombstone should be cached). Default:
	// DefaultIsNotFound.
	IsNotFound func(error) bool

	// Timeout bounds each Redis call made by the Cache, whatever the
	// client's settings; a call past it fails with an error wrapping
	// ErrRedis and context.DeadlineExceeded (or the driver's net.Error
	// timeout), which GetOrLoad and GetManyOrLoad then treat as any Redis
	// failure. With a client built with ContextTimeoutEnabled: true (the
	// recommended setting) the deadline goes on the call's context and
	// go-redis applies it to the socket. Without it (go-redis's default)
	// go-redis honours the deadline only while dialling and waiting for a
	// pooled connection, and would wait out its own ReadTimeout (3s; 5s for
	// a new connection's handshake) on a server that accepts connections
	// and never answers; the Cache then runs each call on a goroutine of
	// its own and stops waiting at the deadline, while the command ends in
	// the background within the client's own bounds (at most the client's
	// PoolSize of them hold a connection at once). Either way a write that
	// timed out may still have been applied. Default: 0 (no bound of
	// cacherepo's own: a call costs what the client allows); negative is
	// invalid.
	Timeout time.Duration

	// Strict makes GetOrLoad and GetManyOrLoad return Redis errors of
	// their reads (wrapping ErrRedis) instead of serving from the loader; a
	// failed write of a loaded value is reported to OnEvent in either mode.
	// Default: false (fail open: Redis errors go to OnEvent and Stats only).
	Strict bool

	// Lock makes a process that misses a key while another process holds
	// its lease wait for that process's value (for up to LockWait, woken by
	// the other process's message on the namespace's channel, polling only
	// as a fallback) instead of loading it too. A Cache with Lock runs one
	// subscription goroutine: call Close when done with it. Default: false (processes share the lease
	// for the stale-set check but each load; within one process concurrent
	// misses are always collapsed into one load).
	Lock bool

	// LockWait is how long a process waits for another's load when Lock is
	// set; after it the process loads the value itself rather than fail.
	// Default: 1 second; negative is invalid.
	LockWait time.Duration

	// LeaseTTL bounds a load: a load that ends more than LeaseTTL after its
	// GET (with Lock, after taking its lease, which lives that long) is not
	// cached. The invalidation marker Delete and Invalidate leave lives
	// 2×LeaseTTL, so it outlasts every load it must refuse. Default: 10
	// seconds; negative or under 1ms is invalid.
	LeaseTTL time.Duration

	// EarlyRefresh is the β of probabilistic early recomputation (XFetch):
	// a hit is reloaded before the value expires with a probability that
	// grows as expiry nears and with the time the last load took, so a hot
	// key is refreshed by one request instead of expiring under all of
	// them. 1 is the usual value; larger refreshes earlier. Values cached
	// with it carry 12 more bytes (their expiry and load time). Default: 0
	// (off); negative, NaN and infinities are invalid.
	EarlyRefresh float64

	// Near, when set, puts an in-process tier in front of Redis: a hit
	// there costs no round trip (EventNearHit). Every instance of the
	// namespace announces the keys it changes (Set, SetMany, Delete,
	// Invalidate and every load it caches) on the Redis pub/sub channel
	// "cacherepo:"+Namespace, and an instance with the tier drops those keys
	// when the message arrives; while its subscription is down it flushes
	// the tier and reads Redis. Each caller decodes its own copy from the
	// stored bytes. A Cache with Near (or Lock) runs one goroutine and one
	// pub/sub connection: call Close when done with it. Not available on a
	// *redis.Ring (New returns ErrInvalidOptions). Default: nil (off).
	Near *NearOptions

	// StaleIfError keeps each value in Redis for this long past its fresh
	// TTL (its soft expiry; the key expires at the hard expiry, TTL, jittered,
	// plus StaleIfError). A read after the soft expiry is a miss: the
	// loader runs, and its value replaces the stale one; but if the loader
	// fails (any error other than a not-found or a panic, a timeout
	// included), GetOrLoad returns the stale value with a nil error and
	// reports EventStaleServed (Err: the loader's error) to OnEvent, Stats
	// and the metrics. Get, GetMany and GetManyOrLoad treat a value past
	// its soft expiry as a miss and never serve it. Tombstones are not
	// kept; Delete and Invalidate remove the value, stale or not. Not
	// available with Lock (New returns ErrInvalidOptions). Values cached
	// with it carry 12 more bytes (their soft expiry and load time).
	// Default: 0 (off: a value lives TTL); negative or under 1ms is invalid.
	StaleIfError time.Duration

	// Breaker, when set, puts a circuit breaker (sony/gobreaker) in front of
	// Redis: after BreakerOptions.Failures consecutive failed calls the
	// Cache stops calling Redis for BreakerOptions.CoolDown and serves
	// GetOrLoad and GetManyOrLoad from their loaders (at most
	// MaxConcurrentLoads loads at once, the rest failing with
	// ErrOverloaded), then lets probes through and closes again when they
	// succeed. While it is open, a call that needs Redis (Get, Set,
	// Invalidate, ...) fails at once with an error wrapping ErrRedis and
	// ErrBreakerOpen, and a Strict cache returns that error from
	// GetOrLoad. State changes are events (EventBreakerOpen,
	// EventBreakerHalfOpen, EventBreakerClosed) and metrics;
	// Cache.BreakerState reads it. Default: nil (no breaker: every call
	// tries Redis, as before); &BreakerOptions{} is the recommended setting
	// for a service that must keep its latency through a Redis outage.
	Breaker *BreakerOptions

	// OnEvent, when set, is called synchronously for every counted event
	// (see EventKind), for metrics, logs and tracing. It must be fast and
	// safe for concurrent use. Default: nil.
	OnEvent func(ctx context.Context, e Event)

	// TracerProvider starts a span for each call (see the package
	// documentation, Observability). Default (nil): the global provider,
	// otel.GetTracerProvider(), which costs nothing until the application
	// installs one. trace/noop's provider turns spans off.
	TracerProvider trace.TracerProvider

	// MeterProvider records the counters of Stats and the loaders'
	// durations as OpenTelemetry metrics (see the package documentation,
	// Observability). Default (nil): the global provider,
	// otel.GetMeterProvider(), which records nothing until the application
	// installs one.
	MeterProvider metric.MeterProvider
}

// Codec encodes cached values. Implementations must be safe for concurrent
// use; Unmarshal must not keep data after it returns.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the default Codec: encoding/json.
type JSON struct{}

// Marshal encodes v with json.Marshal.
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes data into v with json.Unmarshal.
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

const (
	defaultTTL         = time.Hour
	defaultNotFoundTTL = time.Minute
	defaultJitter      = 0.1
	maxJitter          = 0.9
	defaultLockWait    = time.Second
	defaultLeaseTTL    = 10 * time.Second
)

// withDefaults validates o and returns it with defaults filled in.
func (o Options) withDefaults() (Options, error) {
	bad := func(format string, args ...any) (Options, error) {
		return Options{}, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"TTL", o.TTL}, {"NotFoundTTL", o.NotFoundTTL}, {"Timeout", o.Timeout}, {"LockWait", o.LockWait}, {"LeaseTTL", o.LeaseTTL}, {"StaleIfError", o.StaleIfError}} {
		if d.v < 0 {
			return bad("%s is negative (%s)", d.name, d.v)
		}
	}
	// Redis expires keys in whole milliseconds (PX); a shorter lifetime
	// cannot be stored as such, and rounding it up would hide a unit mistake.
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"TTL", o.TTL}, {"NotFoundTTL", o.NotFoundTTL}, {"LeaseTTL", o.LeaseTTL}, {"StaleIfError", o.StaleIfError}} {
		if d.v > 0 && d.v < time.Millisecond {
			return bad("%s %s is under Redis's 1ms resolution", d.name, d.v)
		}
	}
	if math.IsNaN(o.Jitter) || math.IsInf(o.Jitter, 0) || o.Jitter > maxJitter {
		return bad("Jitter %v is not a finite number at most %v (negative disables it)", o.Jitter, maxJitter)
	}
	if math.IsNaN(o.EarlyRefresh) || math.IsInf(o.EarlyRefresh, 0) || o.EarlyRefresh < 0 {
		return bad("EarlyRefresh %v is not a finite non-negative number", o.EarlyRefresh)
	}
	if n := o.Near; n != nil {
		switch {
		case n.MaxEntries < 0 || n.MaxBytes < 0:
			return bad("Near.MaxEntries %d or Near.MaxBytes %d is negative", n.MaxEntries, n.MaxBytes)
		case n.MaxEntries > 0 && n.MaxBytes > 0:
			return bad("Near.MaxEntries and Near.MaxBytes are both set; choose one bound")
		case n.TTL < 0 || (n.TTL > 0 && n.TTL < time.Millisecond):
			return bad("Near.TTL %s is negative or under 1ms", n.TTL)
		}
	}
	if o.StaleIfError > 0 && o.Lock {
		// Lock's lease replaces the entry while the loader runs: the stale
		// value would be gone from Redis when it is needed.
		return bad("StaleIfError cannot be combined with Lock")
	}
	if b := o.Breaker; b != nil {
		switch {
		case b.CoolDown < 0 || (b.CoolDown > 0 && b.CoolDown < time.Millisecond):
			return bad("Breaker.CoolDown %s is negative or under 1ms", b.CoolDown)
		case b.MaxConcurrentLoads < 0:
			return bad("Breaker.MaxConcurrentLoads %d is negative", b.MaxConcurrentLoads)
		}
		bo := *b // the caller's struct is left as it is
		if bo.Failures == 0 {
			bo.Failures = defaultBreakerFailures
		}
		if bo.CoolDown == 0 {
			bo.CoolDown = defaultBreakerCoolDown
		}
		if bo.Probes == 0 {
			bo.Probes = 1
		}
		if bo.MaxConcurrentLoads == 0 {
			bo.MaxConcurrentLoads = defaultMaxLoads
		}
		o.Breaker = &bo
	}
	if o.TTL == 0 {
		o.TTL = defaultTTL
	}
	if o.NotFoundTTL == 0 {
		o.NotFoundTTL = defaultNotFoundTTL
	}
	switch {
	case o.Jitter == 0:
		o.Jitter = defaultJitter
	case o.Jitter < 0:
		o.Jitter = 0
	}
	if o.Codec == nil {
		o.Codec = JSON{}
	}
	if o.IsNotFound == nil {
		o.IsNotFound = DefaultIsNotFound
	}
	if o.LockWait == 0 {
		o.LockWait = defaultLockWait
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = defaultLeaseTTL
	}
	return o, nil
}
