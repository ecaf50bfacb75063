package coord

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// telemetryRecorder is a tracer and meter provider with in-memory
// recorders, as one process's SDK.
type telemetryRecorder struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
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

// options returns coordinator options that emit to r.
func (r *telemetryRecorder) options(o Options) Options {
	o.TracerProvider, o.MeterProvider = r.tp, r.mp
	return o
}

// span returns the only ended span named name.
func (r *telemetryRecorder) span(t *testing.T, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range r.spans.Ended() {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	require.Len(t, found, 1, "spans named %q among %v", name, r.names())
	return found[0]
}

func (r *telemetryRecorder) names() []string {
	var names []string
	for _, s := range r.spans.Ended() {
		names = append(names, s.Name())
	}
	return names
}

// childrenOf returns the names of the ended spans whose parent is span, in
// the order they started.
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

// sum returns the value of the counter (or up-down counter) name for the
// data points carrying all of want, or the count of the histogram name's
// measurements; and whether any point matched.
func (r *telemetryRecorder) sum(t *testing.T, name string, want ...attribute.KeyValue) (int64, bool) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.reader.Collect(context.Background(), &rm))
	var total int64
	found := false
	matches := func(set attribute.Set) bool {
		for _, kv := range want {
			if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
				return false
			}
		}
		found = true
		return true
	}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != ScopeName {
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
			case metricdata.Gauge[int64]:
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
			default:
				t.Fatalf("metric %s: unexpected data %T", name, m.Data)
			}
		}
	}
	return total, found
}

func (r *telemetryRecorder) value(t *testing.T, name string, want ...attribute.KeyValue) int64 {
	t.Helper()
	v, _ := r.sum(t, name, want...)
	return v
}

var regName = attrSagaName.String("register-user")

