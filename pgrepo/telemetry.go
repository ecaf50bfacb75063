package pgrepo

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
// pgrepo emits: the name of its tracer and meter.
const ScopeName = "github.com/polystore/polystore/pgrepo"

// Options configures a Repository built with NewWithOptions. Its zero value
// is what New uses.
type Options struct {
	// TracerProvider starts a span for each repository call (see the
	// package documentation, Observability). Default (nil): the global
	// provider, otel.GetTracerProvider(), which costs nothing until the
	// application installs one. trace/noop's provider turns spans off.
	TracerProvider trace.TracerProvider
	// MeterProvider records the duration of each repository call in the
	// db.client.operation.duration histogram. Default (nil): the global
	// provider, otel.GetMeterProvider(), which records nothing until the
	// application installs one.
	MeterProvider metric.MeterProvider
}

// Attribute keys of the OpenTelemetry database semantic conventions, and
// polystore's own. They are written out rather than taken from a semconv
// package so that the library imports the API alone.
const (
	attrSystem     = attribute.Key("db.system.name")
	attrCollection = attribute.Key("db.collection.name")
	attrOperation  = attribute.Key("db.operation.name")
	attrBatchSize  = attribute.Key("db.operation.batch.size")
	attrReturned   = attribute.Key("db.response.returned_rows")
	attrStatusCode = attribute.Key("db.response.status_code")
	attrErrorType  = attribute.Key("error.type")
	// attrAffected is the number of rows a write inserted, updated or
	// deleted: the conventions name none.
	attrAffected = attribute.Key("polystore.affected")
	// attrAttempt numbers the attempt that a retry event starts; on InTx's
	// span, how many attempts ran.
	attrAttempt = attribute.Key("polystore.attempt")
	// attrIsolation is the isolation level InTx asked for, when set.
	attrIsolation = attribute.Key("polystore.tx.isolation")
)

const systemPostgreSQL = "postgresql"

// op is an instrumented operation; its name is the method's.
type op uint8

const (
	opGet op = iota
	opExists
	opInsert
	opInsertMany
	opUpdate
	opPatch
	opPatchVersion
	opDelete
	opUpsert
	opCount
	opList
	opInTx
	numOps
)

var opNames = [numOps]string{
	"Get", "Exists", "Insert", "InsertMany", "Update", "Patch",
	"PatchVersion", "Delete", "Upsert", "Count", "List", "InTx",
}

// errClass is the error.type of a failed call: which sentinel it matched.
type errClass uint8

const (
	classNone errClass = iota
	classNotFound
	classConflict
	classDuplicate
	classForeignKey
	classCheck
	classNotNull
	classInvalidValue
	classInvalidColumn
	classInvalidCursor
	classInvalid
	classSerialization
	classDeadlock
	classCanceled
	classDeadlineExceeded
	classOther
	numClasses
)

var classNames = [numClasses]string{
	"", "not_found", "conflict", "duplicate", "foreign_key", "check",
	"not_null", "invalid_value", "invalid_column", "invalid_cursor",
	"invalid", "serialization_failure", "deadlock", "canceled",
	"deadline_exceeded", "_OTHER",
}

// classify returns the error.type of err; the narrower sentinels come first
// (ErrNotNull is also ErrInvalid).
func classify(err error) errClass {
	switch {
	case err == nil:
		return classNone
	case errors.Is(err, ErrNotFound):
		return classNotFound
	case errors.Is(err, ErrConflict):
		return classConflict
	case errors.Is(err, ErrDuplicate):
		return classDuplicate
	case errors.Is(err, ErrForeignKey):
		return classForeignKey
	case errors.Is(err, ErrCheck):
		return classCheck
	case errors.Is(err, ErrNotNull):
		return classNotNull
	case errors.Is(err, ErrInvalidValue):
		return classInvalidValue
	case errors.Is(err, ErrInvalidColumn):
		return classInvalidColumn
	case errors.Is(err, ErrInvalidCursor):
		return classInvalidCursor
	case errors.Is(err, ErrInvalid):
		return classInvalid
	case errors.Is(err, context.Canceled):
		return classCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return classDeadlineExceeded
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case codeSerializationFailure:
			return classSerialization
		case codeDeadlockDetected:
			return classDeadlock
		}
	}
	return classOther
}

// telemetry holds what a repository (or InTx) needs to emit its spans and
// metrics, built once so that a call only looks things up.
type telemetry struct {
	// tracerProvider is Options.TracerProvider; nil means the global one.
	tracerProvider trace.TracerProvider
	tracer         trace.Tracer
	noopTracer     bool // Options.TracerProvider is the API's no-op one
	duration       metric.Float64Histogram

	spanNames [numOps]string
	spanOpts  [numOps][]trace.SpanStartOption
	// base holds the attributes that every measurement carries;
	// recordOpts caches the options of each (operation, outcome) pair,
	// built at its first measurement so that later ones allocate nothing.
	base       []attribute.KeyValue
	recordOpts [numOps][numClasses]atomic.Pointer[[]metric.RecordOption]
}

