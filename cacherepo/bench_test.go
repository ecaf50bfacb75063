package cacherepo_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polystore/polystore/cacherepo"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/redis/go-redis/v9"
)

// Benchmarks run against the raw go-redis client doing the same work in the
// same run; compare with
//
//	go test -run '^$' -bench . -benchmem -count 6 ./cacherepo/ > /tmp/cacherepo-bench.txt
//	go run golang.org/x/perf/cmd/benchstat@latest -col /impl /tmp/cacherepo-bench.txt

var benchUser = user{ID: 42, Name: "Ada Lovelace"}

func benchCache(b *testing.B, opts cacherepo.Options) (*cacherepo.Cache[user], *redis.Client, string) {
	b.Helper()
	client, prefix := servicetest.Redis(b)
	opts.Namespace = prefix
	c, err := cacherepo.New[user](client, opts)
	if err != nil {
		b.Fatal(err)
	}
	return c, client, prefix
}

// BenchmarkGetOrLoadHit: the hit path of GetOrLoad against a raw GET and
// json.Unmarshal of the same value. Both build the key per call, as
// cache-aside code does.
func BenchmarkGetOrLoadHit(b *testing.B) {
	ctx := context.Background()
	c, client, prefix := benchCache(b, cacherepo.Options{})
	if err := c.Set(ctx, "42", benchUser, 0); err != nil {
		b.Fatal(err)
	}
	raw, _ := json.Marshal(benchUser)
	if err := client.Set(ctx, prefix+"raw:42", raw, 0).Err(); err != nil {
		b.Fatal(err)
	}
	load := func(context.Context) (user, error) { return user{}, errors.New("a hit must not load") }
	id := "42"

	b.Run("impl=polystore", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			u, err := c.GetOrLoad(ctx, id, load)
			if err != nil || u.ID != 42 {
				b.Fatal(u, err)
			}
		}
	})
	b.Run("impl=breaker", func(b *testing.B) {
		// The same hit through Options.Breaker: gobreaker's Allow and done.
		cb, err := cacherepo.New[user](client, cacherepo.Options{Namespace: prefix + "breaker:", Breaker: &cacherepo.BreakerOptions{}})
		if err != nil {
			b.Fatal(err)
		}
		if err := cb.Set(ctx, id, benchUser, 0); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			u, err := cb.GetOrLoad(ctx, id, load)
			if err != nil || u.ID != 42 {
				b.Fatal(u, err)
			}
		}
	})
	for _, local := range []struct {
		impl   string
		shared bool
	}{{"local", false}, {"local-shared", true}} {
		b.Run("impl="+local.impl, func(b *testing.B) {
			benchNearHit(b, client, prefix+local.impl+":", local.shared, id, load)
		})
	}
	b.Run("impl=raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, err := client.Get(ctx, prefix+"raw:"+id).Bytes()
			if err != nil {
				b.Fatal(err)
			}
			var u user
			if err := json.Unmarshal(data, &u); err != nil || u.ID != 42 {
				b.Fatal(u, err)
			}
		}
	})
}

var missSeq atomic.Int64

