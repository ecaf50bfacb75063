package cacherepo_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/polystore/polystore/cacherepo"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// telemetryRecorder is an SDK tracer and meter provider that keep what
// they record in memory.
type telemetryRecorder struct {
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
	mp     *sdkmetric.MeterProvider
}

func newTelemetryRecorder(t *testing.T) *telemetryRecorder {
	t.Helper()
	r := &telemetryRecorder{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	r.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	t.Cleanup(func() {
		_ = r.tp.Shutdown(context.Background())
		_ = r.mp.Shutdown(context.Background())
	})
	return r
}

// options returns o emitting to r.
func (r *telemetryRecorder) options(o cacherepo.Options) cacherepo.Options {
	o.TracerProvider, o.MeterProvider = r.tp, r.mp
	return o
}

// named returns the ended spans named name, in the order they ended.
func (r *telemetryRecorder) named(name string) []sdktrace.ReadOnlySpan {
	var found []sdktrace.ReadOnlySpan
	for _, s := range r.spans.Ended() {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	return found
}

// childrenOf returns the names of the ended spans whose parent is span.
func (r *telemetryRecorder) childrenOf(span sdktrace.ReadOnlySpan) []string {
	var names []string
	for _, s := range r.spans.Ended() {
		if s.Parent().SpanID() == span.SpanContext().SpanID() && s.SpanContext().TraceID() == span.SpanContext().TraceID() {
			names = append(names, s.Name())
		}
	}
	return names
}

func attrsOf(kvs []attribute.KeyValue) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

func eventNamesOf(s sdktrace.ReadOnlySpan) []string {
	var names []string
	for _, e := range s.Events() {
		names = append(names, e.Name)
	}
	return names
}

// sum returns the total of metric name over the data points that carry
// every attribute of want (for a histogram, the count of measurements).
func (r *telemetryRecorder) sum(t *testing.T, name string, want ...attribute.KeyValue) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.reader.Collect(context.Background(), &rm))
	matches := func(set attribute.Set) bool {
		for _, kv := range want {
			if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
				return false
			}
		}
		return true
	}
	var total int64
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != cacherepo.ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if matches(p.Attributes) {
						total += p.Value
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					if matches(p.Attributes) {
						total += int64(p.Count)
					}
				}
			case metricdata.Sum[float64]:
				for _, p := range d.DataPoints {
					if matches(p.Attributes) && p.Value > 0 {
						total++
					}
				}
			default:
				t.Fatalf("metric %s: unexpected data %T", name, m.Data)
			}
		}
	}
	return total
}

// commandSpans is a go-redis hook that records the span each command's
// context carries: where redisotel hangs its command spans.
type commandSpans struct {
	mu      sync.Mutex
	parents map[string][]trace.SpanID // by command name
}

func (h *commandSpans) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *commandSpans) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.record(ctx, cmd.Name())
		return next(ctx, cmd)
	}
}

func (h *commandSpans) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			h.record(ctx, cmd.Name())
		}
		return next(ctx, cmds)
	}
}

func (h *commandSpans) record(ctx context.Context, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.parents == nil {
		h.parents = map[string][]trace.SpanID{}
	}
	h.parents[name] = append(h.parents[name], trace.SpanContextFromContext(ctx).SpanID())
}

func (h *commandSpans) of(name string) []trace.SpanID {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]trace.SpanID(nil), h.parents[name]...)
}

var (
	tierRedis = attribute.String("polystore.cache.tier", "redis")
	tierNear  = attribute.String("polystore.cache.tier", "near")
)

