package server_test

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/polystore/polystore/examples/server/internal/chat"
	"github.com/polystore/polystore/examples/server/internal/pgstore"
	"github.com/polystore/polystore/examples/server/internal/server"
	"github.com/polystore/polystore/internal/servicetest"
)

// tcpProxy forwards every connection to a store. Closing it closes the
// listener and every connection, so that the store looks down (connection
// refused) to the clients behind it, while the real server, shared with
// other tests, keeps running. Blackhole makes it forward nothing, in
// either direction, on the connections it has and on those it accepts
// (never dialing the store for them), and close none: the store looks
// alive to the TCP stack and never answers, as behind a firewall that
// drops its packets.
type tcpProxy struct {
	ln     net.Listener
	target string
	hole   atomic.Bool

	mu     sync.Mutex
	closed bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &tcpProxy{ln: ln, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(p.Close)
	return p
}

func (p *tcpProxy) Addr() string { return p.ln.Addr().String() }

// Blackhole stops every answer from the store.
func (p *tcpProxy) Blackhole() { p.hole.Store(true) }

// Heal forwards again and closes every connection made so far, whose
// streams lost bytes in the hole: the clients see them broken and open
// new ones.
func (p *tcpProxy) Heal() {
	p.hole.Store(false)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// track keeps c to close with the proxy, or closes it at once if the
// proxy is closed (false).
func (p *tcpProxy) track(c ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range c {
			_ = c.Close()
		}
		return false
	}
	p.conns = append(p.conns, c...)
	return true
}

func (p *tcpProxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.hole.Load() {
			p.track(in) // held open, never answered
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		if !p.track(in, out) {
			return
		}
		p.wg.Go(func() { p.pump(out, in) })
		p.wg.Go(func() { p.pump(in, out) })
	}
}

// pump copies src to dst, dropping what it reads while the hole is on,
// until either side fails.
func (p *tcpProxy) pump(dst, src net.Conn) {
	defer func() { _ = dst.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.hole.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Close stops forwarding: the port is closed and every connection cut.
func (p *tcpProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	_ = p.ln.Close()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// store returns the readiness report's entry of a store.
func store(t *testing.T, res response, name string) map[string]any {
	t.Helper()
	stores, ok := res.JSON["stores"].(map[string]any)
	require.True(t, ok, "no stores in %s", res.Raw)
	s, ok := stores[name].(map[string]any)
	require.True(t, ok, "no %s in %s", name, res.Raw)
	return s
}

func TestServer_Probes_AllUp_LiveAndReadyAnswer200OK(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *server.Options, _ *server.Stores) {
		o.RateLimit = 5
		o.HealthTimeout = 5 * time.Second // up, even on a loaded machine
	})

	live := e.do("GET", "/livez", "")
	require.Equal(t, http.StatusOK, live.Status, "body: %s", live.Raw)
	assert.Equal(t, map[string]any{"status": "ok"}, live.JSON)
	assert.Equal(t, "no-store", live.Header.Get("Cache-Control"))

	for _, path := range []string{"/readyz", "/health"} {
		res := e.do("GET", path, "")
		require.Equal(t, http.StatusOK, res.Status, "%s: %s", path, res.Raw)
		assert.Equal(t, "ok", res.JSON["status"], path)
		assert.NotContains(t, res.JSON, "down", path)
		assert.NotContains(t, res.JSON, "code", path)
		for name, required := range map[string]bool{"postgres": true, "redis": false, "mongodb": true} {
			s := store(t, res, name)
			assert.Equal(t, "up", s["status"], "%s %s", path, name)
			assert.Equal(t, required, s["required"], "%s %s", path, name)
			assert.Contains(t, s, "latency_ms", "%s %s", path, name)
			assert.NotContains(t, s, "error", "%s %s", path, name)
		}
		assert.Equal(t, map[string]any{"rate_limit": "closed", "profile_cache": "closed"}, store(t, res, "redis")["breakers"], path)
	}

	// Probes are never rate limited: more of them than the burst (10).
	for range 12 {
		assert.Equal(t, http.StatusOK, e.do("GET", "/readyz", "").Status)
		assert.Equal(t, http.StatusOK, e.do("GET", "/livez", "").Status)
	}
}

// TestServer_Probes_RedisDownOrHung_ReadinessIsDegradedNot503 is the
// regression test of a /health that answered 503 while only Redis was
// down, which a readiness probe would have turned into a full outage.
func TestServer_Probes_RedisDownOrHung_ReadinessIsDegradedNot503(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		addr     func(t *testing.T) string
		failFast bool
		error    string
	}{
		// Nothing listens on port 1: every Redis call fails at once.
		{"refused", func(*testing.T) string { return "127.0.0.1:1" }, true, "connection refused"},
		// Accepts connections and never answers; this client does not
		// follow its context's deadline (no FailFastRedis), so only the
		// report's own bound keeps the probe short.
		{"hung", hungRedis, false, "no answer within 2s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(o *server.Options, s *server.Stores) {
				opts := &redis.Options{Addr: tt.addr(t), ReadTimeout: time.Minute, WriteTimeout: time.Minute, MaxRetries: -1}
				if tt.failFast {
					server.FailFastRedis(opts) // as main does
				}
				s.Redis = redis.NewClient(opts)
				o.HealthTimeout = 2 * time.Second
				o.RateLimit = 5
			})
			t.Cleanup(func() { _ = e.redis.Close() })

			live := e.do("GET", "/livez", "")
			assert.Equal(t, http.StatusOK, live.Status, "liveness touches no store: %s", live.Raw)

			for _, path := range []string{"/readyz", "/health"} {
				res := e.do("GET", path, "")
				require.Equal(t, http.StatusOK, res.Status, "%s: %s", path, res.Raw)
				assert.Equal(t, "degraded", res.JSON["status"], path)
				assert.Equal(t, []any{"redis"}, res.JSON["down"], path)
				assert.NotContains(t, res.JSON, "code", "%s: a 200 is no error", path)
				r := store(t, res, "redis")
				assert.Equal(t, "down", r["status"], path)
				assert.Equal(t, false, r["required"], path)
				assert.Contains(t, r["error"], tt.error, path)
				assert.Contains(t, r["impact"], "503", "%s: the report says what stops working", path)
				assert.Equal(t, "up", store(t, res, "postgres")["status"], path)
				assert.Equal(t, "up", store(t, res, "mongodb")["status"], path)
			}
		})
	}
}

