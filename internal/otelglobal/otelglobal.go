// Package otelglobal tells polystore's packages whether OpenTelemetry's
// global tracer provider can record, so that a package left on the global
// provider starts no span, and allocates nothing, until an application
// installs one.
package otelglobal

import (
	"reflect"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// placeholderTracerProvider is the provider that otel.GetTracerProvider
// returns until the application installs one: a placeholder that forwards
// to the provider installed later and starts non-recording spans until
// then, at the price of allocations per span. Only the placeholder's own
// type is taken for it: should anything else be global when this package
// is initialised, the variable stays nil and spans are always started.
var placeholderTracerProvider = func() trace.TracerProvider {
	tp := otel.GetTracerProvider()
	if !isPlaceholder(tp, "tracerProvider") {
		return nil
	}
	return tp
}()

// isPlaceholder reports whether v is the otel package's global placeholder
// provider of the given type name, which records nothing until a provider
// is installed. If otel ever renames it, the answer is false and the
// packages merely emit as if a provider were installed.
func isPlaceholder(v any, typeName string) bool {
	t := reflect.TypeOf(v)
	return t != nil && t.Kind() == reflect.Pointer &&
		t.Elem().PkgPath() == "go.opentelemetry.io/otel/internal/global" && t.Elem().Name() == typeName
}

// Tracing reports whether a span started now on the global tracer provider
// could be recorded: false while it is still otel's placeholder or the
// API's no-op provider.
func Tracing() bool {
	switch tp := otel.GetTracerProvider(); tp.(type) {
	case tracenoop.TracerProvider:
		return false
	default:
		return tp != placeholderTracerProvider
	}
}

// PlaceholderRecognised reports whether otel's placeholder tracer provider
// was recognised at start, which makes the no-provider path free.
func PlaceholderRecognised() bool { return placeholderTracerProvider != nil }

// IsPlaceholderMeterProvider reports whether mp is otel's placeholder
// meter provider, which records nothing until one is installed.
func IsPlaceholderMeterProvider(mp metric.MeterProvider) bool {
	return isPlaceholder(mp, "meterProvider")
}
