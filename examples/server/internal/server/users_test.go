package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/examples/server/internal/chat"
	"github.com/polystore/polystore/examples/server/internal/server"
)

func TestServer_PostUsers_Returns201WithUserAndWelcomeConversation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	res := e.do("POST", "/users", `{"username":"ada","email":"Ada@Example.org","password":"correct horse","language":"fr","level":"B1"}`)
	require.Equal(t, http.StatusCreated, res.Status, "body: %s", res.Raw)
	user := res.JSON["user"].(map[string]any)
	id := user["id"].(string)
	assert.Equal(t, "ada", user["username"])
	assert.Equal(t, "ada@example.org", user["email"], "email is lower-cased")
	assert.Equal(t, "B1", user["level"])
	assert.EqualValues(t, 1, user["version"])
	assert.NotContains(t, string(res.Raw), "password", "no password nor hash in the answer")
	assert.Equal(t, "/users/"+id, res.Header.Get("Location"))
	assert.Equal(t, `"1"`, res.Header.Get("ETag"))

	// Each store has its part.
	var hash string
	require.NoError(t, e.pool.QueryRow(context.Background(), "SELECT password_hash FROM users WHERE id = $1", id).Scan(&hash))
	assert.True(t, strings.HasPrefix(hash, "$2a$"), "bcrypt hash, not the password")
	convs := e.conversations()
	require.Len(t, convs, 1)
	assert.Equal(t, res.JSON["welcome_conversation_id"], convs[0]["_id"].(interface{ Hex() string }).Hex())
	assert.Equal(t, id, convs[0]["user_id"])
	assert.Equal(t, chat.WelcomeTitle, convs[0]["title"])
	assert.Contains(t, e.redisKeys(), e.prefix+"profile:"+id, "profile cached after the pivot")
}

func TestServer_PostUsers_TakenUsernameOrEmailReturns409(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register("ada")

	tests := []struct{ name, body, field string }{
		{"username", `{"username":"ada","email":"other@example.org","password":"correct horse","language":"fr"}`, "username"},
		{"email, other case", `{"username":"bob","email":"ADA@example.org","password":"correct horse","language":"fr"}`, "email"},
	}
	for _, tt := range tests {
		res := e.do("POST", "/users", tt.body)
		assert.Equal(t, http.StatusConflict, res.Status, tt.name)
		assert.Equal(t, "conflict", res.JSON["code"], tt.name)
		assert.Contains(t, res.JSON["error"], tt.field, tt.name)
	}
	assert.Equal(t, 1, e.userRows())
	assert.Len(t, e.conversations(), 1, "the failed registrations left no conversation")
}

func TestServer_PostUsers_InvalidFieldsReturn400NamingTheField(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct{ name, body, field string }{
		{"username charset", `{"username":"Ada!","email":"a@example.org","password":"correct horse","language":"fr"}`, "username"},
		{"username length", `{"username":"ab","email":"a@example.org","password":"correct horse","language":"fr"}`, "username"},
		{"email", `{"username":"ada","email":"not an email","password":"correct horse","language":"fr"}`, "email"},
		{"password", `{"username":"ada","email":"a@example.org","password":"short","language":"fr"}`, "password"},
		{"language", `{"username":"ada","email":"a@example.org","password":"correct horse","language":"french"}`, "language"},
		{"level", `{"username":"ada","email":"a@example.org","password":"correct horse","language":"fr","level":"Z9"}`, "level"},
		{"missing fields", `{}`, "username"},
	}
	for _, tt := range tests {
		res := e.do("POST", "/users", tt.body)
		assert.Equal(t, http.StatusBadRequest, res.Status, tt.name)
		assert.Equal(t, "invalid", res.JSON["code"], tt.name)
		assert.Contains(t, res.JSON["error"], tt.field, tt.name)
	}
	assert.Zero(t, e.userRows())
}

// failingConversations fails every insert, as a MongoDB that went down
// between the PostgreSQL step and its own would.
type failingConversations struct{ chat.ConversationStore }

func (failingConversations) CreateConversation(context.Context, *chat.Conversation) error {
	return chat.Wrap(chat.CodeUnavailable, errors.New("injected failure"), "MongoDB is unavailable")
}

