// Package cacherepo provides a typed cache-aside on Redis (go-redis/v9) that
// guards against the four classic failures of hand-written cache-aside:
// penetration (negative caching), stampedes (one load per key), avalanches
// (TTL jitter and early refresh) and stale sets (a value loaded before an
// invalidation is never written after it).
//
// # Use
//
//	users, err := cacherepo.New[User](rdb, cacherepo.Options{Namespace: "users:"})
//	u, err := users.GetOrLoad(ctx, id, func(ctx context.Context) (User, error) {
//		return repo.Get(ctx, id) // pgrepo.ErrNotFound is cached as a tombstone
//	})
//	// after a database write commits:
//	err = users.Invalidate(ctx, id)
//
// A Cache holds no goroutines and needs no Close, unless Options.Near or
// Options.Lock is set: then it runs one goroutine on a pub/sub connection
// of its own, which Close stops (see the README for the near tier and its
// consistency model). Work outlives a call only
// when the caller stops waiting for it: an early refresh whose caller's
// context ended finishes its load, and, with Options.Timeout on a client
// without ContextTimeoutEnabled, a Redis command that timed out ends within
// the client's own bounds. It takes any
// redis.UniversalClient; a *redis.Client (single node or Sentinel) gets MGET
// and pipelined writes, Cluster and Ring clients get pipelines, which go-redis
// splits per node.
//
// # Entries
//
// Every value the Cache writes starts with one header byte: a value, a value
// with its fresh expiry and last load time (Options.EarlyRefresh,
// Options.StaleIfError; past that expiry it is stale, never a hit), a tombstone, a
// loader's lease (Options.Lock) or the invalidation marker that Delete and
// Invalidate leave. A hit is therefore one GET whatever the key holds, and
// the lease and the marker live in the key itself, so no operation needs two
// keys in one Cluster slot. Keys are Options.Namespace + key; put a hash tag in the
// namespace ("{users}:") only to place all of a cache's keys on one node.
//
// # Misses and leases
//
// On a miss GetOrLoad collapses the callers of the process into one flight,
// run on the goroutine of the caller that starts it (the others wait, each
// until its own context ends). Without Options.Lock the flight calls the
// loader at once and writes the result with a Lua script that sets the value
// only if the key still holds exactly what the GET saw (nothing, an
// invalidation marker or a lease): GET, load, write, two round trips as in
// hand-written cache-aside. With Options.Lock it first runs a script that
// either finds the key filled meanwhile or stores a lease, a random 64-bit
// token, in the key for Options.LeaseTTL (a lease already there is shared),
// calls the loader, and writes only if the key still holds that lease; a
// process that finds another process's lease waits for its value for up to
// Options.LockWait (woken by that process's message on the namespace's
// pub/sub channel, polling only as a fallback), then loads itself rather
// than fail. A load that fails
// releases its lease (compare-and-delete).
//
// # Loader panics
//
// A loader that panics panics its own caller, with its own value, on that
// caller's goroutine: the caller's recover() or net/http's per-request
// recovery catches it, and the stack still shows the loader. Before the
// panic goes on, the lease is released (other processes load at once),
// nothing is cached, the callers that joined the flight get a *PanicError
// wrapping ErrLoaderPanic (value and stack included), and EventLoaderPanic
// is reported. The same holds for runtime.Goexit (t.FailNow) and for
// GetManyOrLoad. An early refresh recovers its loader's panic, reports it
// as EventLoaderPanic and serves the cached value: it never panics.
//
// # The stale-set guarantee
//
// Delete and Invalidate (the same operation) replace whatever the key holds
// (value, tombstone, lease) with an invalidation marker, a fresh random
// token that lives for 2×Options.LeaseTTL and that every read treats as a
// miss. Hence: once Invalidate(ctx, k) has returned nil, no load of k whose
// GET (with Lock, whose lease) ran before the marker was set, and so no
// loader that read the database before Invalidate was called, writes its
// value to k: its write expects what it saw and finds the marker (or a later
// entry). A load without Lock writes only if it ended within LeaseTTL of its
// GET, so the marker outlives every write it must refuse; with Lock the
// lease's expiry does the same. An early refresh writes only if the key
// still holds the exact entry it refreshes, so it is refused in the same
// way. Limits:
//
//   - Invalidate must run after the database write commits; a load that
//     starts between an early Invalidate and the commit reads the old row
//     and may cache it.
//   - If Invalidate returns an error, nothing is guaranteed: retry it.
//   - Redis replication is asynchronous: a marker acknowledged by a primary
//     that fails over before replicating it is lost, and with it the
//     guarantee for that key.
//   - Set and SetMany write unconditionally: a caller that sets an old
//     value writes it.
//   - Without Lock the bound on a load's write is a clock: the guarantee
//     holds unless Redis executes the write more than LeaseTTL after the
//     process sent it.
//   - A loader started before Invalidate still returns its (older) value to
//     its own caller and to the callers of its process that joined its
//     flight; Invalidate makes later callers of the same process start a new
//     flight, but cannot do so in other processes.
//   - Tokens are 64 random bits: a stale write needs a collision on one key
//     (2⁻⁶⁴). An early refresh is fooled only if the key again holds an
//     entry byte-identical to the one it read, expiry millisecond included.
//
// # Penetration, avalanches, Redis failures
//
// When the loader's error satisfies Options.IsNotFound (by default
// ErrNotFound, or any error with a NotFound() bool method returning true,
// as pgrepo and docrepo errors have), a tombstone is cached for
// Options.NotFoundTTL and the loader is not called again until it expires.
// Every TTL is spread by Options.Jitter (±10% by default). With
// Options.EarlyRefresh, hits are reloaded before expiry with the
// probability of XFetch, in the request that draws it: it waits for the
// reload, or serves the cached value if its context ends first (the reload
// then goes on).
//
// Options.Timeout bounds every Redis call whatever the client's settings;
// a client built with ContextTimeoutEnabled enforces it on the socket,
// otherwise the Cache stops waiting for the call at the deadline and leaves
// it to finish in the background (see Options.Timeout).
//
// When Redis fails or exceeds Options.Timeout, GetOrLoad and GetManyOrLoad
// serve from the loader and report the error to Options.OnEvent and
// Stats, not to the caller (Options.Strict returns it instead); they never
// cache anything the loader did not return. Plain operations (Get, Set,
// Delete, GetMany, SetMany, Invalidate) always return Redis errors, wrapping
// ErrRedis.
//
// Stats and Options.OnEvent count the outcomes of GetOrLoad and
// GetManyOrLoad; the plain operations return theirs to the caller.
//
// # Stale if error
//
// With Options.StaleIfError, values stay in Redis that long past their
// fresh TTL. A GetOrLoad after the fresh TTL loads; if the loader fails,
// it returns the stale value with a nil error and reports
// EventStaleServed (with the loader's error). Tombstones, Invalidate and
// the stale-set guarantee work as without it.
//
// # Circuit breaker
//
// With Options.Breaker, consecutive Redis failures open a circuit breaker
// (sony/gobreaker): for BreakerOptions.CoolDown no Redis call is made,
// plain operations fail at once with ErrRedis and ErrBreakerOpen, and
// GetOrLoad and GetManyOrLoad serve from their loaders, one load per key
// and at most BreakerOptions.MaxConcurrentLoads at once, the rest failing
// fast with ErrOverloaded. Then probes go to Redis and close it again.
// Cache.BreakerState reads the state, e.g. for a health check.
//
// # Observability
//
// A Cache emits OpenTelemetry spans and metrics through the API alone, to
// Options.TracerProvider and Options.MeterProvider (nil: the global
// providers; until the application installs one, nothing is started and
// nothing allocated). Each call is a span "cacherepo.<Method> <namespace>"
// with polystore.cache.result (hit, near_hit, miss, tombstone, stale,
// fail_open) or, for batches, db.operation.batch.size and per-result
// counts; the loader runs under a child span "cacherepo.load"; lease waits
// and Redis errors are span events with error.type. The metrics
// (polystore.cache.hits by tier, misses, tombstone_hits, loads,
// load.duration, lease_waits, redis.errors, fail_open, ...) count at the
// points Stats does. PoolMetrics reports go-redis's PoolStats. redisotel's
// command spans become children of cacherepo's. The names are listed in the
// README's Observability section.
//
// # Invalid arguments
//
// A negative or impossible value never silently becomes a default: New
// refuses such options with an error wrapping ErrInvalidOptions (which
// wraps ErrInvalid), and every call refuses an empty key, a nil context, a
// nil loader, or a Set/SetMany TTL that is negative or under Redis's 1ms
// resolution with an error wrapping ErrInvalid, before any Redis I/O. Zero
// means the default only where a field or argument says so.
package cacherepo