func TestServer_Probes_PostgresOrMongoDown_ReadinessIs503NamingIt(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string // the store cut, as the report names it
		cut   func(t *testing.T, s *server.Stores) *tcpProxy
		other []string
	}{
		{"postgres", func(t *testing.T, s *server.Stores) *tcpProxy {
			// A second pool on the test's database, through a proxy.
			cfg := s.Postgres.Config().ConnConfig
			p := newTCPProxy(t, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
			u := &url.URL{Scheme: "postgres", User: url.User(cfg.User), Host: p.Addr(), Path: "/" + cfg.Database, RawQuery: "sslmode=disable&connect_timeout=2"}
			if cfg.Password != "" {
				u.User = url.UserPassword(cfg.User, cfg.Password)
			}
			pool, err := pgxpool.New(context.Background(), u.String())
			require.NoError(t, err)
			t.Cleanup(pool.Close)
			s.Postgres = pool
			return p
		}, []string{"redis", "mongodb"}},
		{"mongodb", func(t *testing.T, s *server.Stores) *tcpProxy {
			target, err := url.Parse(servicetest.MongoURL(t))
			require.NoError(t, err)
			p := newTCPProxy(t, target.Host)
			client, err := mongo.Connect(options.Client().
				ApplyURI("mongodb://" + p.Addr() + "/?directConnection=true").
				SetServerSelectionTimeout(2 * time.Second))
			require.NoError(t, err)
			t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
			s.Mongo = client.Database(s.Mongo.Name()) // the test's database, dropped at its end
			return p
		}, []string{"postgres", "redis"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var proxy *tcpProxy
			e := newEnv(t, func(o *server.Options, s *server.Stores) {
				proxy = tt.cut(t, s)
				o.HealthTimeout = 3 * time.Second // the cut store fails faster
			})
			res := e.do("GET", "/readyz", "")
			require.Equal(t, http.StatusOK, res.Status, "through the proxy, before the cut: %s", res.Raw)

			proxy.Close()

			assert.Equal(t, http.StatusOK, e.do("GET", "/livez", "").Status, "liveness touches no store")
			for _, path := range []string{"/readyz", "/health"} {
				res := e.do("GET", path, "")
				require.Equal(t, http.StatusServiceUnavailable, res.Status, "%s: %s", path, res.Raw)
				assert.Equal(t, "unavailable", res.JSON["status"], path)
				assert.Equal(t, "unavailable", res.JSON["code"], path)
				assert.Equal(t, "unavailable: "+tt.name, res.JSON["error"], path)
				assert.Equal(t, []any{tt.name}, res.JSON["down"], path)
				assert.Empty(t, res.Header.Get("Retry-After"), "%s: a report, not a refused request", path)
				s := store(t, res, tt.name)
				assert.Equal(t, "down", s["status"], path)
				assert.Equal(t, true, s["required"], path)
				assert.NotEmpty(t, s["error"], path)
				for _, other := range tt.other {
					assert.Equal(t, "up", store(t, res, other)["status"], "%s %s", path, other)
				}
			}
		})
	}
}

// TestServer_RateLimit_RedisDown_LetsRequestsThroughAndItsBreakerOpens
// sends more requests than the burst with Redis refusing connections: none
// is refused, and the readiness report shows the limiter's breaker open
// (it then lets requests through without calling Redis).
func TestServer_RateLimit_RedisDown_LetsRequestsThroughAndItsBreakerOpens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *server.Options, s *server.Stores) {
		opts := &redis.Options{Addr: "127.0.0.1:1"}
		server.FailFastRedis(opts) // as main does
		s.Redis = redis.NewClient(opts)
		o.RateLimit, o.RateBurst = 1, 2
	})
	t.Cleanup(func() { _ = e.redis.Close() })
	repo, err := pgstore.NewUserRepository(e.pool)
	require.NoError(t, err)
	u := &chat.User{ID: uuid.New(), Username: "ada", Email: "ada@example.org", PasswordHash: "x", Language: "fr", Level: "A1"}
	require.NoError(t, repo.CreateUser(t.Context(), u))

	for i := range 10 {
		res := e.do("GET", "/users/"+u.ID.String(), "")
		require.Equal(t, http.StatusOK, res.Status, "request %d: %s", i+1, res.Raw)
	}
	res := e.do("GET", "/readyz", "")
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Raw)
	assert.Equal(t, map[string]any{"rate_limit": "open", "profile_cache": "open"}, store(t, res, "redis")["breakers"],
		"the cache's breaker opens too, after its 5 failures")

	metrics := e.do("GET", "/metrics", "")
	require.Equal(t, http.StatusOK, metrics.Status)
	assert.Regexp(t, `(?m)^rate_limit_breaker_opens_total [1-9]`, string(metrics.Raw))
	assert.Regexp(t, `(?m)^profile_cache_breaker_opens_total [1-9]`, string(metrics.Raw))
	assert.Regexp(t, `(?m)^profile_cache_overloaded_total 0$`, string(metrics.Raw), "sequential reads are never shed")
}
