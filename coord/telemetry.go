package coord

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/polystore/polystore/internal/otelglobal"
)

// ScopeName is the instrumentation scope of the spans and metrics that
// coord emits: the name of its tracer and meter.
const ScopeName = "github.com/polystore/polystore/coord"

// Attribute keys of coord's spans and metrics. error.type is the semantic
// conventions'; the others are polystore's own (the conventions name none
// for sagas). Written out so that the package imports the API alone.
const (
	attrSagaID       = attribute.Key("polystore.saga.id")
	attrSagaName     = attribute.Key("polystore.saga.name")
	attrStatus       = attribute.Key("polystore.saga.status")
	attrStep         = attribute.Key("polystore.saga.step")
	attrStepIndex    = attribute.Key("polystore.saga.step.index")
	attrCompensation = attribute.Key("polystore.saga.compensation")
	attrResumedBy    = attribute.Key("polystore.saga.resumed_by")
	attrActor        = attribute.Key("polystore.saga.actor")
	attrGroup        = attribute.Key("polystore.saga.group") // the parallel group of a member's span
	// attrAttempt numbers the try that a retry event starts; on a step's
	// span, the tries it ran (counted from the first in the log, so a
	// recovery goes on from where the log left them).
	attrAttempt   = attribute.Key("polystore.attempt")
	attrErrorType = attribute.Key("error.type")
	attrMessage   = attribute.Key("exception.message")
)

// How a saga in the log came to be driven by this process again.
const (
	resumedByRecover  = "recover"  // Recover (or the loop of Start)
	resumedByTakeover = "takeover" // a Run of the same id, after the lease expired
	resumedByRetry    = "retry"    // an operator's Retry
)

// errClass is the error.type of a failed saga, step try or action: which of
// coord's sentinels it matched.
type errClass uint8

const (
	classNone errClass = iota
	classNotStarted
	classOutcomeUnknown
	classLeaseLost
	classIncomplete
	classCompensated
	classFailed
	classDead
	classResolved
	classCancelled
	classInvalid
	classNotFound
	classWrongStatus
	classUnsealable
	classClosed
	classPanic
	classCanceled
	classDeadlineExceeded
	classCrashed
	classOther
	numClasses
)

var classNames = [numClasses]string{
	"", "not_started", "outcome_unknown", "lease_lost", "incomplete", "compensated", "failed",
	"dead", "resolved", "cancelled", "invalid", "not_found", "wrong_status", "unsealable",
	"closed", "panic", "canceled", "deadline_exceeded", "crashed", "_OTHER",
}

// classify returns the error.type of err. Run's outcomes come first (an
// ErrCompensated wraps the step's error, which may be anything), then the
// errors of a step's try.
func classify(err error) errClass {
	switch {
	case err == nil:
		return classNone
	case errors.Is(err, errCrashed):
		return classCrashed
	case errors.Is(err, ErrNotStarted):
		return classNotStarted
	case errors.Is(err, ErrOutcomeUnknown):
		return classOutcomeUnknown
	case errors.Is(err, ErrLeaseLost):
		return classLeaseLost
	case errors.Is(err, ErrIncomplete):
		return classIncomplete
	case errors.Is(err, ErrCompensated):
		return classCompensated
	case errors.Is(err, ErrFailed):
		return classFailed
	case errors.Is(err, ErrDead):
		return classDead
	case errors.Is(err, ErrResolved):
		return classResolved
	case errors.Is(err, ErrCancelled):
		return classCancelled
	case errors.Is(err, ErrInvalid):
		return classInvalid
	case errors.Is(err, ErrNotFound):
		return classNotFound
	case errors.Is(err, ErrWrongStatus):
		return classWrongStatus
	case errors.Is(err, ErrUnsealable):
		return classUnsealable
	case errors.Is(err, ErrClosed):
		return classClosed
	case errors.Is(err, ErrStepPanic):
		return classPanic
	case errors.Is(err, context.Canceled):
		return classCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return classDeadlineExceeded
	}
	return classOther
}

