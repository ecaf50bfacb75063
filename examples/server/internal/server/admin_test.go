package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/coord"
	"github.com/polystore/polystore/examples/server/internal/server"
)

// basic is the Authorization header pair of HTTP Basic credentials.
func basic(user, password string) []string {
	return []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))}
}

// historyLen is the number of events in the saga's history.
func (e *env) historyLen(id string) int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.pool.QueryRow(context.Background(), "SELECT count(*) FROM coord_history WHERE saga_id = $1", id).Scan(&n))
	return n
}

func TestServer_Admin_WithoutAdminTokenIsA404(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/admin/", "/admin/api/sagas", "/admin/style.css"} {
		res := e.do("GET", path, "", basic("ops", "")...)
		assert.Equal(t, http.StatusNotFound, res.Status, path)
		assert.Equal(t, "not_found", res.JSON["code"], path)
	}
}

func TestServer_Admin_WrongOrMissingCredentialsGet401AndNothingOfTheConsole(t *testing.T) {
	e := newEnv(t, func(o *server.Options, _ *server.Stores) { o.AdminToken = "s3cret-admin" })
	userID, _ := e.register("alice")
	sagaPath := "/admin/api/sagas/" + url.PathEscape("register-user/"+userID)
	tests := []struct {
		name    string
		headers []string
	}{
		{"none", nil},
		{"wrong password", basic("ops", "s3cret-admiN")},
		{"password prefix", basic("ops", "s3cret")},
		{"token as user name", basic("s3cret-admin", "")},
		{"token as bearer", []string{"Authorization", "Bearer s3cret-admin"}},
		{"token without scheme", []string{"Authorization", "s3cret-admin"}},
		{"an API session", e.bearer(userID)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/admin/", "/admin/api/sagas", sagaPath, "/admin/style.css"} {
				res := e.do("GET", path, "", tt.headers...)
				assert.Equal(t, http.StatusUnauthorized, res.Status, path)
				assert.Equal(t, `Basic realm="sagas"`, res.Header.Get("WWW-Authenticate"), path)
				assert.Empty(t, res.Raw, path)
			}
			res := e.do("POST", sagaPath+"/resolve", `{"why":"x"}`, tt.headers...)
			assert.Equal(t, http.StatusUnauthorized, res.Status)
			assert.Empty(t, res.Raw)
		})
	}
	assert.Equal(t, 0, e.historyLenWithActor("register-user/"+userID), "no operator action recorded")
}

// historyLenWithActor counts the saga's events that name an operator.
func (e *env) historyLenWithActor(id string) int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.pool.QueryRow(context.Background(),
		"SELECT count(*) FROM coord_history WHERE saga_id = $1 AND actor <> '' AND event IN ('retried', 'resolved')", id).Scan(&n))
	return n
}

func TestServer_Admin_RightCredentialsServeTheConsoleAndTheJSONList(t *testing.T) {
	e := newEnv(t, func(o *server.Options, _ *server.Stores) { o.AdminToken = "s3cret-admin" })
	userID, _ := e.register("alice")
	id := "register-user/" + userID

	page := e.do("GET", "/admin/", "", basic("ops", "s3cret-admin")...)
	require.Equal(t, http.StatusOK, page.Status)
	assert.Contains(t, page.Header.Get("Content-Type"), "text/html")
	assert.Contains(t, string(page.Raw), id, "the latest sagas")
	assert.Contains(t, string(page.Raw), "succeeded")

	// A browser's empty user name is accepted too.
	list := e.do("GET", "/admin/api/sagas?name=register-user", "", basic("", "s3cret-admin")...)
	require.Equal(t, http.StatusOK, list.Status, "%s", list.Raw)
	sagas := list.JSON["sagas"].([]any)
	require.Len(t, sagas, 1)
	assert.Equal(t, id, sagas[0].(map[string]any)["id"])
	assert.Equal(t, "succeeded", sagas[0].(map[string]any)["status"])

	one := e.do("GET", "/admin/api/sagas/"+url.PathEscape(id), "", basic("ops", "s3cret-admin")...)
	require.Equal(t, http.StatusOK, one.Status, "%s", one.Raw)
	assert.NotEmpty(t, one.JSON["history"])
}

