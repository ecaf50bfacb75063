package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/mongo"
	metricnoop "go.opentelemetry.io/otel/metric/noop"

	"github.com/polystore/polystore/cacherepo"
	"github.com/polystore/polystore/coord"
	"github.com/polystore/polystore/docrepo"
	"github.com/polystore/polystore/examples/server/internal/app"
	"github.com/polystore/polystore/examples/server/internal/chat"
	"github.com/polystore/polystore/examples/server/internal/httpapi"
	"github.com/polystore/polystore/examples/server/internal/mongostore"
	"github.com/polystore/polystore/examples/server/internal/pgstore"
	"github.com/polystore/polystore/examples/server/internal/redisstore"
	"github.com/polystore/polystore/examples/server/internal/sagas"
	"github.com/polystore/polystore/pgrepo"
)

// Stores are the clients the server runs on. The caller opens and closes
// them; the server never does.
type Stores struct {
	Postgres *pgxpool.Pool         // users and the saga log
	Redis    redis.UniversalClient // profile cache, rate limits, sessions, XP board
	Mongo    *mongo.Database       // conversations
}

// Options tunes the server. The zero value means the defaults.
type Options struct {
	// RedisPrefix starts every Redis key. Default: "polystore:example:".
	RedisPrefix string
	// CacheTTL is the profile cache's TTL. Default: 10 minutes.
	CacheTTL time.Duration
	// NotFoundTTL is how long an unknown user id is cached. Default: 30s.
	NotFoundTTL time.Duration
	// CacheDisabled reads profiles from PostgreSQL every time. Default:
	// false.
	CacheDisabled bool
	// RateLimit is each client's requests per second. Default (0): 100;
	// negative: no limit.
	RateLimit int
	// RateBurst is each client's burst. Default (0): twice RateLimit.
	RateBurst int
	// BcryptCost is the cost of password hashes. Default (0): 10
	// (bcrypt.DefaultCost).
	BcryptCost int
	// SessionIdleTimeout ends a session unused for this long. Default (0):
	// 30 minutes.
	SessionIdleTimeout time.Duration
	// SessionLifetime ends every session this long after its login.
	// Default (0): 24 hours.
	SessionLifetime time.Duration
	// LoginWindow is the window in which failed logins are counted.
	// Default (0): 15 minutes; a whole number of seconds.
	LoginWindow time.Duration
	// LoginFailuresPerAccount is how many failed logins one account (a
	// username or an email, known or not) may have in a window before
	// POST /sessions answers 429 for it. Default (0): 10; negative: no
	// limit (and no per-client limit either).
	LoginFailuresPerAccount int
	// LoginFailuresPerClient is the same for one client address, whatever
	// the accounts. Default (0): 50.
	LoginFailuresPerClient int
	// MaxBodyBytes bounds request bodies. Default (0): 64 KiB.
	MaxBodyBytes int64
	// RequestTimeout is the deadline of each API request's context (not of
	// the probes, /metrics or the admin console). It bounds the request's
	// own store calls: a store that does not answer fails them after this
	// long, and the request answers 503 with Retry-After, or 202 for a
	// write whose saga is durably logged (recovery finishes it). It does
	// not bound the answer: after the cut, coord's release and settle
	// waits, bounded in all by coord.Options.SettleTimeout (2s by default),
	// and a MongoDB step's own timeout can add to it (README.md,
	// "Resilience under faults"). Default (0): DefaultRequestTimeout, 3s;
	// negative: no deadline.
	RequestTimeout time.Duration
	// HealthTimeout bounds each store's check in the readiness report
	// (/readyz, /health); the checks run at once, so it bounds the report.
	// Default: 1s.
	HealthTimeout time.Duration
	// RecoverEvery is the interval of the coordinator's recovery loop,
	// which finishes sagas that a crash or an outage left unfinished.
	// Default (0): coord's, 10s.
	RecoverEvery time.Duration
	// SagaLease is how long a saga stays reserved to this instance after
	// its last log write; another instance's recovery takes it over once
	// the lease has expired. Default (0): coord's, 30s.
	SagaLease time.Duration
	// SagaKeys, when not empty, seal the saga states in the log with
	// coord.NewSealer (AES-256-GCM), oldest key first: the last seals,
	// every one opens. Every instance sharing the database needs the same
	// ring. Sealed, a registration's password hash is logged (sealed) until
	// its insert commits, so that recovery in any instance can redo the
	// insert; unsealed (the default), the hash is never logged, and a
	// registration cut by a crash before its insert is compensated (see
	// README.md, "The password hash and the saga log").
	SagaKeys []coord.Key
	// AdminToken, when not empty, mounts the saga console (coord/coordhttp)
	// under /admin/, behind HTTP Basic authentication whose password is
	// this token (the user name is recorded as the operator). Default: no
	// console, /admin/ is a 404.
	AdminToken string
	// AdminReadOnly removes the console's Retry and Resolve actions.
	AdminReadOnly bool
	// Telemetry is the OpenTelemetry SDK the server reports to: the
	// repositories, the sagas and the HTTP layer get its providers, and
	// /metrics serves its registry. The caller shuts it down, after Close.
	// Default (nil): NewTelemetry with no exporter (nothing leaves the
	// process; /metrics works), owned and shut down by Close.
	Telemetry *Telemetry
	// Logger receives the logs. Default: slog.Default().
	Logger *slog.Logger
	// WrapConversations, when set, wraps the MongoDB conversation store:
	// the seam through which tests inject failures. Default: nil.
	WrapConversations func(chat.ConversationStore) chat.ConversationStore
	// WrapProfileCache, when set, wraps the profile cache (Redis, or the
	// uncached stand-in): the seam through which tests make the cache fail
	// while the sessions, in the same Redis, keep working. Default: nil.
	WrapProfileCache func(chat.ProfileCache) chat.ProfileCache
}