// telemetry holds a coordinator's tracer and instruments, resolved once by
// New.
type telemetry struct {
	// tracerProvider is Options.TracerProvider; nil means the global one.
	tracerProvider trace.TracerProvider
	tracer         trace.Tracer
	noopTracer     bool // Options.TracerProvider is the API's no-op one

	meter        metric.Meter
	started      metric.Int64Counter
	finished     metric.Int64Counter
	recoveries   metric.Int64Counter
	finalsLost   metric.Int64Counter
	active       metric.Int64UpDownCounter
	stepDuration metric.Float64Histogram
	sagaDuration metric.Float64Histogram
	waiting      metric.Registration // of the failed/dead gauges' callback
}

// durationBuckets are the histograms' bucket bounds, in seconds: a step or
// a saga takes from a millisecond to minutes (retries with backoff).
var durationBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300}

func newTelemetry(opts Options) *telemetry {
	t := &telemetry{tracerProvider: opts.TracerProvider}
	tp := opts.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	} else if _, ok := tp.(tracenoop.TracerProvider); ok {
		t.noopTracer = true
	}
	t.tracer = tp.Tracer(ScopeName)
	mp := opts.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(ScopeName)
	t.meter = m
	t.started = counter(m, "coord.saga.started", "Sagas started by Run (their record inserted).")
	t.finished = counter(m, "coord.saga.finished", "Sagas that reached a final status, by status.")
	t.recoveries = counter(m, "coord.saga.recoveries", "Sagas taken over after their lease expired, to be driven on.")
	t.finalsLost = counter(m, "coord.saga.final_unwritten",
		"Final records that Run did not wait for and that were not written (recovery replays the saga's last step).")
	var err error
	t.active, err = m.Int64UpDownCounter("coord.saga.active", metric.WithUnit("{saga}"),
		metric.WithDescription("Sagas being driven by this process (Run, recovery, Retry)."))
	if err != nil {
		otel.Handle(err)
		t.active = metricnoop.Int64UpDownCounter{}
	}
	t.stepDuration = histogram(m, "coord.step.duration", "Duration of each try of a step's action or compensation.")
	t.sagaDuration = histogram(m, "coord.saga.duration", "Time from a saga's record insert to its final status, by the database's clock "+
		"(the end by the process's when Run does not wait for the final record).")
	return t
}

func counter(m metric.Meter, name, desc string) metric.Int64Counter {
	c, err := m.Int64Counter(name, metric.WithUnit("{saga}"), metric.WithDescription(desc))
	if err != nil {
		otel.Handle(err)
		return metricnoop.Int64Counter{}
	}
	return c
}

func histogram(m metric.Meter, name, desc string) metric.Float64Histogram {
	h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		otel.Handle(err)
		return metricnoop.Float64Histogram{}
	}
	return h
}

// observeWaiting registers the callback of the coord.saga.failed and
// coord.saga.dead gauges: at each collection (never on a saga's path) one
// count over the partial indexes of failed and dead sagas, by definition,
// with 0 for the registered definitions that have none.
func (c *Coordinator) observeWaiting() {
	t := c.tel
	failed, err1 := t.meter.Int64ObservableGauge("coord.saga.failed", metric.WithUnit("{saga}"),
		metric.WithDescription("Sagas in the failed status in the log (a compensation kept failing), by definition."))
	dead, err2 := t.meter.Int64ObservableGauge("coord.saga.dead", metric.WithUnit("{saga}"),
		metric.WithDescription("Sagas in the dead status in the log (dead-lettered), by definition."))
	if err := errors.Join(err1, err2); err != nil {
		otel.Handle(err)
		return
	}
	reg, err := t.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		counts := map[string][2]int64{}
		c.mu.Lock()
		for name := range c.sagas {
			counts[name] = [2]int64{}
		}
		c.mu.Unlock()
		rows, err := c.pool.Query(ctx, `select name, count(*) filter (where status = 'failed'), count(*) filter (where status = 'dead')
			from coord_saga where status in ('failed', 'dead') group by name`)
		if err != nil {
			return err
		}
		var name string
		var nf, nd int64
		for rows.Next() {
			if err := rows.Scan(&name, &nf, &nd); err != nil {
				rows.Close()
				return err
			}
			counts[name] = [2]int64{nf, nd}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for name, n := range counts {
			opt := metric.WithAttributeSet(attribute.NewSet(attrSagaName.String(name)))
			o.ObserveInt64(failed, n[0], opt)
			o.ObserveInt64(dead, n[1], opt)
		}
		return nil
	}, failed, dead)
	if err != nil {
		otel.Handle(err)
		return
	}
	t.waiting = reg
}