func TestServer_Admin_CrossOriginPostsAreRefusedAndChangeNothing(t *testing.T) {
	e := newEnv(t, func(o *server.Options, _ *server.Stores) { o.AdminToken = "s3cret-admin" })
	userID, _ := e.register("alice")
	id := "register-user/" + userID
	before := e.historyLen(id)
	creds := basic("ops", "s3cret-admin")

	for _, path := range []string{"/admin/api/sagas/" + url.PathEscape(id) + "/retry", "/admin/sagas/" + url.PathEscape(id) + "/resolve"} {
		res := e.do("POST", path, `{"why":"csrf"}`, append(creds, "Sec-Fetch-Site", "cross-site")...)
		assert.Equal(t, http.StatusForbidden, res.Status, "%s: %s", path, res.Raw)
		res = e.do("POST", path, `{"why":"csrf"}`, append(creds, "Origin", "https://evil.example")...)
		assert.Equal(t, http.StatusForbidden, res.Status, "%s: %s", path, res.Raw)
	}
	assert.Equal(t, before, e.historyLen(id), "nothing appended to the history")

	// The same POST from the console's own origin reaches coord, which
	// refuses to retry a succeeded saga.
	res := e.do("POST", "/admin/api/sagas/"+url.PathEscape(id)+"/retry", `{"why":"same origin"}`,
		append(creds, "Sec-Fetch-Site", "same-origin", "Origin", e.url)...)
	assert.Equal(t, http.StatusConflict, res.Status, "%s", res.Raw)
}

func TestServer_Admin_ReadOnlyRefusesActions(t *testing.T) {
	e := newEnv(t, func(o *server.Options, _ *server.Stores) { o.AdminToken = "s3cret-admin"; o.AdminReadOnly = true })
	userID, _ := e.register("alice")
	id := "register-user/" + userID
	creds := basic("ops", "s3cret-admin")
	assert.Equal(t, http.StatusOK, e.do("GET", "/admin/", "", creds...).Status)
	res := e.do("POST", "/admin/api/sagas/"+url.PathEscape(id)+"/resolve", `{"why":"x"}`, creds...)
	assert.Equal(t, http.StatusForbidden, res.Status, "%s", res.Raw)
	assert.Equal(t, 0, e.historyLenWithActor(id))
}

func TestServer_SagaKeys_SealTheStatesTheConsoleShows(t *testing.T) {
	e := newEnv(t, func(o *server.Options, _ *server.Stores) {
		o.AdminToken = "s3cret-admin"
		o.SagaKeys = []coord.Key{{ID: "old", Secret: bytes.Repeat([]byte{1}, 32)}, {ID: "new", Secret: bytes.Repeat([]byte{2}, 32)}}
	})
	userID, _ := e.register("alice")
	id := "register-user/" + userID

	var sealedBy, state string
	require.NoError(t, e.pool.QueryRow(context.Background(),
		"SELECT coalesce(state->>'sealed', ''), state::text FROM coord_saga WHERE id = $1", id).Scan(&sealedBy, &state))
	assert.Equal(t, "new", sealedBy, "the newest key seals")
	assert.NotContains(t, state, "alice")

	one := e.do("GET", "/admin/api/sagas/"+url.PathEscape(id), "", basic("ops", "s3cret-admin")...)
	require.Equal(t, http.StatusOK, one.Status, "%s", one.Raw)
	assert.NotContains(t, string(one.Raw), "alice@example.org", "the console shows the state as stored")
	assert.Contains(t, string(one.Raw), `"sealed":"new"`)
}
