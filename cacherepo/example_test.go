package cacherepo_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/polystore/polystore/cacherepo"
	"github.com/redis/go-redis/v9"
)

type User struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// findUser stands for a database read, such as a pgrepo Get; it returns an
// error wrapping cacherepo.ErrNotFound (or pgrepo.ErrNotFound) for a
// missing row.
func findUser(_ context.Context, id string) (User, error) {
	if id == "1" {
		return User{ID: "1", Name: "Ada"}, nil
	}
	return User{}, fmt.Errorf("user %s: %w", id, cacherepo.ErrNotFound)
}

// The zero Options are the common case: a one-hour TTL spread by ±10%,
// JSON, one-minute tombstones, fail-open on Redis errors.
func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	users, err := cacherepo.New[User](rdb, cacherepo.Options{Namespace: "users:"})
	if err != nil {
		log.Fatal(err)
	}
	_ = users
}

// GetOrLoad is the read path: a hit costs one GET; a miss calls the loader
// once per key however many callers miss together.
func ExampleCache_GetOrLoad() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	users, err := cacherepo.New[User](rdb, cacherepo.Options{Namespace: "users:"})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	id := "1"
	u, err := users.GetOrLoad(ctx, id, func(ctx context.Context) (User, error) {
		return findUser(ctx, id)
	})
	switch {
	case errors.Is(err, cacherepo.ErrNotFound):
		fmt.Println("no such user") // cached as a tombstone for Options.NotFoundTTL
	case err != nil:
		log.Print(err) // the loader's error: Redis errors do not reach here
	default:
		fmt.Println(u.Name)
	}
}

// Invalidate goes after the database write commits: a load that read the
// old row before it can no longer write the old row to the cache.
func ExampleCache_Invalidate() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	users, err := cacherepo.New[User](rdb, cacherepo.Options{Namespace: "users:"})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	// ... UPDATE users SET name = 'Ada L.' WHERE id = '1'; COMMIT ...
	if err := users.Invalidate(ctx, "1"); err != nil {
		log.Print(err) // retry: until it succeeds the old value may be served
	}
}

// GetManyOrLoad reads a page of keys in one MGET and loads only the misses,
// in one batch.
func ExampleCache_GetManyOrLoad() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	users, err := cacherepo.New[User](rdb, cacherepo.Options{Namespace: "users:"})
	if err != nil {
		log.Fatal(err)
	}
	got, err := users.GetManyOrLoad(context.Background(), []string{"1", "2", "3"},
		func(ctx context.Context, missing []string) (map[string]User, error) {
			out := make(map[string]User, len(missing))
			for _, id := range missing { // in real code: one WHERE id = ANY($1)
				if u, err := findUser(ctx, id); err == nil {
					out[id] = u
				}
			}
			return out, nil // ids left out are cached as not found
		})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(got))
}

// A cache for a hot key shared by many processes: a cross-process lock so
// one process loads while the others wait, early refresh before expiry, and
// a bound on every Redis call. OnEvent feeds metrics and logs.
func ExampleOptions() {
	rdb := redis.NewClient(&redis.Options{
		Addr: "127.0.0.1:6379",
		// Lets Options.Timeout reach socket reads.
		ContextTimeoutEnabled: true,
	})
	prices, err := cacherepo.New[float64](rdb, cacherepo.Options{
		Namespace:    "{prices}:", // a hash tag: all on one Cluster node
		TTL:          5 * time.Minute,
		NotFoundTTL:  10 * time.Second,
		Jitter:       0.2,
		Timeout:      50 * time.Millisecond,
		Lock:         true,
		LockWait:     500 * time.Millisecond,
		EarlyRefresh: 1,
		OnEvent: func(ctx context.Context, e cacherepo.Event) {
			if e.Kind == cacherepo.EventRedisError {
				log.Printf("cache %s: %v", e.Key, e.Err)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer prices.Close() // Lock subscribes to the namespace's channel
	_ = prices.Stats().Hits
}

// A near tier for a read-mostly namespace: hits are served in process
// (about a microsecond) and every instance drops a key as soon as any
// instance changes it; see the README's consistency model for the window
// between a change and its message.
func ExampleNearOptions() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	users, err := cacherepo.New[User](rdb, cacherepo.Options{
		Namespace: "users:",
		Near:      &cacherepo.NearOptions{MaxEntries: 50_000, TTL: time.Minute},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer users.Close() // stops the subscription
	u, err := users.GetOrLoad(context.Background(), "1", func(ctx context.Context) (User, error) {
		return findUser(ctx, "1")
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = u
}

// PoolMetrics reports the client's connection pool to an OpenTelemetry
// MeterProvider (nil: the global one) until unregister is called.
// redisotel's tracing makes each command a child span of the cacherepo
// call that sent it: see the README's Observability section.
func ExamplePoolMetrics() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	unregister, err := cacherepo.PoolMetrics(rdb, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer unregister()
}

// A cache that keeps its latency through a Redis outage: each Redis call is
// bounded by Timeout, five consecutive failures open the breaker for five
// seconds (no Redis call at all, loads straight from the database, at most
// 64 at once), then one probe closes it again.
func ExampleBreakerOptions() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	users, err := cacherepo.New[User](rdb, cacherepo.Options{
		Namespace: "users:",
		Timeout:   150 * time.Millisecond,
		Breaker:   &cacherepo.BreakerOptions{}, // Failures 5, CoolDown 5s, Probes 1, MaxConcurrentLoads 64
		OnEvent: func(_ context.Context, e cacherepo.Event) {
			if e.Kind == cacherepo.EventBreakerOpen || e.Kind == cacherepo.EventBreakerClosed {
				log.Printf("cache breaker: %s", e.Kind)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	id := "1"
	u, err := users.GetOrLoad(ctx, id, func(ctx context.Context) (User, error) { return findUser(ctx, id) })
	switch {
	case errors.Is(err, cacherepo.ErrOverloaded):
		log.Print("Redis is down and the database is busy: answer 503") // loader not called
	case err != nil:
		log.Print(err)
	default:
		fmt.Println(u.Name)
	}
	// For /health: "closed", "half_open" or "open".
	fmt.Println(users.BreakerState())
}

// Values stay in Redis for a day past their hour of freshness; when the
// database fails after that hour, GetOrLoad returns the stale value with a
// nil error and reports EventStaleServed with the database's error.
func ExampleOptions_staleIfError() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	users, err := cacherepo.New[User](rdb, cacherepo.Options{
		Namespace:    "users:",
		TTL:          time.Hour,
		StaleIfError: 24 * time.Hour,
		OnEvent: func(_ context.Context, e cacherepo.Event) {
			if e.Kind == cacherepo.EventStaleServed {
				log.Printf("served %s stale: %v", e.Key, e.Err)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = users
}
