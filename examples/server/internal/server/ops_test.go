package server_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/examples/server/internal/chat"
	"github.com/polystore/polystore/examples/server/internal/pgstore"
	"github.com/polystore/polystore/examples/server/internal/redisstore"
	"github.com/polystore/polystore/examples/server/internal/server"
	"github.com/polystore/polystore/internal/servicetest"
)

func TestServer_GetHealth_AllUpReturns200(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	res := e.do("GET", "/health", "")
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Raw)
	assert.Equal(t, "ok", res.JSON["status"])
	stores := res.JSON["stores"].(map[string]any)
	for _, name := range []string{"postgres", "redis", "mongodb"} {
		s := stores[name].(map[string]any)
		assert.Equal(t, "up", s["status"], name)
		assert.Contains(t, s, "latency_ms", name)
	}
}

func TestServer_RedisDown_HealthIsDegradedNamingRedisWhileUsersStillAnswer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *server.Options, s *server.Stores) {
		// Nothing listens on port 1: every Redis call fails at once.
		opts := &redis.Options{Addr: "127.0.0.1:1"}
		server.FailFastRedis(opts) // as main does
		s.Redis = redis.NewClient(opts)
		o.RateLimit = 5 // the limiter fails open too
	})
	t.Cleanup(func() { _ = e.redis.Close() })

	// Redis is optional: the report is degraded, and a 200, so that a
	// readiness probe keeps the instance in rotation.
	res := e.do("GET", "/health", "")
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Raw)
	assert.Equal(t, "degraded", res.JSON["status"])
	assert.Equal(t, []any{"redis"}, res.JSON["down"])
	stores := res.JSON["stores"].(map[string]any)
	assert.Equal(t, "down", stores["redis"].(map[string]any)["status"])
	assert.Equal(t, "up", stores["postgres"].(map[string]any)["status"])
	assert.Equal(t, "up", stores["mongodb"].(map[string]any)["status"])

	// A user written straight to PostgreSQL is served by the cache's
	// fail-open path, more often than the rate limit would allow.
	repo, err := pgstore.NewUserRepository(e.pool)
	require.NoError(t, err)
	u := &chat.User{ID: uuid.New(), Username: "ada", Email: "ada@example.org", PasswordHash: "x", Language: "fr", Level: "A1"}
	require.NoError(t, repo.CreateUser(t.Context(), u))
	for range 12 {
		res = e.do("GET", "/users/"+u.ID.String(), "")
		require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Raw)
		assert.Equal(t, "ada", res.JSON["username"])
	}
	assert.Equal(t, http.StatusNotFound, e.do("GET", "/users/"+uuid.NewString(), "").Status)

	// Registration commits past its pivot; filling the cache is left to
	// the recovery loop, and the user is readable at once.
	id, _ := e.registerOnly("bob")
	res = e.do("GET", "/users/"+id, "")
	assert.Equal(t, http.StatusOK, res.Status)

	// Sessions are in Redis: with it down, login and every request that
	// needs a session answer 503 with Retry-After, not 401, since the
	// token may be good. A well-formed token from a working Redis:
	up, upPrefix := servicetest.Redis(t)
	st, err := redisstore.NewSessionStore(up, upPrefix, redisstore.SessionStoreOptions{})
	require.NoError(t, err)
	s, err := st.Create(t.Context(), uuid.MustParse(id))
	require.NoError(t, err)
	before := e.usersSnapshot()
	for _, tt := range []struct{ method, path, body string }{
		{"POST", "/sessions", `{"username":"bob","password":"correct horse"}`},
		{"DELETE", "/sessions/current", ""},
		{"PATCH", "/users/" + id, `{"level":"C1"}`},
		{"DELETE", "/users/" + id, ""},
		{"POST", "/users/" + id + "/conversations", `{"title":"x"}`},
		{"GET", "/users/" + id + "/conversations", ""},
		{"POST", "/users/" + id + "/xp", `{"points":10}`},
		{"GET", "/leaderboard", ""},
	} {
		res := e.do(tt.method, tt.path, tt.body, "Authorization", "Bearer "+s.Token, "If-Match", `"1"`)
		assert.Equal(t, http.StatusServiceUnavailable, res.Status, "%s %s: %s", tt.method, tt.path, res.Raw)
		assert.Equal(t, "2", res.Header.Get("Retry-After"), "%s %s", tt.method, tt.path)
		assert.Empty(t, res.Header.Get("WWW-Authenticate"), "%s %s", tt.method, tt.path)
	}
	assert.Equal(t, before, e.usersSnapshot(), "nothing changed")
	var status string
	require.NoError(t, e.pool.QueryRow(t.Context(), "SELECT status FROM coord_saga WHERE id = $1", "register-user/"+id).Scan(&status))
	assert.Equal(t, "running", status, "the retriable cache step waits for recovery")
}

