package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestServer_PostConversations(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, _ := e.register("ada")

	res := e.doAs(id, "POST", "/users/"+id+"/conversations", `{"title":"Subjunctive; DROP TABLE users; --"}`)
	require.Equal(t, http.StatusCreated, res.Status, "body: %s", res.Raw)
	assert.Equal(t, "Subjunctive; DROP TABLE users; --", res.JSON["title"], "SQL-shaped text is stored as text")
	assert.Equal(t, id, res.JSON["user_id"])
	assert.Equal(t, "/conversations/"+res.JSON["id"].(string), res.Header.Get("Location"))
	assert.Empty(t, res.JSON["messages"])

	gone := "3f1c1a52-0000-4000-8000-000000000000"
	e.orphanSession(gone)
	tests := []struct {
		name, as, path, body string
		status               int
	}{
		{"unknown user, with ada's session", id, "/users/" + gone + "/conversations", `{"title":"x"}`, http.StatusForbidden},
		{"unknown user, with a session of their own", gone, "/users/" + gone + "/conversations", `{"title":"x"}`, http.StatusNotFound},
		{"bad user id", id, "/users/x/conversations", `{"title":"x"}`, http.StatusBadRequest},
		{"blank title", id, "/users/" + id + "/conversations", `{"title":"  "}`, http.StatusBadRequest},
		{"no title", id, "/users/" + id + "/conversations", `{}`, http.StatusBadRequest},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.status, e.doAs(tt.as, "POST", tt.path, tt.body).Status, tt.name)
	}
}

func TestServer_PostMessages_AppendsToTheConversation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, conv := e.register("ada")

	res := e.doAs(id, "POST", "/conversations/"+conv+"/messages", `{"content":"J'ai mangé une pomme."}`)
	require.Equal(t, http.StatusCreated, res.Status, "body: %s", res.Raw)
	msgs := res.JSON["messages"].([]any)
	require.Len(t, msgs, 2, "the welcome message and this one")
	last := msgs[1].(map[string]any)
	assert.Equal(t, "user", last["role"], "role defaults to user")
	assert.Equal(t, "J'ai mangé une pomme.", last["content"])

	tests := []struct {
		name, path, body string
		status           int
	}{
		{"unknown conversation", "/conversations/0123456789abcdef01234567/messages", `{"content":"hi"}`, http.StatusNotFound},
		{"bad conversation id", "/conversations/xyz/messages", `{"content":"hi"}`, http.StatusBadRequest},
		{"empty content", "/conversations/" + conv + "/messages", `{"content":""}`, http.StatusBadRequest},
		{"unknown role", "/conversations/" + conv + "/messages", `{"role":"root","content":"hi"}`, http.StatusBadRequest},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.status, e.doAs(id, "POST", tt.path, tt.body).Status, tt.name)
	}
}

func TestServer_GetConversations_PagesMostRecentlyUpdatedFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, welcome := e.register("ada")
	e.register("bob") // whose welcome conversation must not show
	var (
		created []string
		last    time.Time
	)
	for i := range 4 {
		res := e.doAs(id, "POST", "/users/"+id+"/conversations", fmt.Sprintf(`{"title":"c%d"}`, i))
		require.Equal(t, http.StatusCreated, res.Status)
		created = append(created, res.JSON["id"].(string))
		var err error
		last, err = time.Parse(time.RFC3339Nano, res.JSON["updated_at"].(string))
		require.NoError(t, err)
	}
	// Timestamps are stored to the millisecond: let the clock pass the last
	// creation, or the bump could tie with it and lose on the id tiebreak.
	require.Eventually(t, func() bool { return time.Now().Truncate(time.Millisecond).After(last) },
		time.Second, 100*time.Microsecond)
	require.Equal(t, http.StatusCreated, e.doAs(id, "POST", "/conversations/"+welcome+"/messages", `{"content":"bump"}`).Status)

	var seen []string
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5, "pagination ends")
		res := e.doAs(id, "GET", "/users/"+id+"/conversations?limit=2&cursor="+url.QueryEscape(cursor), "")
		require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Raw)
		page := res.JSON["conversations"].([]any)
		assert.LessOrEqual(t, len(page), 2)
		for _, c := range page {
			seen = append(seen, c.(map[string]any)["id"].(string))
		}
		next, _ := res.JSON["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	require.Len(t, seen, 5)
	assert.Equal(t, welcome, seen[0], "the conversation just written to comes first")
	assert.ElementsMatch(t, append(created, welcome), seen)

	res := e.doAs(id, "GET", "/users/"+id+"/conversations", "")
	assert.Len(t, res.JSON["conversations"], 5, "default limit covers them")

	first := e.doAs(id, "GET", "/users/"+id+"/conversations?limit=1", "")
	require.Equal(t, http.StatusOK, first.Status)
	valid := url.QueryEscape(first.JSON["next_cursor"].(string))
	tests := []struct {
		name, query string
		status      int
		names       string // what the error message names
	}{
		{"limit zero", "?limit=0", http.StatusBadRequest, "limit"},
		{"limit negative", "?limit=-1", http.StatusBadRequest, "limit"},
		{"limit too big", "?limit=101", http.StatusBadRequest, "limit"},
		{"limit not a number", "?limit=ten", http.StatusBadRequest, "limit"},
		{"forged cursor", "?cursor=eyJ0IjoiYm9ndXMifQ", http.StatusBadRequest, "cursor"},
		// A repeated parameter is refused rather than resolved to one of its values.
		{"limit twice", "?limit=1&limit=1000", http.StatusBadRequest, "limit"},
		{"limit twice, same value", "?limit=2&limit=2", http.StatusBadRequest, "limit"},
		{"limit twice, one empty", "?limit=&limit=2", http.StatusBadRequest, "limit"},
		{"two cursors", "?cursor=" + valid + "&cursor=" + valid, http.StatusBadRequest, "cursor"},
		{"two cursors around a limit", "?cursor=" + valid + "&limit=1&cursor=x", http.StatusBadRequest, "cursor"},
	}
	for _, tt := range tests {
		res := e.doAs(id, "GET", "/users/"+id+"/conversations"+tt.query, "")
		assert.Equal(t, tt.status, res.Status, tt.name)
		assert.Equal(t, "invalid", res.JSON["code"], tt.name)
		assert.Contains(t, res.JSON["error"], tt.names, tt.name)
	}
	assert.Equal(t, http.StatusOK, e.doAs(id, "GET", "/users/"+id+"/conversations?limit=1&cursor="+valid, "").Status,
		"each once is fine")
	gone := "3f1c1a52-0000-4000-8000-000000000000"
	assert.Equal(t, http.StatusForbidden, e.doAs(id, "GET", "/users/"+gone+"/conversations", "").Status, "another user's, existing or not")
	e.orphanSession(gone)
	assert.Equal(t, http.StatusNotFound, e.doAs(gone, "GET", "/users/"+gone+"/conversations", "").Status, "a session that outlived its user")
}