func TestGetOrLoad_Telemetry_MissThenHitMovesSpansAndCounters(t *testing.T) {
	ctx := context.Background()
	r := newTelemetryRecorder(t)
	c, client, prefix := newCache[user](t, r.options(cacherepo.Options{Namespace: "users:"}))
	var commands commandSpans
	client.AddHook(&commands)
	namespace := prefix + "users:"
	ns := attribute.String("polystore.cache.namespace", namespace)

	ctx, parent := r.tp.Tracer("test").Start(ctx, "request")
	var loaderSpan trace.SpanContext
	load := func(ctx context.Context) (user, error) {
		loaderSpan = trace.SpanContextFromContext(ctx)
		return user{ID: 1, Name: "Ann"}, nil
	}
	got, err := c.GetOrLoad(ctx, "1", load)
	require.NoError(t, err)
	require.Equal(t, "Ann", got.Name)
	got, err = c.GetOrLoad(ctx, "1", load)
	require.NoError(t, err)
	require.Equal(t, "Ann", got.Name)
	parent.End()

	spans := r.named("cacherepo.GetOrLoad " + namespace)
	require.Len(t, spans, 2)
	miss, hit := spans[0], spans[1]
	for _, s := range spans {
		assert.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID(), "a child of the caller's span")
		assert.Equal(t, trace.SpanKindInternal, s.SpanKind())
		a := attrsOf(s.Attributes())
		assert.Equal(t, "redis", a["db.system.name"].AsString())
		assert.Equal(t, "GetOrLoad", a["db.operation.name"].AsString())
		assert.Equal(t, namespace, a["polystore.cache.namespace"].AsString())
		assert.Equal(t, codes.Unset, s.Status().Code)
	}
	assert.Equal(t, "miss", attrsOf(miss.Attributes())["polystore.cache.result"].AsString())
	assert.Equal(t, "hit", attrsOf(hit.Attributes())["polystore.cache.result"].AsString())

	assert.Equal(t, []string{"cacherepo.load"}, r.childrenOf(miss), "the loader is a child of the miss")
	assert.Empty(t, r.childrenOf(hit), "a hit loads nothing")
	loads := r.named("cacherepo.load")
	require.Len(t, loads, 1)
	assert.Equal(t, loads[0].SpanContext().SpanID(), loaderSpan.SpanID(), "the loader's context carries the load span")
	assert.Equal(t, "value", attrsOf(loads[0].Attributes())["polystore.cache.load.result"].AsString())

	// The commands run under the call's span: redisotel's spans are its children.
	gets := commands.of("get")
	require.Len(t, gets, 2)
	assert.Equal(t, miss.SpanContext().SpanID(), gets[0])
	assert.Equal(t, hit.SpanContext().SpanID(), gets[1])
	assert.Contains(t, commands.of("set"), miss.SpanContext().SpanID(), "the miss's write")

	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.misses", ns))
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.hits", ns, tierRedis))
	assert.Equal(t, int64(0), r.sum(t, "polystore.cache.hits", ns, tierNear))
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.loads", ns, attribute.String("polystore.cache.load.result", "value")))
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.load.duration", ns), "one load measured")
	st := c.Stats()
	assert.Equal(t, cacherepo.Stats{Hits: 1, Misses: 1, Loads: 1}, st, "the metrics count what Stats does")
}

func TestGetOrLoad_Telemetry_TombstoneAndNotFoundLoad(t *testing.T) {
	ctx := context.Background()
	r := newTelemetryRecorder(t)
	c, _, namespace := newCache[user](t, r.options(cacherepo.Options{}))
	load := func(context.Context) (user, error) { return user{}, cacherepo.ErrNotFound }
	for range 2 {
		_, err := c.GetOrLoad(ctx, "gone", load)
		require.ErrorIs(t, err, cacherepo.ErrNotFound)
	}
	spans := r.named("cacherepo.GetOrLoad " + namespace)
	require.Len(t, spans, 2)
	assert.Equal(t, "miss", attrsOf(spans[0].Attributes())["polystore.cache.result"].AsString())
	assert.Equal(t, "tombstone", attrsOf(spans[1].Attributes())["polystore.cache.result"].AsString())
	for _, s := range spans {
		assert.Equal(t, "not_found", attrsOf(s.Attributes())["error.type"].AsString())
		assert.Equal(t, codes.Error, s.Status().Code)
	}
	loads := r.named("cacherepo.load")
	require.Len(t, loads, 1)
	assert.Equal(t, "not_found", attrsOf(loads[0].Attributes())["polystore.cache.load.result"].AsString())
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.tombstone_hits"))
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.loads", attribute.String("polystore.cache.load.result", "not_found")))
}