// BenchmarkGetOrLoadMiss: a miss of a key never cached, its load (free
// here, so that only the cache's own cost shows) and the store, against
// hand-written cache-aside: GET, load, SET. Both are two round trips.
func BenchmarkGetOrLoadMiss(b *testing.B) {
	ctx := context.Background()
	c, client, prefix := benchCache(b, cacherepo.Options{})
	load := func(context.Context) (user, error) { return benchUser, nil }

	b.Run("impl=polystore", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			key := fmt.Sprintf("miss:polystore:%d", missSeq.Add(1))
			u, err := c.GetOrLoad(ctx, key, load)
			if err != nil || u.ID != 42 {
				b.Fatal(u, err)
			}
		}
	})
	b.Run("impl=raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			key := prefix + fmt.Sprintf("miss:raw:%d", missSeq.Add(1))
			data, err := client.Get(ctx, key).Bytes()
			if err == nil || !errors.Is(err, redis.Nil) {
				b.Fatal("not a miss", err)
			}
			_ = data
			u, err := load(ctx)
			if err != nil {
				b.Fatal(err)
			}
			data, err = json.Marshal(u)
			if err != nil {
				b.Fatal(err)
			}
			if err := client.Set(ctx, key, data, time.Hour).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchNearHit is GetOrLoad served from the near tier.
func benchNearHit(b *testing.B, client *redis.Client, namespace string, shared bool, id string, load func(context.Context) (user, error)) {
	ctx := context.Background()
	near, err := cacherepo.New[user](client, cacherepo.Options{Namespace: namespace, Near: &cacherepo.NearOptions{Shared: shared}})
	if err != nil {
		b.Fatal(err)
	}
	defer near.Close()
	if err := near.Set(ctx, id, benchUser, 0); err != nil {
		b.Fatal(err)
	}
	for near.Stats().NearHits == 0 { // until the subscription is up
		if _, err := near.GetOrLoad(ctx, id, load); err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	b.ReportAllocs()
	for b.Loop() {
		u, err := near.GetOrLoad(ctx, id, load)
		if err != nil || u.ID != 42 {
			b.Fatal(u, err)
		}
	}
}

// BenchmarkGetOrLoadHitTimeout: the hit path with Options.Timeout set, on a
// client with ContextTimeoutEnabled (the deadline goes on the context) and
// on one without it (the GET runs on a goroutine the caller can leave).
func BenchmarkGetOrLoadHitTimeout(b *testing.B) {
	ctx := context.Background()
	for _, tc := range []struct {
		impl     string
		deadline bool
	}{{"contexttimeout", true}, {"detached", false}} {
		b.Run("impl="+tc.impl, func(b *testing.B) {
			_, prefix := servicetest.Redis(b)
			opts, err := redis.ParseURL(servicetest.RedisURL(b))
			if err != nil {
				b.Fatal(err)
			}
			opts.ContextTimeoutEnabled = tc.deadline
			tclient := redis.NewClient(opts)
			b.Cleanup(func() { _ = tclient.Close() })
			c, err := cacherepo.New[user](tclient, cacherepo.Options{Namespace: prefix, Timeout: time.Second})
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Set(ctx, "42", benchUser, 0); err != nil {
				b.Fatal(err)
			}
			load := func(context.Context) (user, error) { return user{}, errors.New("a hit must not load") }
			b.ReportAllocs()
			for b.Loop() {
				u, err := c.GetOrLoad(ctx, "42", load)
				if err != nil || u.ID != 42 {
					b.Fatal(u, err)
				}
			}
		})
	}
}

// percentiles reports the p50 and p99 of ds as metrics named after what.
func percentiles(b *testing.B, what string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), what+"-p50-µs")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), what+"-p99-µs")
}

