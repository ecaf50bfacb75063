package httpapi_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"

	"github.com/polystore/polystore/examples/server/internal/chat"
	"github.com/polystore/polystore/examples/server/internal/httpapi"
)

// ctxUsers answers User with user, called with the request's context.
type ctxUsers struct {
	chat.UserService
	user func(ctx context.Context) (*chat.User, error)
}

func (s ctxUsers) User(ctx context.Context, _ uuid.UUID) (*chat.User, error) { return s.user(ctx) }

// untilDeadline waits for ctx to end (bounded by the test's own deadline,
// should the request have none) and returns what answer makes of its error.
func untilDeadline(t *testing.T, answer func(error) error) func(context.Context) (*chat.User, error) {
	return func(ctx context.Context) (*chat.User, error) {
		select {
		case <-ctx.Done():
			return nil, answer(ctx.Err())
		case <-t.Context().Done():
			return nil, errors.New("the request had no deadline")
		}
	}
}

func TestHandler_RequestTimeout_EndsTheRequestsContextAndItsUnclassifiedDeadlineErrorIs503(t *testing.T) {
	tests := []struct {
		name       string
		timeout    time.Duration
		user       func(t *testing.T) func(context.Context) (*chat.User, error)
		status     int
		code       string
		retryAfter string
	}{
		{
			name:    "the deadline's own error, unclassified, is a store too slow: 503",
			timeout: 20 * time.Millisecond,
			user: func(t *testing.T) func(context.Context) (*chat.User, error) {
				return untilDeadline(t, func(err error) error { return err })
			},
			status: http.StatusServiceUnavailable, code: "unavailable", retryAfter: "2",
		},
		{
			name:    "another unclassified error, returned after the deadline, is a bug: 500",
			timeout: 20 * time.Millisecond,
			user: func(t *testing.T) func(context.Context) (*chat.User, error) {
				return untilDeadline(t, func(error) error { return errors.New("boom") })
			},
			status: http.StatusInternalServerError, code: "internal",
		},
		{
			name:    "a store's classified answer past the deadline keeps its status",
			timeout: 20 * time.Millisecond,
			user: func(t *testing.T) func(context.Context) (*chat.User, error) {
				return untilDeadline(t, func(err error) error { return chat.Wrap(chat.CodeNotFound, err, "user not found") })
			},
			status: http.StatusNotFound, code: "not_found",
		},
		{
			name:    "without a timeout the request has no deadline, and an unclassified error is a 500",
			timeout: 0,
			user: func(*testing.T) func(context.Context) (*chat.User, error) {
				return func(ctx context.Context) (*chat.User, error) {
					if _, ok := ctx.Deadline(); ok {
						return nil, chat.Errorf(chat.CodeInvalid, "the request has a deadline")
					}
					return nil, errors.New("boom")
				}
			},
			status: http.StatusInternalServerError, code: "internal",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := httpapi.New(httpapi.Config{
				Users: ctxUsers{user: tt.user(t)}, Sessions: stubSessions{},
				RequestTimeout: tt.timeout, Logger: slog.New(slog.DiscardHandler),
			})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/users/"+uuid.NewString(), nil))
			assert.Equal(t, tt.status, rec.Code, "body: %s", rec.Body)
			assert.Contains(t, rec.Body.String(), `"code":"`+tt.code+`"`)
			assert.Equal(t, tt.retryAfter, rec.Header().Get("Retry-After"))
			assert.NotContains(t, rec.Body.String(), "took effect", "a GET changes nothing")
		})
	}
}

func TestHandler_RequestTimeout_ProbesHaveNoDeadline(t *testing.T) {
	var deadline bool
	h := httpapi.New(httpapi.Config{
		Users: stubUsers{}, Sessions: stubSessions{}, RequestTimeout: time.Millisecond,
		HealthTimeout: time.Hour,
		Health: []httpapi.HealthCheck{{Name: "postgres", Ping: func(ctx context.Context) error {
			// The check's own bound (HealthTimeout, an hour here) is the
			// only deadline: not the request's millisecond. More than a
			// minute left tells them apart however slow the machine.
			d, ok := ctx.Deadline()
			deadline = ok && time.Until(d) < time.Minute
			return nil
		}}},
		Logger: slog.New(slog.DiscardHandler),
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	assert.Equal(t, http.StatusOK, rec.Code, "body: %s", rec.Body)
	assert.False(t, deadline, "the readiness check ran under the request's deadline")
}
