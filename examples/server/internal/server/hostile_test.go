package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServer_HostileInput_Gets4xxAndLeavesStoresUnchanged sends malformed,
// oversized, operator-shaped and SQL-shaped input to every endpoint that
// takes input, and checks that each gets a 4xx with a JSON error and that
// not one byte changed in PostgreSQL, MongoDB or Redis.
func TestServer_HostileInput_Gets4xxAndLeavesStoresUnchanged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, conv := e.register("ada")
	e.register("bob")
	require.Equal(t, http.StatusOK, e.do("GET", "/users/"+id, "").Status) // cache it, so the cache is part of the snapshot

	valid := `"email":"eve@example.org","password":"correct horse","language":"fr"`
	twoMiB := `{"username":"` + strings.Repeat("a", 2<<20) + `",` + valid + `}`
	tests := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
	}{
		// Malformed bodies.
		{"malformed JSON", "POST", "/users", `{"username":`, nil, 400},
		{"not an object", "POST", "/users", `["ada"]`, nil, 400},
		{"unknown field", "POST", "/users", `{"username":"eve",` + valid + `,"admin":true}`, nil, 400},
		{"trailing data", "POST", "/users", `{"username":"eve",` + valid + `}{"username":"mallory"}`, nil, 400},
		{"trailing garbage", "POST", "/users", `{"username":"eve",` + valid + `} x`, nil, 400},
		{"invalid UTF-8", "POST", "/users", "{\"username\":\"ev\xffe\"," + valid + "}", nil, 400},
		{"2 MiB body", "POST", "/users", twoMiB, nil, 413},
		// Duplicate keys: encoding/json would keep the last one.
		{"duplicate username", "POST", "/users", `{"username":"eve",` + valid + `,"username":"admin"}`, nil, 400},
		{"duplicate username in another case", "POST", "/users", `{"username":"eve",` + valid + `,"USERNAME":"admin"}`, nil, 400},
		{"duplicate level in patch", "PATCH", "/users/" + id, `{"level":"A1","level":"C2"}`, []string{"If-Match", `"1"`}, 400},
		{"duplicate title", "POST", "/users/" + id + "/conversations", `{"title":"a","title":"b"}`, nil, 400},
		{"duplicate role", "POST", "/conversations/" + conv + "/messages", `{"role":"user","content":"hi","role":"system"}`, nil, 400},
		{"form body", "POST", "/users", "username=eve", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415},
		{"empty body", "POST", "/users", "", nil, 400},
		// Operator-shaped input where a string belongs.
		{"$ne object as username", "POST", "/users", `{"username":{"$ne":""},` + valid + `}`, nil, 400},
		{"$ne string as username", "POST", "/users", `{"username":"$ne",` + valid + `}`, nil, 400},
		{"$gt object as email", "POST", "/users", `{"username":"eve","email":{"$gt":""},"password":"correct horse","language":"fr"}`, nil, 400},
		{"$where as language", "POST", "/users", `{"username":"eve","email":"e@example.org","password":"correct horse","language":"$where"}`, nil, 400},
		{"dotted key", "POST", "/users", `{"username":"eve",` + valid + `,"profile.admin":true}`, nil, 400},
		// SQL-shaped input.
		{"SQL in username", "POST", "/users", `{"username":"ada' OR '1'='1",` + valid + `}`, nil, 400},
		{"SQL in email", "POST", "/users", `{"username":"eve","email":"x@y.org'; DROP TABLE users;--","password":"correct horse","language":"fr"}`, nil, 400},
		{"SQL in level", "POST", "/users", `{"username":"eve",` + valid + `,"level":"A1' OR 1=1--"}`, nil, 400},
		{"duplicate of existing user", "POST", "/users", `{"username":"ada","email":"ada@example.org","password":"correct horse","language":"fr"}`, nil, 409},
		// Bad ids.
		{"SQL-shaped user id", "GET", "/users/" + url.PathEscape("1 OR 1=1"), "", nil, 400},
		{"operator-shaped user id", "GET", "/users/" + url.PathEscape(`{"$ne":""}`), "", nil, 400},
		{"user id with trailing junk", "GET", "/users/" + id + "x", "", nil, 400},
		{"SQL-shaped id on DELETE", "DELETE", "/users/" + url.PathEscape("'; DELETE FROM users;--"), "", nil, 400},
		{"operator-shaped conversation id", "POST", "/conversations/" + url.PathEscape(`{"$gt":""}`) + "/messages", `{"content":"hi"}`, nil, 400},
		{"short conversation id", "POST", "/conversations/abc/messages", `{"content":"hi"}`, nil, 400},
		// PATCH.
		{"$set in patch", "PATCH", "/users/" + id, `{"$set":{"level":"C2"}}`, []string{"If-Match", `"1"`}, 400},
		{"operator as level", "PATCH", "/users/" + id, `{"level":{"$ne":""}}`, []string{"If-Match", `"1"`}, 400},
		{"SQL in If-Match", "PATCH", "/users/" + id, `{"level":"C2"}`, []string{"If-Match", `"1 OR 1=1"`}, 400},
		{"version in patch", "PATCH", "/users/" + id, `{"version":99}`, []string{"If-Match", `"1"`}, 400},
		{"id in patch", "PATCH", "/users/" + id, `{"id":"00000000-0000-0000-0000-000000000000"}`, []string{"If-Match", `"1"`}, 400},
		// Conversations and messages.
		{"operator as title", "POST", "/users/" + id + "/conversations", `{"title":{"$gt":""}}`, nil, 400},
		{"NUL in title", "POST", "/users/" + id + "/conversations", `{"title":"a\u0000b"}`, nil, 400},
		{"2 MiB message", "POST", "/conversations/" + conv + "/messages", `{"content":"` + strings.Repeat("x", 2<<20) + `"}`, nil, 413},
		{"message too long", "POST", "/conversations/" + conv + "/messages", `{"content":"` + strings.Repeat("é", 4001) + `"}`, nil, 400},
		{"operator as role", "POST", "/conversations/" + conv + "/messages", `{"role":{"$ne":""},"content":"hi"}`, nil, 400},
		{"$push field", "POST", "/conversations/" + conv + "/messages", `{"content":"hi","$push":{"messages":"x"}}`, nil, 400},
		{"operator-shaped cursor", "GET", "/users/" + id + "/conversations?cursor=" + url.QueryEscape(`{"$gt":""}`), "", nil, 400},
		{"SQL-shaped limit", "GET", "/users/" + id + "/conversations?limit=" + url.QueryEscape("1;DROP TABLE users"), "", nil, 400},
	}

	users, convs, keys := e.usersSnapshot(), e.conversations(), e.redisKeys()
	for _, tt := range tests {
		// With ada's session, so that each reaches the input checks behind
		// authentication.
		res := e.do(tt.method, tt.path, tt.body, append(e.bearer(id), tt.headers...)...)
		assert.Equal(t, tt.status, res.Status, "%s: %.200s", tt.name, res.Raw)
		assert.NotEmpty(t, res.JSON["error"], "%s: JSON error body", tt.name)
		assert.NotEmpty(t, res.JSON["code"], "%s: JSON error code", tt.name)
	}
	assert.Equal(t, users, e.usersSnapshot(), "PostgreSQL unchanged")
	assert.Equal(t, convs, e.conversations(), "MongoDB unchanged")
	assert.Equal(t, keys, e.redisKeys(), "Redis unchanged")
}
