package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/polystore/polystore/examples/server/internal/chat"
)

// Config is what a Handler serves. Users and Conversations are required;
// the zero value of every other field means its default.
type Config struct {
	Users         chat.UserService
	Conversations chat.ConversationService
	// Sessions logs in and authenticates. Required by every route that
	// needs a session.
	Sessions chat.SessionService
	// Leaderboard serves XP and the weekly board. Default: nil, no routes.
	Leaderboard chat.LeaderboardService
	// Health lists the stores the readiness report (GET /readyz and its
	// alias GET /health) checks. Default: none (always 200 "ok").
	Health []HealthCheck
	// HealthTimeout bounds each store's check; the checks run at once, so
	// it bounds the whole report too. Default: 1s.
	HealthTimeout time.Duration
	// Metrics serves GET /metrics. Default: nil, no /metrics route.
	Metrics http.Handler
	// Admin, when not nil, serves every path under /admin/ (the saga
	// console, which does its own authorisation), with the prefix /admin
	// stripped. Default: nil, /admin/ is a 404.
	Admin http.Handler
	// Registerer receives the request counters. Default: nil, not counted.
	Registerer prometheus.Registerer
	// Limiter limits each client's request rate. Default: nil, no limit.
	Limiter Limiter
	// MaxBodyBytes bounds request bodies (413 beyond). Default: 64 KiB.
	MaxBodyBytes int64
	// RequestTimeout is the deadline of each API request's context. It
	// bounds the request's own store calls, so that a store that never
	// answers (a blackholed connection, a server that cannot be selected)
	// fails them after this long, then a 503 with Retry-After; what the
	// services do after the cut without the context (coord's release and
	// settle waits, bounded by coord.Options.SettleTimeout) can add to the
	// answer's time. The
	// probes (bounded by HealthTimeout), /metrics and the admin console get
	// none. Default (0): no deadline.
	RequestTimeout time.Duration
	// TracerProvider starts the server span of each request (otelhttp),
	// named after its route pattern once routed ("POST /users", or the
	// method alone for a request no route matched), with http.route; the span
	// context of a request's W3C traceparent header is its parent.
	// Default (nil): the global provider.
	TracerProvider trace.TracerProvider
	// Logger receives request logs. Default: slog.Default().
	Logger *slog.Logger
}

// Handler is the HTTP API. Build it with New.
type Handler struct {
	users         chat.UserService
	conversations chat.ConversationService
	sessions      chat.SessionService
	leaderboard   chat.LeaderboardService
	health        []HealthCheck
	healthTimeout time.Duration
	limiter       Limiter
	maxBody       int64
	timeout       time.Duration
	log           *slog.Logger
	requests      *prometheus.CounterVec
	limited       prometheus.Counter

	mux     *http.ServeMux
	handler http.Handler // mux inside the middleware
}

