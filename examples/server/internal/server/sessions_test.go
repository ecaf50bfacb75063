package server_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/examples/server/internal/redisstore"
	"github.com/polystore/polystore/examples/server/internal/server"
)

func TestServer_Login_ReturnsATokenKeptOnlyHashedThatAuthorisesTheUsersOwnWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, _ := e.registerOnly("ada")

	res := e.do("POST", "/sessions", `{"username":"ada","password":"correct horse"}`)
	require.Equal(t, http.StatusCreated, res.Status, "body: %s", res.Raw)
	token := res.JSON["token"].(string)
	assert.Equal(t, id, res.JSON["user_id"])
	assert.Equal(t, "no-store", res.Header.Get("Cache-Control"))
	expires, err := time.Parse(time.RFC3339Nano, res.JSON["expires_at"].(string))
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(24*time.Hour), expires, time.Minute, "the default lifetime")

	byEmail := e.do("POST", "/sessions", `{"email":"Ada@Example.org","password":"correct horse"}`)
	require.Equal(t, http.StatusCreated, byEmail.Status, "by email, in any case: %s", byEmail.Raw)
	assert.NotEqual(t, token, byEmail.JSON["token"], "each login its own session")

	// What Redis holds: no token in any key or value, only its hash.
	secret := token[strings.IndexByte(token, '.')+1:]
	for k, v := range e.redisKeys() {
		assert.NotContains(t, k, secret)
		assert.NotContains(t, v, secret)
	}

	res = e.do("PATCH", "/users/"+id, `{"level":"B2"}`, "If-Match", `"1"`, "Authorization", "Bearer "+token)
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Raw)

	res = e.do("DELETE", "/sessions/current", "", "Authorization", "Bearer "+token)
	assert.Equal(t, http.StatusNoContent, res.Status, "logout: %s", res.Raw)
	res = e.do("DELETE", "/sessions/current", "", "Authorization", "Bearer "+token)
	assert.Equal(t, http.StatusUnauthorized, res.Status, "logged out already")
	res = e.do("PATCH", "/users/"+id, `{"level":"C1"}`, "If-Match", `"2"`, "Authorization", "Bearer "+token)
	assert.Equal(t, http.StatusUnauthorized, res.Status, "a logged-out token")
	assert.Equal(t, http.StatusUnauthorized, e.do("DELETE", "/sessions/current", "").Status, "no token")
	res = e.do("PATCH", "/users/"+id, `{"level":"C1"}`, "If-Match", `"2"`, "Authorization", "Bearer "+byEmail.JSON["token"].(string))
	assert.Equal(t, http.StatusOK, res.Status, "the other session lives on: %s", res.Raw)
}

func TestServer_Login_WrongPasswordAndUnknownAccountGetTheSameAnswer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.registerOnly("ada")

	wrong := e.do("POST", "/sessions", `{"username":"ada","password":"wrong horse"}`)
	unknown := e.do("POST", "/sessions", `{"username":"nobody","password":"wrong horse"}`)
	unknownEmail := e.do("POST", "/sessions", `{"email":"nobody@example.org","password":"wrong horse"}`)
	for _, res := range []response{wrong, unknown, unknownEmail} {
		assert.Equal(t, http.StatusUnauthorized, res.Status)
		assert.Equal(t, `{"error":"wrong username, email or password","code":"unauthorized"}`, strings.TrimSpace(string(res.Raw)))
		assert.True(t, strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer"), res.Header.Get("WWW-Authenticate"))
	}

	tests := []struct{ name, body string }{
		{"both username and email", `{"username":"ada","email":"ada@example.org","password":"correct horse"}`},
		{"neither", `{"password":"correct horse"}`},
		{"no password", `{"username":"ada"}`},
		{"password over 72 bytes", `{"username":"ada","password":"` + strings.Repeat("x", 73) + `"}`},
		{"malformed username", `{"username":"a' OR '1'='1","password":"correct horse"}`},
		{"operator as username", `{"username":{"$ne":""},"password":"correct horse"}`},
		{"unknown field", `{"username":"ada","password":"correct horse","admin":true}`},
		{"duplicate key", `{"username":"nobody","password":"correct horse","username":"ada"}`},
	}
	for _, tt := range tests {
		res := e.do("POST", "/sessions", tt.body)
		assert.Equal(t, http.StatusBadRequest, res.Status, "%s: %s", tt.name, res.Raw)
	}
}