func TestRun_Telemetry_ASuccessfulSagaIsASpanUnderTheCallersWithAChildPerStep(t *testing.T) {
	f := newFixture(t)
	r := newTelemetryRecorder(t)
	c, h := f.coordinator(t, r.options(Options{}))

	ctx, request := r.tp.Tracer("app").Start(context.Background(), "POST /users")
	_, err := h.Run(ctx, "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.NoError(t, err)
	request.End()

	run := r.span(t, "coord.Run register-user")
	assert.Equal(t, request.SpanContext().SpanID(), run.Parent().SpanID(), "the run is a child of the caller's span")
	assert.Equal(t, request.SpanContext().TraceID(), run.SpanContext().TraceID())
	assert.Equal(t, trace.SpanKindInternal, run.SpanKind())
	a := attrsOf(run.Attributes())
	assert.Equal(t, "u1", a[attrSagaID].AsString())
	assert.Equal(t, "register-user", a[attrSagaName].AsString())
	assert.Equal(t, "succeeded", a[attrStatus].AsString())
	assert.Equal(t, codes.Unset, run.Status().Code)

	assert.Equal(t, []string{"coord.step create-user", "coord.step welcome-conversation", "coord.step activate-user", "coord.step cache-profile"},
		r.childrenOf(run), "a span per step, children of the run, in order")
	for i, name := range []string{stepCreateUser, stepWelcome, stepActivate, stepCache} {
		step := r.span(t, "coord.step "+name)
		a := attrsOf(step.Attributes())
		assert.Equal(t, "u1", a[attrSagaID].AsString(), name)
		assert.Equal(t, "register-user", a[attrSagaName].AsString(), name)
		assert.Equal(t, name, a[attrStep].AsString())
		assert.EqualValues(t, i, a[attrStepIndex].AsInt64(), name)
		assert.False(t, a[attrCompensation].AsBool(), name)
		assert.EqualValues(t, 1, a[attrAttempt].AsInt64(), name)
		assert.Empty(t, step.Events(), name)
	}

	// The record keeps the run's trace context for a recovery to link to.
	var traceparent string
	require.NoError(t, f.pool.QueryRow(context.Background(),
		`select trace_context->>'traceparent' from coord_saga where id = 'u1'`).Scan(&traceparent))
	assert.Equal(t, "00-"+run.SpanContext().TraceID().String()+"-"+run.SpanContext().SpanID().String()+"-01", traceparent)

	// Metrics.
	assert.EqualValues(t, 1, r.value(t, "coord.saga.started", regName))
	assert.EqualValues(t, 1, r.value(t, "coord.saga.finished", regName, attrStatus.String("succeeded")))
	assert.EqualValues(t, 1, r.value(t, "coord.saga.duration", regName, attrStatus.String("succeeded")))
	assert.EqualValues(t, 4, r.value(t, "coord.step.duration", regName, attrCompensation.Bool(false)), "a try per step")
	assert.EqualValues(t, 1, r.value(t, "coord.step.duration", regName, attrStep.String(stepCache)))
	assert.Zero(t, r.value(t, "coord.saga.active", regName), "none in flight after Run returned")
	assert.Zero(t, r.value(t, "coord.saga.recoveries"))
	failed, ok := r.sum(t, "coord.saga.failed", regName)
	assert.True(t, ok, "the failed gauge reports the registered definition")
	assert.Zero(t, failed)
	_ = c
}

// TestRun_Telemetry_StepContextCarriesTheStepSpan: what a step does with
// its context (a repository call, a driver call under otelpgx, redisotel
// or otelmongo) goes under the step's span; and the saga is in flight while
// a step runs.
func TestRun_Telemetry_StepContextCarriesTheStepSpan(t *testing.T) {
	f := newFixture(t)
	r := newTelemetryRecorder(t)
	c, err := New(context.Background(), f.pool, r.options(Options{}))
	require.NoError(t, err)
	var inFlight int64
	h, err := Register(c, Define("traced",
		Step[regState]{Name: "store-call", Action: func(ctx context.Context, s *regState) error {
			_, span := r.tp.Tracer("store").Start(ctx, "store call")
			span.End()
			inFlight = r.value(t, "coord.saga.active", attrSagaName.String("traced"))
			return nil
		}},
	))
	require.NoError(t, err)
	_, err = h.Run(context.Background(), "t1", &regState{})
	require.NoError(t, err)

	step := r.span(t, "coord.step store-call")
	assert.Equal(t, []string{"store call"}, r.childrenOf(step))
	assert.Equal(t, []string{"coord.step store-call"}, r.childrenOf(r.span(t, "coord.Run traced")))
	assert.False(t, r.span(t, "coord.Run traced").Parent().IsValid(), "a Run without a caller's span is a root")
	assert.EqualValues(t, 1, inFlight, "coord.saga.active while the step runs")
	assert.Zero(t, r.value(t, "coord.saga.active", attrSagaName.String("traced")))
}

func TestRun_Telemetry_AFailingStepHasRetryEventsAndCompensationSpans(t *testing.T) {
	f := newFixture(t)
	f.fail(stepActivate, false, -1)
	r := newTelemetryRecorder(t)
	_, h := f.coordinator(t, r.options(Options{}))

	_, err := h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, ErrCompensated)

	run := r.span(t, "coord.Run register-user")
	assert.Equal(t, codes.Error, run.Status().Code)
	a := attrsOf(run.Attributes())
	assert.Equal(t, "compensated", a[attrStatus].AsString())
	assert.Equal(t, "compensated", a[attrErrorType].AsString())
	assert.Equal(t, []string{
		"coord.step create-user", "coord.step welcome-conversation", "coord.step activate-user",
		"coord.compensate welcome-conversation", "coord.compensate create-user",
	}, r.childrenOf(run))

	pivot := r.span(t, "coord.step activate-user")
	assert.Equal(t, codes.Error, pivot.Status().Code)
	a = attrsOf(pivot.Attributes())
	assert.EqualValues(t, 3, a[attrAttempt].AsInt64(), "the tries it ran")
	assert.Equal(t, "_OTHER", a[attrErrorType].AsString())
	var retries []int64
	for _, ev := range pivot.Events() {
		if ev.Name == "retry" {
			ea := attrsOf(ev.Attributes)
			retries = append(retries, ea[attrAttempt].AsInt64())
			assert.Equal(t, "_OTHER", ea[attrErrorType].AsString())
			assert.Contains(t, ea[attrMessage].AsString(), "injected failure")
		}
	}
	assert.Equal(t, []int64{2, 3}, retries, "a retry event per try after the first, with the try it starts")

	comp := r.span(t, "coord.compensate welcome-conversation")
	a = attrsOf(comp.Attributes())
	assert.True(t, a[attrCompensation].AsBool())
	assert.EqualValues(t, 1, a[attrStepIndex].AsInt64())
	assert.Equal(t, codes.Unset, comp.Status().Code)

	assert.EqualValues(t, 1, r.value(t, "coord.saga.finished", regName, attrStatus.String("compensated")))
	assert.EqualValues(t, 3, r.value(t, "coord.step.duration", attrStep.String(stepActivate), attrErrorType.String("_OTHER")))
	assert.EqualValues(t, 2, r.value(t, "coord.step.duration", regName, attrCompensation.Bool(true)))
}