func TestGetOrLoad_Telemetry_InvalidatedDuringTheLoadIsStale(t *testing.T) {
	ctx := context.Background()
	r := newTelemetryRecorder(t)
	c, _, namespace := newCache[user](t, r.options(cacherepo.Options{}))
	_, err := c.GetOrLoad(ctx, "1", func(ctx context.Context) (user, error) {
		// The record changes while it loads: its old value must not be cached.
		require.NoError(t, c.Invalidate(ctx, "1"))
		return user{ID: 1}, nil
	})
	require.NoError(t, err)

	spans := r.named("cacherepo.GetOrLoad " + namespace)
	require.Len(t, spans, 1)
	assert.Equal(t, "stale", attrsOf(spans[0].Attributes())["polystore.cache.result"].AsString())
	assert.Contains(t, eventNamesOf(spans[0]), "stale_write_refused")
	load := r.named("cacherepo.load")
	require.Len(t, load, 1)
	assert.Equal(t, []string{"cacherepo.Invalidate " + namespace}, r.childrenOf(load[0]), "the loader's work goes under the load span")
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.stale_writes_refused"))
	assert.Equal(t, uint64(1), c.Stats().StaleWritesRefused)
}

func TestGetOrLoad_Telemetry_LoaderErrorIsRecordedOnTheLoadSpan(t *testing.T) {
	ctx := context.Background()
	r := newTelemetryRecorder(t)
	c, _, namespace := newCache[user](t, r.options(cacherepo.Options{}))
	boom := errors.New("db down")
	_, err := c.GetOrLoad(ctx, "1", func(context.Context) (user, error) { return user{}, boom })
	require.ErrorIs(t, err, boom)

	call := r.named("cacherepo.GetOrLoad " + namespace)
	require.Len(t, call, 1)
	assert.Equal(t, "_OTHER", attrsOf(call[0].Attributes())["error.type"].AsString())
	assert.Equal(t, codes.Error, call[0].Status().Code)
	load := r.named("cacherepo.load")
	require.Len(t, load, 1)
	assert.Equal(t, "error", attrsOf(load[0].Attributes())["polystore.cache.load.result"].AsString())
	assert.Equal(t, codes.Error, load[0].Status().Code)
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.loads", attribute.String("polystore.cache.load.result", "error")))
}

func TestGetOrLoad_Telemetry_NearTierHitIsMarked(t *testing.T) {
	ctx := context.Background()
	r := newTelemetryRecorder(t)
	c, _, namespace := newCache[string](t, r.options(cacherepo.Options{Near: &cacherepo.NearOptions{}}))
	t.Cleanup(func() { _ = c.Close() })
	awaitNear(t, c)
	require.NoError(t, c.Set(ctx, "1", "v", 0))
	nearBefore, redisBefore, statsBefore := r.sum(t, "polystore.cache.hits", tierNear), r.sum(t, "polystore.cache.hits", tierRedis), c.Stats()
	for range 2 {
		_, err := c.GetOrLoad(ctx, "1", mustHit)
		require.NoError(t, err)
	}

	spans := r.named("cacherepo.GetOrLoad " + namespace)
	require.NotEmpty(t, spans)
	last := spans[len(spans)-1]
	assert.Equal(t, "near_hit", attrsOf(last.Attributes())["polystore.cache.result"].AsString())
	assert.Empty(t, r.childrenOf(last), "no Redis command, no load")
	stats := c.Stats()
	assert.Positive(t, stats.NearHits-statsBefore.NearHits)
	assert.Equal(t, int64(stats.NearHits-statsBefore.NearHits), r.sum(t, "polystore.cache.hits", tierNear)-nearBefore, "counted by tier as in Stats")
	assert.Equal(t, int64(stats.Hits-statsBefore.Hits), r.sum(t, "polystore.cache.hits", tierRedis)-redisBefore)
}

// downClient is a client of a port where nothing listens.
func downClient(t *testing.T) *redis.Client {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	return client
}