func TestServer_Login_FailedLoginsAreLimitedPerAccountAndPerClient(t *testing.T) {
	t.Parallel()
	retryAfter := func(t *testing.T, res response) {
		t.Helper()
		assert.Equal(t, http.StatusTooManyRequests, res.Status, "body: %s", res.Raw)
		assert.Equal(t, "rate_limited", res.JSON["code"])
		secs, err := strconv.Atoi(res.Header.Get("Retry-After"))
		require.NoError(t, err, "Retry-After: %q", res.Header.Get("Retry-After"))
		assert.True(t, secs >= 1 && secs <= 15*60, "Retry-After %d: until the 15-minute window ends", secs)
	}

	t.Run("per account", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(o *server.Options, _ *server.Stores) {
			o.LoginFailuresPerAccount, o.LoginFailuresPerClient = 3, 100
		})
		e.registerOnly("ada")
		e.registerOnly("bob")
		for i := range 3 {
			res := e.do("POST", "/sessions", `{"username":"ada","password":"wrong horse"}`)
			require.Equal(t, http.StatusUnauthorized, res.Status, "failure %d", i+1)
		}
		retryAfter(t, e.do("POST", "/sessions", `{"username":"ada","password":"correct horse"}`))
		retryAfter(t, e.do("POST", "/sessions", `{"username":"ada","password":"wrong horse"}`))
		assert.Equal(t, http.StatusCreated, e.do("POST", "/sessions", `{"username":"bob","password":"correct horse"}`).Status,
			"another account is not limited")
		// Unknown accounts are limited alike, so that a 429 tells nothing.
		for range 3 {
			require.Equal(t, http.StatusUnauthorized, e.do("POST", "/sessions", `{"username":"ghost","password":"wrong horse"}`).Status)
		}
		retryAfter(t, e.do("POST", "/sessions", `{"username":"ghost","password":"wrong horse"}`))
		// The account is counted by name: no username or address in clear in Redis.
		// ("ada" is made of hex digits: a SHA-256 in hex holds it about
		// once in 70 keys, so only a name that stands alone counts.)
		for k := range e.redisKeys() {
			assert.NotRegexp(t, `(^|[^0-9a-f])ada([^0-9a-f]|$)`, k)
			assert.NotContains(t, k, "ghost")
		}
	})

	t.Run("per client", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(o *server.Options, _ *server.Stores) {
			o.LoginFailuresPerAccount, o.LoginFailuresPerClient = 100, 4
		})
		e.registerOnly("ada")
		for _, name := range []string{"bob", "cyd", "dee", "eve"} {
			res := e.do("POST", "/sessions", `{"username":"`+name+`","password":"wrong horse"}`)
			require.Equal(t, http.StatusUnauthorized, res.Status)
		}
		retryAfter(t, e.do("POST", "/sessions", `{"username":"ada","password":"correct horse"}`))
	})
}

// expiredSession returns a token of userID's whose lifetime has ended: a
// session created in the server's store with a lifetime of 50ms.
func (e *env) expiredSession(userID string) string {
	e.t.Helper()
	st, err := redisstore.NewSessionStore(e.redis, e.prefix, redisstore.SessionStoreOptions{Lifetime: 50 * time.Millisecond})
	require.NoError(e.t, err)
	s, err := st.Create(context.Background(), uuid.MustParse(userID))
	require.NoError(e.t, err)
	require.Eventually(e.t, func() bool {
		_, err := st.User(context.Background(), s.Token)
		return err != nil
	}, 10*time.Second, 20*time.Millisecond)
	return s.Token
}

