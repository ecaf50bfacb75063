package httpapi

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/polystore/polystore/examples/server/internal/chat"
)

// HealthCheck is one store GET /health checks.
type HealthCheck struct {
	Name string                          // "postgres", "redis", "mongodb"
	Ping func(ctx context.Context) error // nil error: the store is up
}

// storeHealth is one store's entry in the /health body.
type storeHealth struct {
	Status    string  `json:"status"` // "up" or "down"
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
}

// healthBody is the /health body.
type healthBody struct {
	Status string                 `json:"status"` // "ok" or "unavailable"
	Stores map[string]storeHealth `json:"stores"`
	Error  string                 `json:"error,omitempty"`
	Code   chat.Code              `json:"code,omitempty"`
}

// getHealth pings every store at once, each within the health timeout, and
// answers 200 when all are up, 503 naming the stores that are not.
func (h *Handler) getHealth(w http.ResponseWriter, r *http.Request) {
	results := make([]storeHealth, len(h.health))
	var wg sync.WaitGroup
	for i, c := range h.health {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), h.healthTimeout)
			defer cancel()
			start := time.Now()
			err := c.Ping(ctx)
			res := storeHealth{Status: "up", LatencyMS: float64(time.Since(start).Microseconds()) / 1000}
			if err != nil {
				res.Status, res.Error = "down", err.Error()
			}
			results[i] = res
		})
	}
	wg.Wait()

	body := healthBody{Status: "ok", Stores: make(map[string]storeHealth, len(h.health))}
	var down []string
	for i, c := range h.health {
		body.Stores[c.Name] = results[i]
		if results[i].Status != "up" {
			down = append(down, c.Name)
		}
	}
	status := http.StatusOK
	if len(down) > 0 {
		status = http.StatusServiceUnavailable
		body.Status, body.Code = "unavailable", chat.CodeUnavailable
		body.Error = "unavailable: " + strings.Join(down, ", ")
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, body)
}
