// Command server is the polystore example service: a small backend of a
// language-learning chat product with its users in PostgreSQL, their
// profiles cached in Redis and their conversations in MongoDB.
//
// It reads its configuration from flags and environment variables (run it
// with -h for the list); with POSTGRES_URL, REDIS_URL and MONGODB_URL set,
// as `make services` prints them, it needs nothing else. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/polystore/polystore/docrepo"
	"github.com/polystore/polystore/examples/server/internal/server"
	"github.com/polystore/polystore/pgrepo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil); err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "server:", err)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// connectMongo connects to MongoDB, trying again until ctx (STORE_TIMEOUT)
// ends: the server selection timeout, which bounds each try's ping, is the
// request deadline (3s by default), shorter than the wait for a MongoDB
// still starting that STORE_TIMEOUT promises. A malformed setting
// (docrepo.ErrInvalid) is not tried again.
func connectMongo(ctx context.Context, log *slog.Logger, url string, cfg docrepo.Config) (*mongo.Client, error) {
	for {
		client, err := docrepo.Connect(ctx, url, cfg)
		if err == nil || errors.Is(err, docrepo.ErrInvalid) || ctx.Err() != nil {
			return client, err
		}
		log.Warn("MongoDB does not answer yet: trying again until STORE_TIMEOUT", slog.Any("error", err))
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond): // a fast failure (auth) does not spin
		}
	}
}

// run serves until ctx ends, then shuts down gracefully: it stops
// accepting connections, lets in-flight requests finish (up to the
// shutdown timeout), stops the saga recovery loop and closes the pools.
// ready, when not nil, is told the address once the server listens.
func run(ctx context.Context, args []string, getenv func(string) string, logOut io.Writer, ready func(net.Addr)) error {
	cfg, err := loadConfig(args, getenv, logOut)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	log := newLogger(cfg, logOut)

	startCtx, cancel := context.WithTimeout(ctx, cfg.StoreTimeout)
	defer cancel()

	// OpenTelemetry: spans and metrics leave the process only when an OTLP
	// endpoint is configured (the exporters read the OTEL_EXPORTER_OTLP_*
	// variables); /metrics always serves the same meters.
	otlp := getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
	tel, err := server.NewTelemetry(startCtx, server.TelemetryOptions{OTLP: otlp})
	if err != nil {
		return err
	}
	defer func() { // last: after the server and the pools, whose spans it flushes
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(ctx); err != nil {
			log.Warn("flushing telemetry", slog.Any("error", err))
		}
	}()
	// The global providers are for what takes no provider of its own
	// (cacherepo, go-redis's and the drivers' instrumentations if added).
	otel.SetTracerProvider(tel.TracerProvider)
	otel.SetMeterProvider(tel.MeterProvider)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))

	// The request deadline bounds what a request waits for a store. The
	// drivers' own bounds on opening a connection and, for MongoDB, on
	// finding a server are set to it too, so that the work no request's
	// deadline reaches (the saga recovery loop, the pools' background
	// connects) waits no longer for either.
	var connectTimeout time.Duration
	if cfg.RequestTimeout > 0 {
		connectTimeout = cfg.RequestTimeout
	}
	pool, err := pgrepo.Open(startCtx, cfg.PostgresURL, pgrepo.Config{MaxConns: int32(cfg.PGMaxConns), ConnectTimeout: connectTimeout})
	if err != nil {
		return fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	defer pool.Close()

	redisOpts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	if cfg.RedisPoolSize > 0 {
		redisOpts.PoolSize = cfg.RedisPoolSize
	}
	server.FailFastRedis(redisOpts)
	rdb := redis.NewClient(redisOpts)
	defer rdb.Close()
	// The cache and the rate limit fail open: serve without them, and let
	// /readyz say so (degraded, still 200), rather than refuse to start. The ping gets a share of
	// the start-up time, not all of it: a Redis that accepts connections
	// but does not answer must leave time for MongoDB and the migrations.
	pingCtx, cancelPing := context.WithTimeout(startCtx, 2*time.Second)
	defer cancelPing()
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		log.Warn("Redis does not answer: starting without cache and rate limit until it does",
			slog.String("addr", redisOpts.Addr), slog.Any("error", err))
	}

	mongoClient, err := connectMongo(startCtx, log, cfg.MongoURL, docrepo.Config{
		MaxPoolSize: uint64(max(cfg.MongoMaxPool, 0)), AppName: "polystore-example",
		ConnectTimeout: connectTimeout, ServerSelectionTimeout: connectTimeout,
		MeterProvider: tel.MeterProvider, // the pool's metrics
	})
	if err != nil {
		return fmt.Errorf("connecting to MongoDB: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = mongoClient.Disconnect(ctx)
	}()

	srv, err := server.New(startCtx, server.Stores{Postgres: pool, Redis: rdb, Mongo: mongoClient.Database(cfg.MongoDatabase)}, server.Options{
		RedisPrefix:    cfg.RedisPrefix,
		CacheTTL:       cfg.CacheTTL,
		CacheDisabled:  cfg.CacheDisabled,
		RateLimit:      cfg.RateLimit,
		RateBurst:      cfg.RateBurst,
		RequestTimeout: cfg.RequestTimeout,
		BcryptCost:     cfg.BcryptCost,
		MaxBodyBytes:   cfg.MaxBodyBytes,

		SessionIdleTimeout:      cfg.SessionIdle,
		SessionLifetime:         cfg.SessionLifetime,
		LoginWindow:             cfg.LoginWindow,
		LoginFailuresPerAccount: cfg.LoginPerAccount,
		LoginFailuresPerClient:  cfg.LoginPerClient,
		SagaKeys:                cfg.SagaKeys,
		AdminToken:              cfg.AdminToken,
		AdminReadOnly:           cfg.AdminReadOnly,
		RecoverEvery:            cfg.RecoverEvery,
		SagaLease:               cfg.SagaLease,
		Telemetry:               tel,
		Logger:                  log,
	})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer srv.Close() // after the HTTP server has drained: runs before the pools close

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	httpServer := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: min(cfg.ReadTimeout, 5*time.Second),
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("listening", slog.String("addr", ln.Addr().String()), slog.Bool("cache", !cfg.CacheDisabled),
		slog.Int("rate_limit", cfg.RateLimit), slog.String("mongodb_database", cfg.MongoDatabase),
		slog.Bool("saga_states_sealed", len(cfg.SagaKeys) > 0), slog.Bool("admin_console", cfg.AdminToken != ""),
		slog.Bool("otlp", otlp))
	if ready != nil {
		ready(ln.Addr())
	}

	served := make(chan error, 1)
	go func() { served <- httpServer.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}

	log.Info("shutting down: draining in-flight requests", slog.Duration("timeout", cfg.ShutdownTimeout))
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := httpServer.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

// newLogger returns the structured logger cfg asks for.
func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(server.WithTraceIDs(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(server.WithTraceIDs(slog.NewTextHandler(w, opts)))
}
