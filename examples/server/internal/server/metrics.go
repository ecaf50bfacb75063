package server

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/polystore/polystore/cacherepo"
	"github.com/polystore/polystore/coord"
)

// metric is one value a collector reports at each scrape.
type metric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func() float64
}

// funcCollector reports values read at scrape time from a stats source
// (pool or cache counters that the libraries keep themselves).
type funcCollector []metric

// Describe sends every metric's description.
func (c funcCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c {
		ch <- m.desc
	}
}

// Collect reads every value now.
func (c funcCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value())
	}
}

func counter(name, help string, v func() float64) metric {
	return metric{prometheus.NewDesc(name, help, nil, nil), prometheus.CounterValue, v}
}

func gauge(name, help string, v func() float64) metric {
	return metric{prometheus.NewDesc(name, help, nil, nil), prometheus.GaugeValue, v}
}

// postgresPoolMetrics reports pgxpool's statistics.
func postgresPoolMetrics(pool *pgxpool.Pool) prometheus.Collector {
	st := func(f func(*pgxpool.Stat) float64) func() float64 {
		return func() float64 { return f(pool.Stat()) }
	}
	return funcCollector{
		gauge("postgres_pool_total_conns", "Connections open in the PostgreSQL pool.", st(func(s *pgxpool.Stat) float64 { return float64(s.TotalConns()) })),
		gauge("postgres_pool_acquired_conns", "Connections in use.", st(func(s *pgxpool.Stat) float64 { return float64(s.AcquiredConns()) })),
		gauge("postgres_pool_idle_conns", "Idle connections.", st(func(s *pgxpool.Stat) float64 { return float64(s.IdleConns()) })),
		gauge("postgres_pool_max_conns", "Most connections the pool opens.", st(func(s *pgxpool.Stat) float64 { return float64(s.MaxConns()) })),
		counter("postgres_pool_acquires_total", "Connections acquired from the pool.", st(func(s *pgxpool.Stat) float64 { return float64(s.AcquireCount()) })),
		counter("postgres_pool_empty_acquires_total", "Acquires that had to wait for a connection.", st(func(s *pgxpool.Stat) float64 { return float64(s.EmptyAcquireCount()) })),
		counter("postgres_pool_acquire_seconds_total", "Time spent acquiring connections.", st(func(s *pgxpool.Stat) float64 { return s.AcquireDuration().Seconds() })),
	}
}

// redisPoolMetrics reports go-redis's pool statistics.
func redisPoolMetrics(client redis.UniversalClient) prometheus.Collector {
	st := func(f func(*redis.PoolStats) float64) func() float64 {
		return func() float64 { return f(client.PoolStats()) }
	}
	return funcCollector{
		gauge("redis_pool_total_conns", "Connections open in the Redis pool.", st(func(s *redis.PoolStats) float64 { return float64(s.TotalConns) })),
		gauge("redis_pool_idle_conns", "Idle connections.", st(func(s *redis.PoolStats) float64 { return float64(s.IdleConns) })),
		counter("redis_pool_hits_total", "Times a free connection was found in the pool.", st(func(s *redis.PoolStats) float64 { return float64(s.Hits) })),
		counter("redis_pool_misses_total", "Times no free connection was found.", st(func(s *redis.PoolStats) float64 { return float64(s.Misses) })),
		counter("redis_pool_timeouts_total", "Times waiting for a connection timed out.", st(func(s *redis.PoolStats) float64 { return float64(s.Timeouts) })),
	}
}

// cacheMetrics reports the profile cache's counters.
func cacheMetrics(stats func() cacherepo.Stats) prometheus.Collector {
	st := func(f func(cacherepo.Stats) uint64) func() float64 {
		return func() float64 { return float64(f(stats())) }
	}
	return funcCollector{
		counter("profile_cache_hits_total", "Profile reads served from Redis.", st(func(s cacherepo.Stats) uint64 { return s.Hits })),
		counter("profile_cache_misses_total", "Profile reads that found nothing in Redis.", st(func(s cacherepo.Stats) uint64 { return s.Misses })),
		counter("profile_cache_loads_total", "Profiles loaded from PostgreSQL.", st(func(s cacherepo.Stats) uint64 { return s.Loads })),
		counter("profile_cache_load_errors_total", "Loads from PostgreSQL that failed.", st(func(s cacherepo.Stats) uint64 { return s.LoadErrors })),
		counter("profile_cache_tombstone_hits_total", "Reads of unknown users answered by a cached not-found.", st(func(s cacherepo.Stats) uint64 { return s.TombstoneHits })),
		counter("profile_cache_stale_writes_refused_total", "Loaded profiles not cached because an update invalidated them meanwhile.", st(func(s cacherepo.Stats) uint64 { return s.StaleWritesRefused })),
		counter("profile_cache_redis_errors_total", "Redis errors the cache absorbed by reading PostgreSQL.", st(func(s cacherepo.Stats) uint64 { return s.RedisErrors })),
		counter("profile_cache_breaker_opens_total", "Times the cache's circuit breaker opened (Redis not called for a cool-down).", st(func(s cacherepo.Stats) uint64 { return s.BreakerOpens })),
		counter("profile_cache_overloaded_total", "Profile reads shed (503) while the breaker was open and the bound of loads without Redis was reached.", st(func(s cacherepo.Stats) uint64 { return s.Overloaded })),
	}
}

// sagaStepMetrics counts coord's step events, and returns the hooks that
// feed it.
func sagaStepMetrics(reg prometheus.Registerer) (coord.Hooks, error) {
	steps := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "saga_steps_total",
		Help: "Saga step events, by saga, step and event (succeeded, failed, compensated).",
	}, []string{"saga", "step", "event"})
	if err := reg.Register(steps); err != nil {
		return coord.Hooks{}, err
	}
	count := func(event string) func(context.Context, coord.StepEvent) {
		return func(_ context.Context, e coord.StepEvent) { steps.WithLabelValues(e.Saga, e.Step, event).Inc() }
	}
	return coord.Hooks{
		StepSucceeded:   count("succeeded"),
		StepFailed:      count("failed"),
		StepCompensated: count("compensated"),
	}, nil
}

// joinHooks calls a's hooks, then b's.
func joinHooks(a, b coord.Hooks) coord.Hooks {
	join := func(f, g func(context.Context, coord.StepEvent)) func(context.Context, coord.StepEvent) {
		switch {
		case f == nil:
			return g
		case g == nil:
			return f
		}
		return func(ctx context.Context, e coord.StepEvent) { f(ctx, e); g(ctx, e) }
	}
	return coord.Hooks{
		StepStarted:     join(a.StepStarted, b.StepStarted),
		StepSucceeded:   join(a.StepSucceeded, b.StepSucceeded),
		StepFailed:      join(a.StepFailed, b.StepFailed),
		StepCompensated: join(a.StepCompensated, b.StepCompensated),
		RecoverFailed: func(ctx context.Context, err error) {
			if a.RecoverFailed != nil {
				a.RecoverFailed(ctx, err)
			}
			if b.RecoverFailed != nil {
				b.RecoverFailed(ctx, err)
			}
		},
	}
}
