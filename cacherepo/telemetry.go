package cacherepo

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/polystore/polystore/internal/otelglobal"
)

// ScopeName is the instrumentation scope of the spans and metrics that
// cacherepo emits: the name of its tracer and meter.
const ScopeName = "github.com/polystore/polystore/cacherepo"

// Attribute keys. The conventions' own are written out rather than taken
// from a semconv package so that the library imports the API alone.
const (
	attrSystem    = attribute.Key("db.system.name")
	attrOperation = attribute.Key("db.operation.name")
	attrBatchSize = attribute.Key("db.operation.batch.size")
	attrErrorType = attribute.Key("error.type")
	// attrNamespace is Options.Namespace, on every span and measurement.
	attrNamespace = attribute.Key("polystore.cache.namespace")
	// attrResult is what a one-key call served (see callResult).
	attrResult = attribute.Key("polystore.cache.result")
	// attrTier is where a hit was served from: redis or near.
	attrTier = attribute.Key("polystore.cache.tier")
	// attrLoadResult is a loader's outcome: value, not_found, error, panic.
	attrLoadResult = attribute.Key("polystore.cache.load.result")
	// attrBreakerState is the state the circuit breaker entered.
	attrBreakerState = attribute.Key("polystore.cache.breaker.state")
)

const systemRedis = "redis"

// op is an instrumented method; its name is the method's.
type op uint8

const (
	opGet op = iota
	opSet
	opDelete
	opInvalidate
	opGetMany
	opSetMany
	opGetOrLoad
	opGetManyOrLoad
	numOps
)

var opNames = [numOps]string{"Get", "Set", "Delete", "Invalidate", "GetMany", "SetMany", "GetOrLoad", "GetManyOrLoad"}

// callResult is what a call served, the value of polystore.cache.result; on a
// batch span, each key's result is counted instead.
type callResult uint8

const (
	resultNone callResult = iota
	resultHit
	resultNearHit
	resultMiss
	resultTombstone
	resultStale
	resultFailOpen
	numResults
)

var resultNames = [numResults]string{"", "hit", "near_hit", "miss", "tombstone", "stale", "fail_open"}

// batchAttrs are the attributes of a batch span that count its keys' results.
var batchAttrs = [numResults]attribute.Key{
	resultHit:       "polystore.cache.batch.hits",
	resultNearHit:   "polystore.cache.batch.near_hits",
	resultMiss:      "polystore.cache.batch.misses",
	resultTombstone: "polystore.cache.batch.tombstones",
	resultStale:     "polystore.cache.batch.stale",
	resultFailOpen:  "polystore.cache.batch.fail_open",
}

// errClass is the error.type of a failed call, of a Redis error, or of a
// loader's error.
type errClass uint8

const (
	classNone errClass = iota
	classNotFound
	classMiss
	classInvalid
	classCodec
	classLoaderPanic
	classCanceled
	classDeadlineExceeded
	classTimeout
	classPoolTimeout
	classClosed
	classConnection
	classServer
	classRedis
	classOther
	classBreakerOpen
	classOverloaded
	numClasses
)

var classNames = [numClasses]string{
	"", "not_found", "miss", "invalid", "codec", "loader_panic", "canceled",
	"deadline_exceeded", "timeout", "pool_timeout", "closed", "connection",
	"server", "redis", "_OTHER", "breaker_open", "overloaded",
}

// classify returns the error.type of err: the cache's own sentinels first,
// then what ended a Redis call. A loader's error that is none of these is
// _OTHER.
func classify(err error) errClass {
	switch {
	case err == nil:
		return classNone
	case errors.Is(err, ErrLoaderPanic):
		return classLoaderPanic
	case errors.Is(err, ErrNotFound):
		return classNotFound
	case errors.Is(err, ErrMiss):
		return classMiss
	case errors.Is(err, ErrInvalid):
		return classInvalid
	case errors.Is(err, ErrCodec):
		return classCodec
	case errors.Is(err, ErrBreakerOpen):
		return classBreakerOpen
	case errors.Is(err, ErrOverloaded):
		return classOverloaded
	case errors.Is(err, context.Canceled):
		return classCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return classDeadlineExceeded
	case errors.Is(err, redis.ErrPoolTimeout):
		return classPoolTimeout
	case errors.Is(err, redis.ErrClosed):
		return classClosed
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return classServer // an error reply: READONLY, NOSCRIPT, LOADING...
	}
	var nerr net.Error
	if errors.As(err, &nerr) {
		if nerr.Timeout() {
			return classTimeout
		}
		return classConnection
	}
	if errors.Is(err, ErrRedis) {
		return classRedis
	}
	return classOther
}