// TestRecover_Telemetry_ARecoveryAfterACrashLinksToTheOriginalTrace cuts a
// run at a step boundary, as a process dying there would; another
// coordinator, with a tracer of its own (another process), recovers the
// saga in a new trace linked to the one of the Run that started it.
func TestRecover_Telemetry_ARecoveryAfterACrashLinksToTheOriginalTrace(t *testing.T) {
	f := newFixture(t)
	first := newTelemetryRecorder(t)
	_, crashed := f.coordinator(t, first.options(Options{Owner: "crashed", LeaseDuration: testLease, crashAt: func(p crashPoint) bool {
		return p == crashPoint{stageAfterLog, stepWelcome}
	}}))
	ctx, request := first.tp.Tracer("app").Start(context.Background(), "POST /users")
	_, err := crashed.Run(ctx, "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, errCrashed)
	request.End()
	origin := request.SpanContext().TraceID()

	second := newTelemetryRecorder(t)
	recoverer, _ := f.coordinator(t, second.options(Options{Owner: "recoverer", LeaseDuration: testLease}))
	info := recoverUntilFinal(t, recoverer, "u1")
	require.Equal(t, StatusSucceeded, info.Status)

	rec := second.span(t, "coord.Recover register-user")
	assert.False(t, rec.Parent().IsValid(), "the recovery is a new root")
	assert.NotEqual(t, origin, rec.SpanContext().TraceID())
	require.Len(t, rec.Links(), 1)
	assert.Equal(t, origin, rec.Links()[0].SpanContext.TraceID(), "linked to the trace that started the saga")
	assert.Equal(t, first.span(t, "coord.Run register-user").SpanContext().SpanID(), rec.Links()[0].SpanContext.SpanID(),
		"to the Run's span")
	a := attrsOf(rec.Attributes())
	assert.Equal(t, "u1", a[attrSagaID].AsString())
	assert.Equal(t, "recover", a[attrResumedBy].AsString())
	assert.Equal(t, "succeeded", a[attrStatus].AsString())
	assert.Equal(t, []string{"coord.step activate-user", "coord.step cache-profile"}, second.childrenOf(rec),
		"the steps it ran are its children")

	assert.EqualValues(t, 1, second.value(t, "coord.saga.recoveries", regName))
	assert.EqualValues(t, 1, second.value(t, "coord.saga.finished", regName, attrStatus.String("succeeded")))
	assert.Zero(t, second.value(t, "coord.saga.started"), "the recoverer started no saga")
	assert.EqualValues(t, 1, first.value(t, "coord.saga.started", regName))
	assert.Zero(t, first.value(t, "coord.saga.finished"))
}

// TestRun_Telemetry_ARunThatTakesOverAnExpiredSagaLinksToItsTrace: a Run of
// the id of a saga whose coordinator died drives it, under its own span,
// linked to the original trace.
func TestRun_Telemetry_ARunThatTakesOverAnExpiredSagaLinksToItsTrace(t *testing.T) {
	f := newFixture(t)
	first := newTelemetryRecorder(t)
	_, crashed := f.coordinator(t, first.options(Options{LeaseDuration: testLease, crashAt: func(p crashPoint) bool {
		return p == crashPoint{stageAfterLog, stepCreateUser}
	}}))
	_, err := crashed.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, errCrashed)

	second := newTelemetryRecorder(t)
	_, h := f.coordinator(t, second.options(Options{LeaseDuration: testLease}))
	_, err = h.Run(context.Background(), "u1", &regState{})
	require.NoError(t, err)

	run := second.span(t, "coord.Run register-user")
	require.Len(t, run.Links(), 1)
	assert.Equal(t, first.span(t, "coord.Run register-user").SpanContext(), run.Links()[0].SpanContext.WithRemote(false))
	assert.Equal(t, "takeover", attrsOf(run.Attributes())[attrResumedBy].AsString())
	// The first step's try carried the record's insert, which found the
	// saga: no statement of the step ran (see execution.pending).
	assert.Equal(t, []string{"coord.step create-user", "coord.step welcome-conversation", "coord.step activate-user", "coord.step cache-profile"}, second.childrenOf(run))
	assert.EqualValues(t, 1, second.value(t, "coord.saga.recoveries", regName))
	assert.Zero(t, second.value(t, "coord.saga.started"), "the saga was started by the first Run")
}

