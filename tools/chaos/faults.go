package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Stores the example server talks to, each behind its own proxy.
const (
	storePostgres = "postgres"
	storeRedis    = "redis"
	storeMongo    = "mongodb"
)

// proxies are Toxiproxy's proxies, in this process, on loopback, between
// the example server and each store.
type proxies struct {
	api *toxiproxy.ApiServer
	by  map[string]*toxiproxy.Proxy
}

// newProxies starts one proxy per store, each to its upstream address.
func newProxies(upstreams map[string]string) (*proxies, error) {
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	ps := &proxies{api: api, by: map[string]*toxiproxy.Proxy{}}
	for name, upstream := range upstreams {
		p := toxiproxy.NewProxy(api, name, "127.0.0.1:0", upstream)
		if err := p.Start(); err != nil {
			ps.stop()
			return nil, fmt.Errorf("proxy %s: %w", name, err)
		}
		ps.by[name] = p
	}
	return ps, nil
}

// addr is the proxy's listening address (fixed at its first start, kept
// across Stop and Start).
func (ps *proxies) addr(store string) string { return ps.by[store].Listen }

func (ps *proxies) stop() {
	for _, p := range ps.by {
		p.Stop()
	}
}

// fault is something done to one store, undone by its heal.
type fault struct {
	kind  string // down, blackhole, slow, reset, restart
	store string
	// inject starts the fault; heal ends it. A process fault (restart) does
	// all its work in inject and has no heal.
	inject func(ctx context.Context) error
	heal   func(ctx context.Context) error
}

// toxic returns a fault that adds a Toxiproxy toxic to store's proxy.
func (ps *proxies) toxic(kind, store, json string) fault {
	p := ps.by[store]
	return fault{kind: kind, store: store,
		inject: func(context.Context) error {
			_, err := p.Toxics.AddToxicJson(strings.NewReader(json))
			return err
		},
		heal: func(ctx context.Context) error { return p.Toxics.RemoveToxic(ctx, kind) },
	}
}

// down disables store's proxy: its listener closes and its connections
// are cut, so the server's dials are refused.
func (ps *proxies) down(store string) fault {
	p := ps.by[store]
	return fault{kind: "down", store: store,
		inject: func(context.Context) error { p.Stop(); return nil },
		heal:   func(context.Context) error { return p.Start() },
	}
}

// blackhole accepts connections and drops every byte the server sends:
// no answer, no error (Toxiproxy's timeout toxic with timeout 0).
func (ps *proxies) blackhole(store string) fault {
	return ps.toxic("blackhole", store,
		`{"name":"blackhole","type":"timeout","stream":"upstream","attributes":{"timeout":0}}`)
}

// slow delays every answer by 150ms ± 50ms: past the cache's 200ms
// timeout at times, and past the rate limiter's 100ms.
func (ps *proxies) slow(store string) fault {
	return ps.toxic("slow", store,
		`{"name":"slow","type":"latency","stream":"downstream","attributes":{"latency":150,"jitter":50}}`)
}

// reset resets every connection (RST) as soon as the store answers on it:
// each request sent arrives, its answer never does.
func (ps *proxies) reset(store string) fault {
	return ps.toxic("reset", store,
		`{"name":"reset","type":"reset_peer","stream":"downstream","attributes":{"timeout":0}}`)
}

// scenario is one fault under load.
type scenario struct {
	name  string
	fault fault
	// redisData: the fault loses Redis's data (sessions: 401 is then the
	// right answer to a token the server gave).
	redisData bool
}

// scenarios returns every scenario the harness knows, by name, in the
// order of the full run.
func (h *harness) scenarios() []scenario {
	ps := h.proxies
	var list []scenario
	list = append(list, scenario{name: "baseline", fault: fault{kind: "none", store: "-"}})
	for _, store := range []string{storeRedis, storePostgres, storeMongo} {
		list = append(list,
			scenario{name: store + "-down", fault: ps.down(store)},
			scenario{name: store + "-blackhole", fault: ps.blackhole(store)},
			scenario{name: store + "-slow", fault: ps.slow(store)},
			scenario{name: store + "-reset", fault: ps.reset(store)},
		)
	}
	list = append(list,
		scenario{name: "redis-restart", redisData: true, fault: fault{kind: "restart", store: storeRedis,
			inject: func(ctx context.Context) error { return h.redis.restart(ctx, time.Second) }}},
		scenario{name: "postgres-restart", fault: fault{kind: "restart", store: storePostgres,
			inject: h.pg.restart}},
		scenario{name: "postgres-crash", fault: fault{kind: "restart", store: storePostgres,
			inject: h.pg.crash}},
		scenario{name: "ferretdb-kill", fault: fault{kind: "restart", store: storeMongo,
			inject: func(ctx context.Context) error { return h.ferret.kill(ctx, time.Second) }}},
	)
	return list
}

// shortScenarios is the short version's selection (make test), about a
// minute: one fault on each store, two of them through the proxy (refused,
// no answer) and two at process level (a restart, a SIGKILL).
var shortScenarios = []string{"redis-down", "postgres-restart", "mongodb-blackhole", "ferretdb-kill"}
