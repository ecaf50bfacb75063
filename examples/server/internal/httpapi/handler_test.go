package httpapi_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/polystore/polystore/examples/server/internal/chat"
	"github.com/polystore/polystore/examples/server/internal/httpapi"
)

// These unit tests cover what needs no store: panics, error mapping and
// decoding. The end-to-end tests in package server cover the rest against
// the real stores.

// stubUsers answers User and DeleteUser with its fields; the other methods
// are unused.
type stubUsers struct {
	chat.UserService
	user   func(uuid.UUID) (*chat.User, error)
	delete func(uuid.UUID) error
}

func (s stubUsers) User(_ context.Context, id uuid.UUID) (*chat.User, error) { return s.user(id) }

func (s stubUsers) DeleteUser(_ context.Context, id uuid.UUID) error { return s.delete(id) }

// stubSessions takes a user id as the token of that user's session.
type stubSessions struct{ chat.SessionService }

func (stubSessions) Authenticate(_ context.Context, token string) (uuid.UUID, error) {
	id, err := uuid.Parse(token)
	if err != nil {
		return uuid.UUID{}, chat.Errorf(chat.CodeUnauthorized, "invalid or expired session")
	}
	return id, nil
}

// as sets req's Authorization to the stub session of id.
func as(req *http.Request, id string) *http.Request {
	req.Header.Set("Authorization", "Bearer "+id)
	return req
}

func serve(t *testing.T, users chat.UserService, req *http.Request) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	h := httpapi.New(httpapi.Config{Users: users, Sessions: stubSessions{}, Logger: slog.New(slog.DiscardHandler)})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var body map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), "JSON body: %s", rec.Body)
	return rec, body
}

func TestHandler_PanicInHandlerReturns500WithoutDetail(t *testing.T) {
	users := stubUsers{user: func(uuid.UUID) (*chat.User, error) { panic("secret internals") }}
	rec, body := serve(t, users, httptest.NewRequest("GET", "/users/"+uuid.NewString(), nil))
	assert.Equal(t, http.StatusInternalServerError, rec.Code)
	assert.Equal(t, "internal", body["code"])
	assert.NotContains(t, rec.Body.String(), "secret")
}

func TestHandler_ErrorCodesMapToStatuses(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{chat.Errorf(chat.CodeNotFound, "user not found"), 404, "not_found"},
		{chat.Errorf(chat.CodeUnauthorized, "invalid session"), 401, "unauthorized"},
		{chat.Errorf(chat.CodeForbidden, "another user's"), 403, "forbidden"},
		{chat.Errorf(chat.CodeUnavailable, "PostgreSQL is unavailable"), 503, "unavailable"},
		{chat.Errorf(chat.CodeInternal, "bug"), 500, "internal"},
		{assert.AnError, 500, "internal"}, // an unclassified error shows nothing of itself
	}
	for _, tt := range tests {
		users := stubUsers{user: func(uuid.UUID) (*chat.User, error) { return nil, tt.err }}
		rec, body := serve(t, users, httptest.NewRequest("GET", "/users/"+uuid.NewString(), nil))
		assert.Equal(t, tt.status, rec.Code, tt.err.Error())
		assert.Equal(t, tt.code, body["code"], tt.err.Error())
		if tt.err == assert.AnError {
			assert.Equal(t, "internal error", body["error"])
		}
	}
}

func TestHandler_DecodingErrors(t *testing.T) {
	tests := []struct {
		name, body, contentType string
		status                  int
		msg                     string
	}{
		{"empty", "", "", 400, "empty"},
		{"syntax", `{"username":}`, "application/json", 400, "malformed JSON"},
		{"wrong type", `{"username":5}`, "application/json", 400, `"username" must be a JSON string`},
		{"unknown field", `{"nickname":"x"}`, "application/json", 400, `unknown field "nickname"`},
		{"two objects", `{} {}`, "application/json", 400, "single JSON object"},
		{"duplicate key", `{"username":"eve","username":"admin"}`, "application/json", 400, `duplicate key "username"`},
		{"duplicate key in another case", `{"username":"eve","Username":"admin"}`, "application/json", 400, `duplicate key "Username"`},
		{"invalid UTF-8", "{\"username\":\"\xc3\x28\"}", "application/json", 400, "UTF-8"},
		{"charset parameter is fine", `{"username":5}`, "application/json; charset=utf-8", 400, "must be a JSON string"},
		{"XML", `<user/>`, "application/xml", 415, "application/json"},
		{"just over the limit", `{"username":"` + strings.Repeat("a", 64<<10) + `"}`, "application/json", 413, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/users", strings.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			rec, body := serve(t, stubUsers{}, req)
			assert.Equal(t, tt.status, rec.Code)
			assert.Contains(t, body["error"], tt.msg)
		})
	}
}