// DefaultRequestTimeout is Options.RequestTimeout's default: far above
// what a request takes with its stores up (milliseconds; a login's bcrypt
// tens of them), and short enough that an answer, with what the sagas may
// add after a cut (5s at most: coord's settling budget, 2s, or a MongoDB
// step's own timeout; README.md, "Resilience under faults"), comes within
// the 10s that HTTP clients commonly wait.
const DefaultRequestTimeout = 3 * time.Second

// FailFastRedis makes go-redis give up as fast as the cache and the rate
// limit need: they fail open when Redis is down, and should learn it fast.
// It shortens the dial retries (5 tries, 100ms apart by default) to 2 tries
// 20ms apart, so that a refused connection does not cost every request
// half a second of redials; and it sets ContextTimeoutEnabled, so that the
// cache's and the limiter's context deadlines bound socket reads, which
// otherwise wait for the client's ReadTimeout (3s) on a Redis that accepts
// connections but does not answer.
func FailFastRedis(o *redis.Options) {
	o.DialerRetries = 2
	o.DialerRetryTimeout = 20 * time.Millisecond
	o.ContextTimeoutEnabled = true
}

// Server is the example service, ready to serve.
type Server struct {
	handler      *httpapi.Handler
	coord        *coord.Coordinator
	ownTelemetry *Telemetry // built by New, shut down by Close
}