func TestGetOrLoad_Telemetry_RedisDownIsFailOpenWithErrorType(t *testing.T) {
	ctx := context.Background()
	r := newTelemetryRecorder(t)
	c, err := cacherepo.New[user](downClient(t), r.options(cacherepo.Options{Namespace: "down:"}))
	require.NoError(t, err)
	got, err := c.GetOrLoad(ctx, "1", func(context.Context) (user, error) { return user{ID: 1}, nil })
	require.NoError(t, err, "fail open: served from the loader")
	assert.Equal(t, 1, got.ID)

	spans := r.named("cacherepo.GetOrLoad down:")
	require.Len(t, spans, 1)
	a := attrsOf(spans[0].Attributes())
	assert.Equal(t, "fail_open", a["polystore.cache.result"].AsString())
	assert.Equal(t, "connection", a["error.type"].AsString(), "the Redis error's class")
	assert.Equal(t, codes.Unset, spans[0].Status().Code, "the call succeeded")
	assert.Contains(t, eventNamesOf(spans[0]), "redis_error")
	assert.Equal(t, []string{"cacherepo.load"}, r.childrenOf(spans[0]))

	conn := attribute.String("error.type", "connection")
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.fail_open", conn))
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.redis.errors", conn))
	assert.Equal(t, uint64(1), c.Stats().RedisErrors)

	// Strict: the same failure is the call's error.
	strict, err := cacherepo.New[user](downClient(t), r.options(cacherepo.Options{Namespace: "strict:", Strict: true}))
	require.NoError(t, err)
	_, err = strict.GetOrLoad(ctx, "1", func(context.Context) (user, error) { return user{ID: 1}, nil })
	require.ErrorIs(t, err, cacherepo.ErrRedis)
	spans = r.named("cacherepo.GetOrLoad strict:")
	require.Len(t, spans, 1)
	assert.Equal(t, "connection", attrsOf(spans[0].Attributes())["error.type"].AsString())
	assert.Equal(t, codes.Error, spans[0].Status().Code)
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.fail_open"), "Strict serves nothing from the loader")
}

func TestGetManyOrLoad_Telemetry_SpanCountsKeysByResult(t *testing.T) {
	ctx := context.Background()
	r := newTelemetryRecorder(t)
	c, _, namespace := newCache[user](t, r.options(cacherepo.Options{}))
	require.NoError(t, c.SetMany(ctx, map[string]user{"1": {ID: 1}}, 0))
	got, err := c.GetManyOrLoad(ctx, []string{"1", "2", "3"}, func(_ context.Context, missing []string) (map[string]user, error) {
		return map[string]user{"2": {ID: 2}}, nil // 3 does not exist
	})
	require.NoError(t, err)
	assert.Len(t, got, 2)
	many, err := c.GetMany(ctx, []string{"1", "2", "4"})
	require.NoError(t, err)
	assert.Len(t, many, 2)

	set := r.named("cacherepo.SetMany " + namespace)
	require.Len(t, set, 1)
	assert.Equal(t, int64(1), attrsOf(set[0].Attributes())["db.operation.batch.size"].AsInt64())

	spans := r.named("cacherepo.GetManyOrLoad " + namespace)
	require.Len(t, spans, 1)
	a := attrsOf(spans[0].Attributes())
	assert.Equal(t, int64(3), a["db.operation.batch.size"].AsInt64())
	assert.Equal(t, int64(1), a["polystore.cache.batch.hits"].AsInt64())
	assert.Equal(t, int64(2), a["polystore.cache.batch.misses"].AsInt64())
	assert.Equal(t, []string{"cacherepo.load"}, r.childrenOf(spans[0]))
	load := r.named("cacherepo.load")
	require.Len(t, load, 1)
	assert.Equal(t, int64(2), attrsOf(load[0].Attributes())["db.operation.batch.size"].AsInt64(), "the keys the loader was given")

	get := r.named("cacherepo.GetMany " + namespace)
	require.Len(t, get, 1)
	a = attrsOf(get[0].Attributes())
	assert.Equal(t, int64(3), a["db.operation.batch.size"].AsInt64())
	assert.Equal(t, int64(2), a["polystore.cache.batch.hits"].AsInt64())
	assert.Equal(t, int64(1), a["polystore.cache.batch.misses"].AsInt64())

	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.hits", tierRedis), "GetManyOrLoad's; GetMany is not counted, as in Stats")
	assert.Equal(t, int64(2), r.sum(t, "polystore.cache.misses"))
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.loads"), "one loader call for the batch")
}

