package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/polystore/polystore/examples/server/internal/chat"
)

// HealthCheck is one store the readiness report (GET /readyz, GET /health)
// checks.
type HealthCheck struct {
	Name string                          // "postgres", "redis", "mongodb"
	Ping func(ctx context.Context) error // nil error: the store is up
	// Optional marks a store the service keeps serving without: while
	// only optional stores are down the report is "degraded" and still
	// 200, so that a readiness probe does not take every instance out of
	// rotation for an outage they all share and all survive. A store
	// whose outage fails the writes (PostgreSQL, MongoDB) is not optional:
	// then the report is "unavailable" and 503.
	Optional bool
	// Impact says, in the report of a store that is down, what does not
	// work meanwhile. Default: none.
	Impact string
	// Breakers, when set, reports the state of the circuit breakers in
	// front of this store, by name ({"rate_limit": "open"}).
	Breakers func() map[string]string
}

// storeHealth is one store's entry in the report.
type storeHealth struct {
	Status    string            `json:"status"` // "up" or "down"
	Required  bool              `json:"required"`
	LatencyMS float64           `json:"latency_ms"`
	Error     string            `json:"error,omitempty"`
	Impact    string            `json:"impact,omitempty"`
	Breakers  map[string]string `json:"breakers,omitempty"`
}

// Overall statuses of the readiness report.
const (
	healthOK          = "ok"          // every store is up: 200
	healthDegraded    = "degraded"    // only optional stores are down: 200
	healthUnavailable = "unavailable" // a required store is down: 503
)

// healthBody is the readiness report.
type healthBody struct {
	Status string                 `json:"status"` // "ok", "degraded" or "unavailable"
	Down   []string               `json:"down,omitempty"`
	Stores map[string]storeHealth `json:"stores"`
	Error  string                 `json:"error,omitempty"`
	Code   chat.Code              `json:"code,omitempty"`
}

// getLive answers the liveness probe: the process is running and its HTTP
// server serves. It touches no store on purpose: a store outage is not
// cured by restarting this process, and a liveness probe that failed with
// the store would restart every instance at once.
func (h *Handler) getLive(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"status": healthOK})
}

// getReady pings every store at once, each within the health timeout, and
// answers 200 "ok" when all are up, 200 "degraded" when only optional
// stores are down, and 503 "unavailable" naming the required stores that
// are down. GET /health serves the same report.
func (h *Handler) getReady(w http.ResponseWriter, r *http.Request) {
	results := make([]storeHealth, len(h.health))
	done := make(chan struct{}, len(h.health))
	for i, c := range h.health {
		go func() {
			results[i] = h.check(r.Context(), c)
			done <- struct{}{}
		}()
	}
	for range h.health {
		<-done
	}

	body := healthBody{Status: healthOK, Stores: make(map[string]storeHealth, len(h.health))}
	var required []string
	for i, c := range h.health {
		body.Stores[c.Name] = results[i]
		if results[i].Status == "up" {
			continue
		}
		body.Down = append(body.Down, c.Name)
		if !c.Optional {
			required = append(required, c.Name)
		}
	}
	sort.Strings(body.Down)
	status := http.StatusOK
	switch {
	case len(required) > 0:
		sort.Strings(required)
		status = http.StatusServiceUnavailable
		body.Status, body.Code = healthUnavailable, chat.CodeUnavailable
		body.Error = "unavailable: " + strings.Join(required, ", ")
	case len(body.Down) > 0:
		body.Status = healthDegraded
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, body)
}

// check pings one store within the health timeout. It stops waiting at the
// timeout even when the driver does not (a client that ignores its
// context's deadline on a store that accepts connections but never
// answers), so that no hung store can hang the probe: the ping is left to
// finish on its own.
func (h *Handler) check(ctx context.Context, c HealthCheck) storeHealth {
	ctx, cancel := context.WithTimeout(ctx, h.healthTimeout)
	defer cancel()
	start := time.Now()
	errs := make(chan error, 1)
	go func() { errs <- c.Ping(ctx) }()
	var err error
	select {
	case err = <-errs:
	case <-ctx.Done():
		err = fmt.Errorf("no answer within %s", h.healthTimeout)
	}
	res := storeHealth{Status: "up", Required: !c.Optional, LatencyMS: float64(time.Since(start).Microseconds()) / 1000}
	if err != nil {
		res.Status, res.Error, res.Impact = "down", err.Error(), c.Impact
	}
	if c.Breakers != nil {
		res.Breakers = c.Breakers()
	}
	return res
}
