package docrepo

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
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
// docrepo emits: the name of its tracer and meter.
const ScopeName = "github.com/polystore/polystore/docrepo"

// Attribute keys of the OpenTelemetry database semantic conventions, and
// polystore's own. They are written out rather than taken from a semconv
// package so that the library imports the API alone.
const (
	attrSystem     = attribute.Key("db.system.name")
	attrNamespace  = attribute.Key("db.namespace")
	attrCollection = attribute.Key("db.collection.name")
	attrOperation  = attribute.Key("db.operation.name")
	attrBatchSize  = attribute.Key("db.operation.batch.size")
	attrReturned   = attribute.Key("db.response.returned_rows")
	attrErrorType  = attribute.Key("error.type")
	// attrAffected is the number of documents a write inserted, matched
	// (updates and replaces) or deleted: the conventions name none.
	attrAffected = attribute.Key("polystore.affected")
	// attrAttempt numbers the attempt that a retry event starts.
	attrAttempt = attribute.Key("polystore.attempt")
)

// op is a repository operation; its name is the method's.
type op uint8

const (
	opInsert op = iota
	opInsertMany
	opGet
	opFindOne
	opFind
	opCount
	opExists
	opReplace
	opModify
	opUpdate
	opUpdateMany
	opUpsert
	opDelete
	opDeleteMany
	opPage
	opOffsetPage
	opEnsureIndexes
	opAggregate
	numOps
)

var opNames = [numOps]string{
	"Insert", "InsertMany", "Get", "FindOne", "Find", "Count", "Exists",
	"Replace", "Modify", "Update", "UpdateMany", "Upsert", "Delete",
	"DeleteMany", "Page", "OffsetPage", "EnsureIndexes", "Aggregate",
}

// errClass is the error.type of a failed call: which sentinel it matched.
type errClass uint8

const (
	classNone errClass = iota
	classNotFound
	classDuplicate
	classConflict
	classTypeMismatch
	classInvalidID
	classInvalid
	classUnsupported
	classTransactionsUnsupported
	classCanceled
	classDeadlineExceeded
	classOther
	numClasses
)

var classNames = [numClasses]string{
	"", "not_found", "duplicate", "conflict", "type_mismatch", "invalid_id",
	"invalid", "unsupported", "transactions_unsupported", "canceled",
	"deadline_exceeded", "_OTHER",
}

// classify returns the error.type of err; the order puts the narrower
// sentinel first (ErrTypeMismatch also matches ErrInvalid).
func classify(err error) errClass {
	switch {
	case err == nil:
		return classNone
	case errors.Is(err, ErrNotFound):
		return classNotFound
	case errors.Is(err, ErrDuplicate):
		return classDuplicate
	case errors.Is(err, ErrConflict):
		return classConflict
	case errors.Is(err, ErrTypeMismatch):
		return classTypeMismatch
	case errors.Is(err, ErrInvalidID):
		return classInvalidID
	case errors.Is(err, ErrInvalid):
		return classInvalid
	case errors.Is(err, ErrTransactionsUnsupported):
		return classTransactionsUnsupported
	case errors.Is(err, ErrUnsupported):
		return classUnsupported
	case errors.Is(err, context.Canceled):
		return classCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return classDeadlineExceeded
	}
	return classOther
}

// telemetry holds what a repository needs to emit its spans and metrics,
// built once by New so that a call only looks things up.
type telemetry struct {
	// tracerProvider is Options.TracerProvider; nil means the global one.
	tracerProvider trace.TracerProvider
	tracer         trace.Tracer
	noopTracer     bool // Options.TracerProvider is the API's no-op one
	duration       metric.Float64Histogram

	spanNames [numOps]string
	spanOpts  [numOps][]trace.SpanStartOption
	// base holds the attributes that every measurement of the repository
	// carries; recordOpts caches the options of each (operation, outcome)
	// pair, built at its first measurement so that later ones allocate
	// nothing.
	base       []attribute.KeyValue
	recordOpts [numOps][numClasses]atomic.Pointer[[]metric.RecordOption]
}