func TestGetOrLoad_Telemetry_LeaseWaitIsAnEventAndCounted(t *testing.T) {
	client, prefix := servicetest.Redis(t)
	r := newTelemetryRecorder(t)
	c1, err := cacherepo.New[string](client, cacherepo.Options{Namespace: prefix, Lock: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c1.Close() })
	var waits events
	c2, err := cacherepo.New[string](secondClient(t), r.options(cacherepo.Options{Namespace: prefix, Lock: true, OnEvent: waits.record}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c2.Close() })

	assertOneLoadAcrossTwoCaches(t, c1, c2, &waits)

	spans := r.named("cacherepo.GetOrLoad " + prefix)
	require.Len(t, spans, 1)
	assert.Contains(t, eventNamesOf(spans[0]), "lease_wait")
	assert.Equal(t, "hit", attrsOf(spans[0].Attributes())["polystore.cache.result"].AsString(), "served the other process's value")
	assert.Empty(t, r.childrenOf(spans[0]), "no load of its own")
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.lease_waits"))
}

func TestCache_Telemetry_GetSetDeleteInvalidateAreSpans(t *testing.T) {
	ctx := context.Background()
	r := newTelemetryRecorder(t)
	c, _, namespace := newCache[user](t, r.options(cacherepo.Options{}))
	require.NoError(t, c.Set(ctx, "1", user{ID: 1}, 0))
	_, err := c.Get(ctx, "1")
	require.NoError(t, err)
	require.NoError(t, c.Delete(ctx, "1"))
	_, err = c.Get(ctx, "1")
	require.ErrorIs(t, err, cacherepo.ErrMiss)
	require.NoError(t, c.Invalidate(ctx, "1", "2"))

	ns := namespace
	require.Len(t, r.named("cacherepo.Set "+ns), 1)
	gets := r.named("cacherepo.Get " + ns)
	require.Len(t, gets, 2)
	assert.Equal(t, "hit", attrsOf(gets[0].Attributes())["polystore.cache.result"].AsString())
	a := attrsOf(gets[1].Attributes())
	assert.Equal(t, "miss", a["polystore.cache.result"].AsString())
	assert.Equal(t, "miss", a["error.type"].AsString())
	require.Len(t, r.named("cacherepo.Delete "+ns), 1)
	inv := r.named("cacherepo.Invalidate " + ns)
	require.Len(t, inv, 1)
	assert.Equal(t, int64(2), attrsOf(inv[0].Attributes())["db.operation.batch.size"].AsInt64())
}

func TestCache_Telemetry_NoopTracerProviderStartsNoSpan(t *testing.T) {
	ctx := context.Background()
	r := newTelemetryRecorder(t)
	c, client, _ := newCache[user](t, cacherepo.Options{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: r.mp})
	var commands commandSpans
	client.AddHook(&commands)
	ctx, parent := r.tp.Tracer("test").Start(ctx, "request")
	_, err := c.GetOrLoad(ctx, "1", func(context.Context) (user, error) { return user{ID: 1}, nil })
	require.NoError(t, err)
	parent.End()
	assert.Equal(t, []string{"request"}, func() []string {
		var n []string
		for _, s := range r.spans.Ended() {
			n = append(n, s.Name())
		}
		return n
	}())
	assert.Equal(t, []trace.SpanID{parent.SpanContext().SpanID()}, commands.of("get"), "the caller's context as it is")
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.misses"), "metrics still flow")
}

// TestGetOrLoad_Telemetry_NoProviderInstalledAddsNoAllocationToAHit: on
// the global providers as they are before the application installs any
// (this package's tests never install one), a hit allocates what a raw GET
// and json.Unmarshal of the same value do.
func TestGetOrLoad_Telemetry_NoProviderInstalledAddsNoAllocationToAHit(t *testing.T) {
	ctx := context.Background()
	c, client, prefix := newCache[user](t, cacherepo.Options{})
	require.NoError(t, c.Set(ctx, "42", user{ID: 42, Name: "Ann"}, 0))
	raw, err := json.Marshal(user{ID: 42, Name: "Ann"})
	require.NoError(t, err)
	require.NoError(t, client.Set(ctx, prefix+"raw:42", raw, 0).Err())
	load := func(context.Context) (user, error) { return user{}, errors.New("a hit must not load") }

	const runs = 300
	rawAllocs := testing.AllocsPerRun(runs, func() {
		b, err := client.Get(ctx, prefix+"raw:42").Bytes()
		if err != nil {
			t.Fatal(err)
		}
		var u user
		if err := json.Unmarshal(b, &u); err != nil {
			t.Fatal(err)
		}
	})
	hitAllocs := testing.AllocsPerRun(runs, func() {
		if _, err := c.GetOrLoad(ctx, "42", load); err != nil {
			t.Fatal(err)
		}
	})
	assert.LessOrEqual(t, hitAllocs, rawAllocs, "a hit allocates what GET+Unmarshal does")
}