// telemetry holds what a Cache needs to emit its spans and metrics, built
// once by New so that a call only looks things up.
type telemetry struct {
	// tracerProvider is Options.TracerProvider; nil means the global one.
	tracerProvider trace.TracerProvider
	tracer         trace.Tracer
	noopTracer     bool // Options.TracerProvider is the API's no-op one

	spanNames [numOps]string
	spanOpts  [numOps][]trace.SpanStartOption
	loadOpts  []trace.SpanStartOption

	// counters holds the counter of each EventKind (nil for those counted
	// elsewhere), with the attributes of its measurements in opts.
	counters [len(eventNames)]metric.Int64Counter
	opts     [len(eventNames)][]metric.AddOption
	// redisOpts and failOpenOpts are by error.type, built at first use.
	redisOpts    [numClasses]atomic.Pointer[[]metric.AddOption]
	failOpen     metric.Int64Counter
	failOpenOpts [numClasses]atomic.Pointer[[]metric.AddOption]
	loads        metric.Int64Counter
	loadDuration metric.Float64Histogram
	// loadOpts by load result: value, not_found, error, panic.
	loadAdd    [numLoadResults][]metric.AddOption
	loadRecord [numLoadResults][]metric.RecordOption
	namespace  attribute.KeyValue
	meter      metric.Meter
	// breakerGauge is the registration of the breaker's state gauge, nil
	// without a breaker; Close unregisters it.
	breakerGauge metric.Registration
}

type loadResult uint8

const (
	loadValue loadResult = iota
	loadNotFound
	loadError
	loadPanic
	numLoadResults
)

var loadResultNames = [numLoadResults]string{"value", "not_found", "error", "panic"}

// newTelemetry builds a Cache's telemetry from its options' providers (nil:
// the global ones).
func newTelemetry(namespace string, tp trace.TracerProvider, mp metric.MeterProvider) *telemetry {
	t := &telemetry{tracerProvider: tp, namespace: attrNamespace.String(namespace)}
	if tp == nil {
		tp = otel.GetTracerProvider()
	} else if _, ok := tp.(tracenoop.TracerProvider); ok {
		t.noopTracer = true
	}
	t.tracer = tp.Tracer(ScopeName)
	for o := range numOps {
		t.spanNames[o] = "cacherepo." + opNames[o]
		if namespace != "" {
			t.spanNames[o] += " " + namespace
		}
		// Internal: the client spans are redisotel's, one per command.
		t.spanOpts[o] = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(
			attrSystem.String(systemRedis), attrOperation.String(opNames[o]), t.namespace)}
	}
	t.loadOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(t.namespace)}

	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(ScopeName)
	t.meter = m
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if err != nil {
			otel.Handle(err)
			return metricnoop.Int64Counter{}
		}
		return c
	}
	set := func(kvs ...attribute.KeyValue) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(append(kvs, t.namespace)...))
	}
	stateChanges := counter("polystore.cache.breaker.state_changes", "{change}", "Circuit breaker state changes, by polystore.cache.breaker.state entered: open, half_open or closed.")
	hits := counter("polystore.cache.hits", "{hit}", "Values served from the cache, by tier: redis or near.")
	for _, e := range []struct {
		kind    EventKind
		counter metric.Int64Counter
		attrs   []attribute.KeyValue
	}{
		{EventHit, hits, []attribute.KeyValue{attrTier.String("redis")}},
		{EventNearHit, hits, []attribute.KeyValue{attrTier.String("near")}},
		{EventMiss, counter("polystore.cache.misses", "{miss}", "Reads of GetOrLoad and GetManyOrLoad that found no value nor tombstone."), nil},
		{EventTombstoneHit, counter("polystore.cache.tombstone_hits", "{hit}", "Cached not-found answers served."), nil},
		{EventLockWait, counter("polystore.cache.lease_waits", "{wait}", "Waits for another process's load (Options.Lock)."), nil},
		{EventStaleWriteRefused, counter("polystore.cache.stale_writes_refused", "{write}", "Loaded values not cached because the key changed or the lease expired while they loaded."), nil},
		{EventCodecError, counter("polystore.cache.codec_errors", "{error}", "Cached entries that could not be decoded."), nil},
		{EventEarlyRefresh, counter("polystore.cache.early_refreshes", "{refresh}", "Hits reloaded before their expiry (Options.EarlyRefresh)."), nil},
		{EventBreakerOpen, stateChanges, []attribute.KeyValue{attrBreakerState.String("open")}},
		{EventBreakerHalfOpen, stateChanges, []attribute.KeyValue{attrBreakerState.String("half_open")}},
		{EventBreakerClosed, stateChanges, []attribute.KeyValue{attrBreakerState.String("closed")}},
		{EventStaleServed, counter("polystore.cache.stale_served", "{value}", "Values served past their fresh TTL because the loader failed (Options.StaleIfError)."), nil},
		{EventOverloaded, counter("polystore.cache.overloaded", "{load}", "Loads without Redis refused with ErrOverloaded (BreakerOptions.MaxConcurrentLoads)."), nil},
		{EventSubscriptionLost, counter("polystore.cache.subscription_losses", "{loss}", "Losses of the pub/sub subscription of the near tier and Lock waiters."), nil},
	} {
		t.counters[e.kind] = e.counter
		t.opts[e.kind] = []metric.AddOption{set(e.attrs...)}
	}
	t.counters[EventRedisError] = counter("polystore.cache.redis.errors", "{error}", "Failed Redis calls, by error.type.")
	t.failOpen = counter("polystore.cache.fail_open", "{call}", "Calls served from the loader because Redis failed (fail open), by the error.type of the Redis error.")
	t.loads = counter("polystore.cache.loads", "{load}", "Loader calls, by polystore.cache.load.result: value, not_found, error or panic.")
	h, err := m.Float64Histogram("polystore.cache.load.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of loader calls, by polystore.cache.load.result."),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10))
	if err != nil {
		otel.Handle(err)
		h = metricnoop.Float64Histogram{}
	}
	t.loadDuration = h
	for r := range numLoadResults {
		s := set(attrLoadResult.String(loadResultNames[r]))
		t.loadAdd[r] = []metric.AddOption{s}
		t.loadRecord[r] = []metric.RecordOption{s}
	}
	return t
}