func TestServer_RateLimit_Returns429WithRetryAfterAfterBurst(t *testing.T) {
	t.Parallel()
	const burst = 4
	e := newEnv(t, func(o *server.Options, _ *server.Stores) {
		o.RateLimit, o.RateBurst = 1, burst
	})
	path := "/users/" + uuid.NewString()

	for i := range burst {
		assert.Equal(t, http.StatusNotFound, e.do("GET", path, "").Status, "request %d is within the burst", i+1)
	}
	res := e.do("GET", path, "")
	require.Equal(t, http.StatusTooManyRequests, res.Status)
	assert.Equal(t, "rate_limited", res.JSON["code"])
	secs, err := strconv.Atoi(res.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After is a number of seconds")
	assert.GreaterOrEqual(t, secs, 1)

	assert.Equal(t, http.StatusOK, e.do("GET", "/health", "").Status, "health probes are not limited")

	var limiterKeys int
	for k := range e.redisKeys() {
		if strings.HasPrefix(k, e.prefix+"ratelimit:") {
			limiterKeys++
		}
	}
	assert.Equal(t, 1, limiterKeys, "the limiter's key is under the test's prefix")
}

func TestServer_GetMetrics_ExposesCachePoolAndSagaCounters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, _ := e.register("ada")
	e.do("GET", "/users/"+id, "") // a miss: the registration caches nothing
	e.do("GET", "/users/"+id, "")

	res := e.do("GET", "/metrics", "")
	require.Equal(t, http.StatusOK, res.Status)
	assert.True(t, strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain"), res.Header.Get("Content-Type"))
	body := string(res.Raw)
	for _, want := range []string{
		"profile_cache_hits_total 1",
		`sagas_total{outcome="succeeded",saga="register-user"} 1`,
		`saga_steps_total{event="succeeded",saga="register-user",step="insert-user"} 1`,
		"postgres_pool_total_conns",
		"redis_pool_total_conns",
		`http_requests_total{route="POST /users",status="201"} 1`,
		"go_goroutines",
	} {
		assert.Contains(t, body, want)
	}
}

func TestServer_UnknownRouteAndMethod_ReturnJSONErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	res := e.do("GET", "/nope", "")
	assert.Equal(t, http.StatusNotFound, res.Status)
	assert.Equal(t, "not_found", res.JSON["code"])

	res = e.do("PUT", "/users/"+uuid.NewString(), `{}`)
	assert.Equal(t, http.StatusMethodNotAllowed, res.Status)
	assert.Equal(t, "method_not_allowed", res.JSON["code"])
	assert.Contains(t, res.Header.Get("Allow"), "PATCH")

	res = e.do("DELETE", "/users", "")
	assert.Equal(t, http.StatusMethodNotAllowed, res.Status)
	assert.Equal(t, "method_not_allowed", res.JSON["code"])
}