func TestPoolMetrics_ObservesPoolStatisticsUntilUnregistered(t *testing.T) {
	ctx := context.Background()
	client, prefix := servicetest.Redis(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	r := &telemetryRecorder{reader: reader}
	unregister, err := cacherepo.PoolMetrics(client, mp)
	require.NoError(t, err)

	for i := range 5 {
		require.NoError(t, client.Set(ctx, prefix+"k", i, 0).Err())
	}
	o := client.Options()
	name := attribute.String("db.client.connection.pool.name", o.Addr+"/"+strings.TrimSpace(itoa(o.DB)))
	takes := r.sum(t, "polystore.pool.hits", name) + r.sum(t, "polystore.pool.misses", name)
	assert.GreaterOrEqual(t, takes, int64(5), "every command took a connection")
	assert.GreaterOrEqual(t, r.sum(t, "polystore.pool.misses", name), int64(1), "the first dialled")
	open := r.sum(t, "db.client.connection.count", name)
	assert.Equal(t, int64(client.PoolStats().TotalConns), open, "idle + used")
	assert.Equal(t, int64(client.PoolStats().IdleConns), r.sum(t, "db.client.connection.count", name, attribute.String("db.client.connection.state", "idle")))
	assert.Equal(t, int64(0), r.sum(t, "db.client.connection.timeouts", name))

	before := r.sum(t, "polystore.pool.hits", name)
	require.NoError(t, client.Ping(ctx).Err())
	assert.GreaterOrEqual(t, r.sum(t, "polystore.pool.hits", name), before+1, "the metric moves with the pool")

	require.NoError(t, unregister())
	assert.Equal(t, int64(0), r.sum(t, "polystore.pool.hits"), "nothing observed after unregister")
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestPoolMetrics_NilClientReturnsErrInvalid(t *testing.T) {
	_, err := cacherepo.PoolMetrics(nil, nil)
	assert.ErrorIs(t, err, cacherepo.ErrInvalid)
	var typedNil *redis.Client
	_, err = cacherepo.PoolMetrics(typedNil, nil)
	assert.ErrorIs(t, err, cacherepo.ErrInvalid)
}

// TestPackage_ImportsTheOpenTelemetryAPIOnly keeps the SDK and exporters
// out of the library's dependencies: the application chooses them.
func TestPackage_ImportsTheOpenTelemetryAPIOnly(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	require.NoError(t, err)
	var otelPkgs []string
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "go.opentelemetry.io/") {
			otelPkgs = append(otelPkgs, pkg)
			assert.False(t, strings.HasPrefix(pkg, "go.opentelemetry.io/otel/sdk") || strings.HasPrefix(pkg, "go.opentelemetry.io/otel/exporters"),
				"cacherepo depends on %s", pkg)
		}
	}
	assert.Contains(t, otelPkgs, "go.opentelemetry.io/otel/trace", "the check sees the API")
}

func TestGetOrLoad_Telemetry_LoaderPanicEndsBothSpansAndGoesOn(t *testing.T) {
	ctx := context.Background()
	r := newTelemetryRecorder(t)
	c, _, namespace := newCache[user](t, r.options(cacherepo.Options{}))
	recovered := func() (p any) {
		defer func() { p = recover() }()
		_, _ = c.GetOrLoad(ctx, "1", func(context.Context) (user, error) { panic("boom") })
		return nil
	}()
	require.Equal(t, "boom", recovered, "the panic reaches the caller with its value")

	call := r.named("cacherepo.GetOrLoad " + namespace)
	require.Len(t, call, 1, "ended despite the panic")
	assert.Equal(t, "loader_panic", attrsOf(call[0].Attributes())["error.type"].AsString())
	assert.Equal(t, codes.Error, call[0].Status().Code)
	load := r.named("cacherepo.load")
	require.Len(t, load, 1)
	assert.Equal(t, "panic", attrsOf(load[0].Attributes())["polystore.cache.load.result"].AsString())
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.loads", attribute.String("polystore.cache.load.result", "panic")))
}

