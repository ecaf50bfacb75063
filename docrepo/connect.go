package docrepo

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"

	"github.com/polystore/polystore/internal/otelglobal"
)

// Config configures Connect. The zero value means the defaults; a setting
// in the URL (maxPoolSize=..., connectTimeoutMS=...) is overridden only by a
// non-zero field. A negative duration, or a MinPoolSize above the
// MaxPoolSize in effect, gives ErrInvalid: never a silent default.
type Config struct {
	// MaxPoolSize caps the connections per server. Default: the URL's
	// maxPoolSize, else the driver's 100.
	MaxPoolSize uint64
	// MinPoolSize keeps this many connections open. Default: the URL's, else 0.
	MinPoolSize uint64
	// ConnectTimeout bounds opening one connection. Default (zero): the
	// URL's, else 10s. Negative: ErrInvalid.
	ConnectTimeout time.Duration
	// ServerSelectionTimeout bounds the wait for a usable server in each
	// operation. Default (zero): the URL's, else 10s (the driver's 30s is
	// long for a service that should fail fast at start). Negative:
	// ErrInvalid.
	ServerSelectionTimeout time.Duration
	// AppName is reported to the server, for its logs. Default: the URL's,
	// else none. Above 128 bytes (here or in the URL): ErrInvalid, as the
	// MongoDB handshake allows no more (the driver would silently send no
	// client metadata at all).
	AppName string
	// MeterProvider receives the connection pool metrics (see
	// NewPoolMonitor). Default (nil): the global provider, if the
	// application has installed one by the time Connect runs; otherwise,
	// or with metric/noop's provider, no pool monitor is installed, which
	// spares the driver building an event at every check-out and check-in.
	MeterProvider metric.MeterProvider
	// PoolMonitor receives the driver's pool events too, after the pool
	// metrics have counted them. Default: none.
	PoolMonitor *event.PoolMonitor
	// Monitor receives the driver's command events: set it to otelmongo's
	// monitor for a span per command (see the package documentation,
	// Observability). Default: none.
	Monitor *event.CommandMonitor
}

// maxAppName is the handshake's limit on the application name, in bytes.
const maxAppName = 128

// Connect opens a client of the deployment at url and pings its primary
// within ctx, so that a wrong URL or a server that is down fails here and
// not at the first request. It installs the pool metrics monitor (see
// Config.MeterProvider and NewPoolMonitor) and cfg's command monitor. The
// caller disconnects the client. Errors:
// ErrInvalid (a malformed URL or setting; no connection was opened), or the
// driver's error, wrapped, when the server does not answer (the client is
// then disconnected).
func Connect(ctx context.Context, url string, cfg Config) (*mongo.Client, error) {
	switch {
	case cfg.ConnectTimeout < 0:
		return nil, invalidf("connect: negative ConnectTimeout %v", cfg.ConnectTimeout)
	case cfg.ServerSelectionTimeout < 0:
		return nil, invalidf("connect: negative ServerSelectionTimeout %v", cfg.ServerSelectionTimeout)
	}
	opts := options.Client().ApplyURI(url)
	if cfg.MaxPoolSize > 0 {
		opts.SetMaxPoolSize(cfg.MaxPoolSize)
	}
	if cfg.MinPoolSize > 0 {
		opts.SetMinPoolSize(cfg.MinPoolSize)
	}
	if cfg.ConnectTimeout > 0 {
		opts.SetConnectTimeout(cfg.ConnectTimeout)
	} else if opts.ConnectTimeout == nil {
		opts.SetConnectTimeout(10 * time.Second)
	}
	if cfg.ServerSelectionTimeout > 0 {
		opts.SetServerSelectionTimeout(cfg.ServerSelectionTimeout)
	} else if opts.ServerSelectionTimeout == nil {
		opts.SetServerSelectionTimeout(10 * time.Second)
	}
	if cfg.AppName != "" {
		opts.SetAppName(cfg.AppName)
	}
	if poolMetrics(cfg.MeterProvider) {
		opts.SetPoolMonitor(NewPoolMonitor(cfg.MeterProvider, cfg.PoolMonitor))
	} else if cfg.PoolMonitor != nil {
		opts.SetPoolMonitor(cfg.PoolMonitor)
	}
	if cfg.Monitor != nil {
		opts.SetMonitor(cfg.Monitor)
	}
	if opts.AppName != nil && len(*opts.AppName) > maxAppName {
		return nil, invalidf("connect: app name of %d bytes is above %d", len(*opts.AppName), maxAppName)
	}
	if opts.MinPoolSize != nil && opts.MaxPoolSize != nil && *opts.MaxPoolSize > 0 && *opts.MinPoolSize > *opts.MaxPoolSize {
		return nil, invalidf("connect: min pool size %d is above max pool size %d", *opts.MinPoolSize, *opts.MaxPoolSize)
	}
	client, err := mongo.Connect(opts)
	if err != nil {
		// The URL itself never goes into the message: it may hold a password.
		return nil, fmt.Errorf("%w: connect: %w", ErrInvalid, err)
	}
	if err := client.Ping(ctx, readpref.Primary()); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("docrepo: connect: ping: %w", err)
	}
	return client, nil
}

// poolMetrics reports whether Connect installs a pool monitor recording
// to mp (nil: the global provider).
func poolMetrics(mp metric.MeterProvider) bool {
	if mp == nil {
		mp = otel.GetMeterProvider()
		if otelglobal.IsPlaceholderMeterProvider(mp) {
			return false
		}
	}
	_, noop := mp.(metricnoop.MeterProvider)
	return !noop
}

// Health pings client's primary within ctx and returns nil when it answers,
// for readiness probes. Errors: ErrInvalid (nil client), or the driver's
// error, wrapped.
func Health(ctx context.Context, client *mongo.Client) error {
	if client == nil {
		return invalidf("health: nil client")
	}
	if err := client.Ping(ctx, readpref.Primary()); err != nil {
		return fmt.Errorf("docrepo: health: %w", err)
	}
	return nil
}