func TestServer_PostUsers_MongoStepFailureLeavesNoUserRowAndNoCacheEntry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *server.Options, _ *server.Stores) {
		o.WrapConversations = func(s chat.ConversationStore) chat.ConversationStore { return failingConversations{s} }
	})

	res := e.do("POST", "/users", `{"username":"ada","email":"ada@example.org","password":"correct horse","language":"fr"}`)
	assert.Equal(t, http.StatusServiceUnavailable, res.Status)
	assert.Equal(t, "unavailable", res.JSON["code"])
	assert.Contains(t, res.JSON["error"], "MongoDB")

	assert.Zero(t, e.userRows(), "the user row was compensated")
	assert.Empty(t, e.conversations())
	for k := range e.redisKeys() {
		assert.NotContains(t, k, "profile:", "no cache entry")
	}
	var status string
	require.NoError(t, e.pool.QueryRow(context.Background(), "SELECT status FROM coord_saga WHERE name = 'register-user'").Scan(&status))
	assert.Equal(t, "compensated", status, "the saga log says so")
}

func TestServer_GetUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, _ := e.register("ada")

	res := e.do("GET", "/users/"+id, "")
	require.Equal(t, http.StatusOK, res.Status)
	assert.Equal(t, "ada", res.JSON["username"])
	assert.Equal(t, `"1"`, res.Header.Get("ETag"))

	res = e.do("GET", "/users/3f1c1a52-0000-4000-8000-000000000000", "")
	assert.Equal(t, http.StatusNotFound, res.Status)
	assert.Equal(t, "not_found", res.JSON["code"])
	assert.Contains(t, e.redisKeys(), e.prefix+"profile:3f1c1a52-0000-4000-8000-000000000000", "an unknown id is cached as not found")
	res = e.do("GET", "/users/3f1c1a52-0000-4000-8000-000000000000", "")
	assert.Equal(t, http.StatusNotFound, res.Status, "and answered from the cache")

	for _, bad := range []string{"42", "not-a-uuid", "{" + id + "}", "urn:uuid:" + id} {
		res = e.do("GET", "/users/"+bad, "")
		assert.Equal(t, http.StatusBadRequest, res.Status, bad)
		assert.Equal(t, "invalid", res.JSON["code"], bad)
	}
}

func TestServer_PatchUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, _ := e.register("ada")
	e.register("bob")
	require.Equal(t, http.StatusOK, e.do("GET", "/users/"+id, "").Status, "profile now cached")

	res := e.doAs(id, "PATCH", "/users/"+id, `{"level":"C1","language":"de"}`, "If-Match", `"1"`)
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Raw)
	assert.Equal(t, "C1", res.JSON["level"])
	assert.EqualValues(t, 2, res.JSON["version"])
	assert.Equal(t, `"2"`, res.Header.Get("ETag"))

	got := e.do("GET", "/users/"+id, "")
	assert.Equal(t, "C1", got.JSON["level"], "the cached profile was invalidated")
	assert.Equal(t, "de", got.JSON["language"])

	gone := "3f1c1a52-0000-4000-8000-000000000000"
	e.orphanSession(gone) // a session that outlived its user
	tests := []struct {
		name    string
		path    string
		body    string
		ifMatch string
		status  int
		code    string
	}{
		{"stale version", "/users/" + id, `{"level":"A2"}`, `"1"`, http.StatusPreconditionFailed, "precondition_failed"},
		{"no If-Match", "/users/" + id, `{"level":"A2"}`, "", http.StatusPreconditionRequired, "precondition_required"},
		{"malformed If-Match", "/users/" + id, `{"level":"A2"}`, `"2`, http.StatusBadRequest, "invalid"},
		{"If-Match naming no version of ours", "/users/" + id, `{"level":"A2"}`, `"two"`, http.StatusPreconditionFailed, "precondition_failed"},
		{"unknown user, with ada's session", "/users/" + gone, `{"level":"A2"}`, `"1"`, http.StatusForbidden, "forbidden"},
		{"invalid level", "/users/" + id, `{"level":"Z9"}`, `"2"`, http.StatusBadRequest, "invalid"},
		{"empty patch", "/users/" + id, `{}`, `"2"`, http.StatusBadRequest, "invalid"},
		{"username is not patchable", "/users/" + id, `{"username":"eve"}`, `"2"`, http.StatusBadRequest, "invalid"},
		{"taken email", "/users/" + id, `{"email":"bob@example.org"}`, `"2"`, http.StatusConflict, "conflict"},
	}
	for _, tt := range tests {
		var headers []string
		if tt.ifMatch != "" {
			headers = []string{"If-Match", tt.ifMatch}
		}
		res := e.doAs(id, "PATCH", tt.path, tt.body, headers...)
		assert.Equal(t, tt.status, res.Status, "%s: %s", tt.name, res.Raw)
		assert.Equal(t, tt.code, res.JSON["code"], tt.name)
	}
	res = e.doAs(gone, "PATCH", "/users/"+gone, `{"level":"A2"}`, "If-Match", `"1"`)
	assert.Equal(t, http.StatusNotFound, res.Status, "unknown user, with a session of their own: %s", res.Raw)
	got = e.do("GET", "/users/"+id, "")
	assert.EqualValues(t, 2, got.JSON["version"], "no failed PATCH changed the user")
}