// tracing reports whether a span started now could be recorded.
func (t *telemetry) tracing() bool {
	if t.tracerProvider != nil {
		return !t.noopTracer
	}
	return otelglobal.Tracing()
}

// defTelemetry is what a registered definition's runs emit with, built by
// Register so that a run allocates nothing for its metrics.
type defTelemetry struct {
	runSpan, recoverSpan string
	name                 attribute.KeyValue
	nameOpts             []metric.AddOption
	steps                []stepTelemetry
	// finished caches the options of coord.saga.finished and
	// coord.saga.duration by final status.
	finished map[Status]finishedOpts
}

type finishedOpts struct {
	add    []metric.AddOption
	record []metric.RecordOption
}

type stepTelemetry struct {
	spanName [2]string // action, compensation
	attrs    [2][]attribute.KeyValue
	// duration caches the options of coord.step.duration by action or
	// compensation and outcome, built at their first measurement.
	duration [2][numClasses]atomic.Pointer[[]metric.RecordOption]
	// members are the telemetry of a parallel group's members (see
	// Parallel): their spans and durations are per member.
	members []stepTelemetry
}

var finalStatuses = []Status{StatusSucceeded, StatusCompensated, StatusFailed, StatusResolved, StatusDead}

func newDefTelemetry[S any](d *Definition[S]) *defTelemetry {
	dt := &defTelemetry{
		runSpan:     "coord.Run " + d.name,
		recoverSpan: "coord.Recover " + d.name,
		name:        attrSagaName.String(d.name),
		steps:       make([]stepTelemetry, len(d.steps)),
		finished:    map[Status]finishedOpts{},
	}
	dt.nameOpts = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(dt.name))}
	for _, s := range finalStatuses {
		dt.finished[s] = newFinishedOpts(dt.name, s)
	}
	for i, st := range d.steps {
		for k, prefix := range [2]string{"coord.step ", "coord.compensate "} {
			dt.steps[i].spanName[k] = prefix + st.Name
			dt.steps[i].attrs[k] = []attribute.KeyValue{dt.name, attrStep.String(st.Name), attrStepIndex.Int(i), attrCompensation.Bool(k == 1)}
		}
		if st.members == nil {
			continue
		}
		dt.steps[i].members = make([]stepTelemetry, len(st.members))
		for j, m := range st.members {
			mt := &dt.steps[i].members[j]
			for k, prefix := range [2]string{"coord.step ", "coord.compensate "} {
				mt.spanName[k] = prefix + m.Name
				mt.attrs[k] = []attribute.KeyValue{dt.name, attrStep.String(m.Name), attrStepIndex.Int(i), attrCompensation.Bool(k == 1),
					attrGroup.String(st.Name)}
			}
		}
	}
	return dt
}

func newFinishedOpts(name attribute.KeyValue, s Status) finishedOpts {
	set := attribute.NewSet(name, attrStatus.String(string(s)))
	return finishedOpts{
		add:    []metric.AddOption{metric.WithAttributeSet(set)},
		record: []metric.RecordOption{metric.WithAttributeSet(set)},
	}
}

// durationOptions returns the options of a coord.step.duration measurement
// of step i (its compensation when comp) with outcome class.
func (dt *defTelemetry) durationOptions(i int, comp bool, class errClass) []metric.RecordOption {
	return dt.steps[i].durationOptions(comp, class)
}