// BenchmarkNearInvalidation: the delay from Invalidate on one instance to
// the key being gone from another instance's near tier (two clients, as two
// processes), measured from the start of the Invalidate call. Run it with
// -benchtime 1000x for 1,000 invalidations.
func BenchmarkNearInvalidation(b *testing.B) {
	ctx := context.Background()
	client, prefix := servicetest.Redis(b)
	opts := cacherepo.Options{Namespace: prefix, Near: &cacherepo.NearOptions{}}
	c1, err := cacherepo.New[user](client, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer c1.Close()
	o, err := redis.ParseURL(servicetest.RedisURL(b))
	if err != nil {
		b.Fatal(err)
	}
	client2 := redis.NewClient(o)
	defer client2.Close()
	c2, err := cacherepo.New[user](client2, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer c2.Close()
	load := func(context.Context) (user, error) { return user{}, errors.New("a hit must not load") }
	var delays, afterReturn []time.Duration
	for b.Loop() {
		b.StopTimer()
		if err := c1.Set(ctx, "k", benchUser, 0); err != nil {
			b.Fatal(err)
		}
		// Until c2 serves k from its near tier (after c1's message dropped
		// its previous entry and a read stored the new one).
		for hits := c2.Stats().NearHits; c2.Stats().NearHits < hits+2; {
			if _, err := c2.GetOrLoad(ctx, "k", load); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		start := time.Now()
		if err := c1.Invalidate(ctx, "k"); err != nil {
			b.Fatal(err)
		}
		returned := time.Now()
		for {
			if _, err := c2.Get(ctx, "k"); errors.Is(err, cacherepo.ErrMiss) {
				break // gone from the near tier: Redis answered with the marker
			} else if err != nil {
				b.Fatal(err)
			}
			runtime.Gosched()
		}
		delays = append(delays, time.Since(start))
		afterReturn = append(afterReturn, time.Since(returned))
	}
	percentiles(b, "gone", delays)
	percentiles(b, "gone-after-return", afterReturn)
}

// BenchmarkLockWaiterWakeup: with Lock, a second process waits for the
// first one's load; the metric is the delay from the loader's return to the
// waiter's (the loader takes no time of its own here).
func BenchmarkLockWaiterWakeup(b *testing.B) {
	ctx := context.Background()
	client, prefix := servicetest.Redis(b)
	opts := cacherepo.Options{Namespace: prefix, Lock: true, LockWait: 10 * time.Second}
	c1, err := cacherepo.New[user](client, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer c1.Close()
	o, err := redis.ParseURL(servicetest.RedisURL(b))
	if err != nil {
		b.Fatal(err)
	}
	client2 := redis.NewClient(o)
	defer client2.Close()
	c2, err := cacherepo.New[user](client2, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer c2.Close()
	time.Sleep(100 * time.Millisecond) // let both subscribe
	var delays []time.Duration
	i := 0
	for b.Loop() {
		i++
		key := fmt.Sprintf("wake:%d", i)
		started, release := make(chan struct{}), make(chan struct{})
		var released time.Time
		first := make(chan error, 1)
		go func() {
			_, err := c1.GetOrLoad(ctx, key, func(context.Context) (user, error) {
				close(started)
				<-release
				released = time.Now()
				return benchUser, nil
			})
			first <- err
		}()
		<-started
		waits := c2.Stats().LockWaits
		second := make(chan time.Time, 1)
		go func() {
			if _, err := c2.GetOrLoad(ctx, key, func(context.Context) (user, error) { return user{}, errors.New("the waiter loaded") }); err != nil {
				b.Error(err)
			}
			second <- time.Now()
		}()
		for c2.Stats().LockWaits == waits {
			time.Sleep(100 * time.Microsecond)
		}
		time.Sleep(time.Millisecond) // into its wait, past its first look
		close(release)
		done := <-second
		if err := <-first; err != nil {
			b.Fatal(err)
		}
		delays = append(delays, done.Sub(released))
	}
	percentiles(b, "wake", delays)
}

// BenchmarkGetMany100: GetMany of 100 keys (one MGET) against 100 sequential
// Get calls of the Cache and of the raw client.
func BenchmarkGetMany100(b *testing.B) {
	ctx := context.Background()
	c, client, prefix := benchCache(b, cacherepo.Options{})
	keys := make([]string, 100)
	items := make(map[string]user, len(keys))
	raw, _ := json.Marshal(benchUser)
	for i := range keys {
		keys[i] = fmt.Sprint(i)
		items[keys[i]] = benchUser
		if err := client.Set(ctx, prefix+"raw:"+keys[i], raw, 0).Err(); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.SetMany(ctx, items, 0); err != nil {
		b.Fatal(err)
	}

	b.Run("impl=polystore", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			got, err := c.GetMany(ctx, keys)
			if err != nil || len(got) != len(keys) {
				b.Fatal(len(got), err)
			}
		}
	})
	b.Run("impl=polystore-sequential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, k := range keys {
				if _, err := c.Get(ctx, k); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("impl=raw-sequential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, k := range keys {
				data, err := client.Get(ctx, prefix+"raw:"+k).Bytes()
				if err != nil {
					b.Fatal(err)
				}
				var u user
				if err := json.Unmarshal(data, &u); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

var stampedeSeq atomic.Int64

// BenchmarkStampede1000: 1,000 goroutines miss one key at once; the metric
// loader-calls/op counts how often the "database" was hit per stampede. The
// raw variant is hand-written cache-aside (GET, on a miss load and SET).
func BenchmarkStampede1000(b *testing.B) {
	const goroutines = 1000
	ctx := context.Background()
	c, client, prefix := benchCache(b, cacherepo.Options{})

	run := func(b *testing.B, impl string, get func(key string, load func(context.Context) (user, error)) error) {
		var calls atomic.Int64
		n := 0
		for b.Loop() {
			n++
			// A key never used before, also across the runs of b.Loop.
			key := fmt.Sprintf("stampede:%s:%d", impl, stampedeSeq.Add(1))
			release := make(chan struct{})
			var entered atomic.Int64
			load := func(context.Context) (user, error) {
				calls.Add(1)
				<-release
				return benchUser, nil
			}
			var wg sync.WaitGroup
			for range goroutines {
				wg.Go(func() {
					entered.Add(1)
					if err := get(key, load); err != nil {
						b.Error(err)
					}
				})
			}
			// Release the load once every goroutine has started; the
			// goroutines that are still before their GET then miss too,
			// since the value is written only after the load returns.
			for entered.Load() < goroutines {
				runtime.Gosched()
			}
			close(release)
			wg.Wait()
		}
		b.ReportMetric(float64(calls.Load())/float64(n), "loader-calls/op")
	}

	b.Run("impl=polystore", func(b *testing.B) {
		run(b, "polystore", func(key string, load func(context.Context) (user, error)) error {
			_, err := c.GetOrLoad(ctx, key, load)
			return err
		})
	})
	b.Run("impl=raw", func(b *testing.B) {
		run(b, "raw", func(key string, load func(context.Context) (user, error)) error {
			data, err := client.Get(ctx, prefix+key).Bytes()
			if err == nil {
				var u user
				return json.Unmarshal(data, &u)
			}
			if !errors.Is(err, redis.Nil) {
				return err
			}
			u, err := load(ctx)
			if err != nil {
				return err
			}
			data, _ = json.Marshal(u)
			return client.Set(ctx, prefix+key, data, 0).Err()
		})
	})
}