func TestHandler_PendingOperationReturns202WithLocationOfTheOperation(t *testing.T) {
	id := uuid.New()
	op := &chat.Operation{
		ID: "delete-user/" + id.String() + "/" + uuid.NewString(), Kind: "delete-user", UserID: id,
		Status: chat.OperationPending, Message: "logged",
	}
	users := stubUsers{delete: func(uuid.UUID) error {
		return &chat.Pending{Operation: op, Err: assert.AnError}
	}}
	rec, body := serve(t, users, as(httptest.NewRequest("DELETE", "/users/"+id.String(), nil), id.String()))
	assert.Equal(t, http.StatusAccepted, rec.Code)
	assert.Equal(t, "/operations/"+op.ID, rec.Header().Get("Location"))
	assert.Equal(t, "1", rec.Header().Get("Retry-After"))
	assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	assert.Equal(t, "pending", body["status"])
	assert.Equal(t, op.ID, body["id"])
	assert.NotContains(t, rec.Body.String(), assert.AnError.Error(), "the cause stays in the logs")
}

func TestHandler_UnavailableReturns503WithRetryAfter(t *testing.T) {
	users := stubUsers{delete: func(uuid.UUID) error {
		return chat.Errorf(chat.CodeUnavailable, "nothing was done")
	}}
	id := uuid.NewString()
	rec, body := serve(t, users, as(httptest.NewRequest("DELETE", "/users/"+id, nil), id))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, "unavailable", body["code"])
	assert.Equal(t, "2", rec.Header().Get("Retry-After"))
}

func TestHandler_AuthorizationHeader_401WithBearerChallenge403ForAnotherUser(t *testing.T) {
	id := uuid.NewString()
	users := stubUsers{delete: func(uuid.UUID) error { return nil }}
	tests := []struct {
		name      string
		header    []string // Authorization lines
		status    int
		challenge string
	}{
		{"none", nil, 401, `Bearer realm="polystore-example"`},
		{"empty", []string{""}, 401, `Bearer realm="polystore-example", error="invalid_token"`},
		{"scheme only", []string{"Bearer"}, 401, `Bearer realm="polystore-example", error="invalid_token"`},
		{"scheme and a space", []string{"Bearer "}, 401, `Bearer realm="polystore-example", error="invalid_token"`},
		{"another scheme", []string{"Basic " + id}, 401, `Bearer realm="polystore-example", error="invalid_token"`},
		{"two spaces", []string{"Bearer  " + id}, 401, `Bearer realm="polystore-example", error="invalid_token"`},
		{"a tab", []string{"Bearer\t" + id}, 401, `Bearer realm="polystore-example", error="invalid_token"`},
		{"trailing junk after a space", []string{"Bearer " + id + " x"}, 401, `Bearer realm="polystore-example", error="invalid_token"`},
		{"comma", []string{"Bearer " + id + ",x"}, 401, `Bearer realm="polystore-example", error="invalid_token"`},
		{"two headers", []string{"Bearer " + id, "Bearer " + id}, 401, `Bearer realm="polystore-example", error="invalid_token"`},
		{"very long", []string{"Bearer " + strings.Repeat("a", 1<<16)}, 401, `Bearer realm="polystore-example", error="invalid_token"`},
		{"another user's", []string{"Bearer " + uuid.NewString()}, 403, ""},
		{"scheme in lower case", []string{"bearer " + id}, 204, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("DELETE", "/users/"+id, nil)
			for _, v := range tt.header {
				req.Header.Add("Authorization", v)
			}
			h := httpapi.New(httpapi.Config{Users: users, Sessions: stubSessions{}, Logger: slog.New(slog.DiscardHandler)})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			assert.Equal(t, tt.status, rec.Code, rec.Body.String())
			assert.Equal(t, tt.challenge, rec.Header().Get("WWW-Authenticate"))
		})
	}
}

func TestHandler_RateLimitedErrorCarriesRetryAfter(t *testing.T) {
	e := chat.Errorf(chat.CodeRateLimited, "too many failed logins")
	e.RetryAfter = 1500 * time.Millisecond
	users := stubUsers{user: func(uuid.UUID) (*chat.User, error) { return nil, e }}
	rec, body := serve(t, users, httptest.NewRequest("GET", "/users/"+uuid.NewString(), nil))
	assert.Equal(t, http.StatusTooManyRequests, rec.Code)
	assert.Equal(t, "rate_limited", body["code"])
	assert.Equal(t, "2", rec.Header().Get("Retry-After"), "rounded up to whole seconds")
}
