package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// ServiceName is the service.name of the server's traces and metrics
// (OTEL_SERVICE_NAME overrides it).
const ServiceName = "polystore-example"

// Telemetry is the server's OpenTelemetry SDK: the tracer and meter
// providers that the stores' libraries, the sagas and the HTTP layer are
// given, and the Prometheus registry that /metrics serves. The meter
// provider's readers are the OpenTelemetry Prometheus exporter, registered
// into Registry (so /metrics and OTLP read the same instruments: each
// measurement is recorded once), and an OTLP exporter when asked for.
type Telemetry struct {
	Registry       *prometheus.Registry
	TracerProvider *sdktrace.TracerProvider
	MeterProvider  *sdkmetric.MeterProvider
}

// TelemetryOptions says what NewTelemetry builds.
type TelemetryOptions struct {
	// OTLP exports spans and metrics over OTLP/HTTP, configured by the
	// standard OTEL_EXPORTER_OTLP_* variables (OTEL_EXPORTER_OTLP_ENDPOINT
	// first). Default: false, nothing leaves the process.
	OTLP bool
	// SpanProcessors receive every sampled span, as well as the OTLP
	// exporter (tests pass a tracetest.SpanRecorder). Default: none.
	SpanProcessors []sdktrace.SpanProcessor
}

// NewTelemetry builds the SDK. Spans are sampled (recorded, and exported)
// only when something receives them: with OTLP or a span processor every
// new trace is sampled, and a request that comes with a W3C traceparent
// follows its caller's decision; without either, no span is recorded, but
// each still gets its trace and span ids, so that the logs of a request
// carry them. Call Shutdown on exit: it flushes what is left to export.
func NewTelemetry(ctx context.Context, opts TelemetryOptions) (*Telemetry, error) {
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", ServiceName)))
	if err != nil {
		return nil, fmt.Errorf("server: telemetry resource: %w", err)
	}
	// resource.Default() has OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES:
	// let them win over the default name.
	if res, err = resource.Merge(res, resource.Environment()); err != nil {
		return nil, fmt.Errorf("server: telemetry resource: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	promExporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("server: Prometheus exporter: %w", err)
	}
	metricOpts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExporter)}
	traceOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	for _, p := range opts.SpanProcessors {
		traceOpts = append(traceOpts, sdktrace.WithSpanProcessor(p))
	}
	if opts.OTLP {
		spans, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("server: OTLP trace exporter: %w", err)
		}
		metrics, err := otlpmetrichttp.New(ctx)
		if err != nil {
			_ = spans.Shutdown(ctx)
			return nil, fmt.Errorf("server: OTLP metric exporter: %w", err)
		}
		traceOpts = append(traceOpts, sdktrace.WithBatcher(spans))
		metricOpts = append(metricOpts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(metrics)))
	}
	if !opts.OTLP && len(opts.SpanProcessors) == 0 {
		traceOpts = append(traceOpts, sdktrace.WithSampler(sdktrace.NeverSample()))
	} else {
		traceOpts = append(traceOpts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	}
	return &Telemetry{
		Registry:       reg,
		TracerProvider: sdktrace.NewTracerProvider(traceOpts...),
		MeterProvider:  sdkmetric.NewMeterProvider(metricOpts...),
	}, nil
}

// Shutdown flushes and stops both providers (the OTLP exporters send what
// they still hold), within ctx.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	return errors.Join(t.TracerProvider.Shutdown(ctx), t.MeterProvider.Shutdown(ctx))
}