func TestOperatorActions_Telemetry_RetryIsASpanLinkedToTheOriginalTrace(t *testing.T) {
	f := newFixture(t)
	r := newTelemetryRecorder(t)
	c, h := f.coordinator(t, r.options(Options{}))
	ctx, request := r.tp.Tracer("app").Start(context.Background(), "POST /users")
	failedSaga(t, f, h, "u1") // under no span: its trace is the Run's own
	request.End()
	origin := r.span(t, "coord.Run register-user").SpanContext()
	assert.EqualValues(t, 1, r.value(t, "coord.saga.finished", regName, attrStatus.String("failed")))
	assert.EqualValues(t, 1, r.value(t, "coord.saga.failed", regName), "the gauge counts the failed saga in the log")

	_, err := c.Retry(ctx, "u1", "alice", "mongo is back")
	require.NoError(t, err)
	retry := r.span(t, "coord.Retry")
	assert.Equal(t, request.SpanContext().SpanID(), retry.Parent().SpanID(), "a child of the operator's span")
	require.Len(t, retry.Links(), 1)
	assert.Equal(t, origin.TraceID(), retry.Links()[0].SpanContext.TraceID())
	a := attrsOf(retry.Attributes())
	assert.Equal(t, "u1", a[attrSagaID].AsString())
	assert.Equal(t, "alice", a[attrActor].AsString())
	assert.Equal(t, "retry", a[attrResumedBy].AsString())
	assert.Equal(t, "compensated", a[attrStatus].AsString())
	assert.Equal(t, []string{"coord.compensate welcome-conversation", "coord.compensate create-user"}, r.childrenOf(retry))
	assert.EqualValues(t, 1, r.value(t, "coord.saga.finished", regName, attrStatus.String("compensated")))
	assert.Zero(t, r.value(t, "coord.saga.failed", regName), "no failed saga is left")

	// Cancel and Resolve have spans too, errors included.
	err = c.Cancel(ctx, "u1", "bob", "too late")
	require.ErrorIs(t, err, ErrWrongStatus)
	cancel := r.span(t, "coord.Cancel")
	assert.Equal(t, "wrong_status", attrsOf(cancel.Attributes())[attrErrorType].AsString())
	assert.Equal(t, codes.Error, cancel.Status().Code)
	failedSaga(t, f, h, "u2")
	_, err = c.Resolve(ctx, "u2", "carol", "fixed by hand")
	require.NoError(t, err)
	assert.Equal(t, "resolved", attrsOf(r.span(t, "coord.Resolve").Attributes())[attrStatus].AsString())
	assert.EqualValues(t, 1, r.value(t, "coord.saga.finished", regName, attrStatus.String("resolved")))
}