// New returns the API's handler for cfg.
func New(cfg Config) *Handler {
	h := &Handler{
		users:         cfg.Users,
		conversations: cfg.Conversations,
		sessions:      cfg.Sessions,
		leaderboard:   cfg.Leaderboard,
		health:        cfg.Health,
		healthTimeout: cfg.HealthTimeout,
		limiter:       cfg.Limiter,
		maxBody:       cfg.MaxBodyBytes,
		timeout:       cfg.RequestTimeout,
		log:           cfg.Logger,
		mux:           http.NewServeMux(),
	}
	if h.healthTimeout <= 0 {
		h.healthTimeout = time.Second
	}
	if h.maxBody <= 0 {
		h.maxBody = 64 << 10
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if cfg.Registerer != nil {
		h.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests served, by route pattern and status.",
		}, []string{"route", "status"})
		h.limited = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "http_rate_limited_total",
			Help: "Requests refused with 429 by the per-client rate limit.",
		})
		cfg.Registerer.MustRegister(h.requests, h.limited)
	}

	h.mux.HandleFunc("POST /users", h.bounded(h.createUser))
	h.mux.HandleFunc("GET /users/{id}", h.bounded(h.getUser))
	h.mux.HandleFunc("PATCH /users/{id}", h.bounded(h.patchUser))
	h.mux.HandleFunc("DELETE /users/{id}", h.bounded(h.deleteUser))
	h.mux.HandleFunc("GET /operations/{id...}", h.bounded(h.getOperation))
	h.mux.HandleFunc("POST /users/{id}/conversations", h.bounded(h.createConversation))
	h.mux.HandleFunc("GET /users/{id}/conversations", h.bounded(h.listConversations))
	h.mux.HandleFunc("POST /conversations/{id}/messages", h.bounded(h.appendMessage))
	h.mux.HandleFunc("POST /sessions", h.bounded(h.createSession))
	h.mux.HandleFunc("DELETE /sessions/current", h.bounded(h.deleteSession))
	if cfg.Leaderboard != nil {
		h.mux.HandleFunc("POST /users/{id}/xp", h.bounded(h.addXP))
		h.mux.HandleFunc("GET /leaderboard", h.bounded(h.getLeaderboard))
	}
	h.mux.HandleFunc("GET /livez", h.getLive)
	h.mux.HandleFunc("GET /readyz", h.getReady)
	h.mux.HandleFunc("GET /health", h.getReady)
	if cfg.Metrics != nil {
		h.mux.Handle("GET /metrics", cfg.Metrics)
	}
	if cfg.Admin != nil {
		h.mux.Handle("/admin/", http.StripPrefix("/admin", cfg.Admin))
	}

	h.handler = h.recoverPanics(h.logRequests(h.rateLimit(http.HandlerFunc(h.route))))
	otelOpts := []otelhttp.Option{
		// HTTP metrics are http_requests_total's (Registerer): otelhttp's
		// own would count every request a second time.
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
	}
	if cfg.TracerProvider != nil {
		otelOpts = append(otelOpts, otelhttp.WithTracerProvider(cfg.TracerProvider))
	}
	h.handler = otelhttp.NewHandler(h.handler, "http", otelOpts...)
	return h
}

// ServeHTTP serves the API.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.handler.ServeHTTP(w, r)
}

// bounded gives an API route's request the deadline RequestTimeout says:
// every store call of the request takes its context, so that none waits
// longer for a store that does not answer (see writeError for the answer).
func (h *Handler) bounded(next http.HandlerFunc) http.HandlerFunc {
	if h.timeout <= 0 {
		return next
	}
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
		defer cancel()
		next(w, r.WithContext(ctx))
	}
}

// route dispatches to the mux, turning its plain-text 404 and 405 answers
// into the JSON error body every other error has.
func (h *Handler) route(w http.ResponseWriter, r *http.Request) {
	if _, pattern := h.mux.Handler(r); pattern != "" {
		h.mux.ServeHTTP(w, r)
		return
	}
	// No route: let the mux decide between 404, 405 (with Allow) and a
	// redirect to a cleaned path, and keep only its status and headers.
	rec := &headerRecorder{header: http.Header{}}
	h.mux.ServeHTTP(rec, r)
	switch rec.status {
	case http.StatusNotFound:
		h.writeError(w, r, chat.Errorf(chat.CodeNotFound, "no route for %s %s", r.Method, r.URL.Path))
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", rec.header.Get("Allow"))
		h.writeError(w, r, chat.Errorf(chat.CodeMethodNotAllowed, "method %s not allowed here", r.Method))
	default:
		for k, v := range rec.header {
			if k != "Content-Type" && k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(rec.status)
	}
}

// headerRecorder keeps the status and headers a handler writes and drops
// its body.
type headerRecorder struct {
	header http.Header
	status int
}

// Header returns the recorded headers.
func (r *headerRecorder) Header() http.Header { return r.header }

// Write drops b, recording a 200 if no status was written.
func (r *headerRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return len(b), nil
}

// WriteHeader records the first status.
func (r *headerRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