func TestServer_PatchUser_IfMatchFollowsRFC9110(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name    string
		ifMatch []string // header lines
		status  int
	}{
		// "*" matches any current representation.
		{"star", []string{`*`}, http.StatusOK},
		{"the current version", []string{`"1"`}, http.StatusOK},
		{"the bare version earlier releases took", []string{`1`}, http.StatusOK},
		// A list holds if any strong tag in it matches.
		{"a list with the current version first", []string{`"1", "2"`}, http.StatusOK},
		{"a list with the current version last", []string{`"7","3", "1"`}, http.StatusOK},
		{"a list over two header lines", []string{`"5"`, `"1"`}, http.StatusOK},
		{"a list with empty elements", []string{`, "2" ,, "1",`}, http.StatusOK},
		{"a weak tag beside the strong current version", []string{`W/"9", "1"`}, http.StatusOK},
		// Weak tags never match: If-Match compares strongly.
		{"the current version, weak", []string{`W/"1"`}, http.StatusPreconditionFailed},
		{"weak and stale", []string{`W/"1", "2"`}, http.StatusPreconditionFailed},
		{"a tag that is not a version", []string{`"two"`}, http.StatusPreconditionFailed},
		{"the version spelled otherwise", []string{`"01"`}, http.StatusPreconditionFailed},
		{"an empty tag", []string{`""`}, http.StatusPreconditionFailed},
		{"only empty list elements", []string{`,`}, http.StatusPreconditionFailed},
		// Not an If-Match at all.
		{"star in a list", []string{`*, "1"`}, http.StatusBadRequest},
		{"unterminated tag", []string{`"1`}, http.StatusBadRequest},
		{"no comma between tags", []string{`"1" "2"`}, http.StatusBadRequest},
		{"space inside a tag", []string{`"1 OR 1=1"`}, http.StatusBadRequest},
		{"lower-case weak prefix", []string{`w/"1"`}, http.StatusBadRequest},
		{"bare text", []string{`latest`}, http.StatusBadRequest},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, _ := e.register(fmt.Sprintf("user%d", i))
			req, err := http.NewRequest("PATCH", e.url+"/users/"+id, strings.NewReader(`{"level":"C2"}`))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+e.token(id))
			for _, v := range tt.ifMatch {
				req.Header.Add("If-Match", v)
			}
			res, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			body, err := io.ReadAll(res.Body)
			require.NoError(t, res.Body.Close())
			require.NoError(t, err)
			assert.Equal(t, tt.status, res.StatusCode, "body: %s", body)

			want := int64(1)
			if tt.status == http.StatusOK {
				want = 2
				assert.Equal(t, `"2"`, res.Header.Get("ETag"))
			}
			var version int64
			require.NoError(t, e.pool.QueryRow(t.Context(), "SELECT version FROM users WHERE id = $1", id).Scan(&version))
			assert.Equal(t, want, version)
		})
	}

	gone := "3f1c1a52-0000-4000-8000-000000000000"
	e.orphanSession(gone) // a session that outlived its user
	for _, ifMatch := range []string{`*`, `W/"1"`, `"1"`} {
		res := e.doAs(gone, "PATCH", "/users/"+gone, `{"level":"A2"}`, "If-Match", ifMatch)
		assert.Equal(t, http.StatusNotFound, res.Status, "an unknown user is 404 whatever If-Match says: %s", ifMatch)
	}
}