// globalChildEnv marks the process that
// TestCache_Telemetry_GlobalProvidersAreTheDefault starts: installing a
// global provider cannot be undone, and this package's other tests rely on
// there being none.
const globalChildEnv = "CACHEREPO_TEST_GLOBAL_OTEL_CHILD"

// TestCache_Telemetry_GlobalProvidersAreTheDefault: a Cache built with no
// providers, before the application installs any, starts no span until
// one is installed, then follows it (otel's globals forward to it). It runs
// in a child test process of its own.
func TestCache_Telemetry_GlobalProvidersAreTheDefault(t *testing.T) {
	if os.Getenv(globalChildEnv) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCache_Telemetry_GlobalProvidersAreTheDefault$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), globalChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "the child test:\n%s", out)
		require.Contains(t, string(out), "--- PASS: TestCache_Telemetry_GlobalProvidersAreTheDefault", "the child ran the test:\n%s", out)
		return
	}
	ctx := context.Background()
	c, client, _ := newCache[user](t, cacherepo.Options{}) // before any provider is installed
	var commands commandSpans
	client.AddHook(&commands)
	load := func(context.Context) (user, error) { return user{ID: 1}, nil }

	// Nothing installed: the commands run under the caller's context as
	// is, with no span of cacherepo's in it.
	_, err := c.GetOrLoad(ctx, "1", load)
	require.NoError(t, err)
	require.Equal(t, []trace.SpanID{{}}, commands.of("get"))

	r := newTelemetryRecorder(t)
	otel.SetTracerProvider(r.tp)
	otel.SetMeterProvider(r.mp)
	_, err = c.GetOrLoad(ctx, "1", load)
	require.NoError(t, err)
	spans := r.spans.Ended()
	require.Len(t, spans, 1)
	assert.Equal(t, "hit", attrsOf(spans[0].Attributes())["polystore.cache.result"].AsString())
	assert.Equal(t, spans[0].SpanContext().SpanID(), commands.of("get")[1])
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.hits", tierRedis), "only the hit after the install is measured")
}

func TestGetManyOrLoad_Telemetry_RedisDownIsFailOpen(t *testing.T) {
	ctx := context.Background()
	r := newTelemetryRecorder(t)
	c, err := cacherepo.New[user](downClient(t), r.options(cacherepo.Options{Namespace: "down:"}))
	require.NoError(t, err)
	got, err := c.GetManyOrLoad(ctx, []string{"1", "2"}, func(_ context.Context, missing []string) (map[string]user, error) {
		return map[string]user{"1": {ID: 1}, "2": {ID: 2}}, nil
	})
	require.NoError(t, err, "fail open: served from the loader")
	assert.Len(t, got, 2)

	spans := r.named("cacherepo.GetManyOrLoad down:")
	require.Len(t, spans, 1)
	a := attrsOf(spans[0].Attributes())
	assert.Equal(t, int64(2), a["db.operation.batch.size"].AsInt64())
	assert.Equal(t, int64(1), a["polystore.cache.batch.fail_open"].AsInt64(), "one read served around")
	assert.Equal(t, "connection", a["error.type"].AsString())
	assert.Equal(t, codes.Unset, spans[0].Status().Code)
	assert.Equal(t, int64(1), r.sum(t, "polystore.cache.fail_open", attribute.String("error.type", "connection")))
}

func TestPoolMetrics_ClusterClientSumsItsNodesPools(t *testing.T) {
	ctx := context.Background()
	client, prefix := servicetest.RedisCluster(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	r := &telemetryRecorder{reader: reader}
	unregister, err := cacherepo.PoolMetrics(client, mp)
	require.NoError(t, err)
	t.Cleanup(func() { _ = unregister() })

	for i := range 10 {
		require.NoError(t, client.Set(ctx, prefix+itoa(i), i, 0).Err())
	}
	name := attribute.String("db.client.connection.pool.name", strings.Join(client.Options().Addrs, ","))
	// The cluster client's own background work (slot reloads) may take
	// connections too: at least every SET's.
	assert.GreaterOrEqual(t, r.sum(t, "polystore.pool.hits", name)+r.sum(t, "polystore.pool.misses", name), int64(10))
	assert.GreaterOrEqual(t, r.sum(t, "db.client.connection.count", name), int64(1))
}
