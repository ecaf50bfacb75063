package docrepo

import (
	"math"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Options configures a Repository. The zero value means the defaults; New
// refuses a negative page size, or a DefaultPageSize above MaxPageSize, with
// ErrInvalid rather than replace it by a default.
type Options struct {
	// Clock returns the time written to the created and updated fields.
	// Default: time.Now. The time is stored in UTC, truncated to the
	// millisecond that BSON keeps, so a value read back equals the one set.
	Clock func() time.Time
	// DefaultPageSize is the page size of Page and OffsetPage when the
	// request gives none. Default (zero): 50, or MaxPageSize when that is
	// lower. Negative or above MaxPageSize (as set or defaulted):
	// ErrInvalid from New.
	DefaultPageSize int
	// MaxPageSize caps the page size that a request may ask for, so that
	// client input cannot ask for the whole collection. Default (zero):
	// 1000. Negative or above 2^31-1: ErrInvalid from New.
	MaxPageSize int
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

// check returns an error wrapping ErrInvalid for a setting that cannot be
// meant; zeros are defaults.
func (o Options) check() error {
	switch {
	case o.DefaultPageSize < 0:
		return invalidf("options: negative DefaultPageSize %d", o.DefaultPageSize)
	case o.MaxPageSize < 0:
		return invalidf("options: negative MaxPageSize %d", o.MaxPageSize)
	case o.MaxPageSize > math.MaxInt32:
		return invalidf("options: MaxPageSize %d is above 2^31-1", o.MaxPageSize)
	case o.DefaultPageSize > o.maxPageSize():
		return invalidf("options: DefaultPageSize %d is above MaxPageSize %d", o.DefaultPageSize, o.maxPageSize())
	}
	return nil
}

func (o Options) maxPageSize() int {
	if o.MaxPageSize == 0 {
		return 1000
	}
	return o.MaxPageSize
}

func (o Options) now() time.Time {
	clock := o.Clock
	if clock == nil {
		clock = time.Now
	}
	return clock().UTC().Truncate(time.Millisecond)
}

// pageSize returns the page size for a request that asks for asked (0:
// the default). o has passed check.
func (o Options) pageSize(asked int) (int, error) {
	def, limit := o.DefaultPageSize, o.maxPageSize()
	if def == 0 {
		def = 50
	}
	switch {
	case asked < 0:
		return 0, invalidf("negative page size %d", asked)
	case asked == 0:
		return min(def, limit), nil
	case asked > limit:
		return 0, invalidf("page size %d is above the maximum %d", asked, limit)
	}
	return asked, nil
}
