package docrepo

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/polystore/polystore/internal/otelglobal"
)

// offlineCollection is a collection of a client that never connects:
// building a repository's telemetry does no I/O.
func offlineCollection(tb testing.TB) *mongo.Collection {
	tb.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://127.0.0.1:1"))
	require.NoError(tb, err)
	return client.Database("db").Collection("articles")
}

// observeGet is what Get adds to the driver's work.
func observeGet(ctx context.Context, t *telemetry) {
	ctx, c := t.start(ctx, opGet)
	c.returnedOne(nil)
	c.end(ctx, nil)
}

// The global providers are otel's placeholders here, or the no-op ones
// that TestTelemetry_GlobalProvidersByDefaultAndNothingUntilOneIsInstalled
// leaves: neither may cost an allocation.
func TestTelemetry_WithoutProviderAllocatesNothing(t *testing.T) {
	require.True(t, otelglobal.PlaceholderRecognised(), "otel's placeholder is recognised")
	ctx := context.Background()
	for name, opts := range map[string]Options{
		"global placeholders": {},
		"no-op tracer":        {TracerProvider: tracenoop.NewTracerProvider()},
	} {
		tel := newTelemetry(offlineCollection(t), opts)
		assert.Zero(t, testing.AllocsPerRun(100, func() { observeGet(ctx, tel) }), name)
	}
}

// The cost of the instrumentation alone, without the round trip it
// surrounds (about 3 ms for a Get on FerretDB here):
//
//	go test -run '^$' -bench TelemetryOverhead -benchmem ./docrepo/
func BenchmarkTelemetryOverhead(b *testing.B) {
	ctx := context.Background()
	coll := offlineCollection(b)
	sdk := Options{
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample())),
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
	}
	for _, bc := range []struct {
		name string
		opts Options
	}{{"provider=none", Options{}}, {"provider=sdk", sdk}} {
		tel := newTelemetry(coll, bc.opts)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				observeGet(ctx, tel)
			}
		})
	}
}