// TestServer_HostileTokens_Get401Or403AndLeaveStoresUnchanged sends every
// request that needs ada's session with tokens that must not pass, and
// checks each answer and that not one byte changed in any store.
func TestServer_HostileTokens_Get401Or403AndLeaveStoresUnchanged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ada, conv := e.register("ada")
	bob, _ := e.register("bob")
	good := e.token(ada)

	revoked := e.login("ada", "correct horse")
	require.Equal(t, http.StatusNoContent, e.do("DELETE", "/sessions/current", "", "Authorization", "Bearer "+revoked).Status)
	expired := e.expiredSession(ada)
	flipped := []byte(good) // well-formed, unknown: one character of the secret changed
	if flipped[len(flipped)-2] == 'A' {
		flipped[len(flipped)-2] = 'B'
	} else {
		flipped[len(flipped)-2] = 'A'
	}

	tokens := []struct {
		name   string
		header string // the Authorization line; "-" for none
		status int
	}{
		{"no Authorization", "-", 401},
		{"empty", "", 401},
		{"scheme only", "Bearer", 401},
		{"another scheme", "Basic " + good, 401},
		{"no scheme", good, 401},
		{"malformed", "Bearer not-a-token", 401},
		{"malformed, the right length", "Bearer " + strings.Repeat("z", len(good)), 401},
		{"upper-cased", "Bearer " + strings.ToUpper(good), 401},
		{"one character changed", "Bearer " + string(flipped), 401},
		{"cut short", "Bearer " + good[:len(good)-1], 401},
		{"one character more", "Bearer " + good + "A", 401},
		{"two spaces before", "Bearer  " + good, 401},
		{"space inside", "Bearer " + good[:20] + " " + good[20:], 401},
		{"followed by another word", "Bearer " + good + " x", 401},
		{"followed by a comma", "Bearer " + good + ",", 401},
		{"JSON-shaped", `Bearer {"$ne":""}`, 401},
		{"64 KiB", "Bearer " + strings.Repeat("a", 64<<10), 401},
		{"revoked (logged out)", "Bearer " + revoked, 401},
		{"expired", "Bearer " + expired, 401},
		{"bob's", "Bearer " + e.token(bob), 403},
	}
	requests := []struct{ method, path, body string }{
		{"PATCH", "/users/" + ada, `{"level":"C2"}`},
		{"DELETE", "/users/" + ada, ""},
		{"POST", "/users/" + ada + "/conversations", `{"title":"x"}`},
		{"POST", "/conversations/" + conv + "/messages", `{"content":"hi"}`},
		{"GET", "/users/" + ada + "/conversations", ""},
		{"POST", "/users/" + ada + "/xp", `{"points":10}`},
	}

	users, convs, keys := e.usersSnapshot(), e.conversations(), e.redisKeys()
	for _, tok := range tokens {
		for _, rq := range requests {
			headers := []string{"If-Match", "*"}
			if tok.header != "-" {
				headers = append(headers, "Authorization", tok.header)
			}
			res := e.do(rq.method, rq.path, rq.body, headers...)
			assert.Equal(t, tok.status, res.Status, "%s: %s %s: %.200s", tok.name, rq.method, rq.path, res.Raw)
			if tok.status == http.StatusUnauthorized {
				assert.True(t, strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer "), "%s: %s %s: WWW-Authenticate %q",
					tok.name, rq.method, rq.path, res.Header.Get("WWW-Authenticate"))
			}
			assert.NotEmpty(t, res.JSON["code"], "%s: JSON error", tok.name)
		}
	}
	assert.Equal(t, users, e.usersSnapshot(), "PostgreSQL unchanged")
	assert.Equal(t, convs, e.conversations(), "MongoDB unchanged")
	assert.Equal(t, keys, e.redisKeys(), "Redis unchanged")

	// And the good token still works.
	assert.Equal(t, http.StatusOK, e.doAs(ada, "GET", "/users/"+ada+"/conversations", "").Status)
}