// newTelemetry builds the telemetry of a repository of table (empty for
// InTx) from the providers, nil meaning the global ones.
func newTelemetry(table string, tp trace.TracerProvider, mp metric.MeterProvider) *telemetry {
	t := &telemetry{tracerProvider: tp}
	if tp == nil {
		tp = otel.GetTracerProvider()
	} else if _, ok := tp.(tracenoop.TracerProvider); ok {
		t.noopTracer = true
	}
	t.tracer = tp.Tracer(ScopeName)
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	t.duration = newDurationHistogram(mp.Meter(ScopeName))

	t.base = []attribute.KeyValue{attrSystem.String(systemPostgreSQL)}
	if table != "" {
		t.base = append(t.base, attrCollection.String(table))
	}
	for o := range numOps {
		kind := trace.SpanKindClient
		t.spanNames[o] = "pgrepo." + opNames[o]
		if table != "" {
			t.spanNames[o] += " " + table
		}
		if o == opInTx {
			// Its children are the client spans of the statements and
			// repository calls that the transaction runs.
			kind = trace.SpanKindInternal
		}
		attrs := append(append([]attribute.KeyValue(nil), t.base...), attrOperation.String(opNames[o]))
		t.spanOpts[o] = []trace.SpanStartOption{trace.WithSpanKind(kind), trace.WithAttributes(attrs...)}
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

// txTelemetry is InTx's telemetry on the global providers, built at its
// first use; TxOptions with providers of their own build theirs per call.
var txTelemetry = sync.OnceValue(func() *telemetry { return newTelemetry("", nil, nil) })

// tracing reports whether a span started now could be recorded.
func (t *telemetry) tracing() bool {
	if t.tracerProvider != nil {
		return !t.noopTracer
	}
	return otelglobal.Tracing()
}

// call is one operation being observed. Its nil span and zero start mean
// that nothing is traced or measured.
type call struct {
	t     *telemetry
	op    op
	span  trace.Span
	start time.Time
}

// start begins observing a call of o on db: it returns ctx with the call's
// span, so that the statement spans of a pgx tracer (otelpgx's) become its
// children. A call on the transaction of an InTx that was given the
// context InTx ran under goes under InTx's span.
func (t *telemetry) start(ctx context.Context, o op, db DB) (context.Context, call) {
	c := call{t: t, op: o}
	if t.tracing() {
		if tx, ok := db.(*tracedTx); ok && trace.SpanContextFromContext(ctx).Equal(tx.parent) {
			ctx = trace.ContextWithSpan(ctx, tx.span)
		}
		ctx, c.span = t.tracer.Start(ctx, t.spanNames[o], t.spanOpts[o]...)
	}
	if t.duration.Enabled(ctx) {
		c.start = time.Now()
	}
	return ctx, c
}

// returned records how many rows the call returned.
func (c call) returned(n int) {
	if c.span != nil {
		c.span.SetAttributes(attrReturned.Int(n))
	}
}

// returnedOne records what a call that returns one row returned: it, or
// none (ErrNotFound); another error leaves it unknown.
func (c call) returnedOne(err error) {
	switch {
	case c.span == nil:
	case err == nil:
		c.returned(1)
	case errors.Is(err, ErrNotFound):
		c.returned(0)
	}
}

// affected records how many rows the call wrote.
func (c call) affected(n int64) {
	if c.span != nil {
		c.span.SetAttributes(attrAffected.Int64(n))
	}
}

// affectedOne records what a write of one row wrote: it, or nothing on
// error.
func (c call) affectedOne(err error) {
	if err == nil {
		c.affected(1)
	} else {
		c.affected(0)
	}
}

// batch records the number of rows a batch call was given.
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

// end ends the call with its result: the span gets the error, its class
// and the SQLSTATE, and the duration is recorded by operation and outcome.
func (c call) end(ctx context.Context, err error) {
	class := classNone
	if err != nil {
		class = classify(err)
	}
	if c.span != nil {
		if class != classNone {
			c.span.SetAttributes(attrErrorType.String(classNames[class]))
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) {
				c.span.SetAttributes(attrStatusCode.String(pgErr.Code))
			}
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

// tracedTx is the transaction InTx hands its function while it traces: a
// repository call on it whose context is the one InTx was called with goes
// under the transaction's span (see start). It is a pgx.Tx in every other
// respect.
type tracedTx struct {
	pgx.Tx
	span   trace.Span
	parent trace.SpanContext // the span InTx was called under
}