// newTelemetry builds the telemetry of a repository of coll from opts.
func newTelemetry(coll *mongo.Collection, opts Options) *telemetry {
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
	t.duration = newDurationHistogram(mp.Meter(ScopeName))

	t.base = []attribute.KeyValue{
		attrSystem.String("mongodb"),
		attrNamespace.String(coll.Database().Name()),
		attrCollection.String(coll.Name()),
	}
	for o := range numOps {
		t.spanNames[o] = "docrepo." + opNames[o] + " " + coll.Name()
		attrs := append(append([]attribute.KeyValue(nil), t.base...), attrOperation.String(opNames[o]))
		t.spanOpts[o] = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...)}
	}
	return t
}

// newDurationHistogram returns the db.client.operation.duration histogram,
// with the buckets the semantic conventions advise. A provider that cannot
// make it gets the error reported to otel's handler, and the repository a
// histogram that records nothing rather than an error of its own.
func newDurationHistogram(m metric.Meter) metric.Float64Histogram {
	h, err := m.Float64Histogram("db.client.operation.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of database client operations."),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10))
	if err != nil {
		otel.Handle(err)
		return metricnoop.Float64Histogram{}
	}
	return h
}

// tracing reports whether a span started now could be recorded.
func (t *telemetry) tracing() bool {
	if t.tracerProvider != nil {
		return !t.noopTracer
	}
	return otelglobal.Tracing()
}

// call is one repository call being observed. Its zero span and start
// mean that nothing is traced or measured.
type call struct {
	t     *telemetry
	op    op
	span  trace.Span
	start time.Time
}

// start begins observing a call of o: it returns ctx with the call's span,
// so that the driver's command spans (otelmongo's) become its children.
func (t *telemetry) start(ctx context.Context, o op) (context.Context, call) {
	c := call{t: t, op: o}
	if t.tracing() {
		ctx, c.span = t.tracer.Start(ctx, t.spanNames[o], t.spanOpts[o]...)
	}
	if t.duration.Enabled(ctx) {
		c.start = time.Now()
	}
	return ctx, c
}

// returned records how many documents the call returned.
func (c call) returned(n int) {
	if c.span != nil {
		c.span.SetAttributes(attrReturned.Int(n))
	}
}

// returnedOne records what a call that returns one document returned: it,
// or none (ErrNotFound); another error leaves it unknown.
func (c call) returnedOne(err error) {
	switch {
	case err == nil:
		c.returned(1)
	case errors.Is(err, ErrNotFound):
		c.returned(0)
	}
}

// affected records how many documents the call wrote.
func (c call) affected(n int64) {
	if c.span != nil {
		c.span.SetAttributes(attrAffected.Int64(n))
	}
}

// batch records the number of documents a batch call was given.
func (c call) batch(n int) {
	if c.span != nil {
		c.span.SetAttributes(attrBatchSize.Int(n))
	}
}

// retry records that the call starts attempt number n after err.
func (c call) retry(n int, err error) {
	if c.span != nil && c.span.IsRecording() {
		c.span.AddEvent("retry", trace.WithAttributes(attrAttempt.Int(n), attrErrorType.String(classNames[classify(err)])))
	}
}

// end ends the call with its result: the span gets the error and its class,
// and the duration is recorded by operation and outcome.
func (c call) end(ctx context.Context, err error) {
	class := classify(err)
	if c.span != nil {
		if class != classNone {
			c.span.SetAttributes(attrErrorType.String(classNames[class]))
			c.span.RecordError(err)
			c.span.SetStatus(codes.Error, err.Error())
		}
		c.span.End()
	}
	if !c.start.IsZero() {
		c.t.duration.Record(ctx, time.Since(c.start).Seconds(), c.t.recordOptions(c.op, class)...)
	}
}

// recordOptions returns the attributes of a measurement of o with outcome
// class, building them once.
func (t *telemetry) recordOptions(o op, class errClass) []metric.RecordOption {
	p := &t.recordOpts[o][class]
	if opts := p.Load(); opts != nil {
		return *opts
	}
	attrs := append(append([]attribute.KeyValue(nil), t.base...), attrOperation.String(opNames[o]))
	if class != classNone {
		attrs = append(attrs, attrErrorType.String(classNames[class]))
	}
	opts := []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attrs...))}
	p.Store(&opts)
	return opts
}
