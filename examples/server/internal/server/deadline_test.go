package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/polystore/polystore/examples/server/internal/server"
	"github.com/polystore/polystore/internal/servicetest"
)

// postgresBehind returns a pool on a database of the test's own whose
// connections go through a proxy to PostgreSQL. The pool closes after the
// proxy, so that its connections are cut, not waited for.
func postgresBehind(t *testing.T) (*pgxpool.Pool, *tcpProxy) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(servicetest.PostgresURL(t))
	require.NoError(t, err)
	var pool *pgxpool.Pool
	t.Cleanup(func() {
		if pool != nil {
			pool.Close()
		}
	})
	proxy := newTCPProxy(t, net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))))
	host, port, err := net.SplitHostPort(proxy.Addr())
	require.NoError(t, err)
	cfg.ConnConfig.Host = host
	portN, err := strconv.Atoi(port)
	require.NoError(t, err)
	cfg.ConnConfig.Port = uint16(portN)
	cfg.ConnConfig.Fallbacks = nil
	pool, err = pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	return pool, proxy
}

// mongoBehind returns a database of the test's own on a client whose
// connections go through a proxy to MongoDB.
func mongoBehind(t *testing.T) (*mongo.Database, *tcpProxy) {
	t.Helper()
	name := servicetest.Mongo(t).Name() // dropped, through the shared client, when the test ends
	url := servicetest.MongoURL(t)
	opts := options.Client().ApplyURI(url)
	require.Len(t, opts.Hosts, 1, "one MongoDB server: %s", url)
	var client *mongo.Client
	t.Cleanup(func() {
		if client != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = client.Disconnect(ctx)
		}
	})
	proxy := newTCPProxy(t, opts.Hosts[0])
	client, err := mongo.Connect(opts.SetHosts([]string{proxy.Addr()}))
	require.NoError(t, err)
	return client.Database(name), proxy
}

// doWithin is e.do with a client that gives up after limit: a request
// that gets no answer fails the test instead of hanging it. The limit is
// far above the server's bound, so a loaded machine cannot fail it.
func (e *env) doWithin(limit time.Duration, method, path, body string, headers ...string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	require.NoError(e.t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := (&http.Client{Timeout: limit}).Do(req)
	require.NoError(e.t, err, "%s %s: no answer: the request's deadline did not bound it", method, path)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(e.t, err)
	return response{Status: res.StatusCode, Header: res.Header, Raw: raw}
}

// noAnswerLimit is how long the tests below wait for an answer that the
// server owes within its RequestTimeout (1s here): far more, so that only
// a request the deadline does not reach can exceed it.
const noAnswerLimit = 30 * time.Second

func TestServer_PostgresBlackholed_RequestsAnswer503WithinTheirDeadline(t *testing.T) {
	t.Parallel()
	var proxy *tcpProxy
	e := newEnv(t, func(o *server.Options, s *server.Stores) {
		s.Postgres, proxy = postgresBehind(t)
		o.RequestTimeout = time.Second
	})
	userID, _ := e.register("hana")
	t.Cleanup(proxy.Heal) // first: the connections in the hole are cut, not waited for
	proxy.Blackhole()

	for _, tt := range []struct {
		name, method, path, body string
		headers                  []string
	}{
		// A profile not in the cache: its load waits for PostgreSQL.
		{"read", "GET", "/users/00000000-0000-4000-8000-000000000001", "", nil},
		// The saga's first step carries its record: nothing is logged.
		{"registration", "POST", "/users", `{"username":"ines","email":"ines@example.org","password":"correct horse","language":"fr"}`, nil},
		{"update", "PATCH", "/users/" + userID, `{"language":"de"}`, append(e.bearer(userID), "If-Match", "*")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := e.doWithin(noAnswerLimit, tt.method, tt.path, tt.body, tt.headers...)
			assert.Equal(t, http.StatusServiceUnavailable, res.Status, "body: %s", res.Raw)
			assert.NotEmpty(t, res.Header.Get("Retry-After"))
			assert.Contains(t, string(res.Raw), `"code":"unavailable"`)
		})
	}
}

func TestServer_MongoBlackholed_RequestsAnswerWithinTheirDeadline(t *testing.T) {
	t.Parallel()
	var proxy *tcpProxy
	e := newEnv(t, func(o *server.Options, s *server.Stores) {
		s.Mongo, proxy = mongoBehind(t)
		o.RequestTimeout = time.Second
	})
	userID, _ := e.register("hana")
	t.Cleanup(proxy.Heal)
	proxy.Blackhole()

	for _, tt := range []struct {
		name, method, path, body string
		headers                  []string
		status                   int
	}{
		{"read", "GET", "/users/" + userID + "/conversations", "", e.bearer(userID), http.StatusServiceUnavailable},
		{"write", "POST", "/users/" + userID + "/conversations", `{"title":"food"}`, e.bearer(userID), http.StatusServiceUnavailable},
		// The user row commits with the saga's record; the conversation's
		// step is cut by the deadline: the registration is durably logged
		// and recovery finishes it.
		{"registration", "POST", "/users", `{"username":"ines","email":"ines@example.org","password":"correct horse","language":"fr"}`, nil, http.StatusAccepted},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := e.doWithin(noAnswerLimit, tt.method, tt.path, tt.body, tt.headers...)
			assert.Equal(t, tt.status, res.Status, "body: %s", res.Raw)
			if tt.status == http.StatusServiceUnavailable {
				assert.NotEmpty(t, res.Header.Get("Retry-After"))
			}
			if tt.status == http.StatusAccepted {
				assert.True(t, strings.HasPrefix(res.Header.Get("Location"), "/operations/"), "Location: %q", res.Header.Get("Location"))
			}
		})
	}
}