// durationOptions returns the options of a coord.step.duration measurement
// of the step (its compensation when comp) with outcome class.
func (st *stepTelemetry) durationOptions(comp bool, class errClass) []metric.RecordOption {
	k := 0
	if comp {
		k = 1
	}
	p := &st.duration[k][class]
	if opts := p.Load(); opts != nil {
		return *opts
	}
	attrs := append([]attribute.KeyValue(nil), st.attrs[k]...)
	if class != classNone {
		attrs = append(attrs, attrErrorType.String(classNames[class]))
	}
	opts := []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attrs...))}
	p.Store(&opts)
	return opts
}

// finish records that a saga of dt reached the final status s after d.
func (t *telemetry) finish(ctx context.Context, dt *defTelemetry, s Status, d time.Duration) {
	o, ok := dt.finished[s]
	if !ok {
		return
	}
	t.finished.Add(ctx, 1, o.add...)
	if d > 0 {
		t.sagaDuration.Record(ctx, d.Seconds(), o.record...)
	}
}

// startSpan starts a span of coord (kind Internal) with the saga id and
// attr when one could be recorded; otherwise it returns ctx and a nil span,
// having built nothing (the options are built here, not by the caller, so
// that a run without a tracer allocates nothing for them).
func (t *telemetry) startSpan(ctx context.Context, name, id string, attr attribute.KeyValue) (context.Context, trace.Span) {
	if !t.tracing() {
		return ctx, nil
	}
	return t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attrSagaID.String(id), attr))
}

// endSpan ends span (nil: nothing to do) with the saga's record as info
// has it and the error its caller returns.
func endSpan(span trace.Span, info Info, err error) {
	if span == nil {
		return
	}
	if info.Status != "" {
		span.SetAttributes(attrStatus.String(string(info.Status)))
	}
	if info.Name != "" {
		span.SetAttributes(attrSagaName.String(info.Name))
	}
	endWithError(span, err)
}

func endWithError(span trace.Span, err error) {
	if err != nil {
		span.SetAttributes(attrErrorType.String(classNames[classify(err)]))
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// encodeTraceContext returns what the log stores of the trace context of
// ctx: its W3C traceparent and tracestate as a JSON object, or nil when ctx
// holds no valid span context (nothing traced, nothing to store).
func encodeTraceContext(ctx context.Context) []byte {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	data, err := json.Marshal(carrier)
	if err != nil {
		return nil
	}
	return data
}

// decodeTraceContext returns the span context stored by
// encodeTraceContext; it is invalid when nothing (or nothing readable) was
// stored.
func decodeTraceContext(data []byte) trace.SpanContext {
	if len(data) == 0 {
		return trace.SpanContext{}
	}
	carrier := propagation.MapCarrier{}
	if json.Unmarshal(data, &carrier) != nil {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
}

// startResume starts the span under which a saga of dt, read from the log
// as rec, is driven again by recovery: a new root (the trace that started
// the saga ended long ago, perhaps in another process) linked to the trace
// of the Run that started it, as stored in its record.
func (t *telemetry) startResume(ctx context.Context, dt *defTelemetry, rec record) (context.Context, trace.Span) {
	if !t.tracing() {
		return ctx, nil
	}
	opts := []trace.SpanStartOption{
		trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attrSagaID.String(rec.ID), dt.name, attrResumedBy.String(resumedByRecover),
			attrStatus.String(string(rec.Status)), attrStepIndex.Int(rec.Step)),
	}
	if sc := decodeTraceContext(rec.traceContext); sc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	return t.tracer.Start(ctx, dt.recoverSpan, opts...)
}

// linkOrigin links span (nil: not traced), which drives the saga rec again
// (a Run that took it over, an operator's Retry), to the trace that
// started it. The span is passed along rather than taken from the context,
// which may hold the caller's span when coord traces nothing.
func linkOrigin(span trace.Span, rec record, how string) {
	if span == nil || !span.IsRecording() {
		return
	}
	span.SetAttributes(attrResumedBy.String(how))
	if sc := decodeTraceContext(rec.traceContext); sc.IsValid() {
		span.AddLink(trace.Link{SpanContext: sc})
	}
}