func TestServer_Recovery_DropsANotFoundCachedBeforeARegistrationMadeWhileRedisWasDown(t *testing.T) {
	t.Parallel()
	short := func(o *server.Options, _ *server.Stores) {
		o.SagaLease = 300 * time.Millisecond
		o.RecoverEvery = 50 * time.Millisecond
	}
	// Instance A registers with Redis down: the saga stops after its pivot.
	down := newEnv(t, short, func(o *server.Options, s *server.Stores) {
		opts := &redis.Options{Addr: "127.0.0.1:1"}
		server.FailFastRedis(opts)
		s.Redis = redis.NewClient(opts)
	})
	t.Cleanup(func() { _ = down.redis.Close() })
	id, _ := down.registerOnly("ada")

	// Instance B's Redis holds a "not found" of the id, as a read that came
	// before the row existed leaves it.
	rdb, prefix := servicetest.Redis(t)
	profiles, err := redisstore.NewProfileCache(rdb, prefix, redisstore.ProfileCacheOptions{})
	require.NoError(t, err)
	_, err = profiles.Profile(t.Context(), uuid.MustParse(id), func(context.Context) (*chat.User, error) {
		return nil, chat.Errorf(chat.CodeNotFound, "user not found")
	})
	require.Equal(t, chat.CodeNotFound, chat.ErrorCode(err))

	// Instance B, on the same PostgreSQL and a working Redis, recovers it.
	b, err := server.New(t.Context(), server.Stores{Postgres: down.pool, Redis: rdb, Mongo: down.mongo}, server.Options{
		RedisPrefix: prefix, RateLimit: -1, SagaLease: 300 * time.Millisecond, RecoverEvery: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	require.NoError(t, b.Start(t.Context()))
	t.Cleanup(func() { _ = b.Close() })

	// Poll the saga's status, not the cache key: coord writes the step's
	// log record after the cache write, so the key appears first.
	status := func() string {
		var s string
		require.NoError(t, down.pool.QueryRow(t.Context(), "SELECT status FROM coord_saga WHERE id = $1", "register-user/"+id).Scan(&s))
		return s
	}
	deadline := time.Now().Add(30 * time.Second)
	for status() == "running" {
		require.True(t, time.Now().Before(deadline), "recovery did not finish the saga in time")
		time.Sleep(20 * time.Millisecond) // polling, with a deadline
	}
	assert.Equal(t, "succeeded", status())
	hs := httptest.NewServer(b.Handler())
	t.Cleanup(hs.Close)
	res, err := http.Get(hs.URL + "/users/" + id)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, res.StatusCode, "the cached 404 outlived the registration: %s", body)
	assert.Contains(t, string(body), `"username":"ada"`)
}

// hungRedis accepts connections and never answers, as a Redis that is
// stopped or behind a dropped network path does.
func hungRedis(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					_ = c.Close()
				}
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}

func TestServer_RedisHung_ReadsAnswerWithinTheCacheTimeoutNotTheSocketTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *server.Options, s *server.Stores) {
		opts := &redis.Options{Addr: hungRedis(t)}
		server.FailFastRedis(opts) // as main does
		s.Redis = redis.NewClient(opts)
		o.RateLimit = 5 // the limiter's own timeout must hold too
	})
	t.Cleanup(func() { _ = e.redis.Close() })
	repo, err := pgstore.NewUserRepository(e.pool)
	require.NoError(t, err)
	u := &chat.User{ID: uuid.New(), Username: "ada", Email: "ada@example.org", PasswordHash: "x", Language: "fr", Level: "A1"}
	require.NoError(t, repo.CreateUser(t.Context(), u))

	// go-redis bounds socket reads by its ReadTimeout (3s) unless told to
	// follow the context, whose deadline is the cache's 200ms and the
	// limiter's 100ms.
	start := time.Now()
	res := e.do("GET", "/users/"+u.ID.String(), "")
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Raw)
	assert.Less(t, time.Since(start), 2*time.Second)
}