// tracing reports whether a span started now could be recorded.
func (t *telemetry) tracing() bool {
	if t.tracerProvider != nil {
		return !t.noopTracer
	}
	return otelglobal.Tracing()
}

// opSpan is the span of one call, put in the context that the call's work
// runs under, so that the event points (Cache.event) find it and mark it,
// and the commands' spans (redisotel's) become its children.
type opSpan struct {
	trace.Span
	batch  bool
	result atomic.Uint32 // of a one-key call; the last one set wins
	counts [numResults]atomic.Int32
	class  atomic.Uint32 // error.type of a fail-open's Redis error
}

// start begins the span of a call of o.
func (t *telemetry) start(ctx context.Context, o op) (context.Context, *opSpan) {
	ctx, span := t.tracer.Start(ctx, t.spanNames[o], t.spanOpts[o]...)
	s := &opSpan{Span: span, batch: o == opGetMany || o == opSetMany || o == opGetManyOrLoad}
	return trace.ContextWithSpan(ctx, s), s
}

// spanOf returns the span of the call that ctx belongs to, or nil.
func spanOf(ctx context.Context) *opSpan {
	s, _ := trace.SpanFromContext(ctx).(*opSpan)
	return s
}

// mark records that the call (a key of a batch) served r.
func (s *opSpan) mark(r callResult) {
	if s.batch {
		s.counts[r].Add(1)
	} else {
		s.result.Store(uint32(r))
	}
}

// keys records a batch's key count.
func (s *opSpan) keys(n int) { s.SetAttributes(attrBatchSize.Int(n)) }

// end ends the span with the call's result and error.
func (s *opSpan) end(err error) {
	if s.batch {
		for r := resultHit; r < numResults; r++ {
			if n := s.counts[r].Load(); n > 0 {
				s.SetAttributes(batchAttrs[r].Int(int(n)))
			}
		}
	} else if r := callResult(s.result.Load()); r != resultNone {
		s.SetAttributes(attrResult.String(resultNames[r]))
	}
	class := classify(err)
	if class == classNone {
		if c := errClass(s.class.Load()); c != classNone {
			// Served from the loader: the call succeeded, the Redis
			// error's class says why the cache was not used.
			s.SetAttributes(attrErrorType.String(classNames[c]))
		}
	} else {
		s.SetAttributes(attrErrorType.String(classNames[class]))
		s.RecordError(err)
		s.SetStatus(codes.Error, err.Error())
	}
	s.End()
}

// endPanicked ends the span of a call whose loader panicked (or called
// runtime.Goexit) while the panic goes on.
func (s *opSpan) endPanicked() {
	s.SetAttributes(attrErrorType.String(classNames[classLoaderPanic]))
	s.SetStatus(codes.Error, ErrLoaderPanic.Error())
	s.End()
}

// eventResults maps the events that say what a call served to its result.
var eventResults = [len(eventNames)]callResult{
	EventHit: resultHit, EventNearHit: resultNearHit, EventMiss: resultMiss,
	EventTombstoneHit: resultTombstone, EventStaleWriteRefused: resultStale,
	// A hit chosen for an early refresh counts no EventHit: it served a
	// cached value, or the refreshed one.
	EventEarlyRefresh: resultHit,
}

// spanEvents names the span event of the events that get one.
var spanEvents = [len(eventNames)]string{
	EventLockWait: "lease_wait", EventRedisError: "redis_error", EventCodecError: "codec_error",
	EventEarlyRefresh: "early_refresh", EventStaleWriteRefused: "stale_write_refused",
	EventStaleServed: "stale_served",
}