// TestRun_Telemetry_WithoutATracerNothingIsTracedOrStored: with trace/noop's
// provider (as with none installed) no span is started and the record
// keeps no trace context.
func TestRun_Telemetry_WithoutATracerNothingIsTracedOrStored(t *testing.T) {
	f := newFixture(t)
	_, h := f.coordinator(t, Options{TracerProvider: tracenoop.NewTracerProvider()})
	_, err := h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.NoError(t, err)
	var stored *string
	require.NoError(t, f.pool.QueryRow(context.Background(), `select trace_context::text from coord_saga where id = 'u1'`).Scan(&stored))
	assert.Nil(t, stored)

	tel := newTelemetry(Options{})
	assert.False(t, tel.tracing(), "the global placeholder, before any provider is installed, traces nothing")
	assert.False(t, newTelemetry(Options{TracerProvider: tracenoop.NewTracerProvider()}).tracing())
}

// TestRun_Telemetry_WithoutATracerTheCallersSpanIsLeftAlone: a coordinator
// that traces nothing stores the caller's trace context (the only one
// there is) and, when its Run takes an expired saga over, adds no link or
// attribute to the caller's span.
func TestRun_Telemetry_WithoutATracerTheCallersSpanIsLeftAlone(t *testing.T) {
	f := newFixture(t)
	r := newTelemetryRecorder(t)
	off := Options{LeaseDuration: testLease, TracerProvider: tracenoop.NewTracerProvider()}
	crashing := off
	crashing.crashAt = func(p crashPoint) bool { return p == crashPoint{stageAfterLog, stepCreateUser} }
	_, crashed := f.coordinator(t, crashing)
	ctx, first := r.tp.Tracer("app").Start(context.Background(), "first request")
	_, err := crashed.Run(ctx, "u1", &regState{UserID: "u1", Email: "u1@example.com"})
	require.ErrorIs(t, err, errCrashed)
	first.End()
	var traceparent string
	require.NoError(t, f.pool.QueryRow(context.Background(),
		`select trace_context->>'traceparent' from coord_saga where id = 'u1'`).Scan(&traceparent))
	assert.Contains(t, traceparent, first.SpanContext().TraceID().String(), "the caller's context is stored")

	_, h := f.coordinator(t, off)
	ctx, second := r.tp.Tracer("app").Start(context.Background(), "second request")
	_, err = h.Run(ctx, "u1", &regState{})
	require.NoError(t, err)
	second.End()
	span := r.span(t, "second request")
	assert.Empty(t, span.Links())
	assert.Empty(t, span.Attributes())
	assert.Empty(t, r.childrenOf(span))
}

// TestTelemetry_WithoutAProviderAllocatesNothing: on the global providers
// as they are before the application installs any, what a run does for
// its telemetry (run and step spans, the counters and histograms, the
// trace context) allocates nothing.
func TestTelemetry_WithoutAProviderAllocatesNothing(t *testing.T) {
	tel := newTelemetry(Options{})
	dt := newDefTelemetry((&fixture{}).definition())
	ctx := context.Background()
	dt.durationOptions(0, false, classNone) // built at the first measurement
	allocs := testing.AllocsPerRun(100, func() {
		_, span := tel.startSpan(ctx, dt.runSpan, "u1", dt.name)
		if span != nil || tel.tracing() || encodeTraceContext(ctx) != nil {
			panic("traced without a provider")
		}
		tel.started.Add(ctx, 1, dt.nameOpts...)
		tel.active.Add(ctx, 1, dt.nameOpts...)
		tel.stepDuration.Record(ctx, 0.01, dt.durationOptions(0, false, classNone)...)
		tel.active.Add(ctx, -1, dt.nameOpts...)
		tel.finish(ctx, dt, StatusSucceeded, time.Second)
	})
	assert.Zero(t, allocs)
}

func TestTraceContext_RoundTripsThroughTheLog(t *testing.T) {
	r := newTelemetryRecorder(t)
	ctx, span := r.tp.Tracer("app").Start(context.Background(), "x")
	defer span.End()
	assert.Nil(t, encodeTraceContext(context.Background()))
	assert.False(t, decodeTraceContext(nil).IsValid())
	assert.False(t, decodeTraceContext([]byte(`{"traceparent": "garbage"}`)).IsValid())
	got := decodeTraceContext(encodeTraceContext(ctx))
	assert.Equal(t, span.SpanContext().WithRemote(true), got)
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
				"coord depends on %s", pkg)
		}
	}
	assert.Contains(t, otelPkgs, "go.opentelemetry.io/otel/trace", "the check sees the API")
}