// New prepares the stores (users migration, coord's tables, conversation
// indexes), registers the sagas and builds the HTTP handler. It starts no
// goroutine: Start starts the recovery loop.
func New(ctx context.Context, st Stores, opts Options) (*Server, error) {
	if st.Postgres == nil || st.Redis == nil || st.Mongo == nil {
		return nil, fmt.Errorf("server: Stores needs Postgres, Redis and Mongo")
	}
	if opts.RedisPrefix == "" {
		opts.RedisPrefix = "polystore:example:"
	}
	if opts.RateLimit == 0 {
		opts.RateLimit = 100
	}
	if opts.RateBurst == 0 {
		opts.RateBurst = 2 * opts.RateLimit
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.LoginWindow == 0 {
		opts.LoginWindow = 15 * time.Minute
	}
	if opts.LoginFailuresPerAccount == 0 {
		opts.LoginFailuresPerAccount = 10
	}
	if opts.LoginFailuresPerClient == 0 {
		opts.LoginFailuresPerClient = 50
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}

	tel, ownTelemetry := opts.Telemetry, (*Telemetry)(nil)
	if tel == nil {
		var err error
		if tel, err = NewTelemetry(ctx, TelemetryOptions{}); err != nil {
			return nil, err
		}
		ownTelemetry = tel
	}
	srv, err := build(ctx, st, opts, tel, log)
	if err != nil {
		if ownTelemetry != nil {
			_ = ownTelemetry.Shutdown(context.WithoutCancel(ctx))
		}
		return nil, err
	}
	srv.ownTelemetry = ownTelemetry
	return srv, nil
}

// build is New once the telemetry is there.
func build(ctx context.Context, st Stores, opts Options, tel *Telemetry, log *slog.Logger) (*Server, error) {
	if err := pgstore.Migrate(ctx, st.Postgres); err != nil {
		return nil, fmt.Errorf("server: migrating PostgreSQL: %w", err)
	}
	users, err := pgstore.NewUserRepositoryWithOptions(st.Postgres, pgrepo.Options{
		TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider,
	})
	if err != nil {
		return nil, err
	}
	convRepo, err := mongostore.NewConversationRepositoryWithProviders(st.Mongo, tel.TracerProvider, tel.MeterProvider)
	if err != nil {
		return nil, err
	}
	if err := convRepo.EnsureIndexes(ctx); err != nil {
		return nil, fmt.Errorf("server: ensuring MongoDB indexes: %w", err)
	}
	var conversations chat.ConversationStore = convRepo
	if opts.WrapConversations != nil {
		conversations = opts.WrapConversations(conversations)
	}

	// The telemetry's registry, not the global one: two servers in one
	// test binary must not collide.
	reg := tel.Registry
	if err := errors.Join(reg.Register(postgresPoolMetrics(st.Postgres)), reg.Register(redisPoolMetrics(st.Redis))); err != nil {
		return nil, fmt.Errorf("server: registering pool metrics: %w", err)
	}

	var cache chat.ProfileCache = app.Uncached{}
	var cacheBreaker func() string
	if !opts.CacheDisabled {
		pc, err := redisstore.NewProfileCache(st.Redis, opts.RedisPrefix, redisstore.ProfileCacheOptions{
			TTL: opts.CacheTTL, NotFoundTTL: opts.NotFoundTTL,
			TracerProvider: tel.TracerProvider,
			// The cache's counts are the profile_cache_* metrics below,
			// from its Stats: cacherepo's own instruments would count
			// each hit and miss a second time in /metrics.
			MeterProvider: metricnoop.NewMeterProvider(),
			// cacherepo's defaults: open after 5 consecutive failures,
			// 5s cool-down, at most 64 loads at once without Redis.
			Breaker: &cacherepo.BreakerOptions{},
			// One line per change of the breaker's state.
			OnEvent: func(ctx context.Context, ev cacherepo.Event) {
				switch ev.Kind {
				case cacherepo.EventBreakerOpen:
					log.WarnContext(ctx, "profile cache: Redis keeps failing, reading profiles from PostgreSQL without it", slog.String("breaker", "open"))
				case cacherepo.EventBreakerHalfOpen, cacherepo.EventBreakerClosed:
					log.InfoContext(ctx, "profile cache breaker", slog.String("event", ev.Kind.String()))
				}
			},
		})
		if err != nil {
			return nil, err
		}
		if err := reg.Register(cacheMetrics(pc.Stats)); err != nil {
			return nil, fmt.Errorf("server: registering cache metrics: %w", err)
		}
		cache, cacheBreaker = pc, pc.BreakerState
	}

	if opts.WrapProfileCache != nil {
		cache = opts.WrapProfileCache(cache)
	}

	stepHooks, err := sagaStepMetrics(reg)
	if err != nil {
		return nil, err
	}
	coordOpts := coord.Options{
		RecoverEvery:  opts.RecoverEvery,
		LeaseDuration: opts.SagaLease,
		Hooks:         joinHooks(coord.SlogHooks(log), stepHooks),
		// coord's spans (coord.Run, coord.step) and metrics (coord.saga.*,
		// coord.step.duration) come with the rest of the telemetry.
		TracerProvider: tel.TracerProvider,
		MeterProvider:  tel.MeterProvider,
	}
	if len(opts.SagaKeys) > 0 {
		sealer, err := coord.NewSealer(opts.SagaKeys...)
		if err != nil {
			return nil, fmt.Errorf("server: saga keys: %w", err)
		}
		coordOpts.Codec = sealer
	}
	c, err := coord.New(ctx, st.Postgres, coordOpts)
	if err != nil {
		return nil, fmt.Errorf("server: starting the saga coordinator: %w", err)
	}
	var admin http.Handler
	if opts.AdminToken != "" {
		if admin, err = adminConsole(c, opts.AdminToken, opts.AdminReadOnly); err != nil {
			return nil, err
		}
	}
	sessionStore, err := redisstore.NewSessionStore(st.Redis, opts.RedisPrefix, redisstore.SessionStoreOptions{
		IdleTimeout: opts.SessionIdleTimeout, Lifetime: opts.SessionLifetime,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	board, err := redisstore.NewXPBoard(st.Redis, opts.RedisPrefix)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	var loginLimiter chat.LoginLimiter
	if opts.LoginFailuresPerAccount > 0 {
		ll, err := redisstore.NewLoginLimiter(st.Redis, opts.RedisPrefix, opts.LoginWindow, opts.LoginFailuresPerAccount, opts.LoginFailuresPerClient)
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		loginLimiter = ll
	}
	workflows, err := sagas.New(c, users, conversations, cache, sessionStore, board, reg, sagas.Options{Sealed: coordOpts.Codec != nil})
	if err != nil {
		return nil, err
	}
	userService := app.NewUsers(users, cache, workflows, opts.BcryptCost)
	sessionService, err := app.NewSessions(users, sessionStore, loginLimiter, opts.BcryptCost)
	if err != nil {
		return nil, err
	}

	var limiter httpapi.Limiter
	var limiterBreaker func() redisstore.BreakerState
	if opts.RateLimit > 0 {
		limiterOpens := prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rate_limit_breaker_opens_total",
			Help: "Times the rate limiter's circuit breaker opened (requests let through unlimited, Redis not called, for a cool-down).",
		})
		if err := reg.Register(limiterOpens); err != nil {
			return nil, fmt.Errorf("server: registering rate limit metrics: %w", err)
		}
		rl := redisstore.NewRateLimiterWithOptions(st.Redis, opts.RedisPrefix, redisstore.RateLimiterOptions{
			Rate: opts.RateLimit, Burst: opts.RateBurst,
			// One line per change of state, not one per request.
			OnStateChange: func(from, to redisstore.BreakerState, err error) {
				if to == redisstore.BreakerOpen {
					limiterOpens.Inc()
				}
				if to == redisstore.BreakerOpen && err != nil {
					log.Warn("rate limit: Redis failed, letting requests through unlimited until it answers again",
						slog.String("breaker", string(to)), slog.Any("error", err))
					return
				}
				log.Info("rate limit breaker", slog.String("from", string(from)), slog.String("to", string(to)))
			},
		})
		limiter, limiterBreaker = rl, rl.State
	}
	// The breakers in front of Redis, as the readiness report shows them.
	redisBreakers := func() map[string]string {
		out := map[string]string{}
		if limiterBreaker != nil {
			out["rate_limit"] = string(limiterBreaker())
		}
		if cacheBreaker != nil {
			out["profile_cache"] = cacheBreaker()
		}
		return out
	}

	h := httpapi.New(httpapi.Config{
		Users:         userService,
		Conversations: app.NewConversations(userService, conversations),
		Sessions:      sessionService,
		Leaderboard:   app.NewLeaderboard(users, board),
		// Redis is optional: profiles are read from PostgreSQL and the
		// rate limit fails open without it, so the service is degraded,
		// not down (see README.md, "Health and probes"). PostgreSQL and
		// MongoDB are required: registration, and every write, needs them.
		Health: []httpapi.HealthCheck{
			{Name: "postgres", Ping: users.Ping},
			{Name: "redis", Optional: true, Ping: func(ctx context.Context) error { return st.Redis.Ping(ctx).Err() },
				Impact:   redisImpact,
				Breakers: redisBreakers},
			{Name: "mongodb", Ping: func(ctx context.Context) error { return docrepo.Health(ctx, st.Mongo.Client()) }},
		},
		HealthTimeout: opts.HealthTimeout,
		Metrics:       promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Admin:         admin,
		// otelhttp starts a server span per request; its own metrics are
		// off: http_requests_total counts requests (one count of each).
		TracerProvider: tel.TracerProvider,
		Registerer:     reg,
		Limiter:        limiter,
		MaxBodyBytes:   opts.MaxBodyBytes,
		RequestTimeout: max(opts.RequestTimeout, 0),
		Logger:         log,
	})
	return &Server{handler: h, coord: c}, nil
}

// redisImpact is what the readiness report says stops working while Redis
// is down.
const redisImpact = "public reads (profiles, registration) still work from PostgreSQL and MongoDB; " +
	"login, every request that needs a session, XP and the leaderboard answer 503; no cache, no rate limit"

// Handler returns the HTTP API.
func (s *Server) Handler() http.Handler { return s.handler }

// Start starts the coordinator's recovery loop, which runs until Close.
func (s *Server) Start(ctx context.Context) error { return s.coord.Start(ctx) }

// Recover runs one recovery pass now, as the loop Start starts does every
// RecoverEvery: it finishes the sagas left unfinished whose lease has
// expired, forward or by compensation, and returns how many it took up. Its
// error reports a saga log it could not read (see coord.Coordinator.Recover).
func (s *Server) Recover(ctx context.Context) (int, error) { return s.coord.Recover(ctx) }

// Close stops the recovery loop, waiting for a recovery in progress, and
// shuts down the telemetry New built (not one given in Options). Call it
// after the HTTP server has drained, before closing the store clients.
func (s *Server) Close() error {
	err := s.coord.Close()
	if s.ownTelemetry != nil {
		err = errors.Join(err, s.ownTelemetry.Shutdown(context.Background()))
	}
	return err
}
