package httpapi

import (
	"context"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/polystore/polystore/examples/server/internal/chat"
)

// Limiter decides whether a client may make one more request.
type Limiter interface {
	// Allow takes one request from client's budget. When it is spent, it
	// returns false and how long until the next request would be allowed.
	Allow(ctx context.Context, client string) (ok bool, retryAfter time.Duration, err error)
}

// rateLimit answers 429 with Retry-After once a client has spent its budget.
// The probes (/livez, /readyz, /health) and /metrics are exempt: probes
// and scrapers must always get through. When the limiter's store fails,
// the request goes through (fail open): a Redis outage must not take the
// whole API down with it (the Redis limiter also stops calling Redis for a
// while, behind its breaker, so that requests do not each pay the failure).
func (h *Handler) rateLimit(next http.Handler) http.Handler {
	if h.limiter == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/livez", "/readyz", "/health", "/metrics":
			next.ServeHTTP(w, r)
			return
		}
		ok, retryAfter, err := h.limiter.Allow(r.Context(), clientKey(r))
		if err != nil {
			h.log.WarnContext(r.Context(), "rate limit unavailable, letting the request through", slog.Any("error", err))
			next.ServeHTTP(w, r)
			return
		}
		if !ok {
			if h.limited != nil {
				h.limited.Inc()
			}
			secs := int(math.Ceil(retryAfter.Seconds()))
			if secs < 1 {
				secs = 1
			}
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			h.writeError(w, r, chat.Errorf(chat.CodeRateLimited, "too many requests: retry after %d s", secs))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// clientKey identifies the client by its IP address. Behind a reverse proxy
// this would be the proxy's: read the proxy's header there instead, and
// only from a proxy you trust.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
