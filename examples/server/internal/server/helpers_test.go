package server_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"golang.org/x/crypto/bcrypt"

	"github.com/polystore/polystore/examples/server/internal/mongostore"
	"github.com/polystore/polystore/examples/server/internal/redisstore"
	"github.com/polystore/polystore/examples/server/internal/server"
	"github.com/polystore/polystore/internal/servicetest"
)

// env is one server, in-process, on the test's own databases and Redis
// prefix.
type env struct {
	t      testing.TB
	url    string
	pool   *pgxpool.Pool
	redis  redis.UniversalClient
	prefix string
	mongo  *mongo.Database

	mu     sync.Mutex
	tokens map[string]string // user id → session token, from register's login
}

// newEnv starts a server; change adjusts its options (the rate limit is
// off unless a test turns it on).
func newEnv(t testing.TB, change ...func(*server.Options, *server.Stores)) *env {
	t.Helper()
	rdb, prefix := servicetest.Redis(t)
	e := &env{t: t, pool: servicetest.Postgres(t), redis: rdb, prefix: prefix, mongo: servicetest.Mongo(t), tokens: map[string]string{}}
	stores := server.Stores{Postgres: e.pool, Redis: e.redis, Mongo: e.mongo}
	opts := server.Options{
		RedisPrefix: prefix,
		RateLimit:   -1,
		BcryptCost:  bcrypt.MinCost, // hashing at the default cost would dominate the tests' time
		Logger:      slog.New(slog.DiscardHandler),
	}
	for _, f := range change {
		f(&opts, &stores)
	}
	e.redis = stores.Redis
	s, err := server.New(context.Background(), stores, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	e.url = hs.URL
	return e
}

// response is an answer with its body decoded as JSON when it is JSON.
type response struct {
	Status int
	Header http.Header
	Raw    []byte
	JSON   map[string]any
}

// do sends a request; body is sent as it is, as JSON, unless headers (pairs
// of name and value) say otherwise.
func (e *env) do(method, path, body string, headers ...string) response {
	e.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, r)
	require.NoError(e.t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(e.t, err)
	out := response{Status: res.StatusCode, Header: res.Header, Raw: raw}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		require.NoError(e.t, json.Unmarshal(raw, &out.JSON), "body: %s", raw)
	}
	return out
}

// register creates a user through the API, logs them in (the token is
// then what doAs sends for them) and returns its id and welcome
// conversation id.
func (e *env) register(username string) (userID, conversationID string) {
	e.t.Helper()
	userID, conversationID = e.registerOnly(username)
	token := e.login(username, "correct horse")
	e.mu.Lock()
	e.tokens[userID] = token
	e.mu.Unlock()
	return userID, conversationID
}

// registerOnly creates a user through the API without logging in (with
// the session store down, as some tests have it, login answers 503).
func (e *env) registerOnly(username string) (userID, conversationID string) {
	e.t.Helper()
	res := e.do("POST", "/users", `{"username":"`+username+`","email":"`+username+`@example.org","password":"correct horse","language":"fr"}`)
	require.Equal(e.t, http.StatusCreated, res.Status, "body: %s", res.Raw)
	return res.JSON["user"].(map[string]any)["id"].(string), res.JSON["welcome_conversation_id"].(string)
}

// login logs username in and returns the session token.
func (e *env) login(username, password string) string {
	e.t.Helper()
	res := e.do("POST", "/sessions", `{"username":"`+username+`","password":"`+password+`"}`)
	require.Equal(e.t, http.StatusCreated, res.Status, "login: %s", res.Raw)
	return res.JSON["token"].(string)
}

// token returns the session token register got for userID.
func (e *env) token(userID string) string {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	tok, ok := e.tokens[userID]
	require.True(e.t, ok, "no session for %s", userID)
	return tok
}

// bearer returns the Authorization header pair of userID's session.
func (e *env) bearer(userID string) []string {
	return []string{"Authorization", "Bearer " + e.token(userID)}
}

// orphanSession puts a session of userID straight into the server's
// session store, for a user that need not exist: what a session that
// outlived its user's deletion looks like before the saga revokes it.
// doAs then sends it.
func (e *env) orphanSession(userID string) {
	e.t.Helper()
	st, err := redisstore.NewSessionStore(e.redis, e.prefix, redisstore.SessionStoreOptions{})
	require.NoError(e.t, err)
	s, err := st.Create(context.Background(), uuid.MustParse(userID))
	require.NoError(e.t, err)
	e.mu.Lock()
	e.tokens[userID] = s.Token
	e.mu.Unlock()
}

// doAs is do with userID's session.
func (e *env) doAs(userID, method, path, body string, headers ...string) response {
	e.t.Helper()
	return e.do(method, path, body, append(e.bearer(userID), headers...)...)
}

// userRows counts the rows of users.
func (e *env) userRows() int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.pool.QueryRow(context.Background(), "SELECT count(*) FROM users").Scan(&n))
	return n
}

// conversations returns every conversation document, in _id order.
func (e *env) conversations() []bson.M {
	e.t.Helper()
	ctx := context.Background()
	cur, err := e.mongo.Collection(mongostore.CollectionName).Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	require.NoError(e.t, err)
	var docs []bson.M
	require.NoError(e.t, cur.All(ctx, &docs))
	return docs
}

// redisKeys returns the test's keys and their values.
func (e *env) redisKeys() map[string]string {
	e.t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	iter := e.redis.Scan(ctx, 0, e.prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		v, err := e.redis.Dump(ctx, iter.Val()).Result()
		require.NoError(e.t, err)
		out[iter.Val()] = v
	}
	require.NoError(e.t, iter.Err())
	return out
}

// usersSnapshot returns every users row as text, in id order.
func (e *env) usersSnapshot() string {
	e.t.Helper()
	var s string
	require.NoError(e.t, e.pool.QueryRow(context.Background(),
		"SELECT coalesce(string_agg(u::text, E'\\n' ORDER BY id), '') FROM users u").Scan(&s))
	return s
}