// TestServer_PatchUser_ConcurrentSameIfMatchGivesOne200AndOnly412s sends
// 20 PATCHes at once with the version all of them read: exactly one may
// win, every other must be told its version is stale, and none may be
// lost silently.
func TestServer_PatchUser_ConcurrentSameIfMatchGivesOne200AndOnly412s(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, _ := e.register("ada")
	require.Equal(t, http.StatusOK, e.do("GET", "/users/"+id, "").Status, "profile cached")

	const clients = 20
	levels := []string{"A1", "A2", "B1", "B2", "C1", "C2"}
	statuses := make([]int, clients)
	bodies := make([]map[string]any, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			req, err := http.NewRequest("PATCH", e.url+"/users/"+id, strings.NewReader(`{"level":"`+levels[i%len(levels)]+`"}`))
			if !assert.NoError(t, err) {
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("If-Match", `"1"`)
			req.Header.Set("Authorization", "Bearer "+e.token(id))
			res, err := http.DefaultClient.Do(req)
			if !assert.NoError(t, err) {
				return
			}
			defer res.Body.Close()
			statuses[i] = res.StatusCode
			assert.NoError(t, json.NewDecoder(res.Body).Decode(&bodies[i]))
		})
	}
	wg.Wait()

	winner := -1
	for i, s := range statuses {
		switch s {
		case http.StatusOK:
			assert.Equal(t, -1, winner, "a second 200")
			winner = i
		default:
			assert.Equal(t, http.StatusPreconditionFailed, s, "body: %v", bodies[i])
		}
	}
	require.NotEqual(t, -1, winner, "one PATCH wins")
	got := e.do("GET", "/users/"+id, "")
	assert.EqualValues(t, 2, got.JSON["version"], "one update, no more")
	assert.Equal(t, bodies[winner]["level"], got.JSON["level"], "the winner's change, read through the cache")
}

func TestServer_DeleteUser_RemovesUserConversationsAndCachedProfile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, _ := e.register("ada")
	other, _ := e.register("bob")
	require.Equal(t, http.StatusCreated, e.doAs(id, "POST", "/users/"+id+"/conversations", `{"title":"Verbs"}`).Status)
	require.Equal(t, http.StatusOK, e.do("GET", "/users/"+id, "").Status)
	assert.Equal(t, http.StatusForbidden, e.doAs(other, "DELETE", "/users/"+id, "").Status, "bob may not delete ada")

	res := e.doAs(id, "DELETE", "/users/"+id, "")
	require.Equal(t, http.StatusNoContent, res.Status, "body: %s", res.Raw)
	assert.Empty(t, res.Raw)

	assert.Equal(t, http.StatusNotFound, e.do("GET", "/users/"+id, "").Status)
	assert.Equal(t, 1, e.userRows())
	convs := e.conversations()
	require.Len(t, convs, 1, "only the other user's welcome conversation is left")
	assert.Equal(t, other, convs[0]["user_id"])

	res = e.doAs(id, "DELETE", "/users/"+id, "")
	assert.Equal(t, http.StatusUnauthorized, res.Status, "the deletion revoked the session: %s", res.Raw)
	e.orphanSession(id) // as if the revocation had not run yet
	res = e.doAs(id, "DELETE", "/users/"+id, "")
	assert.Equal(t, http.StatusNotFound, res.Status, "a second delete finds nothing")
	assert.Equal(t, "not_found", res.JSON["code"])
	assert.Equal(t, http.StatusBadRequest, e.doAs(other, "DELETE", "/users/nope", "").Status)
}