// event records an event of the Cache (see Cache.event) in the metrics and
// on the span of the call that ctx belongs to.
func (t *telemetry) event(ctx context.Context, kind EventKind, err error, d time.Duration) {
	switch kind {
	case EventRedisError:
		t.counters[kind].Add(ctx, 1, byClass(&t.redisOpts, classify(err), t.namespace)...)
	case EventLoad, EventLoadError, EventLoaderPanic:
		r := loadValue
		switch {
		case kind == EventLoaderPanic:
			r = loadPanic
		case kind == EventLoadError:
			r = loadError
		case err != nil:
			r = loadNotFound
		}
		t.loads.Add(ctx, 1, t.loadAdd[r]...)
		if r != loadPanic {
			t.loadDuration.Record(ctx, d.Seconds(), t.loadRecord[r]...)
		}
	default:
		if c := t.counters[kind]; c != nil {
			c.Add(ctx, 1, t.opts[kind]...)
		}
	}
	if !t.tracing() {
		return
	}
	s := spanOf(ctx)
	if s == nil {
		return
	}
	if r := eventResults[kind]; r != resultNone {
		s.mark(r)
	}
	if name := spanEvents[kind]; name != "" && s.IsRecording() {
		if err != nil {
			s.AddEvent(name, trace.WithAttributes(attrErrorType.String(classNames[classify(err)])))
		} else {
			s.AddEvent(name)
		}
	}
}

// failedOpen records that a call is served from the loader because Redis
// failed with err.
func (t *telemetry) failedOpen(ctx context.Context, err error) {
	class := classify(err)
	t.failOpen.Add(ctx, 1, byClass(&t.failOpenOpts, class, t.namespace)...)
	if !t.tracing() {
		return
	}
	if s := spanOf(ctx); s != nil {
		s.mark(resultFailOpen)
		s.class.Store(uint32(class))
	}
}

// byClass returns the options of a measurement with error.type class,
// building them once.
func byClass(cache *[numClasses]atomic.Pointer[[]metric.AddOption], class errClass, ns attribute.KeyValue) []metric.AddOption {
	p := &cache[class]
	if opts := p.Load(); opts != nil {
		return *opts
	}
	opts := []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(ns, attrErrorType.String(classNames[class])))}
	p.Store(&opts)
	return opts
}

// runLoad calls load under a child span "cacherepo.load" of the call's span
// (when it has one), so that the loader's own work (its database spans)
// goes under it. keys is the batch's key count, 0 for one key.
func runLoad[R any](t *telemetry, ctx context.Context, keys int, isNotFound func(error) bool, load func(context.Context) (R, error)) (R, error) {
	if !t.tracing() || spanOf(ctx) == nil {
		return load(ctx)
	}
	lctx, span := t.tracer.Start(ctx, "cacherepo.load", t.loadOpts...)
	if keys > 0 {
		span.SetAttributes(attrBatchSize.Int(keys))
	}
	normal := false
	defer func() {
		if !normal { // the loader panicked or called runtime.Goexit: the panic goes on
			span.SetAttributes(attrLoadResult.String(loadResultNames[loadPanic]), attrErrorType.String(classNames[classLoaderPanic]))
			span.SetStatus(codes.Error, ErrLoaderPanic.Error())
			span.End()
		}
	}()
	v, err := load(lctx)
	normal = true
	switch {
	case err == nil:
		span.SetAttributes(attrLoadResult.String(loadResultNames[loadValue]))
	case isNotFound(err):
		span.SetAttributes(attrLoadResult.String(loadResultNames[loadNotFound]))
	default:
		span.SetAttributes(attrLoadResult.String(loadResultNames[loadError]), attrErrorType.String(classNames[classify(err)]))
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	return v, err
}

// observeBreaker publishes the breaker's state as the gauge
// polystore.cache.breaker.state: 0 closed, 1 half-open, 2 open. The
// callback holds the breaker, not the Cache.
func (t *telemetry) observeBreaker(b *breaker) {
	ns := metric.WithAttributeSet(attribute.NewSet(t.namespace))
	g, err := t.meter.Int64ObservableGauge("polystore.cache.breaker.state", metric.WithUnit("{state}"),
		metric.WithDescription("Circuit breaker state (Options.Breaker): 0 closed, 1 half-open, 2 open."))
	if err == nil {
		t.breakerGauge, err = t.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
			o.ObserveInt64(g, int64(BreakerState(b.state.Load())-BreakerClosed), ns)
			return nil
		}, g)
	}
	if err != nil {
		otel.Handle(err)
	}
}

// close unregisters what observeBreaker registered.
func (t *telemetry) close() {
	if t.breakerGauge != nil {
		if err := t.breakerGauge.Unregister(); err != nil {
			otel.Handle(err)
		}
	}
}
